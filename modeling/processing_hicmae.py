"""``HicmaeProcessor``: clips → HiCMAE's inputs (face frames and log-mel), as the BLEMORE fork's loader makes them.

What the fork (TS1349/HiCMA_BlEmoRe ``kinetics_av.VideoClsDatasetFrame``, test mode) does, and this class does too:

- frames: every 4th frame of the clip (``sampling_rate``), repeated at the end to at least 16; a window of 16 of
  them starting at ``int(k · step)`` for segment k of K (``step = (n − 16) / (K − 1)``); each frame resized to
  160 × 160 (bilinear), scaled to [0, 1] and normalised with the ImageNet mean and std;
- audio: the 16 kHz waveform between the window's first frame and its last frame plus 4, located by relative time
  (frame index / (frames − 1) of the audio's length), at least 1025 samples (zero-padded), its mean removed; Kaldi
  filterbank features (25 ms Hann window, 10 ms hop, pre-emphasis 0.97, 512-point power spectrum, 128 HTK mel bins
  from 20 Hz to 8 kHz, natural log) cut or zero-padded to 256 frames, then ``(x + 4.2677393) / (2 · 4.5689974)``
  (AudioSet statistics, as the fork's loader).

The fork's faces are OpenFace 2.2 similarity-aligned crops (``-simalign -simsize 112 -nomask``), one image per
frame: pass such a folder per clip (``faces=``) for the paper's input. Without it, whole frames of the video are
resized to 160 × 160, which is NOT what the model was fine-tuned on. With one segment (the default) the window is
centred; the fork's test averages K = 2 segments (first and last window; its two spatial crops of a square frame are
the same crop). The fork also scales every waveform by a random gain (``roll_mag_aug``, on by default, at test time
too); this processor does not (see docs/recipes.md).

Shipped as Hub remote code (flat folder, relative imports only, no ``blemore`` import).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import BatchFeature

from .processing_blemore import ProcessorConfigMixin, _describe, open_video_decoder

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
AUDIOSET_MEAN, AUDIOSET_STD = -4.2677393, 4.5689974
FACE_EXTENSIONS = (".bmp", ".jpg", ".jpeg", ".png")
MIN_AUDIO_SAMPLES = 1024


# ---------------------------------------------------------------------------------------------------------------
# Kaldi filterbank features (torchaudio.compliance.kaldi.fbank with the fork's arguments), in plain torch
# ---------------------------------------------------------------------------------------------------------------


def _mel(freq):
    return 1127.0 * torch.log(1.0 + freq / 700.0)


def mel_banks(num_bins: int = 128, window_size: int = 512, sample_rate: int = 16000, low: float = 20.0,
              high: float = 0.0) -> torch.Tensor:
    """Triangular mel filters (num_bins, window_size // 2 + 1) on Kaldi's mel scale (1127 ln(1 + f/700))."""
    nyquist = 0.5 * sample_rate
    high = high if high > 0 else nyquist + high
    mel_low, mel_high = _mel(torch.tensor(low)), _mel(torch.tensor(high))
    delta = (mel_high - mel_low) / (num_bins + 1)
    index = torch.arange(num_bins, dtype=torch.float32).unsqueeze(1)
    left, center, right = mel_low + index * delta, mel_low + (index + 1) * delta, mel_low + (index + 2) * delta
    mel = _mel(sample_rate / window_size * torch.arange(window_size // 2, dtype=torch.float32)).unsqueeze(0)
    up, down = (mel - left) / (center - left), (right - mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return F.pad(banks, (0, 1))


def kaldi_fbank(waveform: torch.Tensor, num_mel_bins: int = 128, sample_rate: int = 16000) -> torch.Tensor:
    """Log mel filterbank (frames, num_mel_bins) of a 1-D waveform: Kaldi's defaults with a Hann window, no dither,
    HTK-compatible output and no energy, i.e. what the fork computes with ``torchaudio.compliance.kaldi.fbank``."""
    window_length, shift, fft_size = int(0.025 * sample_rate), int(0.010 * sample_rate), 512
    waveform = waveform.to(torch.float32)
    if waveform.numel() < window_length:
        return torch.empty(0, num_mel_bins)
    count = 1 + (waveform.numel() - window_length) // shift
    frames = waveform.as_strided((count, window_length), (shift, 1))
    frames = frames - frames.mean(dim=1, keepdim=True)  # remove the DC offset
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = frames - 0.97 * previous  # pre-emphasis, the first sample against itself
    frames = frames * torch.hann_window(window_length, periodic=False, dtype=torch.float32)
    power = torch.fft.rfft(F.pad(frames, (0, fft_size - window_length))).abs().pow(2)
    energies = power @ mel_banks(num_mel_bins, fft_size, sample_rate).T
    return torch.clamp(energies, min=torch.finfo(torch.float32).eps).log()


# ---------------------------------------------------------------------------------------------------------------
# The processor
# ---------------------------------------------------------------------------------------------------------------


class HicmaeProcessor(ProcessorConfigMixin):
    """Face frames and log-mel features for HiCMAE, as the BLEMORE fork's test-time loader makes them.

    Args:
        num_frames (`int`, defaults to 16), frame_stride (`int`, defaults to 4): a window of `num_frames` frames,
            every `frame_stride`-th frame of the clip.
        image_size (`int`, defaults to 160): side the frames are resized to.
        image_mean, image_std: per-channel normalisation (ImageNet's).
        sampling_rate (`int`, defaults to 16000): the audio rate the features are computed at.
        audio_length (`int`, defaults to 256), num_mel_bins (`int`, defaults to 128): log-mel frames and bins.
        audio_mean, audio_std: normalisation ``(x − mean) / (2 · std)`` (AudioSet's).
        num_segments (`int`, defaults to 1): temporal windows of a clip; 2 is the fork's test (the first and the
            last window, averaged by the model); `segment=` picks one of them.
    """

    def __init__(self, num_frames: int = 16, frame_stride: int = 4, image_size: int = 160,
                 image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, sampling_rate: int = 16000,
                 audio_length: int = 256, num_mel_bins: int = 128, audio_mean: float = AUDIOSET_MEAN,
                 audio_std: float = AUDIOSET_STD, num_segments: int = 1):
        self.num_frames, self.frame_stride, self.image_size = int(num_frames), int(frame_stride), int(image_size)
        self.image_mean, self.image_std = tuple(float(v) for v in image_mean), tuple(float(v) for v in image_std)
        self.sampling_rate, self.audio_length, self.num_mel_bins = int(sampling_rate), int(audio_length), int(
            num_mel_bins)
        self.audio_mean, self.audio_std = float(audio_mean), float(audio_std)
        self.num_segments = int(num_segments)

    @classmethod
    def from_model_config(cls, config, **kwargs) -> HicmaeProcessor:
        """The processor matching a ``HicmaeConfig``'s input sizes."""
        return cls(num_frames=config.num_frames, image_size=config.image_size, audio_length=config.audio_length,
                   num_mel_bins=config.num_mel_bins, **kwargs)

    # -----------------------------------------------------------------------------------------------------------
    # Where the window lies
    # -----------------------------------------------------------------------------------------------------------

    def window(self, num_available: int, segment: int = 0, num_segments: int | None = None):
        """(frame indices of the window, first frame, end frame of its audio) for a clip of `num_available` frames."""
        if num_available < 1:
            raise ValueError("a clip without frames")
        num_segments = self.num_segments if num_segments is None else int(num_segments)
        if not 0 <= segment < num_segments:
            raise ValueError(f"segment {segment} out of range for {num_segments} segments")
        strided = list(range(0, num_available, self.frame_stride))
        strided += [strided[-1]] * max(0, self.num_frames - len(strided))
        spare = len(strided) - self.num_frames
        start = spare // 2 if num_segments == 1 else int(segment * max(spare / (num_segments - 1), 0))
        indices = strided[start:start + self.num_frames]
        first = strided[start]
        last = min(strided[min(start + self.num_frames - 1, len(strided) - 1)] + self.frame_stride, num_available - 1)
        return indices, first, last

    # -----------------------------------------------------------------------------------------------------------
    # Frames
    # -----------------------------------------------------------------------------------------------------------

    @staticmethod
    def face_images(folder) -> list[Path]:
        """The aligned face images of one clip (OpenFace writes one per frame, numbered), in order."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"{folder}: no such face folder")
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in FACE_EXTENSIONS)
        if not images:
            raise ValueError(f"{folder}: no face images ({', '.join(FACE_EXTENSIONS)})")
        return images

    def _open_video(self, video, faces: bool = False):
        """A frame source: (number of frames, function from indices to uint8 (N, C, H, W)); `faces`: `video` is
        a face folder (a folder path is taken as one anyway)."""
        if isinstance(video, dict):
            video = video.get("bytes") or video.get("path")
        if faces or (isinstance(video, (str, os.PathLike)) and Path(video).is_dir()):
            images = self.face_images(video)

            def read_faces(indices):
                from PIL import Image

                frames = []
                for index in indices:
                    with Image.open(images[index]) as image:
                        frames.append(torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1))
                return torch.stack(frames)

            return len(images), read_faces
        video = open_video_decoder(video)
        if hasattr(video, "get_frames_at"):
            return len(video), lambda indices: video.get_frames_at(indices=list(indices)).data
        frames = torch.as_tensor(np.asarray(video)) if not isinstance(video, torch.Tensor) else video
        if frames.dim() != 4:
            raise ValueError(f"expected a video of shape (frames, height, width, channels), got {tuple(frames.shape)}")
        if frames.shape[-1] in (1, 3) and frames.shape[1] not in (1, 3):
            frames = frames.permute(0, 3, 1, 2)
        return frames.shape[0], lambda indices: frames[list(indices)]

    def prepare_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) → float (N, C, size, size): bilinear resize, [0, 1], ImageNet normalisation."""
        frames = frames.to(torch.float32)
        if frames.shape[1] == 1:
            frames = frames.expand(-1, 3, -1, -1)
        if tuple(frames.shape[-2:]) != (self.image_size, self.image_size):
            frames = F.interpolate(frames, size=(self.image_size, self.image_size), mode="bilinear",
                                   align_corners=False, antialias=True).clamp(0, 255)
        mean = torch.tensor(self.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std).view(1, 3, 1, 1)
        return (frames / 255.0 - mean) / std

    # -----------------------------------------------------------------------------------------------------------
    # Audio
    # -----------------------------------------------------------------------------------------------------------

    def load_audio(self, audio) -> torch.Tensor:
        """A mono float32 waveform at ``sampling_rate`` from a file, bytes, a torchcodec decoder, a
        ``datasets.Audio`` value or a 1-D array (taken to be at ``sampling_rate``)."""
        source, rate = audio, self.sampling_rate
        if isinstance(audio, dict) and "array" not in audio:
            audio = audio.get("bytes") or audio.get("path")
        if isinstance(audio, (str, os.PathLike, bytes)):
            from torchcodec.decoders import AudioDecoder

            try:
                samples = AudioDecoder(os.fspath(audio) if not isinstance(audio, bytes) else audio,
                                       sample_rate=self.sampling_rate, num_channels=1).get_all_samples()
            except (RuntimeError, ValueError) as error:
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise ValueError(f"{_describe(source)}: cannot decode audio (no audio stream?): {reason}") from error
            waveform, rate = samples.data, samples.sample_rate
        elif hasattr(audio, "get_all_samples") and not hasattr(audio, "__getitem__"):
            samples = audio.get_all_samples()
            waveform, rate = samples.data, samples.sample_rate
        elif isinstance(audio, dict) or (hasattr(audio, "__getitem__") and not isinstance(
                audio, (np.ndarray, torch.Tensor, list, tuple))):
            waveform, rate = audio["array"], audio["sampling_rate"]
        else:
            waveform = audio
        if int(rate) != self.sampling_rate:
            raise ValueError(f"{_describe(source)}: audio at {rate} Hz, HiCMAE's features are computed at "
                             f"{self.sampling_rate} Hz (cast the column with Audio(sampling_rate=16000))")
        waveform = torch.as_tensor(np.asarray(waveform, dtype=np.float32))
        if waveform.dim() == 2:
            waveform = waveform[0] if waveform.shape[0] == 1 else waveform.mean(dim=0)
        if waveform.dim() != 1 or waveform.numel() == 0:
            raise ValueError(f"{_describe(source)}: expected a non-empty mono waveform, got {tuple(waveform.shape)}")
        return waveform

    def audio_window(self, waveform: torch.Tensor, first: int, last: int, num_available: int) -> torch.Tensor:
        """The samples between frames `first` and `last` (relative time), at least 1025 of them."""
        def relative(frame):
            return 0.0 if num_available == 1 else frame / (num_available - 1.0)

        start, end = int(relative(first) * waveform.numel()), int(relative(last) * waveform.numel())
        piece = waveform[start:end]
        if end - start <= MIN_AUDIO_SAMPLES:
            piece = torch.cat([piece, piece.new_zeros(MIN_AUDIO_SAMPLES - (end - start) + 1)])
        return piece

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel (audio_length, num_mel_bins) of a waveform window."""
        features = kaldi_fbank(waveform - waveform.mean(), self.num_mel_bins, self.sampling_rate)
        features = features[: self.audio_length]
        features = F.pad(features, (0, 0, 0, self.audio_length - features.shape[0]))
        return (features - self.audio_mean) / (2 * self.audio_std)

    # -----------------------------------------------------------------------------------------------------------
    # Batches
    # -----------------------------------------------------------------------------------------------------------

    def process_clip(self, video, audio=None, faces=None, segment: int = 0, num_segments: int | None = None):
        """(frames (T, C, H, W), log-mel (audio_length, num_mel_bins)) of one clip.

        `video`: a video file, bytes, decoder or frame array (whole frames), or a face folder; `faces`: a face
        folder that replaces the video's frames (the audio still comes from `audio` or the video file).
        `audio`: defaults to the video file's own track.
        """
        if isinstance(video, dict) and ("video" in video or "audio" in video):  # a dataset row
            video, audio = video.get("video"), video.get("audio") if audio is None else audio
        frame_source = faces if faces is not None else video
        if frame_source is None:
            raise ValueError("HiCMAE needs the clip's frames (a video or a face folder)")
        count, read = self._open_video(frame_source, faces=faces is not None)
        indices, first, last = self.window(count, segment, num_segments)
        unique = sorted(set(indices))
        frames = read(unique)
        frames = self.prepare_frames(frames[[unique.index(i) for i in indices]])
        if audio is None:
            audio = video
        if audio is None or (isinstance(audio, (str, os.PathLike)) and Path(audio).is_dir()):
            raise ValueError(f"{_describe(frame_source)}: HiCMAE needs the clip's audio too (a file or waveform)")
        waveform = self.load_audio(audio)
        return frames, self.log_mel(self.audio_window(waveform, first, last, count))

    def __call__(self, videos=None, audio=None, faces=None, segment: int | None = None,
                 num_segments: int | None = None, return_tensors: str | None = "pt") -> BatchFeature:
        """Model inputs for a clip or a list of clips: ``pixel_values_videos`` and ``input_features``.

        With several segments (``num_segments`` here or in the processor) and no ``segment`` chosen, every segment
        is a view: ``(batch, views, ...)``, which the model averages (the fork's test); else one window per clip.
        """
        num_segments = self.num_segments if num_segments is None else int(num_segments)
        if segment is None and num_segments > 1:
            views = [self(videos, audio, faces, k, num_segments, return_tensors=None) for k in range(num_segments)]
            data = {key: torch.stack([view[key] for view in views], dim=1) for key in views[0]}
            return BatchFeature(data, tensor_type=return_tensors)
        segment = 0 if segment is None else segment
        single = not isinstance(videos, (list, tuple))
        videos = [videos] if single else list(videos)
        audio = [None] * len(videos) if audio is None else ([audio] if single else list(audio))
        faces = [None] * len(videos) if faces is None else ([faces] if single else list(faces))
        if not len(videos) == len(audio) == len(faces):
            raise ValueError(f"{len(videos)} videos, {len(audio)} audio tracks and {len(faces)} face folders")
        pairs = [self.process_clip(v, a, f, segment, num_segments) for v, a, f in zip(videos, audio, faces)]
        data = {"pixel_values_videos": torch.stack([frames for frames, _ in pairs]),
                "input_features": torch.stack([features for _, features in pairs])}
        return BatchFeature(data, tensor_type=return_tensors)

    # -----------------------------------------------------------------------------------------------------------
    # Saving
    # -----------------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "processor_class": type(self).__name__,
            "num_frames": self.num_frames, "frame_stride": self.frame_stride, "image_size": self.image_size,
            "image_mean": list(self.image_mean), "image_std": list(self.image_std),
            "sampling_rate": self.sampling_rate, "audio_length": self.audio_length,
            "num_mel_bins": self.num_mel_bins, "audio_mean": self.audio_mean, "audio_std": self.audio_std,
            "num_segments": self.num_segments,
        }

    @classmethod
    def from_dict(cls, config: dict) -> HicmaeProcessor:
        settings = {key: value for key, value in config.items() if key not in ("processor_class", "auto_map")}
        return cls(**settings)


HicmaeProcessor.register_for_auto_class()

__all__ = ["HicmaeProcessor", "kaldi_fbank", "mel_banks"]

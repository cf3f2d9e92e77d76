"""``BlemoreProcessor``: clips (decoders, files or arrays) → the inputs of a BLEMORE model.

It wraps the encoders' own preprocessing, so a model sees what its backbone was pretrained on:

- video: samples ``num_frames`` frames evenly over the clip (from a torchcodec ``VideoDecoder``, which is what
  ``datasets.Video`` decodes to, a file, bytes or a frame array), then the video encoder's processor resizes,
  crops and normalises them → ``pixel_values_videos``;
- audio: 16 kHz mono waveforms of any length (a ``datasets.Audio`` value, a torchcodec ``AudioDecoder``, a file or
  an array), optionally cut to ``max_audio_seconds``, padded to the longest clip of the batch by the audio
  encoder's feature extractor → ``input_values`` and ``attention_mask`` (1 for real samples).

Why not ``transformers.ProcessorMixin``: it requires every sub-processor to be present, and a BLEMORE model may be
video-only or audio-only. This class keeps the same contract instead: ``save_pretrained`` writes
``processor_config.json`` (with the sub-processors' settings and, for remote code, an ``auto_map``),
``from_pretrained`` reads it from a folder or the Hub, ``push_to_hub`` uploads it, and ``AutoProcessor`` loads it
with ``trust_remote_code=True``.

With ``datasets`` and the Trainer: ``return_tensors=None`` gives one float32 array per clip (what ``Dataset.map``
stores), ``pad`` batches such rows (``DataCollatorWithPadding(processor)``, the pipeline's batches), and a pickled
processor is its settings alone, so ``datasets`` gives a map with it the same fingerprint in every process and
reads the result back from its cache.

Shipped as Hub remote code (flat folder, relative imports only, no ``blemore`` import).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import transformers
from transformers import AutoConfig, AutoFeatureExtractor, AutoImageProcessor, AutoVideoProcessor, BatchFeature
from transformers.dynamic_module_utils import custom_object_save
from transformers.utils import PushToHubMixin, cached_file, is_torchvision_available

PROCESSOR_CONFIG_NAME = "processor_config.json"
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")


def frame_indices(num_available: int, num_frames: int) -> np.ndarray:
    """Indices of ``num_frames`` frames spread evenly over a clip: the centre frame of each of N equal segments.

    Centres rather than segment starts keep the first and last frames (often still or cut) from being favoured;
    a clip shorter than N frames repeats frames.
    """
    if num_available < 1:
        raise ValueError("cannot sample frames from a video without frames")
    indices = ((np.arange(num_frames) + 0.5) * num_available / num_frames).astype(np.int64)
    return np.minimum(indices, num_available - 1)


def _channels_first(frames: torch.Tensor) -> torch.Tensor:
    """(T, H, W, C) or (T, C, H, W) → (T, C, H, W), telling them apart by the 1 or 3 colour channels."""
    if frames.dim() != 4:
        raise ValueError(f"expected a video of shape (frames, height, width, channels), got {tuple(frames.shape)}")
    if frames.shape[-1] in (1, 3) and frames.shape[1] not in (1, 3):
        return frames.permute(0, 3, 1, 2)
    return frames


def _describe(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, dict) and source.get("path"):
        return str(source["path"])
    return type(source).__name__


def open_video_decoder(video):
    """A file path, encoded bytes or an undecoded ``{"path", "bytes"}`` value → a torchcodec ``VideoDecoder``;
    anything else (a decoder, an array of frames) is returned as it is. A file it cannot decode is a ``ValueError``
    naming it."""
    if isinstance(video, dict):
        video = video.get("bytes") or video.get("path")
    if not isinstance(video, (str, os.PathLike, bytes)):
        return video
    from torchcodec.decoders import VideoDecoder

    try:
        # Exact seeking: the one scan of the file that it costs is repaid when frames are sampled. For 16 frames of
        # 720p H.264 with B-frames (camera clips) it took 0.87x the CPU time of approximate seeking, and the same
        # without B-frames (benchmarks/bench_decoding.py).
        return VideoDecoder(os.fspath(video) if not isinstance(video, bytes) else video, seek_mode="exact")
    except (RuntimeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{_describe(video)}: cannot decode video: {reason}") from error


class ProcessorConfigMixin(PushToHubMixin):
    """What the processors of this folder share: their settings are one ``processor_config.json`` (``to_dict`` /
    ``from_dict``), written by ``save_pretrained``, read by ``from_pretrained`` from a folder or the Hub, and the
    file's code is saved beside it for ``AutoProcessor`` once the class is registered."""

    _auto_class = None

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs) -> list[str]:
        """Write ``processor_config.json`` (and, when registered for an Auto class, this file as remote code)."""
        if push_to_hub:
            raise ValueError("use processor.push_to_hub(repo_id) to upload")
        os.makedirs(save_directory, exist_ok=True)
        config = self.to_dict()
        if self._auto_class is not None:
            custom_object_save(self, save_directory, config=config)
        path = os.path.join(save_directory, PROCESSOR_CONFIG_NAME)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(_json_ready(config), f, indent=2, sort_keys=True)
            f.write("\n")
        return [path]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> ProcessorConfigMixin:
        """Load from a folder written by ``save_pretrained`` or a Hub repository (``revision`` etc. accepted)."""
        hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
        path = cached_file(pretrained_model_name_or_path, PROCESSOR_CONFIG_NAME, **hub_kwargs)
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoProcessor") -> None:
        """Let ``save_pretrained`` copy this file and write an ``auto_map`` so ``AutoProcessor`` can load it."""
        cls._auto_class = auto_class

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(_json_ready(self.to_dict()), sort_keys=True)})"


class BlemoreProcessor(ProcessorConfigMixin):
    """Turns clips into ``pixel_values_videos`` and/or ``input_values`` + ``attention_mask`` for a BLEMORE model.

    Args:
        video_processor (`BaseVideoProcessor` or a video-capable image processor, *optional*):
            The video encoder's processor (e.g. ``VideoMAEVideoProcessor``, which needs torchvision, or
            ``VideoMAEImageProcessorPil``, which does not); None for a model without video.
        feature_extractor (`SequenceFeatureExtractor`, *optional*):
            The audio encoder's feature extractor (e.g. ``Wav2Vec2FeatureExtractor``); None for a model without
            audio.
        num_frames (`int`, *optional*, defaults to 16):
            Frames sampled per clip; must match what the video encoder expects (VideoMAE: 16).
        max_audio_seconds (`float`, *optional*):
            Audio longer than this is cut (from the start); None keeps whole clips.

    Example:

    ```python
    >>> processor = BlemoreProcessor.from_backbones("MCG-NJU/videomae-base", "microsoft/wavlm-base-plus")
    >>> batch = processor(videos=[row["video"] for row in rows], audio=[row["audio"] for row in rows])
    >>> outputs = model(**batch)
    ```
    """

    model_input_names = ["pixel_values_videos", "input_values", "attention_mask"]

    def __init__(
        self,
        video_processor=None,
        feature_extractor=None,
        num_frames: int = 16,
        max_audio_seconds: float | None = None,
    ):
        if video_processor is None and feature_extractor is None:
            raise ValueError("BlemoreProcessor needs a video_processor, a feature_extractor or both")
        if num_frames < 1:
            raise ValueError(f"num_frames must be positive, got {num_frames}")
        if max_audio_seconds is not None and max_audio_seconds <= 0:
            raise ValueError(f"max_audio_seconds must be positive, got {max_audio_seconds}")
        self.video_processor = video_processor
        self.feature_extractor = feature_extractor
        self.num_frames = int(num_frames)
        self.max_audio_seconds = None if max_audio_seconds is None else float(max_audio_seconds)

    @property
    def sampling_rate(self) -> int | None:
        """Audio sampling rate the feature extractor (and so the audio encoder) expects, in Hz."""
        return None if self.feature_extractor is None else int(self.feature_extractor.sampling_rate)

    # -----------------------------------------------------------------------------------------------------------
    # Reading clips
    # -----------------------------------------------------------------------------------------------------------

    def sample_frames(self, video) -> torch.Tensor:
        """``num_frames`` evenly spaced frames, uint8 (num_frames, channels, height, width).

        ``video``: a torchcodec ``VideoDecoder`` (what ``datasets.Video`` gives), a file path, encoded bytes, a
        ``{"path", "bytes"}`` dict (an undecoded ``datasets.Video`` value), a (frames, height, width, channels)
        or (frames, channels, height, width) array or tensor, or a list of frames.
        """
        video = open_video_decoder(video)
        if hasattr(video, "get_frames_at"):
            indices = frame_indices(len(video), self.num_frames)
            frames = video.get_frames_at(indices=indices.tolist()).data
        else:
            if isinstance(video, (list, tuple)):
                video = np.stack([np.asarray(frame) for frame in video])
            frames = torch.as_tensor(np.asarray(video) if not isinstance(video, torch.Tensor) else video)
            frames = frames[torch.from_numpy(frame_indices(frames.shape[0], self.num_frames))]
        return _channels_first(frames)

    def load_audio(self, audio, sampling_rate: int | None = None) -> np.ndarray:
        """A mono float32 waveform at ``self.sampling_rate``.

        ``audio``: a ``datasets.Audio`` value (``{"array", "sampling_rate"}`` or its decoder), a torchcodec
        ``AudioDecoder``, a file path or encoded bytes (decoded and resampled here), or a 1-D array/tensor at
        ``sampling_rate`` (default: the processor's). Arrays at another rate are refused rather than resampled
        crudely: cast the column, e.g. ``ds.cast_column("audio", Audio(sampling_rate=16000))``.
        """
        target_rate = self.sampling_rate
        source = audio
        if isinstance(audio, dict) and "array" not in audio:
            audio = audio.get("bytes") or audio.get("path")
        if isinstance(audio, (str, os.PathLike, bytes)):
            from torchcodec.decoders import AudioDecoder

            try:
                decoder = AudioDecoder(
                    os.fspath(audio) if not isinstance(audio, bytes) else audio,
                    sample_rate=target_rate,
                    num_channels=1,
                )
                samples = decoder.get_all_samples()
            except (RuntimeError, ValueError) as error:
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise ValueError(f"{_describe(source)}: cannot decode audio (no audio stream?): {reason}") from error
            waveform, sampling_rate = samples.data, samples.sample_rate
        elif hasattr(audio, "get_all_samples") and not hasattr(audio, "__getitem__"):
            samples = audio.get_all_samples()
            waveform, sampling_rate = samples.data, samples.sample_rate
        elif not isinstance(audio, (np.ndarray, torch.Tensor, list, tuple)):
            waveform, sampling_rate = audio["array"], audio["sampling_rate"]  # datasets.Audio, decoded or lazy
        else:
            waveform = audio
        sampling_rate = target_rate if sampling_rate is None else int(sampling_rate)
        if sampling_rate != target_rate:
            raise ValueError(
                f"{_describe(source)}: audio at {sampling_rate} Hz, the audio encoder expects {target_rate} Hz "
                f"(cast the dataset column with Audio(sampling_rate={target_rate}) or pass a file to resample)"
            )
        if isinstance(waveform, torch.Tensor):
            waveform = waveform.detach().cpu().numpy()
        waveform = np.asarray(waveform, dtype=np.float32)
        if waveform.ndim == 2:  # (channels, samples) → mono; a decoder's one channel as it is, not averaged anew
            waveform = waveform[0] if waveform.shape[0] == 1 else waveform.mean(axis=0)
        if waveform.ndim != 1 or waveform.size == 0:
            raise ValueError(f"{_describe(source)}: expected a non-empty mono waveform, got shape {waveform.shape}")
        return waveform

    # -----------------------------------------------------------------------------------------------------------
    # Batches
    # -----------------------------------------------------------------------------------------------------------

    def __call__(
        self,
        videos=None,
        audio=None,
        *,
        sampling_rate: int | None = None,
        padding: bool | str = "longest",
        max_length: int | None = None,
        truncation: bool | None = None,
        return_attention_mask: bool = True,
        return_tensors: str | None = "pt",
    ) -> BatchFeature:
        """Prepare a batch: ``videos`` and/or ``audio`` as lists of clips (a single clip is also accepted).

        Returns a ``BatchFeature`` with ``pixel_values_videos`` (batch, num_frames, channels, height, width) when
        videos are given and ``input_values`` (batch, samples) + ``attention_mask`` when audio is given.

        The audio arguments are the feature extractor's, as in the transformers audio classification tutorial:
        ``sampling_rate`` is the rate of waveforms passed as arrays (checked, never resampled crudely);
        ``padding`` (``"longest"``, ``True``, ``"max_length"`` or ``False`` for ragged lists), ``max_length`` in
        samples (default: ``max_audio_seconds`` of the processor) and ``truncation`` (default: when there is a
        ``max_length``); ``return_attention_mask``; ``return_tensors`` (``"pt"``, ``"np"`` or None for lists,
        what ``Dataset.map`` stores). So ``ds.map(lambda rows: processor(audio=rows["audio"], ...), batched=True)``
        followed by the Trainer's default collator works as it does with a plain feature extractor.
        """
        if videos is None and audio is None:
            raise ValueError("pass videos, audio or both")
        data = {}
        if videos is not None:
            if self.video_processor is None:
                raise ValueError("this processor has no video processor (the model has no video encoder)")
            clips = [self.sample_frames(video) for video in _as_batch(videos, video=True)]
            # Positional: video processors call it `videos`, image processors that take videos `images`.
            processed = self.video_processor(clips, return_tensors="pt")
            pixels = processed.get("pixel_values_videos", processed.get("pixel_values"))
            data["pixel_values_videos"] = pixels if return_tensors == "pt" else pixels.numpy()
        if audio is not None:
            if self.feature_extractor is None:
                raise ValueError("this processor has no feature extractor (the model has no audio encoder)")
            waveforms = [self.load_audio(clip, sampling_rate) for clip in _as_batch(audio, video=False)]
            if max_length is None and self.max_audio_seconds is not None:
                max_length = int(round(self.max_audio_seconds * self.sampling_rate))
            if truncation is None:
                truncation = max_length is not None
            features = self.feature_extractor(
                waveforms,
                sampling_rate=self.sampling_rate,
                padding=padding,
                truncation=truncation,
                max_length=max_length,
                return_attention_mask=return_attention_mask,
                return_tensors="np" if padding else None,
            )
            data["input_values"] = features["input_values"]
            if return_attention_mask:
                mask = features["attention_mask"]
                data["attention_mask"] = mask.astype(np.int64) if isinstance(mask, np.ndarray) else [
                    np.asarray(row, dtype=np.int64) for row in mask]
        if videos is not None and audio is not None:
            num_videos, num_audio = len(data["pixel_values_videos"]), len(data["input_values"])
            if num_videos != num_audio:
                raise ValueError(f"got {num_videos} videos but {num_audio} audio clips")
        if return_tensors is None:  # one array per clip, as Dataset.map stores them (ragged when not padded)
            data = {key: [_stored_array(key, item) for item in value] for key, value in data.items()}
        return BatchFeature(data=data, tensor_type=return_tensors)

    def pad(
        self,
        features,
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Pad this processor's outputs for some clips into one batch (what ``DataCollatorWithPadding(processor)``
        and the pipeline's batches call).

        ``features``: a list of per-clip mappings (rows that ``ds.map(processor, ...)`` stored, or outputs of this
        processor, batches of one included) or a mapping of lists. Frames are stacked; waveforms are padded by the
        feature extractor (``padding``, ``max_length``, ``pad_to_multiple_of``, ``return_attention_mask`` as in
        ``SequenceFeatureExtractor.pad``), with an attention mask that marks the real samples; any other field
        (e.g. ``labels``) is stacked as it is.
        """
        if isinstance(features, Mapping):
            keys = list(features)
            features = [dict(zip(keys, values)) for values in zip(*(features[key] for key in keys))]
        rows = [row for feature in features for row in _clip_rows(feature)]
        if not rows:
            raise ValueError("pad: no clips to pad")
        keys = list(rows[0])
        data = {}
        if "input_values" in keys:
            if self.feature_extractor is None:
                raise ValueError("pad: input_values given, but this processor has no feature extractor")
            audio = [{key: row[key] for key in ("input_values", "attention_mask") if key in row} for row in rows]
            if return_attention_mask is None:
                return_attention_mask = "attention_mask" in keys or bool(
                    getattr(self.feature_extractor, "return_attention_mask", True))
            padded = self.feature_extractor.pad(
                audio, padding=padding, max_length=max_length, pad_to_multiple_of=pad_to_multiple_of,
                return_attention_mask=return_attention_mask, return_tensors="np",
            )
            data["input_values"] = padded["input_values"].astype(np.float32)
            if return_attention_mask:
                data["attention_mask"] = padded["attention_mask"].astype(np.int64)
        for key in keys:
            if key in ("input_values", "attention_mask"):
                continue
            try:
                data[key] = np.stack([row[key] for row in rows])
            except ValueError as error:
                raise ValueError(f"pad: the clips' {key!r} differ in shape and cannot be stacked ({error})") from None
            if key == "pixel_values_videos":
                data[key] = data[key].astype(np.float32)
        return BatchFeature(data=data, tensor_type=return_tensors)

    # -----------------------------------------------------------------------------------------------------------
    # Saving and loading
    # -----------------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "processor_class": type(self).__name__,
            "num_frames": self.num_frames,
            "max_audio_seconds": self.max_audio_seconds,
            "video_processor": None if self.video_processor is None else self.video_processor.to_dict(),
            "feature_extractor": None if self.feature_extractor is None else self.feature_extractor.to_dict(),
        }

    @classmethod
    def from_dict(cls, config: dict) -> BlemoreProcessor:
        video_processor = feature_extractor = None
        if config.get("video_processor"):
            settings = dict(config["video_processor"])
            name = settings.get("video_processor_type") or settings.get("image_processor_type")
            video_processor = _load_processor(name, settings, "video processor")
        if config.get("feature_extractor"):
            settings = dict(config["feature_extractor"])
            name = settings.get("feature_extractor_type")
            feature_extractor = _load_processor(name, settings, "feature extractor")
        return cls(
            video_processor=video_processor,
            feature_extractor=feature_extractor,
            num_frames=config.get("num_frames", 16),
            max_audio_seconds=config.get("max_audio_seconds"),
        )

    @classmethod
    def from_backbones(
        cls,
        video_backbone: str | None = None,
        audio_backbone: str | None = None,
        *,
        num_frames: int | None = None,
        max_audio_seconds: float | None = None,
        **hub_kwargs,
    ) -> BlemoreProcessor:
        """The processor for a model built with ``from_pretrained_backbones`` from the same names or paths.

        ``num_frames`` defaults to what the video backbone's config says (``num_frames`` or ``frames_per_clip``).
        """
        video_processor = feature_extractor = None
        if video_backbone is not None:
            try:
                video_processor = AutoVideoProcessor.from_pretrained(video_backbone, **hub_kwargs)
            except ImportError:  # video processors need torchvision; the image processor handles videos too
                video_processor = AutoImageProcessor.from_pretrained(video_backbone, **hub_kwargs)
            if num_frames is None:
                backbone_config = AutoConfig.from_pretrained(video_backbone, **hub_kwargs)
                num_frames = getattr(backbone_config, "num_frames", None) or getattr(
                    backbone_config, "frames_per_clip", None
                )
        if audio_backbone is not None:
            feature_extractor = AutoFeatureExtractor.from_pretrained(audio_backbone, **hub_kwargs)
        return cls(
            video_processor, feature_extractor, num_frames=num_frames or 16, max_audio_seconds=max_audio_seconds
        )

    # Pickling (and so ``datasets``' fingerprints of a ``ds.map(...)`` that uses the processor) sees the settings
    # alone, the same text in every process: the sub-processors' live attributes are not part of it.
    def __getstate__(self) -> dict:
        return {"settings": json.dumps(_json_ready(self.to_dict()), sort_keys=True)}

    def __setstate__(self, state: dict) -> None:
        restored = type(self).from_dict(json.loads(state["settings"]))
        self.__dict__.update(restored.__dict__)


def _as_batch(clips, *, video: bool) -> list:
    """A list of clips from either a list or one clip (a 4-D video array or a 1-D waveform counts as one)."""
    if isinstance(clips, (np.ndarray, torch.Tensor)):
        single_ndim = 4 if video else 1
        return [clips] if clips.ndim == single_ndim else list(clips)
    if isinstance(clips, Sequence) and not isinstance(clips, (str, bytes)):
        return list(clips)
    return [clips]


#: Fields of one clip and the number of dimensions they have (one more when several clips are in one array).
_CLIP_NDIM = {"pixel_values_videos": 4, "input_values": 1, "attention_mask": 1}


def _stored_array(key: str, value) -> np.ndarray:
    """One clip's field as ``Dataset.map`` should store it: float32 frames and waveforms, int64 masks."""
    return np.asarray(value, dtype=np.int64 if key == "attention_mask" else np.float32)


def _clip_rows(feature: Mapping) -> list[dict]:
    """One mapping of clip fields as per-clip rows of numpy arrays (a batch of several clips is split)."""
    arrays = {key: value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
              for key, value in feature.items()}
    batched = [key for key in arrays if key in _CLIP_NDIM and arrays[key].ndim == _CLIP_NDIM[key] + 1]
    if not batched:
        return [arrays]
    count = len(arrays[batched[0]])
    return [{key: value[index] for key, value in arrays.items()} for index in range(count)]


def _load_processor(name: str | None, settings: dict, what: str):
    """Rebuild a saved sub-processor by its class name (transformers picks the PIL flavour of an image processor
    where torchvision is missing)."""
    # Image processors are saved under their torchvision class name even when the PIL flavour did the work; without
    # torchvision, ask for the PIL class by name (even looking the other up makes transformers warn on every load).
    if name and not is_torchvision_available() and hasattr(transformers, f"{name}Pil"):
        name = f"{name}Pil"
    if not name or not hasattr(transformers, name):
        raise ValueError(f"processor_config.json: unknown {what} class {name!r} (not in this transformers version)")
    return getattr(transformers, name).from_dict(settings)


def _json_ready(value):
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


BlemoreProcessor.register_for_auto_class()


def _reachable_from_package() -> None:
    """Make this module an attribute of its package, as an import statement would.

    Loaded as remote code, transformers puts it in ``sys.modules`` without that attribute, so pickle (and dill,
    which ``datasets`` fingerprints with) cannot find ``BlemoreProcessor`` by name and copies the class by value,
    which ends in a ``RecursionError``: then ``ds.map`` with the processor never caches.
    """
    package, _, name = __name__.rpartition(".")
    if not package or sys.modules.get(__name__) is None:
        return
    try:
        parent = importlib.import_module(package)
    except ImportError:
        return
    if getattr(parent, name, None) is None:
        setattr(parent, name, sys.modules[__name__])


_reachable_from_package()

__all__ = ["BlemoreProcessor", "ProcessorConfigMixin", "frame_indices"]

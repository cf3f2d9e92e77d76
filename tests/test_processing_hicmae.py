"""``HicmaeProcessor``: the BLEMORE fork's frame sampling and log-mel features.

``fixtures/hicmae/logmel_reference.pt`` was recorded once with ``torchaudio.compliance.kaldi.fbank`` (torchaudio
2.11.1) called as the fork's loader calls it (TS1349/HiCMA_BlEmoRe 45f01474da80512826b4d8cecefaaa2f934e76de,
``kinetics_av.VideoClsDatasetFrame._wav2fbank``: mean removed, Hann window, 128 HTK mel bins, no dither, 10 ms
shift), then cut or zero-padded to 256 frames and normalised with the AudioSet statistics, on the waveform below.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from blemore_toolkit.modeling.processing_hicmae import HicmaeProcessor, kaldi_fbank

FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures" / "hicmae"


def waveform(seconds: float) -> torch.Tensor:
    """The recorded test signal: two tones, a chirp and an offset (deterministic, no random numbers)."""
    n = int(seconds * 16000)
    t = torch.arange(n, dtype=torch.float64) / 16000
    x = 0.3 * torch.sin(2 * math.pi * 220 * t) + 0.2 * torch.sin(2 * math.pi * (300 + 900 * t) * t)
    x = x + 0.05 * torch.sin(2 * math.pi * 3100 * t) * torch.cos(2 * math.pi * 3 * t) + 0.1
    return x.float()


@pytest.fixture(scope="module")
def reference():
    return torch.load(FIXTURES / "logmel_reference.pt", weights_only=True)


def test_kaldi_fbank_matches_torchaudio(reference):
    wav = waveform(1.3)
    ours = kaldi_fbank(wav - wav.mean())
    assert ours.shape == reference["raw_1.3"].shape == (128, 128)
    assert (ours - reference["raw_1.3"]).abs().max() <= 5e-4  # log energies up to 16


def test_log_mel_is_padded_cut_and_normalised_as_the_fork(reference):
    processor = HicmaeProcessor()
    padded = processor.log_mel(waveform(1.3))  # 128 frames, zero-padded to 256 before normalising
    assert padded.shape == (256, 128)
    assert (padded[120:140] - reference["features_1.3_256_rows_120_140"]).abs().max() <= 1e-4
    assert torch.allclose(padded[200], torch.full((128,), 4.2677393 / (2 * 4.5689974)))
    cut = processor.log_mel(waveform(3.1))  # 308 frames, the first 256 kept
    assert (cut[248:256] - reference["features_3.1_256_rows_248_256"]).abs().max() <= 1e-4


@pytest.mark.parametrize(
    ("frames", "segment", "segments", "first_index", "last_index", "audio_first", "audio_last"),
    [
        (100, 0, 2, 0, 60, 0, 64),     # every 4th of 100 frames: 25; the first window of two
        (100, 1, 2, 36, 96, 36, 99),   # the last window starts at int(1 · (25 − 16) / 1) = 9 → frame 36
        (30, 0, 2, 0, 28, 0, 29),      # 8 frames, the last repeated to 16; audio ends at the clip's last frame
        (100, 0, 1, 16, 76, 16, 80),   # one segment: centred (the fork's test divides by K − 1 = 0 here)
    ],
)
def test_the_window_follows_the_forks_test_sampling(frames, segment, segments, first_index, last_index,
                                                     audio_first, audio_last):
    indices, first, last = HicmaeProcessor().window(frames, segment, segments)
    assert len(indices) == 16 and indices[0] == first_index and indices[-1] == last_index
    assert all(b - a in (0, 4) for a, b in zip(indices, indices[1:]))
    assert (first, last) == (audio_first, audio_last)


def test_the_audio_window_is_located_by_relative_time_and_padded():
    processor = HicmaeProcessor()
    wav = torch.arange(99_000, dtype=torch.float32)
    piece = processor.audio_window(wav, 36, 99, 100)
    assert piece[0] == int(36 / 99 * 99_000) and piece.numel() == 99_000 - int(36 / 99 * 99_000)
    short = processor.audio_window(wav[:1000], 0, 1, 100)  # 10 samples: zero-padded to 1025
    assert short.numel() == 1025 and short[:10].tolist() == list(range(10)) and not short[10:].any()


def test_face_folders_give_the_frames_and_the_audio_comes_beside_them(tmp_path):
    from PIL import Image

    folder = tmp_path / "clip_aligned"
    folder.mkdir()
    for i in range(40):  # OpenFace names them frame_det_00_000001.bmp, ...; one colour per frame
        Image.fromarray(np.full((112, 112, 3), i * 5, dtype=np.uint8)).save(folder / f"frame_det_00_{i + 1:06d}.bmp")
    (folder / "notes.txt").write_text("not a frame")
    processor = HicmaeProcessor()
    batch = processor(faces=[folder], audio=[waveform(2.0)], videos=[None])
    frames, features = batch["pixel_values_videos"], batch["input_features"]
    assert frames.shape == (1, 16, 3, 160, 160) and features.shape == (1, 256, 128)
    indices, _, _ = processor.window(40)
    red = frames[0, :, 0, 80, 80] * 0.229 + 0.485  # undo the normalisation of the red channel
    assert torch.allclose(red * 255, torch.tensor([i * 5.0 for i in indices]), atol=1e-3)

    with pytest.raises(ValueError, match="no face images"):
        processor(faces=[tmp_path], audio=[waveform(1.0)], videos=[None])
    with pytest.raises(ValueError, match="no such face folder"):
        processor(faces=[tmp_path / "missing"], audio=[waveform(1.0)], videos=[None])
    with pytest.raises(ValueError, match="needs the clip's audio"):
        processor(faces=[folder], videos=[None])


def test_a_video_file_gives_whole_frames_and_its_own_audio(synthetic_raw):
    clip = sorted(synthetic_raw.rglob("*.mov"))[0]
    batch = HicmaeProcessor(num_segments=2)(videos=[str(clip)], segment=1)
    assert batch["pixel_values_videos"].shape == (1, 16, 3, 160, 160)
    assert batch["input_features"].shape == (1, 256, 128)
    assert batch["input_features"].std() > 0.05  # real sound, not padding


def test_save_and_load(tmp_path):
    processor = HicmaeProcessor(num_segments=2, image_size=96)
    processor.save_pretrained(tmp_path)
    assert HicmaeProcessor.from_pretrained(tmp_path).to_dict() == processor.to_dict()


def test_two_segments_are_two_views_of_the_clip(synthetic_raw):
    clip = str(sorted(synthetic_raw.rglob("*.mov"))[0])
    processor = HicmaeProcessor(num_frames=4, image_size=32, audio_length=64, num_mel_bins=32, num_segments=2)
    views = processor(videos=[clip])
    assert views["pixel_values_videos"].shape == (1, 2, 4, 3, 32, 32)
    assert views["input_features"].shape == (1, 2, 64, 32)
    for k in range(2):
        one = processor(videos=[clip], segment=k)
        assert torch.equal(views["pixel_values_videos"][:, k], one["pixel_values_videos"])
        assert torch.equal(views["input_features"][:, k], one["input_features"])

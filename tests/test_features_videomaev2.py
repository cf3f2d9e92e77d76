"""``blemore features --encoder CONVERTED_VIDEOMAEV2`` under both protocols, against a hand computation.

``--protocol paper`` must give, per window, the organisers' feature (BlEmoRe/blemore-common,
``feature_extraction/video_encoding/VideoMAEv2_features.py``): windows of the model's 16 consecutive frames, not
overlapping, the last one completed with zero frames; each frame in BGR order (OpenCV's, never converted), scaled to
[0, 1], resized bilinearly to the model's square input with no crop and no normalisation; the feature is the
reference's ``forward_features`` (``fc_norm`` with eps 1e-6 of the token mean). ``--protocol toolkit`` feeds RGB
frames through the folder's processor (ImageNet normalisation). The model is the converted tiny ``giant_like``
fixture (tests/test_convert_videomaev2.py proves it equal to the reference model).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from blemore_toolkit.conversion import convert_checkpoint
from blemore_toolkit.conversion.videomaev2 import reference_feature
from blemore_toolkit.features.extraction import aggregate, extract_features

FIXTURES = Path(__file__).parent / "fixtures" / "videomaev2"
CLIPS = 3


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    out = tmp_path_factory.mktemp("videomaev2") / "giant-like"
    return convert_checkpoint("videomaev2", FIXTURES / "giant_like.pth", out, num_heads=2, image_size=28)


@pytest.fixture
def dataset(prepared_dataset, tmp_path):
    """The prepared synthetic dataset cut down to its first shard's first clips (the extraction reads every frame)."""
    copy = tmp_path / "blemore"
    (copy / "data").mkdir(parents=True)
    shutil.copy(prepared_dataset / "README.md", copy / "README.md")
    shard = sorted((prepared_dataset / "data").glob("fold0-*.parquet"))[0]
    pq.write_table(pq.read_table(shard).slice(0, CLIPS), copy / "data" / shard.name)
    return copy


def _stored(dataset: Path, name: str) -> dict:
    table = pq.read_table(sorted((dataset / "features" / name).glob("*.parquet"))[0]).to_pylist()
    return {row["clip_id"]: row for row in table}


def _all_frames(video_bytes: bytes) -> np.ndarray:
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(video_bytes, dimension_order="NHWC", seek_mode="exact")
    return decoder.get_frames_in_range(0, decoder.metadata.num_frames).data.numpy()


def _organisers_window(frames: np.ndarray, size: int, length: int) -> torch.Tensor:
    """VideoMAEv2_features.py, step by step, on one window of RGB frames: (1, frames, 3, size, size)."""
    transformed = []
    for frame in frames[:, :, :, ::-1].copy():  # OpenCV's BGR frames
        tensor = torch.from_numpy(frame).unsqueeze(0).permute(3, 0, 1, 2).to(torch.float32) / 255  # (3, 1, H, W)
        transformed.append(torch.nn.functional.interpolate(tensor, size=(size, size), mode="bilinear",
                                                           align_corners=False))
    clip = torch.stack(transformed).unsqueeze(0).squeeze(3).permute(0, 2, 1, 3, 4)  # (1, 3, T, H, W)
    if clip.shape[2] < length:
        clip = torch.cat([clip, torch.zeros(1, 3, length - clip.shape[2], size, size)], dim=2)
    return clip.permute(0, 2, 1, 3, 4)  # transformers' VideoMAE takes (batch, frames, channels, H, W)


def test_the_paper_protocol_gives_the_organisers_feature_per_window(dataset, encoder):
    from transformers import VideoMAEForVideoClassification

    extract_features(dataset, str(encoder), config_name="videomaev2", protocol="paper", progress=False)
    provenance = json.loads((dataset / "features" / "videomaev2" / "provenance.json").read_text())
    assert (provenance["pixels"], provenance["window"], provenance["frame_stride"], provenance["last_window"]) == (
        "bgr_unnormalised", 16, 1, "zero_pad")
    assert provenance["encoder_class"] == "VideoMAEForVideoClassification" and provenance["hidden_size"] == 22
    stored = _stored(dataset, "videomaev2")
    model = VideoMAEForVideoClassification.from_pretrained(encoder, local_files_only=True).eval()
    rows = pq.read_table(sorted((dataset / "data").glob("*.parquet"))[0], columns=["clip_id", "video"]).to_pylist()
    assert len(rows) == CLIPS == len(stored)
    padded = 0
    for row in rows:
        frames = _all_frames(row["video"]["bytes"])
        windows = [frames[start:start + 16] for start in range(0, len(frames), 16)]
        padded += len(windows[-1]) < 16
        with torch.no_grad():
            expected = torch.cat([reference_feature(model, _organisers_window(w, 28, 16)) for w in windows]).numpy()
        sequence = np.asarray(stored[row["clip_id"]]["sequence"], dtype=np.float32)
        assert sequence.shape == expected.shape, row["clip_id"]
        np.testing.assert_allclose(sequence, expected, atol=1e-5, rtol=0)
        np.testing.assert_allclose(stored[row["clip_id"]]["features"], aggregate(expected), atol=1e-5, rtol=0)
    assert padded  # at least one clip ends in a zero-padded window


def test_the_toolkit_protocol_gives_rgb_frames_through_the_processor(dataset, encoder):
    from transformers import AutoImageProcessor, VideoMAEForVideoClassification

    # Windows as under the paper's protocol, so that only the pixels differ.
    extract_features(dataset, str(encoder), config_name="videomaev2-tk", protocol="toolkit", frame_stride=1,
                     last_window="zero_pad", progress=False)
    provenance = json.loads((dataset / "features" / "videomaev2-tk" / "provenance.json").read_text())
    assert provenance["pixels"] == "processor"
    stored = _stored(dataset, "videomaev2-tk")
    model = VideoMAEForVideoClassification.from_pretrained(encoder, local_files_only=True).eval()
    processor = AutoImageProcessor.from_pretrained(encoder, local_files_only=True)
    row = pq.read_table(sorted((dataset / "data").glob("*.parquet"))[0], columns=["clip_id", "video"]).to_pylist()[0]
    frames = _all_frames(row["video"]["bytes"])
    windows = [list(frames[start:start + 16]) for start in range(0, len(frames), 16)]
    windows[-1] += [np.zeros_like(frames[0])] * (16 - len(windows[-1]))
    with torch.no_grad():
        pixel_values = processor(windows, return_tensors="pt").pixel_values
        expected = reference_feature(model, pixel_values).numpy()
    np.testing.assert_allclose(stored[row["clip_id"]]["sequence"], expected, atol=1e-5, rtol=0)
    paper = _organisers_window(frames[:16], 28, 16)
    with torch.no_grad():
        assert not np.allclose(expected[0], reference_feature(model, paper)[0].numpy(), atol=1e-3)


def test_other_video_encoders_keep_their_processor_under_the_paper_protocol(tmp_path, encoder):
    """The organisers' pixels are a VideoMAEv2 quirk: a plain VideoMAE folder still gets its processor's input."""
    from blemore_toolkit.features.configs import ExtractionSettings
    from blemore_toolkit.features.extraction import FeatureEncoder
    from blemore_toolkit.training.tiny import save_tiny_encoders

    plain = save_tiny_encoders(tmp_path, 16)["videomae"]
    settings = ExtractionSettings(encoder=str(plain), kind="auto", pixels="bgr_unnormalised")
    model = FeatureEncoder(settings, local_files_only=True)
    assert (model.videomaev2, settings.pixels, "pixels" in settings.fingerprint_data()) == (False, "processor", False)
    settings = ExtractionSettings(encoder=str(encoder), kind="auto", pixels="bgr_unnormalised")
    model = FeatureEncoder(settings, local_files_only=True)
    assert (model.videomaev2, settings.pixels, settings.fingerprint_data()["pixels"]) == (
        True, "bgr_unnormalised", "bgr_unnormalised")
    assert model.probe() == 22

"""``blemore features --encoder torchvision:NAME``: torchvision's video models, with the organisers' Video Swin
windows under ``--protocol paper`` (BlEmoRe/blemore-common
``feature_extraction/video_encoding/VideoSwinTransformer_features.py``).

A tiny Video Swin (torchvision's own ``SwinTransformer3d`` class, narrow and shallow) stands in for Swin3D-B so
that the test runs in seconds; its weights come from a state-dict file saved as the organisers' checkpoint is
(``module.`` prefixes, a 13-class head). The stored window vectors are compared with a hand computation: the clip's
frames decoded here, the windows cut by hand, the weights' transforms, and the ``avgpool`` output read with a forward
hook as the organisers read it. Runs where torchvision is installed (the ``video`` extra).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from blemore import BlemoreError
from blemore_toolkit.features import torchvision_video
from blemore_toolkit.features.extraction import PADDING_FRAME, extract_features

try:
    torchvision_video.import_torchvision()
except BlemoreError:
    pytest.skip("torchvision is not installed (pip install 'blemore[video]')", allow_module_level=True)

TINY = "swin3d_tiny"


def _tiny_swin():
    from torchvision.models.video.swin_transformer import SwinTransformer3d

    return SwinTransformer3d(patch_size=[2, 4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 1],
                             window_size=[8, 7, 7], num_classes=13)


@pytest.fixture(scope="module", autouse=True)
def tiny_architecture():
    torchvision_video.ARCHITECTURES[TINY] = (_tiny_swin, "swin3d_t")
    yield
    torchvision_video.ARCHITECTURES.pop(TINY)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A state dict as the organisers' fine-tuned checkpoint is saved: nn.DataParallel prefixes, 13 classes."""
    import torch

    torch.manual_seed(0)
    model = _tiny_swin()
    path = tmp_path_factory.mktemp("swin") / "swin_finetuned.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    return path, model


@pytest.fixture(scope="module")
def dataset(prepared_dataset, tmp_path_factory):
    """The prepared dataset cut to three clips of one shard (a real Video Swin window costs seconds on a CPU)."""
    import pyarrow.parquet as pq

    copy = tmp_path_factory.mktemp("torchvision") / "blemore"
    shutil.copytree(prepared_dataset, copy)
    shards = sorted((copy / "data").glob("*.parquet"))
    table = pq.read_table(shards[0]).slice(0, 3)
    for shard in shards:
        shard.unlink()
    pq.write_table(table, shards[0])
    return copy


def test_paper_windows_follow_the_organisers_10_s_chunks():
    chunk = torchvision_video.chunked_window_indices
    # 3 s at 30 fps: one chunk of 90 frames, zero-padded to 300; windows of 32 every 16 → 17 windows
    windows = chunk(90, 30.0, 32, 16, 10.0)
    assert len(windows) == 17 == (300 - 32) // 16 + 1
    for k, window in enumerate(windows):
        assert window == [i if i < 90 else PADDING_FRAME for i in range(16 * k, 16 * k + 32)]
    # 12 s at 30 fps: [0, 10 s] holds frames 0..300 (frame 300 is at exactly 10 s); the second chunk starts with
    # the first one's last 16 frames, then frames 300..359 (300 again), zero-padded to 300 frames
    windows = chunk(360, 30.0, 32, 16, 10.0)
    first = list(range(301))
    second = list(range(285, 301)) + list(range(300, 360)) + [PADDING_FRAME] * 224
    expected = [first[s:s + 32] for s in range(0, 301 - 31, 16)] + [second[s:s + 32] for s in range(0, 300 - 31, 16)]
    assert windows == expected and len(windows) == 34
    # 29.97 fps: no frame at exactly 10 s; the second chunk starts with the frame before it (299, at 9.977 s)
    windows = chunk(330, 29.97, 32, 16, 10.0)
    assert windows[17][:17] == list(range(284, 300)) + [299]


def _hand_windows(row, window=32, hop=16, chunk_s=10.0):
    """The clip's windows as (T, H, W, C) uint8 arrays: every frame, then black frames to int(10 fps)."""
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(row["video"]["bytes"], dimension_order="NHWC")
    frames = decoder.get_frames_in_range(start=0, stop=int(decoder.metadata.num_frames)).data.numpy()
    fps = float(decoder.metadata.average_fps)
    assert len(frames) / fps < chunk_s  # the synthetic clips are short: one chunk
    padded = np.concatenate([frames, np.zeros((int(chunk_s * fps) - len(frames),) + frames.shape[1:], np.uint8)])
    return [padded[s:s + window] for s in range(0, len(padded) - window + 1, hop)]


def test_paper_features_equal_a_hand_computation_of_the_windows(dataset, checkpoint):
    import pyarrow.parquet as pq
    import torch
    from torchcodec.decoders import VideoDecoder
    from torchvision.models.video import Swin3D_T_Weights

    path, reference = checkpoint
    result = extract_features(dataset, f"torchvision:{TINY}", protocol="paper", weights=path, progress=False,
                              device="cpu")
    assert result.config == "torchvision-swin3d-tiny" and result.hidden_size == 16
    stored = pq.read_table(next((dataset / "features" / result.config).glob("*.parquet"))).to_pylist()
    clips = pq.read_table(next((dataset / "data").glob("*.parquet"))).to_pylist()

    features = {}
    reference.eval().avgpool.register_forward_hook(lambda module, inputs, output: features.update(avg_pool=output))
    preprocess = Swin3D_T_Weights.KINETICS400_V1.transforms()
    for row, record in zip(clips, stored):
        assert record["clip_id"] == row["clip_id"]
        expected = []
        for window in _hand_windows(row):
            with torch.no_grad():
                reference(preprocess(torch.from_numpy(window).permute(0, 3, 1, 2)).unsqueeze(0))
            expected.append(features["avg_pool"].squeeze().numpy())
        fps = VideoDecoder(row["video"]["bytes"]).metadata.average_fps
        assert record["num_windows"] == len(expected) == (int(10 * fps) - 32) // 16 + 1  # 14 at 25 fps, 17 at 30
        np.testing.assert_allclose(record["sequence"], np.stack(expected), rtol=1e-4, atol=1e-5)
    provenance = json.loads((dataset / "features" / result.config / "provenance.json").read_text())
    assert provenance["window"] == 32 and provenance["window_hop"] == 16 and provenance["chunk_s"] == 10.0
    assert provenance["last_window"] == "zero_pad" and provenance["weights"] == path.name
    assert set(provenance["weights_sha256"]) == {"swin_finetuned.pth"}
    assert str(path.parent) not in json.dumps(provenance)  # the file's name and digest, not where it lies


def test_toolkit_protocol_uses_the_models_clip_length_and_random_weights(dataset):
    result = extract_features(dataset, f"torchvision:{TINY}", config_name="swin-toolkit", progress=False,
                              device="cpu")
    provenance = json.loads((dataset / "features" / "swin-toolkit" / "provenance.json").read_text())
    assert provenance["window"] == 32 and provenance["frame_stride"] == 4 and provenance["chunk_s"] is None
    assert provenance["initialisation"].startswith("random") and result.hidden_size == 16


def test_bad_names_and_weights_are_one_line(dataset, tmp_path):
    import torch

    with pytest.raises(BlemoreError, match="not a torchvision video model"):
        extract_features(dataset, "torchvision:resnet50", progress=False, device="cpu")
    wrong = tmp_path / "wrong.pth"
    torch.save({"module.patch_embed.proj.weight": torch.zeros(3)}, wrong)
    with pytest.raises(BlemoreError, match="does not fit this architecture"):
        extract_features(dataset, f"torchvision:{TINY}", weights=wrong, progress=False, device="cpu")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(BlemoreError, match="not a state dict torch can load safely"):
        extract_features(dataset, f"torchvision:{TINY}", weights=tmp_path / "junk.pth", progress=False, device="cpu")

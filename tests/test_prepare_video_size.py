"""`blemore prepare --video-size`: a training-resolution copy of each video (short side, aspect kept), the originals
kept or dropped as asked, and the card saying which."""

from pathlib import Path

import datasets
import numpy as np
import pytest
from torchcodec.decoders import VideoDecoder

import blemore
from blemore_toolkit.data.card import split_card
from blemore_toolkit.data.prepare import prepare_dataset
from blemore_toolkit.data.synth_encoding import write_clip

NAMES = ("A102_mix_ang_hap_30_70_ver1", "A102_sad_int2_ver1")


@pytest.fixture(scope="module")
def wide_download(tmp_path_factory) -> Path:
    """Two 96x64 clips with real names (folds from the shipped manifest)."""
    root = tmp_path_factory.mktemp("wide") / "raw"
    (root / "clips").mkdir(parents=True)
    for i, name in enumerate(NAMES):
        label = blemore.parse_clip_name(name)
        write_clip(root / "clips" / f"{name}.mov", label.emotions, label.salience, width=96, height=64,
                   duration_s=1.0, seed=i)
    return root


def _card(folder: Path) -> dict:
    return split_card((folder / "README.md").read_text(), folder)[0]


def test_video_size_stores_a_smaller_copy_and_drops_originals(wide_download, tmp_path):
    out = tmp_path / "small"
    prepare_dataset(wide_download, out, video_size=32, progress=False)
    train = datasets.load_dataset(str(out), split="train").cast_column("video", datasets.Video(decode=False))
    assert "original_video" not in train.column_names
    for row in train:
        decoder = VideoDecoder(row["video"]["bytes"])
        assert (decoder.metadata.width, decoder.metadata.height) == (row["width"], row["height"]) == (48, 32)
        assert row["video"]["path"] == f"{row['clip_id']}.mov"
        original = VideoDecoder(str(wide_download / "clips" / f"{row['clip_id']}.mov"))
        assert len(decoder) == len(original) == row["num_frames"]
        # The picture survives: the mean colour of a frame matches the original's, downscaled.
        small = decoder.get_frame_at(10).data.float().mean(dim=(1, 2))
        full = original.get_frame_at(10).data.float().mean(dim=(1, 2))
        assert np.abs((small - full).numpy()).max() < 4
    card = _card(out)
    assert card["blemore_video"] == {"short_side": 32, "originals": "dropped"}
    assert "original_video" not in {f["name"] for f in card["dataset_info"][0]["features"]}


def test_keep_original_video_keeps_the_file_bytes(wide_download, tmp_path):
    out = tmp_path / "kept"
    prepare_dataset(wide_download, out, video_size=32, keep_original_video=True, progress=False)
    train = datasets.load_dataset(str(out), split="train")
    train = train.cast_column("video", datasets.Video(decode=False)).cast_column(
        "original_video", datasets.Video(decode=False))
    for row in train:
        assert row["original_video"]["bytes"] == (wide_download / "clips" / f"{row['clip_id']}.mov").read_bytes()
        assert row["video"]["bytes"] != row["original_video"]["bytes"]
    card = _card(out)
    assert card["blemore_video"] == {"short_side": 32, "originals": "kept in original_video"}
    assert "original_video" in {f["name"] for f in card["dataset_info"][0]["features"]}


def test_video_size_refuses_nonsense(wide_download, tmp_path):
    with pytest.raises(blemore.BlemoreError, match="at least 16"):
        prepare_dataset(wide_download, tmp_path / "x", video_size=8, progress=False)
    with pytest.raises(blemore.BlemoreError, match="only makes sense with --video-size"):
        prepare_dataset(wide_download, tmp_path / "y", keep_original_video=True, progress=False)


def test_the_command_line_passes_video_size_on(wide_download, tmp_path):
    out = tmp_path / "from_cli"
    assert blemore.main(["prepare", str(wide_download), str(out), "--video-size", "32", "--keep-original-video",
                         "--quiet"]) == 0
    train = datasets.load_dataset(str(out), split="train").cast_column("video", datasets.Video(decode=False))
    assert "original_video" in train.column_names
    for row in train:
        decoder = VideoDecoder(row["video"]["bytes"])
        assert (decoder.metadata.width, decoder.metadata.height) == (row["width"], row["height"]) == (48, 32)
    assert _card(out)["blemore_video"] == {"short_side": 32, "originals": "kept in original_video"}

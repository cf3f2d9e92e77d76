"""`blemore prepare`: a download (synthetic here) to a portable, Hub-native folder that `load_dataset` reads."""

import csv
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import psutil
import pytest

import blemore
from blemore_toolkit.data.card import dataset_statistics
from blemore_toolkit.data.loading import read_label_table
from blemore_toolkit.data.prepare import prepare_dataset
from blemore_toolkit.data.synth_encoding import write_clip

BLEMORE_CLI = [sys.executable, "-c", "import sys, blemore; sys.exit(blemore.main())"]


def run_cli(*args, **kwargs):
    return subprocess.run([*BLEMORE_CLI, *map(str, args)], capture_output=True, text=True, **kwargs)


def metadata_rows(raw):
    with open(raw / "train_metadata.csv", newline="") as f:
        return {row["filename"]: row for row in csv.DictReader(f)}


def test_round_trip_matches_the_download(synthetic_raw, prepared_dataset):
    ds = datasets.load_dataset(str(prepared_dataset))
    rows = metadata_rows(synthetic_raw)
    train = ds["train"].select_columns(["clip_id", "actor_id", "fold", "emotions", "salience", "outcome",
                                        "presence", "soft_target"])
    assert sorted(train["clip_id"]) == sorted(rows)
    names = ds["train"].features["emotions"].feature.names
    for row in train:
        meta = rows[row["clip_id"]]
        label = blemore.parse_clip_name(row["clip_id"])
        assert [names[i] for i in row["emotions"]] == list(label.emotions)
        assert row["salience"] == list(label.salience)
        assert row["fold"] == int(meta["fold"]) and row["actor_id"] == meta["video_id"]
        assert blemore.OUTCOME_NAMES[row["outcome"]] == blemore.OUTCOMES[label.outcome].name
        assert row["soft_target"] == pytest.approx(blemore.soft_target(label.emotions, label.salience))
        assert row["presence"] == blemore.presence_vector(label.emotions)
    test_clips = sorted(p.stem for p in (synthetic_raw / "test").glob("*.mov"))
    assert sorted(ds["test"]["clip_id"]) == test_clips
    assert all(e == [] for e in ds["test"]["emotions"]) and set(ds["test"]["outcome"]) == {None}


def test_fold_configs_are_actor_disjoint_and_cover_train(prepared_dataset):
    all_train = datasets.load_dataset(str(prepared_dataset), split="train").select_columns(["clip_id", "actor_id"])
    for k in range(blemore.NUM_FOLDS):
        fold = datasets.load_dataset(str(prepared_dataset), f"fold{k}")
        assert set(fold) == {"train", "validation", "test"}
        train_actors = set(fold["train"]["actor_id"])
        validation_actors = set(fold["validation"]["actor_id"])
        assert validation_actors and not train_actors & validation_actors
        assert set(fold["validation"]["fold"]) == {k}
        assert len(fold["train"]) + len(fold["validation"]) == len(all_train)


def test_frames_and_audio_decode(prepared_dataset):
    ds = datasets.load_dataset(str(prepared_dataset), split="train")
    row = ds[0]
    frames = row["video"].get_frames_at(indices=[0, row["num_frames"] - 1]).data
    assert frames.shape == (2, 3, row["height"], row["width"]) and str(frames.dtype) == "torch.uint8"
    audio = row["audio"]
    assert audio["sampling_rate"] == 16_000
    samples = np.asarray(audio["array"])
    assert samples.ndim == 1 and abs(len(samples) / 16_000 - row["duration_s"]) < 0.1
    assert np.abs(samples).max() > 0.01  # the sound is there, not silence


def test_card_header_and_statistics(prepared_dataset):
    card = (prepared_dataset / "README.md").read_text()
    assert card.startswith("---\n") and "config_name: fold4" in card and "dtype: video" in card
    assert "arXiv 2601.13225" in card or "2601.13225" in card
    assert "**synthetic**" in card
    table = read_label_table(prepared_dataset)
    stats = dataset_statistics(table)
    assert stats["clips"] == len(table)
    assert stats["num_single"] + stats["num_blend"] == int((table["emotions"].map(len) > 0).sum())
    assert f"{stats['clips']} clips" in card


def test_prepared_folder_loads_without_the_download(tmp_path):
    raw = small_download(tmp_path / "raw")
    out = tmp_path / "blemore"
    prepare_dataset(raw, out, progress=False)
    shutil.rmtree(raw)
    ds = datasets.load_dataset(str(out), split="train")
    assert ds[0]["video"].get_frames_at(indices=[0]).data.shape[0] == 1
    assert len(ds[0]["audio"]["array"]) > 0


def test_load_dataset_never_serves_another_folders_cache(tmp_path):
    """``datasets`` keys its cache of a local folder by name and header: the header's sizes keep them apart."""
    one = small_download(tmp_path / "one")
    two = small_download(tmp_path / "two", names=("A102_ang_int1_ver1", "A102_mix_ang_hap_30_70_ver1",
                                                  "A102_sad_int2_ver1"))
    first, second = tmp_path / "a" / "blemore", tmp_path / "b" / "blemore"
    prepare_dataset(one, first, progress=False)
    prepare_dataset(two, second, progress=False)
    assert len(datasets.load_dataset(str(first), split="train")) == 2
    assert len(datasets.load_dataset(str(second), split="train")) == 3  # same folder name, other data
    prepare_dataset(two, first, overwrite=True, progress=False)
    assert len(datasets.load_dataset(str(first), split="train")) == 3  # re-prepared in place
    card = (first / "README.md").read_text()
    assert "num_examples: 3" in card and "download_size:" in card


def test_builder_reads_the_download_directly(synthetic_raw, tmp_path):
    builder = blemore.Blemore(config_name="fold1", data_dir=str(synthetic_raw), cache_dir=str(tmp_path))
    builder.download_and_prepare()
    ds = builder.as_dataset()
    assert set(ds) == {"train", "validation", "test"}
    assert set(ds["validation"]["fold"]) == {1}
    assert len(ds["train"]) + len(ds["validation"]) == len(metadata_rows(synthetic_raw))


# --- bad input: one line naming the clip, no traceback, no output folder ------------------------------------------


def small_download(root: Path, names=("A102_ang_int1_ver1", "A102_mix_ang_hap_30_70_ver1")) -> Path:
    """Clips with real names (folds then come from the shipped manifest), no metadata."""
    (root / "clips").mkdir(parents=True)
    for i, name in enumerate(names):
        label = blemore.parse_clip_name(name)
        write_clip(root / "clips" / f"{name}.mov", label.emotions, label.salience, width=64, height=48,
                   duration_s=1.5, seed=i)
    return root


def _break_zero_bytes(path):
    path.write_bytes(b"")


def _break_truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _break_not_a_video(path):
    path.write_text("this is not a video\n")


def _break_no_audio(path):
    write_clip(path, ("ang",), (100,), width=64, height=48, duration_s=1.5, with_audio=False)


@pytest.mark.parametrize(
    "breaker, expected",
    [
        (_break_zero_bytes, "is empty (0 bytes)"),
        (_break_truncate, "A102_ang_int1_ver1: "),
        (_break_not_a_video, "unreadable video"),
        (_break_no_audio, "has no audio track"),
    ],
)
def test_broken_clip_stops_prepare_with_one_line(tmp_path, breaker, expected):
    raw = small_download(tmp_path / "raw")
    breaker(raw / "clips" / "A102_ang_int1_ver1.mov")
    result = run_cli("prepare", raw, tmp_path / "out", "--quiet")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "A102_ang_int1_ver1" in lines[0] and expected in lines[0]
    assert not (tmp_path / "out").exists()


def test_truncated_clip_with_index_up_front_is_caught(tmp_path):
    """A clip whose index survives (moov first) but whose media data was cut: its audio ends early."""
    raw = small_download(tmp_path / "raw", names=("A102_ang_int1_ver1",))
    clip = raw / "clips" / "A102_ang_int1_ver1.mov"
    faststart = tmp_path / "fs.mov"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", clip, "-c", "copy", "-movflags", "+faststart", faststart],
                   check=True)
    data = faststart.read_bytes()
    clip.write_bytes(data[: int(len(data) * 0.5)])
    result = run_cli("prepare", raw, tmp_path / "out", "--quiet")
    assert result.returncode == 1 and "A102_ang_int1_ver1" in result.stderr
    assert ("truncated" in result.stderr or "unreadable" in result.stderr or "decode" in result.stderr)


def test_name_and_metadata_problems_are_named(tmp_path):
    raw = small_download(tmp_path / "raw")
    (raw / "clips" / "A102_ang_int1_ver1.mov").rename(raw / "clips" / "A102_xyz_int1_ver1.mov")
    result = run_cli("prepare", raw, tmp_path / "out", "--quiet")
    assert result.returncode == 1 and "A102_xyz_int1_ver1" in result.stderr and "Traceback" not in result.stderr

    raw = small_download(tmp_path / "raw2")
    with open(raw / "metadata.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "video_id", "mix", "emotion_1", "emotion_2", "emotion_1_salience",
                         "emotion_2_salience", "version", "intensity_level", "situation", "fold"])
        writer.writerow(["A102_mix_ang_hap_30_70_ver1", "A102", 1, "ang", "hap", 70, 30, 1, "", "", 1])
    result = run_cli("prepare", raw, tmp_path / "out", "--quiet")
    assert result.returncode == 1
    assert "A102_mix_ang_hap_30_70_ver1" in result.stderr and "name says" in result.stderr

    raw = small_download(tmp_path / "raw3", names=("A9999_ang_int1_ver1",))
    result = run_cli("prepare", raw, tmp_path / "out", "--quiet")
    assert result.returncode == 1 and "A9999_ang_int1_ver1: no fold" in result.stderr

    raw = small_download(tmp_path / "raw4", names=("A102_ang_int1_ver1",))
    (raw / "more").mkdir()
    shutil.copy(raw / "clips" / "A102_ang_int1_ver1.mov", raw / "more" / "A102_ang_int1_ver1.mp4")
    result = run_cli("prepare", raw, tmp_path / "out", "--quiet")
    assert result.returncode == 1 and "A102_ang_int1_ver1: found twice" in result.stderr

    result = run_cli("prepare", tmp_path / "nowhere", tmp_path / "out", "--quiet")
    assert result.returncode == 1 and "nowhere: no such folder" in result.stderr


def test_real_download_is_compared_with_the_manifest(tmp_path):
    raw = small_download(tmp_path / "raw")
    scan = blemore.scan_download(raw)
    assert not scan.synthetic
    assert [c.fold for c in scan.clips] == [1, 1]  # from the shipped manifest
    text = "\n".join(scan.notes)
    assert "2 of 2456 named clips present" in text and "missing 2454 clips" in text


def test_existing_output_is_not_overwritten_by_accident(tmp_path):
    raw = small_download(tmp_path / "raw", names=("A102_ang_int1_ver1",))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result = run_cli("prepare", raw, tmp_path / "out", "--quiet")
    assert result.returncode == 1 and "--overwrite" in result.stderr
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


# --- interruption ------------------------------------------------------------------------------------------------


def dataset_digest(folder: Path) -> dict:
    """Every row of every split of the default config, media included (as hashes of their bytes)."""
    ds = datasets.load_dataset(str(folder)).cast_column("video", datasets.Video(decode=False))
    ds = ds.cast_column("audio", datasets.Audio(decode=False))
    digest = {}
    for split, part in ds.items():
        for row in part:
            row["video"] = hashlib.sha256(row["video"]["bytes"]).hexdigest()
            row["audio"] = hashlib.sha256(row["audio"]["bytes"]).hexdigest()
            digest[(split, row["clip_id"])] = row
    return digest


def test_interrupted_prepare_then_rerun_equals_an_uninterrupted_run(synthetic_raw, prepared_dataset, tmp_path):
    out = tmp_path / "blemore"
    staging = tmp_path / ".blemore.incomplete"
    process = subprocess.Popen([*BLEMORE_CLI, "prepare", str(synthetic_raw), str(out), "--quiet", "--workers", "2",
                                "--clips-per-shard", "16"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if len(list((staging / ".done").glob("*"))) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "prepare finished before it could be interrupted"
    workers = psutil.Process(process.pid).children(recursive=True)
    assert workers, "prepare was expected to read clips in worker processes"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    _, alive = psutil.wait_procs(workers, timeout=10)  # workers end themselves once prepare is gone
    assert not alive, f"workers outlived a killed prepare: {alive}"
    assert not out.exists()
    with pytest.raises(FileNotFoundError):
        datasets.load_dataset(str(out))

    result = run_cli("prepare", synthetic_raw, out, "--quiet", "--clips-per-shard", "16")
    assert result.returncode == 0, result.stderr
    assert " reused" in result.stdout and "0 reused" not in result.stdout
    assert not staging.exists()
    assert dataset_digest(out) == dataset_digest(prepared_dataset)


def test_clips_in_the_working_directory_are_still_embedded(tmp_path, monkeypatch):
    """Run from inside the clips folder (``blemore prepare . ../out``): each video's file name is also a file in
    the working directory, which must not make the shard store that name instead of the clip's bytes."""
    raw = small_download(tmp_path / "raw")
    monkeypatch.chdir(raw / "clips")
    prepare_dataset(".", tmp_path / "out", num_workers=1, progress=False)
    import pyarrow.parquet as pq

    rows = [row for path in sorted((tmp_path / "out" / "data").glob("*.parquet"))
            for row in pq.read_table(path, columns=["clip_id", "video", "audio"]).to_pylist()]
    assert len(rows) == 2
    for row in rows:
        assert row["video"]["bytes"] == (raw / "clips" / f"{row['clip_id']}.mov").read_bytes()
        assert row["audio"]["bytes"]

"""``blemore features DATASET --openface-dir DIR``: OpenFace FeatureExtraction CSVs imported with the organisers'
columns and cleaning (BlEmoRe/blemore-common ``feature_extraction/openface_operations/``).

The fixture CSVs (tests/fixtures/openface/, written by its ``make_fixtures.py``) have the layout OpenFace 2.2 writes
(714 columns, ``", "`` separators, its number formats, failed frames). Their values are linear in the frame number,
so every expected frame below is computed by hand from that formula, not by the code under test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import blemore
from blemore_toolkit.features.extraction import aggregate, extract_features
from blemore_toolkit.features.openface import FEATURE_COLUMNS, clean_frames, read_openface_csv

FIXTURES = Path(__file__).parent / "fixtures" / "openface"


def frame(k: int) -> np.ndarray:
    """The 31 organiser columns of a fixture frame with frame number ``k``, by hand (0: a failed frame)."""
    if k == 0:
        return np.zeros(31, dtype=np.float32)
    aus = [round(0.1 * k + 0.05 * i, 2) for i in range(17)]
    pose = [round(0.01 * k, 3), round(-0.02 * k, 3), round(0.003 * k, 3), round(1.5 * k, 1), round(-2.0 * k, 1),
            round(400 + 3 * k, 1)]  # Rx Ry Rz Tx Ty Tz: the organisers' order, not the file's (Tx first)
    gaze = [0.01 * k, 0.2 + 0.01 * k, -0.9, -0.02 * k, 0.1 + 0.005 * k, -0.95, round(0.05 * k, 3), round(-0.01 * k, 3)]
    return np.asarray(aus + pose + gaze, dtype=np.float32)


def frames(*ks: int) -> np.ndarray:
    return np.stack([frame(k) for k in ks])


EXPECTED = {
    # every frame tracked: as it is
    "all_good": ("kept", frames(1, 2, 3, 4, 5, 6)),
    # success 0.9, confidence 0.85: frame 1 (failed, before any good frame) dropped; frame 10 (a glitch at
    # confidence 0.6) midway between frames 9 and 11; frame 20 (failed, after the last good one) = frame 19
    "interpolated": ("interpolated", np.concatenate([frames(*range(2, 20)), frames(19)])),
    # success 0.8 (outside [0.85, 1)) but confidence 0.9 (inside): frames 3, 4 and the glitch 7 interpolated
    "confidence_ratio": ("interpolated", frames(*range(1, 11))),
    # both ratios 0.5: kept as they are, failed frames (zeros) included
    "mostly_failed": ("kept_bad_frames", frames(1, 0, 3, 0, 0, 6, 0, 8, 0, 10)),
    "never_tracked": ("kept_bad_frames", frames(0, 0, 0, 0)),
    # confidence ratio 0.9 asks for interpolation, no frame is successful: all dropped, one row of zeros
    "never_successful": ("empty", frames(0)),
    "header_only": ("empty", frames(0)),
}


def test_the_fixtures_have_openface_2_2s_layout():
    header = (FIXTURES / "all_good.csv").read_text().splitlines()[0].split(", ")
    assert len(header) == 714 and header[:5] == ["frame", "face_id", "timestamp", "confidence", "success"]
    assert header.index("pose_Tx") == 13 + 5 * 56 and header[-18:][-1] == "AU45_c" and header[-19] == "AU45_r"
    assert [c for c in header if c in FEATURE_COLUMNS] != list(FEATURE_COLUMNS)  # the file's order is not theirs


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cleaning_matches_a_hand_computation(name):
    action, expected = EXPECTED[name]
    cleaned, done = clean_frames(read_openface_csv(FIXTURES / f"{name}.csv"))
    assert done == action
    np.testing.assert_allclose(cleaned, expected, rtol=0, atol=1e-5)


def test_a_header_without_spaces_reads_the_same(tmp_path):
    text = (FIXTURES / "interpolated.csv").read_text().replace(", ", ",")
    (tmp_path / "x.csv").write_text(text)
    np.testing.assert_array_equal(clean_frames(read_openface_csv(tmp_path / "x.csv"))[0],
                                  clean_frames(read_openface_csv(FIXTURES / "interpolated.csv"))[0])


@pytest.fixture
def dataset(prepared_dataset, tmp_path):
    copy = tmp_path / "blemore"
    shutil.copytree(prepared_dataset, copy)
    return copy


def _clip_ids(dataset: Path) -> list[str]:
    import pyarrow.parquet as pq

    return [c for shard in sorted((dataset / "data").glob("*.parquet"))
            for c in pq.read_table(shard, columns=["clip_id"])["clip_id"].to_pylist()]


def _csv_folder(dataset: Path, folder: Path) -> dict[str, str]:
    """One CSV per clip, named after it: the special fixtures for the first clips, all_good for the rest."""
    clips = _clip_ids(dataset)
    special = sorted(EXPECTED)
    assignment = {clip: special[i] if i < len(special) else "all_good" for i, clip in enumerate(clips)}
    for i, (clip, name) in enumerate(assignment.items()):
        target = folder / f"part{i % 3}" / f"{clip}.csv"  # found at any depth
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / f"{name}.csv", target)
    return assignment


def test_import_stores_cleaned_frames_and_their_statistics(dataset, tmp_path):
    import datasets

    assignment = _csv_folder(dataset, tmp_path / "openface")
    result = extract_features(dataset, None, openface_dir=tmp_path / "openface", progress=False)
    assert result.config == "openface" and result.hidden_size == 31 and result.num_clips == len(assignment)
    loaded = datasets.load_dataset(str(dataset), "openface", cache_dir=str(tmp_path / "cache"))
    rows = {r["clip_id"]: r for split in loaded.values() for r in split}
    for clip, name in assignment.items():
        expected = EXPECTED[name][1]
        np.testing.assert_allclose(rows[clip]["sequence"], expected, atol=1e-5)
        np.testing.assert_allclose(rows[clip]["features"], aggregate(expected), rtol=1e-5, atol=1e-5)
        assert rows[clip]["num_windows"] == len(expected)
    labelled = next(r for r in rows.values() if r["split"] == "train")
    assert labelled["outcome"] == blemore.parse_clip_name(labelled["clip_id"]).outcome
    provenance = json.loads((dataset / "features" / "openface" / "provenance.json").read_text())
    assert provenance["columns"] == list(FEATURE_COLUMNS) and provenance["kind"] == "table"
    assert provenance["cleaning"]["confidence_threshold"] == 0.85 and provenance["encoder"] == "openface"
    assert provenance["openface_dir"] == "openface"  # its name only: push publishes provenance.json
    assert str(tmp_path) not in (dataset / "features" / "openface" / "provenance.json").read_text()


def test_a_missing_csv_names_the_clip(dataset, tmp_path):
    assignment = _csv_folder(dataset, tmp_path / "openface")
    missing = sorted(assignment)[5]
    next((tmp_path / "openface").rglob(f"{missing}.csv")).unlink()
    with pytest.raises(blemore.BlemoreError, match=f"clip {missing}: no OpenFace CSV {missing}.csv under "):
        extract_features(dataset, None, openface_dir=tmp_path / "openface", progress=False)
    assert "openface" not in (dataset / "README.md").read_text()


@pytest.mark.parametrize("damage, message", [
    (lambda text: text.replace("AU12_r", "AU12_x"), r"columns AU12_r missing"),
    (lambda text: "", r"the file is empty"),
    (lambda text: text.replace("\n2, 0, 0.033, 0.98, 1, 0.020000", "\n2, 0, 0.033, 0.98, 1, n/a", 1),
     r"column gaze_0_x holds a value that is not a number"),
])
def test_a_malformed_csv_is_one_line_naming_it(dataset, tmp_path, damage, message):
    assignment = _csv_folder(dataset, tmp_path / "openface")
    broken = next((tmp_path / "openface").rglob(f"{sorted(assignment)[-1]}.csv"))
    broken.write_text(damage((FIXTURES / "all_good.csv").read_text()))
    with pytest.raises(blemore.BlemoreError, match=message) as error:
        extract_features(dataset, None, openface_dir=tmp_path / "openface", progress=False)
    assert str(broken) in str(error.value) and "\n" not in str(error.value)


def test_the_command_line_imports_and_refuses_a_missing_folder(dataset, tmp_path, capsys):
    from blemore_toolkit.cli import main

    _csv_folder(dataset, tmp_path / "openface")
    assert main(["features", str(dataset), "--openface-dir", str(tmp_path / "openface"), "--name", "of",
                 "--quiet"]) == 0
    assert "features 'of'" in capsys.readouterr().out
    assert main(["features", str(dataset), "--openface-dir", str(tmp_path / "nowhere"), "--quiet"]) != 0
    assert "--openface-dir" in capsys.readouterr().err

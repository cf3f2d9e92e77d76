"""The fast paths of scoring give exactly what the full paths give: the clean-CSV reader of references, the inlined
clean-clip check of submissions, ``clip_key`` and the tuple shortcut of ``challenge.clip_pairs``."""

import csv
import os

import pytest

import blemore
from blemore_toolkit.data import references
from blemore_toolkit.evaluation import submission
from metrics.blemore import challenge


def _write(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


METADATA = ["filename", "video_id", "emotion_1", "emotion_2", "emotion_1_salience", "emotion_2_salience", "fold"]
CLEAN_FILES = {
    "metadata": (METADATA, [
        ["A1_ang_int1_ver1.mov", "A1", "ang", "", "", "", "0"],
        ["A1_mix_ang_hap_70_30_ver1.mov", "A1", "ang", "hap", "70", "30", "0.0"],
        ["A2_mix_ang_hap_30_70_ver1", "A2", "hap", "ang", "70", "30", "1"],
        ["sub/A3_neu_sit2_ver1.mp4", "A3", "neu", "NaN", "nan", "None", "2"],
    ]),
    "answer key with unlabelled rows": (METADATA[:1] + METADATA[2:6], [
        ["test_0001.mov", "sad", "", "", ""],
        ["test_0002", "disg", "fea", "50", "50"],
        ["test_0003.MOV", "", "", "", ""],
        ["other_clip", "", "", "", ""],
    ]),
    "names only, with splits": (["filename", "split", "fold"], [
        ["A102_ang_int1_ver1", "train", "3"],
        ["A411_mix_ang_hap_30_70_ver1.mov", "train", "4"],
        ["A55_neu_sit2_ver1", "test", ""],
    ]),
    "one label column": (["filename", "emotion_1"], [["test_0001", "hap"], ["test_0002", "neu"]]),
}


@pytest.mark.parametrize("name", sorted(CLEAN_FILES))
def test_clean_csv_reader_matches_the_full_reader(tmp_path, name):
    path = _write(tmp_path / "refs.csv", *CLEAN_FILES[name])
    fast, full = references._read_clean_csv(path), references._read_csv(path)
    assert fast is not None
    assert fast == full
    assert [c.pairs for c in fast.clips.values()] == [c.pairs for c in full.clips.values()]
    assert [c.is_blend for c in fast.clips.values()] == [c.is_blend for c in full.clips.values()]


@pytest.mark.parametrize("rows", [
    [["test_0001", "hap", "", "", ""], ["test_0001", "hap", "", "", ""]],  # listed twice
    [["test_0001", "joy", "", "", ""]],  # unknown code
    [["test_0001", "ang", "hap", "60", "40"]],  # not one of the 36
    [["test_0001", "ang", "hap", "70", ""]],  # blend without both saliences
    [["", "hap", "", "", ""]],  # empty filename
])
def test_unclean_csv_falls_back_to_the_full_reader(tmp_path, rows):
    path = _write(tmp_path / "refs.csv", METADATA[:1] + METADATA[2:6], rows)
    assert references._read_clean_csv(path) is None
    with pytest.raises(blemore.BlemoreError) as error:
        references.read_references(path)
    assert str(path) in str(error.value)


def test_short_rows_are_read_by_the_full_reader(tmp_path):
    path = _write(tmp_path / "refs.csv", METADATA[:1] + METADATA[2:6], [["test_0001", "hap"], ["test_0002", "sad"]])
    assert references._read_clean_csv(path) is None
    assert references.read_references(path) == references._read_csv(path)
    assert len(references.read_references(path).clips) == 2


def test_not_utf8_falls_back(tmp_path):
    path = tmp_path / "refs.csv"
    path.write_bytes("filename,emotion_1\ntest_0001,hap\n".encode("utf-16"))
    assert references._read_clean_csv(path) is None


@pytest.mark.parametrize("key", ["test_0001.mov", "test_0001.MP4", "a.b.mov", ".mov", "x/.mov", "x..mov", "..mov",
                                 "x.mov.mov", "test_0001", "mov", "x/y.mov", "x.avi"])
def test_clip_key_is_splitext(key):
    expected = os.path.splitext(key)[0] if key.lower().endswith((".mov", ".mp4")) else key
    assert submission.clip_key(key) == expected


CLIPS = [
    [{"emotion": "hap", "salience": 100.0}],
    [{"emotion": "hap", "salience": 99.6}],
    [{"emotion": "hap", "salience": 100}],
    [{"emotion": "ang", "salience": 69.6}, {"emotion": "hap", "salience": 30.4}],
    [{"emotion": "ang", "salience": 50.5}, {"emotion": "hap", "salience": 49.5}],
    [{"emotion": "ang", "salience": 0.7}, {"emotion": "hap", "salience": 0.3}],
    [{"emotion": "ang", "salience": 100.0}, {"emotion": "ang", "salience": 0.0}],
    [{"emotion": "ang", "salience": True}],
    [{"emotion": "ang", "salience": float("nan")}],
    [{"emotion": "ang", "salience": 101}],
    [{"emotion": "joy", "salience": 100}],
    [{"emotion": "ang", "salience": 100, "extra": 1}],
    [{"emotion": "ang"}],
    [],
    [{"emotion": "ang", "salience": 40}, {"emotion": "hap", "salience": 30}, {"emotion": "sad", "salience": 30}],
    "hap",
]


@pytest.mark.parametrize("lenient", [False, True])
def test_inlined_clean_check_matches_check_clip(lenient):
    raw = submission.RawSubmission("s", [(f"test_{i:04d}.mov", v) for i, v in enumerate(CLIPS)], [])
    refs = {f"test_{i:04d}": (("ang", 70), ("hap", 30)) for i in range(len(CLIPS))}
    checked = submission.check_submission(raw, references=refs, lenient=lenient)
    expected_predictions, expected_findings = {}, []
    for i, value in enumerate(CLIPS):
        pairs, found = submission.check_clip(f"test_{i:04d}", value, True)
        expected_findings.extend(found)
        if pairs is not None:
            expected_predictions[f"test_{i:04d}"] = pairs
    assert checked.predictions == expected_predictions
    assert sorted(checked.problems + checked.tolerated, key=repr) == sorted(expected_findings, key=repr)


def test_clip_pairs_tuple_shortcut():
    assert challenge.clip_pairs((("ang", 70), ("hap", 30))) == [("ang", 70), ("hap", 30)]
    assert challenge.clip_pairs([["ang", 70]]) == [("ang", 70)]
    assert challenge.clip_pairs([{"emotion": "ang", "salience": 70}]) == [("ang", 70)]
    scores = challenge.challenge_scores([(("ang", 70), ("hap", 30))], [[{"emotion": "hap", "salience": 30.4},
                                                                         {"emotion": "ang", "salience": 69.6}]])
    assert scores["score"] == 1.0

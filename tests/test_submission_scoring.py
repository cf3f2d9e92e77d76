"""Submissions and `blemore score` / `validate` / `zip`: strict refusals, lenient fidelity to the challenge's scorer,
every form of references, and the real 594-clip template."""

import csv
import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import blemore
from blemore_toolkit.data import references
from blemore_toolkit.evaluation import scoring, submission

ORGANISERS_COLUMNS = ("filename,video_id,gender,mix,emotion_1,emotion_2,emotion_1_salience,emotion_2_salience,"
                      "version,intensity_level,situation,fold").split(",")
TEMPLATE = blemore.reference_path("codabench_submission_template.json")
MANIFEST = blemore.reference_path("blemore_manifest.csv")

# Twelve reference clips: every kind of truth, named as the anonymised test clips are.
TRUTH = {
    "test_0001": (("hap",), (100,)),
    "test_0002": (("neu",), (100,)),
    "test_0003": (("ang", "hap"), (70, 30)),
    "test_0004": (("disg", "fea"), (50, 50)),
    "test_0005": (("fea", "sad"), (30, 70)),
    "test_0006": (("sad",), (100,)),
    "test_0007": (("ang", "disg"), (70, 30)),
    "test_0008": (("ang",), (100,)),
    "test_0009": (("hap", "sad"), (50, 50)),
    "test_0010": (("fea",), (100,)),
    "test_0011": (("disg", "hap"), (30, 70)),
    "test_0012": (("disg",), (100,)),
}


def truth_entries(clip):
    emotions, salience = TRUTH[clip]
    return [{"emotion": e, "salience": float(s)} for e, s in zip(emotions, salience)]


def write_answer_key(path, labels):
    """An answer key in the organisers' columns, as `blemore synth` writes it."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(ORGANISERS_COLUMNS)
        for clip, (emotions, salience) in labels.items():
            blend = len(emotions) == 2
            writer.writerow([clip, "", "", int(blend), emotions[0], emotions[1] if blend else "",
                             salience[0] if blend else "", salience[1] if blend else "", 1, "", "", ""])
    return path


def write_json(path, document):
    path.write_text(json.dumps(document))
    return path


def perfect_submission():
    return {"predictions": {f"{clip}.mov": truth_entries(clip) for clip in TRUTH}}


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return write_answer_key(tmp_path_factory.mktemp("key") / "answer_key.csv", TRUTH)


def organisers_scorer(predictions, labels):
    """What the challenge's scorer computes, written out independently to check ``--lenient`` against.

    It walks the *submitted* clips (a missing clip counts neither way, an unknown one makes it fail), compares the
    sets of emotion codes for presence and, for blends, ``{emotion: numpy-rounded salience}`` of two-entry
    predictions (anything else is wrong). Where it would fail, this raises too.
    """
    presence, salience = [], []
    for clip, predicted in predictions.items():
        truth = labels[clip]
        presence.append({t["emotion"] for t in truth} == {p["emotion"] for p in predicted})
        if len(truth) == 2:
            salience.append(len(predicted) == 2 and {t["emotion"]: np.round(t["salience"], 0) for t in truth}
                            == {p["emotion"]: np.round(p["salience"], 0) for p in predicted})
    return float(np.mean(presence)), float(np.mean(salience)) if salience else math.nan


def oracle_from_text(text):
    """The organisers' scorer on a submission file's text (keys matched without their .mov, as in its labels)."""
    predictions = {submission.clip_key(k): v for k, v in json.loads(text)["predictions"].items()}
    return organisers_scorer(predictions, {clip: truth_entries(clip) for clip in TRUTH})


def run_cli(capsys, *argv):
    code = blemore.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------------------------
# Reading submissions
# ---------------------------------------------------------------------------------------------------------------


def test_json_and_zip_read_alike_and_keys_may_drop_the_suffix(tmp_path, key):
    document = perfect_submission()
    document["predictions"] = {(k[:-4] if i % 2 else k): v for i, (k, v) in enumerate(document["predictions"].items())}
    as_json = write_json(tmp_path / "sub.json", document)
    as_zip = tmp_path / "sub.zip"
    with zipfile.ZipFile(as_zip, "w") as archive:
        archive.writestr("results/predictions.json", json.dumps(document))
        archive.writestr("__MACOSX/._predictions.json", "junk")
    for path in (as_json, as_zip):
        result, _ = scoring.score_submission(path, key)
        assert (result["acc_presence"], result["acc_salience"], result["n_clips"]) == (1.0, 1.0, 12)


@pytest.mark.parametrize(("members", "message"), [([], "found: none"), (["a.json", "b.json"], "a.json, b.json")])
def test_a_zip_must_hold_one_json(tmp_path, members, message):
    path = tmp_path / "sub.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "x")
        for name in members:
            archive.writestr(name, "{}")
    with pytest.raises(blemore.BlemoreError, match=message):
        submission.read_submission(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"predictions": {"test_0001.mov": [}', r"not valid JSON \(.* line 1, column"),
        ("[1, 2]", "not a challenge submission"),
        ('{"predictions": [1]}', '"predictions" must map clip names'),
    ],
)
def test_unreadable_files_are_one_clear_line(tmp_path, text, message):
    path = tmp_path / "sub.json"
    path.write_text(text)
    with pytest.raises(blemore.BlemoreError, match=message) as caught:
        submission.read_submission(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


# ---------------------------------------------------------------------------------------------------------------
# Strict mode: every problem named, nothing scored
# ---------------------------------------------------------------------------------------------------------------


def mutated(clip, value):
    document = perfect_submission()
    document["predictions"][f"{clip}.mov"] = value
    return document


PROBLEMS = [
    # (name, document, clip named, text in the line, scored by --lenient?)
    ("unknown emotion", mutated("test_0001", [{"emotion": "happy", "salience": 100}]), "test_0001",
     "unknown emotion code \"happy\" (expected one of ang, disg, fea, hap, sad, neu); did you mean 'hap'?", True),
    ("duplicated emotion", mutated("test_0001", [{"emotion": "hap", "salience": 50}, {"emotion": "hap",
                                                                                      "salience": 50}]),
     "test_0001", 'emotion "hap" given 2 times', True),
    ("three emotions", mutated("test_0003", [{"emotion": "ang", "salience": 60}, {"emotion": "hap", "salience": 30},
                                             {"emotion": "sad", "salience": 10}]),
     "test_0003", "3 emotions; a clip has one or two", True),
    ("no emotion", mutated("test_0004", []), "test_0004", "no emotion predicted", True),
    ("text salience", mutated("test_0006", [{"emotion": "sad", "salience": "100"}]), "test_0006",
     'salience "100" is not a number', True),
    ("text salience read by the scorer", mutated("test_0003", [{"emotion": "ang", "salience": "70"},
                                                                 {"emotion": "hap", "salience": 30}]),
     "test_0003", 'salience "70" is not a number', False),
    ("missing salience", mutated("test_0007", [{"emotion": "ang"}, {"emotion": "disg", "salience": 30}]),
     "test_0007", '"ang": no salience', False),
    ("null salience", mutated("test_0008", [{"emotion": "ang", "salience": None}]), "test_0008",
     "salience null is not a number", True),
    ("boolean salience", mutated("test_0008", [{"emotion": "ang", "salience": True}]), "test_0008",
     "salience true is not a number", True),
    ("NaN salience", mutated("test_0005", [{"emotion": "fea", "salience": math.nan},
                                           {"emotion": "sad", "salience": 70}]), "test_0005", "salience nan", True),
    ("out of range", mutated("test_0005", [{"emotion": "fea", "salience": -70}, {"emotion": "sad", "salience": 170}]),
     "test_0005", "salience -70 is outside 0-100", True),
    ("fractions", mutated("test_0003", [{"emotion": "ang", "salience": 0.7}, {"emotion": "hap", "salience": 0.3}]),
     "test_0003", "saliences 0.7/0.3 look like fractions; the challenge wants percent (70/30)", True),
    ("fraction on a single", mutated("test_0010", [{"emotion": "fea", "salience": 1.0}]), "test_0010",
     "salience 1 looks like a fraction; the challenge wants percent (100)", True),
    ("sum not 100", mutated("test_0003", [{"emotion": "ang", "salience": 70}, {"emotion": "hap", "salience": 70}]),
     "test_0003", "saliences 70/70 sum to 140 after rounding to whole percent, not 100", True),
    ("single not 100", mutated("test_0012", [{"emotion": "disg", "salience": 80}]), "test_0012", "sum to 80", True),
    ("emotion not a code", mutated("test_0012", [{"emotion": ["disg"], "salience": 100}]), "test_0012",
     'entry 1 is not an object with an "emotion" code', False),
    ("entry not an object", mutated("test_0012", ["disg"]), "test_0012",
     'entry 1 is not an object with an "emotion" code', False),
    ("value not a list", mutated("test_0012", {"emotion": "disg", "salience": 100}), "test_0012",
     "expected a list", False),
]
each_problem = pytest.mark.parametrize(("name", "document", "clip", "text", "lenient_scores"), PROBLEMS,
                                       ids=[p[0] for p in PROBLEMS])


@each_problem
def test_strict_refuses_each_problem_on_one_line_naming_the_clip(tmp_path, capsys, key, name, document, clip, text,
                                                                 lenient_scores):
    path = write_json(tmp_path / "sub.json", document)
    code, out, err = run_cli(capsys, "score", str(path), "--references", str(key))
    assert code == 1 and out == ""
    assert "Traceback" not in err
    assert f"{clip}: " in err and text in err, err
    problem_lines = [line for line in err.splitlines() if line.strip().startswith(clip) or f": {clip}: " in line]
    assert len(problem_lines) >= 1


@each_problem
def test_lenient_scores_what_the_challenge_scores(tmp_path, capsys, key, name, document, clip, text, lenient_scores):
    path = write_json(tmp_path / "sub.json", document)
    code, out, err = run_cli(capsys, "score", str(path), "--references", str(key), "--lenient")
    if not lenient_scores:
        assert code == 1 and out == "" and text in err
        with pytest.raises(Exception):  # noqa: B017 - the challenge's scorer fails on this input too
            oracle_from_text(path.read_text())
        return
    assert code == 0, err
    result = json.loads(out)
    presence, salience = oracle_from_text(path.read_text())
    assert (result["acc_presence"], result["acc_salience"]) == (presence, salience)
    assert result["mode"] == "lenient" and result["tolerated"]
    assert "blemore score: lenient: tolerated" in err and clip in err


def test_one_problem_is_one_line(tmp_path, key):
    path = write_json(tmp_path / "sub.json", mutated("test_0001", [{"emotion": "hap", "salience": 0.5}]))
    with pytest.raises(blemore.BlemoreError) as caught:
        scoring.score_submission(path, key)
    message = str(caught.value)
    assert message.splitlines()[0] == (f"{path}: test_0001: salience 0.5 looks like a fraction; the challenge "
                                       "wants percent (50)")
    assert "--lenient" in message  # the challenge would score it: say how


def test_every_problem_is_listed_up_to_a_cap(tmp_path, key):
    document = perfect_submission()
    for clip in ("test_0001", "test_0006", "test_0008"):
        document["predictions"][f"{clip}.mov"] = [{"emotion": "happy", "salience": 100}]
    del document["predictions"]["test_0002.mov"]
    for n in range(25):
        document["predictions"][f"extra_{n:02d}.mov"] = [{"emotion": "hap", "salience": 100}]
    path = write_json(tmp_path / "sub.json", document)
    with pytest.raises(blemore.BlemoreError) as caught:
        scoring.score_submission(path, key)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{path}: 29 problems, nothing scored"
    assert [line.split(":")[0].strip() for line in lines[1:4]] == ["test_0001", "test_0006", "test_0008"]
    assert lines[4] == "  extra_00: not a clip of the references"
    assert len(lines) == 1 + 20 + 1 and lines[21] == "  ... and 9 more"


def test_missing_and_unknown_clips_are_named(tmp_path, key):
    document = perfect_submission()
    del document["predictions"]["test_0005.mov"]
    document["predictions"]["test_0099.mov"] = [{"emotion": "hap", "salience": 100}]
    path = write_json(tmp_path / "sub.json", document)
    with pytest.raises(blemore.BlemoreError) as caught:
        scoring.score_submission(path, key)
    assert "test_0099: not a clip of the references" in str(caught.value)
    assert "test_0005: missing from the submission" in str(caught.value)
    # the challenge's scorer fails on an unknown clip, so --lenient refuses it too
    with pytest.raises(blemore.BlemoreError, match="test_0099: not a clip of the references"):
        scoring.score_submission(path, key, lenient=True)


@pytest.mark.parametrize("lenient", [False, True])
def test_a_clip_given_twice_is_refused_in_both_modes(tmp_path, key, lenient):
    document = perfect_submission()
    document["predictions"]["test_0001"] = [{"emotion": "sad", "salience": 100}]
    path = write_json(tmp_path / "sub.json", document)
    with pytest.raises(blemore.BlemoreError, match="test_0001: given twice, as 'test_0001.mov' and 'test_0001'"):
        scoring.score_submission(path, key, lenient=lenient)


def test_a_repeated_json_key_is_refused_strictly_and_the_last_counts_leniently(tmp_path, key):
    text = json.dumps(perfect_submission())
    text = text.replace('{"test_0001.mov": ', '{"test_0001.mov": [{"emotion": "sad", "salience": 100}], '
                                              '"test_0001.mov": ', 1)
    path = tmp_path / "sub.json"
    path.write_text(text)
    with pytest.raises(blemore.BlemoreError, match="test_0001: key 'test_0001.mov' appears more than once"):
        scoring.score_submission(path, key)
    result, _ = scoring.score_submission(path, key, lenient=True)
    assert result["acc_presence"] == 1.0 and result["tolerated"] == {"duplicate_key": 1}


def test_the_predictions_wrapper_is_required_strictly(tmp_path, key):
    path = write_json(tmp_path / "sub.json", perfect_submission()["predictions"])
    with pytest.raises(blemore.BlemoreError, match='no top-level "predictions" key'):
        scoring.score_submission(path, key)
    result, _ = scoring.score_submission(path, key, lenient=True)
    assert result["score"] == 1.0 and result["tolerated"] == {"no_wrapper": 1}


def test_lenient_averages_over_the_submitted_clips_only(tmp_path, capsys, key):
    document = {"predictions": {"test_0003.mov": truth_entries("test_0003"),
                                "test_0001.mov": [{"emotion": "sad", "salience": 100}]}}
    path = write_json(tmp_path / "sub.json", document)
    code, out, err = run_cli(capsys, "score", str(path), "-r", str(key), "--lenient")
    result = json.loads(out)
    assert code == 0 and (result["acc_presence"], result["acc_salience"]) == (0.5, 1.0)
    assert (result["n_clips"], result["n_missing"], result["tolerated"]) == (2, 10, {"missing_clip": 10})
    assert "tolerated missing_clip (10 clips): left out of both averages" in err
    assert oracle_from_text(path.read_text()) == (0.5, 1.0)


def test_the_console_script_reports_without_a_traceback(tmp_path, key):
    path = write_json(tmp_path / "sub.json", mutated("test_0003", [{"emotion": "ang", "salience": 0.7},
                                                                  {"emotion": "hap", "salience": 0.3}]))
    script = Path(sys.executable).parent / "blemore"
    run = subprocess.run([str(script), "score", str(path), "--references", str(key)], capture_output=True, text=True)
    assert run.returncode == 1 and run.stdout == "" and "Traceback" not in run.stderr
    assert run.stderr.startswith("blemore score: error: ") and "test_0003: saliences 0.7/0.3" in run.stderr
    ok = subprocess.run([str(script), "score", str(TEMPLATE), "--references", str(write_answer_key(
        tmp_path / "k.csv", template_answer_key()))], capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)["n_clips"] == 594


# ---------------------------------------------------------------------------------------------------------------
# Properties: strict and lenient agree on valid input; lenient is the challenge's scorer on any input
# ---------------------------------------------------------------------------------------------------------------


@st.composite
def valid_predictions(draw, clip):
    """A clean prediction: one emotion at 100, or two distinct ones whose rounded saliences sum to 100."""
    if draw(st.integers(0, 2)) == 0:
        return draw(st.permutations(truth_entries(clip)))
    if draw(st.booleans()):
        return [{"emotion": draw(st.sampled_from(blemore.EMOTIONS)), "salience": draw(st.sampled_from([100, 100.0]))}]
    first, second = draw(st.lists(st.sampled_from(blemore.EMOTIONS), min_size=2, max_size=2, unique=True))
    share = draw(st.one_of(st.sampled_from([30, 50, 70, 30.0, 69.6, 70.5, 49.5]), st.integers(2, 98)))
    return [{"emotion": first, "salience": share}, {"emotion": second, "salience": 100 - share}]


SLOPPY_SALIENCES = st.one_of(
    st.sampled_from([100, 100.0, 70, 30, 50, 0.7, 0.3, 0.5, 1.0, 69.5, 70.5, 30.4, 170, -30, True, "70", None]),
    st.floats(-500, 500), st.just(math.nan), st.just(math.inf),
)


@st.composite
def sloppy_predictions(draw, clip):
    """Anything a careless submission holds: near misses of the truth, or random entries."""
    if draw(st.booleans()):  # the truth, spoiled in a few ways
        entries = [dict(e) for e in draw(st.permutations(truth_entries(clip)))]
        for entry in entries:
            if draw(st.integers(0, 3)) == 0:
                entry["salience"] = draw(SLOPPY_SALIENCES)
            elif draw(st.integers(0, 3)) == 0:
                entry["salience"] = entry["salience"] / 100  # fractions
            if draw(st.integers(0, 9)) == 0:
                del entry["salience"]
        if draw(st.integers(0, 4)) == 0:
            entries.append(dict(entries[0]))  # a duplicated emotion
        if draw(st.integers(0, 6)) == 0:
            entries[0]["emotion"] = entries[0]["emotion"].upper()
        return entries
    codes = st.sampled_from(list(blemore.EMOTIONS) + ["happy", "HAP", "xx"])
    entries = []
    for _ in range(draw(st.integers(0, 3))):
        entry = {"emotion": draw(codes)}
        if draw(st.integers(0, 9)):
            entry["salience"] = draw(SLOPPY_SALIENCES)
        entries.append(entry)
    return entries


def submission_text(draw, predictions, drop_some):
    clips = [clip for clip in TRUTH if not (drop_some and draw(st.integers(0, 3)) == 0)] or ["test_0001"]
    document = {"predictions": {f"{clip}.mov" if draw(st.booleans()) else clip: draw(predictions(clip))
                                for clip in clips}}
    return json.dumps(document)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_strict_and_lenient_agree_on_valid_input(tmp_path_factory, key, data):
    path = tmp_path_factory.mktemp("valid") / "sub.json"
    path.write_text(submission_text(data.draw, valid_predictions, drop_some=False))
    strict, _ = scoring.score_submission(path, key)
    lenient, checked = scoring.score_submission(path, key, lenient=True)
    assert checked.tolerated == [] and lenient["tolerated"] == {}
    for name in ("acc_presence", "acc_salience", "score", "n_clips", "n_blends"):
        assert strict[name] == lenient[name]
    assert (strict["acc_presence"], strict["acc_salience"]) == oracle_from_text(path.read_text())


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_lenient_is_the_challenges_scorer_on_sloppy_input(tmp_path_factory, key, data):
    path = tmp_path_factory.mktemp("sloppy") / "sub.json"
    path.write_text(submission_text(data.draw, sloppy_predictions, drop_some=True))
    try:
        expected = oracle_from_text(path.read_text())
    except (TypeError, KeyError):
        with pytest.raises(blemore.BlemoreError):
            scoring.score_submission(path, key, lenient=True)
        return
    result, _ = scoring.score_submission(path, key, lenient=True)
    got = (result["acc_presence"], result["acc_salience"])
    assert got[0] == expected[0]
    assert got[1] == expected[1] or (math.isnan(got[1]) and math.isnan(expected[1]))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(TRUTH)).flatmap(lambda clip: st.one_of(valid_predictions(clip),
                                                                     sloppy_predictions(clip))))
def test_the_quick_check_accepts_exactly_what_the_full_check_finds_clean(value):
    value = json.loads(json.dumps(value))  # as read from a file
    quick = submission._clean_pairs(value)
    pairs, findings = submission._diagnose_clip("clip", value, None)
    assert (quick is not None) == (findings == [])
    if quick is not None:
        assert quick == pairs
    # check_submission's written-out form of it, with never_right's test
    quicker, may_warn = submission._quick_check(value)
    assert repr(quicker) == repr(quick)
    if quick is not None and len(quick) == 2:
        assert may_warn == (submission.never_right("clip", quick) is not None)


# ---------------------------------------------------------------------------------------------------------------
# References in every form
# ---------------------------------------------------------------------------------------------------------------


def test_organisers_metadata_with_folds(tmp_path):
    path = tmp_path / "train_metadata.csv"
    rows = [
        ["A1_ang_int1_ver1", "A1", "f", 0, "ang", "", "", "", 1, 1, "", 0],
        ["A1_mix_ang_hap_70_30_ver1", "A1", "f", 1, "ang", "hap", "70.0", "30.0", 1, "", "", 0],
        ["A2_mix_hap_sad_30_70_ver1", "A2", "m", 1, "sad", "hap", 70, 30, 1, "", "", 1],  # emotions in any order
        ["A2_neu_sit2_ver1", "A2", "m", 0, "neu", "", "", "", 1, "", 2, 1],
    ]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([ORGANISERS_COLUMNS, *rows])
    everything = references.load_references(path)
    assert list(everything) == [r[0] for r in rows]
    assert everything["A2_mix_hap_sad_30_70_ver1"].pairs == (("hap", 30), ("sad", 70))
    assert {c.split for c in everything.values()} == {"train"}
    assert list(references.load_references(path, "fold1")) == ["A2_mix_hap_sad_30_70_ver1", "A2_neu_sit2_ver1"]
    with pytest.raises(blemore.BlemoreError, match="no labelled clip in split 'test'; splits with labels here: "
                                                   "train, fold0, fold1"):
        references.load_references(path, "test")
    with pytest.raises(blemore.BlemoreError, match="expected train, test or fold0..fold4"):
        references.load_references(path, "validation")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (["A1_x", "", "", 1, "ang", "neu", 70, 30, 1, "", "", 0], "not one of the 36 BLEMORE outcomes"),
        (["A1_x", "", "", 1, "ang", "hap", 60, 40, 1, "", "", 0], "not one of the 36 BLEMORE outcomes"),
        (["A1_x", "", "", 1, "ang", "hap", "", 30, 1, "", "", 0], "without both saliences"),
        (["A1_x", "", "", 0, "anger", "", "", "", 1, "", "", 0], "unknown emotion code 'anger'"),
        (["A1_x", "", "", 1, "ang", "hap", "seventy", 30, 1, "", "", 0], "'seventy', not a number"),
    ],
)
def test_bad_reference_rows_name_file_and_line(tmp_path, row, message):
    path = tmp_path / "meta.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([ORGANISERS_COLUMNS, row])
    with pytest.raises(blemore.BlemoreError, match=message) as caught:
        references.read_references(path)
    assert str(caught.value).startswith(f"{path}:2")


def test_labels_from_clip_names_in_the_manifest():
    test = references.load_references(MANIFEST, "test")
    assert len(test) == 594 and sum(c.is_blend for c in test.values()) == 334
    fold2 = references.load_references(MANIFEST, "fold2")
    assert len(fold2) == 468 and all(c.split == "train" and c.fold == 2 for c in fold2.values())
    assert len(references.load_references(MANIFEST)) == 3050
    clip = references.load_references(MANIFEST)["A411_mix_ang_hap_30_70_ver1"]
    assert clip.pairs == (("ang", 30), ("hap", 70))


def test_anonymised_names_cannot_carry_labels(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("filename\ntest_0001.mov\n")
    with pytest.raises(blemore.BlemoreError, match="anonymised test name that carries no label"):
        references.read_references(path)
    path.write_text("name\nA1_ang_int1_ver1\n")
    with pytest.raises(blemore.BlemoreError, match="needs a 'filename' column"):
        references.read_references(path)


def write_prepared_folder(folder, rows, extra_columns=False):
    """A folder in the layout of `blemore prepare`, with only the label columns typed as the contract says."""
    import datasets

    features = {
        "clip_id": datasets.Value("string"),
        "emotions": datasets.List(datasets.ClassLabel(names=list(blemore.EMOTIONS))),
        "salience": datasets.List(datasets.Value("int32")),
    }
    columns = {"clip_id": [r[0] for r in rows], "emotions": [[blemore.EMOTIONS.index(e) for e in r[1]] for r in rows],
               "salience": [list(r[2]) for r in rows]}
    if extra_columns:
        features.update(split=datasets.Value("string"), fold=datasets.Value("int8"))
        columns.update(split=[r[3] for r in rows], fold=[r[4] for r in rows])
    dataset = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    (folder / "data").mkdir(parents=True)
    by_split = {}
    for i, row in enumerate(rows):
        by_split.setdefault(row[3] if extra_columns else "test", []).append(i)
    for split, indices in by_split.items():
        dataset.select(indices).to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    return folder


def test_a_prepared_dataset_folder_as_references(tmp_path, capsys):
    rows = [(clip, emotions, salience) for clip, (emotions, salience) in TRUTH.items()]
    folder = write_prepared_folder(tmp_path / "prepared", [(*row, "test") for row in rows])
    loaded = references.load_references(folder)  # a folder's default split is test
    assert {k: (c.emotions, c.salience) for k, c in loaded.items()} == TRUTH
    path = write_json(tmp_path / "sub.json", perfect_submission())
    code, out, _ = run_cli(capsys, "score", str(path), "--references", str(folder), "--split", "test")
    assert code == 0 and json.loads(out)["score"] == 1.0 and json.loads(out)["split"] == "test"


def test_unlabelled_test_clips_of_a_prepared_folder_point_to_an_answer_key(tmp_path):
    rows = [("A1_ang_int1_ver1", ("ang",), (100,), "train", 0), ("A1_mix_ang_hap_70_30_ver1", ("ang", "hap"),
                                                                     (70, 30), "train", 3),
            ("test_0001", (), (), "test", None), ("test_0002", (), (), "test", None)]
    folder = write_prepared_folder(tmp_path / "prepared", rows, extra_columns=True)
    with pytest.raises(blemore.BlemoreError, match="2 unlabelled clips: the anonymised test clips carry no labels; "
                                                   "score against an answer key CSV"):
        references.load_references(folder)
    assert list(references.load_references(folder, "fold3")) == ["A1_mix_ang_hap_70_30_ver1"]
    assert references.read_references(folder).partitions() == ["train", "fold0", "fold3"]
    assert scoring.read_clip_ids(folder) == ["test_0001", "test_0002"]  # what `validate --against` checks


# ---------------------------------------------------------------------------------------------------------------
# The real template (594 anonymised clips)
# ---------------------------------------------------------------------------------------------------------------


def template_answer_key():
    """Labels for test_0001..test_0594 taken, in order, from the manifest's 594 labelled test names.

    The template's names are anonymised, so no true mapping exists: this pairs them in listing order to get a
    reference with the real test partition's label distribution (334 blends), not the true answers.
    """
    test_names = [clip for clip, entry in blemore.load_manifest().items() if entry.split == "test"]
    labels = [blemore.parse_clip_name(name) for name in test_names]
    return {f"test_{i:04d}": (label.emotions, label.salience) for i, label in enumerate(labels, start=1)}


def test_the_real_template_is_a_valid_submission(tmp_path, capsys):
    checked = scoring.validate_submission(TEMPLATE, against=TEMPLATE)
    assert len(checked.predictions) == 594 and list(checked.predictions)[0] == "test_0001"
    code, out, _ = run_cli(capsys, "validate", str(TEMPLATE))
    assert code == 0 and "valid, 594 clips (format only" in out
    clip_list = tmp_path / "test_clips.txt"
    clip_list.write_text("\n".join(f"test_{i:04d}.mov" for i in range(1, 595)) + "\n")
    code, out, _ = run_cli(capsys, "validate", str(TEMPLATE), "--against", str(clip_list))
    assert code == 0 and "exactly the 594 clips" in out
    clip_list.write_text("\n".join(f"test_{i:04d}" for i in range(1, 596)))
    code, _, err = run_cli(capsys, "validate", str(TEMPLATE), "--against", str(clip_list))
    assert code == 1 and "test_0595: missing from the submission" in err


def test_scoring_the_real_template(tmp_path, capsys):
    labels = template_answer_key()
    key = write_answer_key(tmp_path / "answer_key.csv", labels)
    code, out, err = run_cli(capsys, "score", str(TEMPLATE), "--references", str(key), "--details")
    assert code == 0, err
    result = json.loads(out)
    assert (result["n_clips"], result["n_blends"], result["n_missing"], result["mode"]) == (594, 334, 0, "strict")
    truth = {clip: [{"emotion": e, "salience": s} for e, s in zip(*label)] for clip, label in labels.items()}
    predictions = {submission.clip_key(k): v for k, v in json.loads(TEMPLATE.read_text())["predictions"].items()}
    assert (result["acc_presence"], result["acc_salience"]) == organisers_scorer(predictions, truth)
    assert result["score"] == (result["acc_presence"] + result["acc_salience"]) / 2
    details = result["details"]
    assert sum(map(sum, details["presence_confusion"]["matrix"])) + sum(details["presence_confusion"]["other"]) == 594
    assert len(details["presence_confusion"]["matrix"]) == 16 and len(details["salience_confusion"]["matrix"]) == 3
    assert set(details["per_blend"]) == {f"{a}+{b}" for a, b in blemore.BLEND_PAIRS}
    assert details["per_emotion"]["neu"]["acc_salience"] is None  # NaN is written as null


def test_a_mismatch_of_names_says_so(capsys):
    code, _, err = run_cli(capsys, "score", str(TEMPLATE), "--references", str(MANIFEST), "--split", "test")
    assert code == 1 and "1188 problems" in err and "... and 1168 more" in err
    assert "none of the submitted clips is in the references" in err


# ---------------------------------------------------------------------------------------------------------------
# validate --against, zip
# ---------------------------------------------------------------------------------------------------------------


def test_clip_lists_from_every_source(tmp_path):
    raw = tmp_path / "raw"
    (raw / "test").mkdir(parents=True)
    (raw / "train").mkdir()
    for name in ("test_0002.mov", "test_0001.mov"):
        (raw / "test" / name).write_bytes(b"")
    (raw / "train" / "A1_ang_int1_ver1.mov").write_bytes(b"")
    assert scoring.read_clip_ids(raw) == ["test_0001", "test_0002"]
    assert scoring.read_clip_ids(raw / "test") == ["test_0001", "test_0002"]
    assert len(scoring.read_clip_ids(MANIFEST)) == 594  # the test rows of a CSV with a split column
    assert scoring.read_clip_ids(TEMPLATE)[-1] == "test_0594"
    listed = tmp_path / "clips.txt"
    listed.write_text("# test clips\ntest_0001\n\ntest_0001.mov\n")
    with pytest.raises(blemore.BlemoreError, match="test_0001 is listed twice"):
        scoring.read_clip_ids(listed)


def test_zip_writes_the_upload_file(tmp_path, capsys, key):
    document = perfect_submission()
    document["predictions"] = {k[:-4]: v for k, v in document["predictions"].items()}  # keys without .mov
    path = write_json(tmp_path / "predictions.json", document)
    code, out, err = run_cli(capsys, "zip", str(path), "--against", str(key))
    assert code == 0, err
    upload = tmp_path / "predictions.zip"
    assert out.startswith(f"{upload}: 12 clips in submission.json")
    with zipfile.ZipFile(upload) as archive:
        assert archive.namelist() == ["submission.json"]
        written = json.loads(archive.read("submission.json"))
    assert list(written["predictions"])[:2] == ["test_0001.mov", "test_0002.mov"]
    assert written["predictions"]["test_0003.mov"] == [{"emotion": "ang", "salience": 70.0},
                                                       {"emotion": "hap", "salience": 30.0}]
    result, _ = scoring.score_submission(upload, key)
    assert result["score"] == 1.0

    code, _, err = run_cli(capsys, "zip", str(write_json(tmp_path / "bad.json", mutated("test_0001", []))),
                           "-o", str(tmp_path / "bad.zip"))
    assert code == 1 and "test_0001: no emotion predicted" in err and not (tmp_path / "bad.zip").exists()


def test_write_submission_accepts_pairs_and_writes_json_or_zip(tmp_path):
    predictions = {"test_0001": [("hap", 100)], "test_0003.mov": [("hap", 30), ("ang", 70)]}
    for name in ("out.json", "out.zip"):
        path = submission.write_submission(predictions, tmp_path / name, member="preds.json")
        raw = submission.read_submission(path)
        assert [k for k, _ in raw.clips] == ["test_0001.mov", "test_0003.mov"]
        assert submission.check_submission(raw).problems == []


# ---------------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------------


def test_output_is_one_json_object_with_null_for_undefined(tmp_path, capsys):
    singles = {clip: label for clip, label in TRUTH.items() if len(label[0]) == 1}
    key = write_answer_key(tmp_path / "singles.csv", singles)
    path = write_json(tmp_path / "sub.json", {"predictions": {c: truth_entries(c) for c in singles}})
    code, out, _ = run_cli(capsys, "score", str(path), "--references", str(key))
    result = json.loads(out)
    assert code == 0 and result["acc_presence"] == 1.0
    assert result["acc_salience"] is None and result["score"] is None and result["n_blends"] == 0
    assert set(result) >= {"acc_presence", "acc_salience", "score", "n_clips", "n_blends", "n_references",
                           "n_missing", "mode", "submission", "references", "split"}

"""The fast paths of scoring give exactly what the full paths give: the clean-CSV reader of references, the JSON
reader without a hook per object, the written-out clean-clip check of submissions, ``clip_key``, the tuple
shortcut of ``challenge.clip_pairs`` and the prebuilt scores of ``challenge.score_clip``."""

import csv
import dataclasses
import json
import math
import os
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import blemore
from blemore_toolkit.data import references
from blemore_toolkit.evaluation import submission
from blemore_toolkit.metrics.blemore import challenge


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
    "details in columns and names": (["filename", "actor_id", "emotion_1", "emotion_2", "emotion_1_salience",
                                      "emotion_2_salience", "intensity", "situation"], [
        ["A1_ang_int1_ver1", "", "ang", "", "", "", "", ""],  # actor and intensity from the name
        ["A1_ang_int2_ver1", "P7", "ang", "", "", "", "int3", ""],  # the columns win over the name
        ["A2_neu_sit1_ver1", "P7", "neu", "", "", "", "", "sit4"],
        ["A2_neu_sit2_ver1", "P7", "neu", "", "", "", "", "2.0"],
        ["test_0001", "P8", "hap", "", "", "", "2", ""],
        ["test_0002", "", "hap", "sad", "30", "70", "", ""],
        ["x/A3_mix_ang_hap_30_70_ver1.mov", "", "ang", "hap", "30", "70", "", ""],
    ]),
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


def test_clean_reader_builds_the_dataclass_the_constructor_builds():
    args = ("A1_mix_ang_hap_70_30_ver1", ("ang", "hap"), (70, 30), "train", 2, "A1", None, None)
    fast, slow = references._reference_clip(*args, pairs=(("ang", 70), ("hap", 30))), references.ReferenceClip(*args)
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow) and fast.pairs == slow.pairs
    assert all(getattr(fast, f.name) == getattr(slow, f.name) for f in dataclasses.fields(references.ReferenceClip)
               if f.name != "_pairs")
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.split = "test"


@pytest.mark.parametrize("name", ["A1_ang_int1_ver1", "sub/A1_ang_int1_ver1.mov", "A1_neu_sit9_ver1", "test_0001",
                                  "a1_ang_int1_ver1", "", "A", "x/test_0001.mov", "B1_ang_int1_ver1"])
def test_parsed_name_skips_only_names_that_cannot_parse(name):
    try:
        expected = blemore.parse_clip_name(name)
    except ValueError:
        expected = None
    assert references._parsed_name(name) == expected


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
    # Equal but not alike (1 == True == 1.0, 0.0 == -0.0): each must keep its own verdict and pairs.
    [{"emotion": "ang", "salience": 99}, {"emotion": "hap", "salience": 1}],
    [{"emotion": "ang", "salience": 99}, {"emotion": "hap", "salience": True}],
    [{"emotion": "ang", "salience": 99.0}, {"emotion": "hap", "salience": 1.0}],
    [{"emotion": "ang", "salience": 100.0}, {"emotion": "hap", "salience": 0.0}],
    [{"emotion": "ang", "salience": 100.0}, {"emotion": "hap", "salience": -0.0}],
    [{"emotion": "ang", "salience": 69.6}, {"emotion": "hap", "salience": 30.4}],  # repeated
    [{"emotion": "neu", "salience": 50.0}, {"emotion": "hap", "salience": 50.0}],
    [{"emotion": "neu", "salience": 50.0}, {"emotion": "hap", "salience": 50.0}],
    [{"emotion": ["ang"], "salience": 70}, {"emotion": "hap", "salience": 30}],  # unhashable
    [{"emotion": "ang", "salience": "70"}, {"emotion": "hap", "salience": 30}],
    [{"emotion": "ang", "salience": 70}, {"emotion": "ang", "salience": 30}],
    [{"emotion": "ang", "salience": 70}, {"emotion": "hap", "salience": 30, "x": 1}],
    [{"emotion": "ang", "salience": 70}, {"emotion": "hap", "sal": 30}],
    # An unknown code in either entry of an otherwise clean blend
    [{"emotion": "hap", "salience": 70}, {"emotion": "happy", "salience": 30}],
    [{"emotion": "happy", "salience": 70}, {"emotion": "hap", "salience": 30}],
    [{"emotion": "hap", "salience": 70.0}, {"emotion": "HAP", "salience": 30.0}],
    [{"emotion": "ang", "salience": 70}, {"emotion": "hap", "salience": 130}],
    [{"emotion": "ang", "salience": 70}, {"emotion": 3, "salience": 30}],
]


@pytest.mark.parametrize("lenient", [False, True])
def test_inlined_clean_check_matches_check_clip(lenient):
    raw = submission.RawSubmission("s", [(f"test_{i:04d}.mov", v) for i, v in enumerate(CLIPS)], [])
    refs = {f"test_{i:04d}": (("ang", 70), ("hap", 30)) for i in range(len(CLIPS))}
    checked = submission.check_submission(raw, references=refs, lenient=lenient)
    expected_predictions, expected_findings, expected_warnings = {}, [], []
    for i, value in enumerate(CLIPS):
        # the full diagnosis, not check_clip (which tries the same fast path first)
        pairs, found = submission._diagnose_clip(f"test_{i:04d}", value, True)
        expected_findings.extend(found)
        if pairs is not None:
            expected_predictions[f"test_{i:04d}"] = pairs
            if not found and (warning := submission.never_right(f"test_{i:04d}", pairs)) is not None:
                expected_warnings.append(warning)
    # repr, not ==: 0.0 == -0.0 and 1 == True, yet they are different predictions
    assert repr(checked.predictions) == repr(expected_predictions)
    assert sorted(checked.problems + checked.tolerated, key=repr) == sorted(expected_findings, key=repr)
    assert checked.warnings == expected_warnings
    assert any("-0" in w.message for w in checked.warnings)


CODES = st.sampled_from(list(blemore.EMOTIONS) + ["happy", "HAP", "anger", "", "neutral"])
SALIENCES = st.one_of(st.sampled_from([70, 30, 50, 100, 0, 70.0, 30.0, 69.6, 30.4, 0.7, 0.3, 130, -30, True, "30"]),
                      st.integers(-5, 105), st.floats(-5, 105), st.just(math.nan))


@st.composite
def two_entry_clips(draw):
    """Two entries, each with its own code and salience: mostly clean blends, with either entry spoilt."""
    first, second = draw(st.lists(st.sampled_from(blemore.EMOTIONS), min_size=2, max_size=2, unique=True))
    share = draw(st.sampled_from([70, 30, 50, 69.6, 50.5, 70.0]))
    entries = [{"emotion": first, "salience": share}, {"emotion": second, "salience": 100 - share}]
    for entry in entries:
        if draw(st.integers(0, 2)) == 0:
            entry["emotion"] = draw(CODES)
        if draw(st.integers(0, 3)) == 0:
            entry["salience"] = draw(SALIENCES)
        if draw(st.integers(0, 9)) == 0:
            entry[draw(st.sampled_from(["extra", "salience", "emotion"]))] = 1
    if draw(st.integers(0, 9)) == 0:
        del entries[draw(st.integers(0, 1))][draw(st.sampled_from(["emotion", "salience"]))]
    return json.loads(json.dumps(entries))  # as read from a file


@settings(max_examples=400, deadline=None)
@given(two_entry_clips())
def test_the_fast_checks_accept_exactly_the_clips_the_full_check_finds_clean(value):
    """``_quick_check`` (check_submission's written-out check) and ``_clean_pairs`` against the full diagnosis,
    on two-entry clips where either entry may be the wrong one: what they accept is clean, with the same pairs, and
    every clean clip of plain entries is accepted (an entry with another key is left to the full check)."""
    pairs, findings = submission._diagnose_clip("test_0001", value, True)
    plain = all(isinstance(entry, dict) and set(entry) == {"emotion", "salience"} for entry in value)
    quick, may_warn = submission._quick_check(value)
    for fast in (quick, submission._clean_pairs(value)):
        if fast is not None:
            assert findings == [] and repr(fast) == repr(pairs)
        elif plain:
            assert findings != [], value
    if quick is not None:
        assert may_warn == (submission.never_right("test_0001", quick) is not None)
    # and as check_submission applies it to a file's clip
    raw = submission.RawSubmission("s", [("test_0001.mov", value)], [])
    checked = submission.check_submission(raw, references={"test_0001": (("ang", 70), ("hap", 30))})
    assert (checked.problems == []) == (findings == [])
    if not findings:
        assert repr(checked.predictions["test_0001"]) == repr(pairs)


def test_clip_pairs_tuple_shortcut():
    assert challenge.clip_pairs((("ang", 70), ("hap", 30))) == [("ang", 70), ("hap", 30)]
    assert challenge.clip_pairs([["ang", 70]]) == [("ang", 70)]
    assert challenge.clip_pairs([{"emotion": "ang", "salience": 70}]) == [("ang", 70)]
    scores = challenge.challenge_scores([(("ang", 70), ("hap", 30))], [[{"emotion": "hap", "salience": 30.4},
                                                                         {"emotion": "ang", "salience": 69.6}]])
    assert scores["score"] == 1.0


def test_score_clips_matches_clip_by_clip():
    nan = float("nan")
    references_ = [(("ang", 70), ("hap", 30))] * 6 + [(("hap", 100),)] * 4 + [(("ang", 50), ("hap", 50))] * 3
    predictions = [[("ang", 69.6), ("hap", 30.4)], [("ang", 70), ("hap", 30)], [("hap", 30.0), ("ang", 70.0)],
                   [("ang", 70), ("hap", True)], [("ang", nan), ("hap", 30)], [("ang", 69.6), ("hap", 30.4)],
                   [("hap", 100)], [("hap", True)], [("hap", 1)], [("hap", 100.0), ("hap", 0)],
                   [("ang", 50), ("hap", 50)], [("ang", 50), ("hap", 50), ("sad", 0)], [("ang", nan), ("hap", nan)]]
    expected = [challenge.score_clip(r, p) for r, p in zip(references_, predictions)]
    assert all(type(score) is challenge.ClipScore for score in expected)
    assert [tuple(score) for score in expected] == [
        (True, True), (True, True), (True, True), (True, False), (True, False), (True, True),
        (True, None), (True, None), (True, None), (True, None), (True, True), (False, False), (True, False)]
    assert challenge.score_clips(references_, predictions) == expected
    assert challenge.challenge_scores(references_, predictions) == challenge.summarize(expected)
    # Entries as mappings, or some as mappings
    as_mappings = [[{"emotion": e, "salience": s} for e, s in clip] for clip in predictions]
    assert challenge.score_clips(references_, as_mappings) == expected
    assert challenge.score_clips(references_, predictions[:5] + as_mappings[5:]) == expected


def test_scoring_a_salience_that_is_no_number_fails_as_clip_by_clip():
    references_ = [(("ang", 70), ("hap", 30))] * 2
    predictions = [[("ang", 70), ("hap", 30)], [("ang", None), ("hap", 30)]]
    with pytest.raises(TypeError) as direct:
        challenge.score_clip(references_[1], predictions[1])
    with pytest.raises(TypeError) as listed:
        challenge.score_clips(references_, predictions)
    assert str(listed.value) == str(direct.value)


# ---------------------------------------------------------------------------------------------------------------
# JSON: the parse without a hook per object is kept only when it cannot differ from the hook's
# ---------------------------------------------------------------------------------------------------------------


def _hook_parse(text):
    return json.loads(text, object_pairs_hook=submission._json_object, parse_int=submission._bounded_int)


def _assert_identical(fast, slow):
    """Same types all the way down (dict or the subclass that remembers repeated keys), same key order, values and
    repeated keys."""
    assert type(fast) is type(slow)
    if isinstance(slow, dict):
        assert list(fast) == list(slow)
        assert getattr(fast, "duplicate_keys", None) == getattr(slow, "duplicate_keys", None)
        for key in slow:
            _assert_identical(fast[key], slow[key])
    elif isinstance(slow, list):
        assert len(fast) == len(slow)
        for a, b in zip(fast, slow):
            _assert_identical(a, b)
    else:
        assert repr(fast) == repr(slow)


def _entry(emotion, salience):
    return f'{{"emotion": "{emotion}", "salience": {salience}}}'


CLEAN_JSON = ('{"predictions": {"test_0001.mov": [' + _entry("hap", "100.0") + '], "test_0002.mov": ['
              + _entry("ang", 70) + ", " + _entry("hap", "30.0") + "]}}")
JSON_DOCUMENTS = {
    "clean": (CLEAN_JSON, True),
    "clean, no wrapper": ('{"test_0001": [' + _entry("hap", 100) + "]}", True),
    "clean, empty lists": ('{"predictions": {"test_0001": [], "test_0002": [' + _entry("hap", 100) + "]}}", True),
    "repeated clip key": ('{"predictions": {"test_0001": [' + _entry("hap", 100) + '], "test_0001": ['
                          + _entry("sad", 100) + "]}}", False),
    "repeated top-level key": ('{"predictions": {}, "predictions": {"test_0001": [' + _entry("hap", 100) + "]}}",
                               False),
    "repeated key inside an entry": ('{"predictions": {"test_0001": [{"emotion": "hap", "emotion": "sad", '
                                     '"salience": 100}]}}', False),
    "repeated key, hidden by a key with a colon": ('{"predictions": {"a:b": [], "test_0001": [{"emotion": "hap", '
                                                   '"emotion": "sad"}]}}', False),
    "colon in a value": ('{"predictions": {"test_0001": [{"emotion": "h:p", "salience": 100}]}}', False),
    "colon in a key, no repeat": ('{"predictions": {"C:/clips/test_0001.mov": [' + _entry("hap", 100) + "]}}",
                                  False),
    "repeat spelt with an escape": (r'{"predictions": {"test_0001": [{"emotion": "hap", "\u0065motion": "sad", '
                                    r'"salience": 100}]}}', False),
    "object inside an entry": ('{"predictions": {"test_0001": [{"emotion": {"a": 1, "a": 2}, "salience": 100}]}}',
                               False),
    "object elsewhere": ('{"team": {"name": "x", "name": "y"}, "predictions": {}}', False),
    "brace in a string": ('{"predictions": {"{test_0001": [' + _entry("hap", 100) + "]}}", False),
    "entries not objects": ('{"predictions": {"test_0001": ["hap", 100], "test_0002": "x"}}', True),
    "a list": ("[1, 2, {}]", False),
    "a number": ("12", True),
    "predictions not an object": ('{"predictions": [{"a": 1}]}', False),
    "deep lists": ("[" * 50 + "{}" + "]" * 50, False),
}


@pytest.mark.parametrize("name", sorted(JSON_DOCUMENTS))
def test_json_fast_parse_is_the_hook_parse(name):
    text, fast_path_expected = JSON_DOCUMENTS[name]
    slow = _hook_parse(text)
    fast = submission._parse_json(text)
    _assert_identical(fast, slow)
    plain = json.loads(text)
    assert (submission._usual_objects(plain) == (text.count("{"), text.count(":"))) is fast_path_expected


def test_json_fast_parse_remembers_repeated_keys():
    for name in ("repeated key inside an entry", "repeat spelt with an escape"):
        document = submission._parse_json(JSON_DOCUMENTS[name][0])
        assert document["predictions"]["test_0001"][0].duplicate_keys == ("emotion",)
    document = submission._parse_json(JSON_DOCUMENTS["repeated clip key"][0])
    assert document["predictions"].duplicate_keys == ("test_0001",)


@pytest.mark.parametrize("text", ['{"predictions": {"test_0001": [{"emotion": "hap", "salience": 1' + "0" * 30
                                  + "}]}}", '{"predictions": {"a": [}', "[" * 100_000 + "]" * 100_000,
                                  '{"a": 1, "a": 2', ""])
def test_json_fast_parse_raises_what_the_hook_parse_raises(text):
    with pytest.raises(Exception) as slow:
        _hook_parse(text)
    with pytest.raises(Exception) as fast:
        submission._parse_json(text)
    assert type(fast.value) is type(slow.value) and str(fast.value) == str(slow.value)


def test_a_large_submission_reads_as_the_hook_parse_reads_it(tmp_path):
    clips = {f"test_{i:05d}.mov": [{"emotion": blemore.EMOTIONS[i % 5], "salience": 70.0 - (i % 3)},
                                   {"emotion": "sad", "salience": 30.0 + (i % 3)}] for i in range(2000)}
    text = json.dumps({"predictions": clips})
    _assert_identical(submission._parse_json(text), _hook_parse(text))
    repeated = text.replace('"salience": 69.0}', '"salience": 69.0, "emotion": "fea"}', 1)
    assert repeated != text
    _assert_identical(submission._parse_json(repeated), _hook_parse(repeated))
    assert any(getattr(entry, "duplicate_keys", ()) for value in submission._parse_json(repeated)["predictions"]
               .values() for entry in value)


def test_json_nesting_limit_is_met_where_the_hook_parse_meets_it():
    """Lists nested just short of the limit with an object inside: the hook's call for that object can be the step
    that meets the limit, while the parse without hooks goes on to find a syntax error. The error must be the
    hook parse's."""
    def outcome(parse, text):
        try:
            parse(text)
        except (ValueError, RecursionError) as error:
            return type(error).__name__, str(error)
        return "parsed", ""

    for depth in range(sys.getrecursionlimit() - 150, sys.getrecursionlimit() + 10):
        text = "[" * depth + "{}" + "]" * depth + "x"
        assert outcome(submission._parse_json, text) == outcome(_hook_parse, text), depth

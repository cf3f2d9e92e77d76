"""Reading a submission clip by clip gives exactly what reading it whole gives.

``read_checked_submission`` decodes a file of the usual shape one clip at a time (so a 1,000,000-clip file is never
held decoded whole) and reads anything else whole. These tests compare it with ``check_submission(read_submission(
...))`` on the same files: every field of the result, or the same error message, in strict and lenient mode, with
references, with a clip list and with neither; and they show which files take the clip-by-clip path.
"""

import json
import math
import random
import zipfile

import pytest
from test_submission_scoring import PROBLEMS, TRUTH, perfect_submission, truth_entries

import blemore
from blemore_toolkit.evaluation import submission

REFERENCES = {clip: tuple(zip(*truth)) for clip, truth in TRUTH.items()}


def whole(path, **options):
    """The result of reading the file whole (or the message it is refused with)."""
    try:
        return submission.check_submission(submission.read_submission(path), **options)
    except blemore.BlemoreError as error:
        return str(error)


def streamed(path, **options):
    try:
        return submission.read_checked_submission(path, **options)
    except blemore.BlemoreError as error:
        return str(error)


def as_compared(result):
    """Every field, with the predictions' types kept (70 and 70.0, -0.0 and 0.0 are told apart by repr)."""
    if isinstance(result, str):
        return result
    fields = {name: getattr(result, name) for name in ("source", "lenient", "problems", "tolerated", "missing",
                                                        "warnings")}
    return fields, repr(list(result.predictions.items()))


OPTIONS = [
    {}, {"lenient": True}, {"references": REFERENCES}, {"references": REFERENCES, "lenient": True},
    {"expected": list(TRUTH)}, {"expected": list(TRUTH)[:6]},
]


def keys(read, path):
    try:
        return read(path)
    except blemore.BlemoreError as error:
        return str(error)


def assert_same(path):
    for options in OPTIONS:
        assert as_compared(streamed(path, **options)) == as_compared(whole(path, **options)), options
    assert keys(submission.read_submission_keys, path) == keys(lambda p: [k for k, _ in
                                                                          submission.read_submission(p).clips], path)


def dumps(document, **options):
    return json.dumps(document, **options)


UNUSUAL = {  # texts read whole: the clip-by-clip reader hands each of them over
    "no wrapper": dumps(perfect_submission()["predictions"]),
    "another top-level key": dumps({"predictions": perfect_submission()["predictions"], "team": "x"}),
    "a key before predictions": dumps({"team": "x", "predictions": perfect_submission()["predictions"]}),
    "predictions twice": '{"predictions": {"test_0001": []}, "predictions": ' +
                         dumps(perfect_submission()["predictions"]) + "}",
    "a clip key twice": '{"predictions": {"test_0001.mov": [{"emotion": "sad", "salience": 100}], ' +
                        dumps(perfect_submission()["predictions"])[1:] + "}",
    "an entry key twice": dumps(perfect_submission())[:-2] +
                          ', "test_0099": [{"emotion": "hap", "emotion": "sad", "salience": 100}]}}',
    "an entry key twice, last is clean": '{"predictions": {"test_0001.mov": [{"emotion": "xx", "emotion": "hap", '
                                         '"salience": 100}]}}',
    "a brace and colon in a key": dumps({"predictions": {"te{st:1": [{"emotion": "hap", "salience": 100}]}}),
    "predictions not an object": '{"predictions": [1, 2]}',
    "a list": "[1, 2, 3]",
    "nothing": "",
    "invalid JSON in the middle": dumps(perfect_submission())[:200] + "}" + dumps(perfect_submission())[200:],
    "cut short": dumps(perfect_submission())[:-30],
    "trailing data": dumps(perfect_submission()) + " []",
    "a huge integer": dumps(perfect_submission())[:-2] + ', "test_0098": [{"emotion": "hap", "salience": ' +
                      "9" * 40 + "}]}}",
    "nested too deeply": '{"predictions": {"test_0001": ' + "[" * 100_000 + "]" * 100_000 + "}}",
    "a dict value nested in a list": '{"predictions": {"test_0001": [[{"emotion": "hap", "salience": 100}]]}}',
    "a control character": '{"predictions": {"test_0001": [{"emotion": "ha\np", "salience": 100}]}}',
}

USUAL = {  # texts read clip by clip
    "perfect": dumps(perfect_submission()),
    "indented": dumps(perfect_submission(), indent=4),
    "compact": dumps(perfect_submission(), separators=(",", ":")),
    "empty predictions": '{"predictions": {}}',
    "whitespace everywhere": ' \n{\t"predictions" :\r\n{ "test_0001" : [ {"emotion":"hap" , "salience" : 100 } ] '
                             ', "test_0002":[]\n}\n}\n ',
    "ints, floats, -0.0 and exponents": dumps({"predictions": {
        "test_0003": [{"emotion": "ang", "salience": 70}, {"emotion": "hap", "salience": 30.0}],
        "test_0004.mov": [{"emotion": "disg", "salience": 1e2}, {"emotion": "fea", "salience": -0.0}],
        "test_0005": [{"emotion": "fea", "salience": 30.0}, {"emotion": "sad", "salience": 70}],
        "test_0009": [{"emotion": "hap", "salience": 50}, {"emotion": "sad", "salience": 50.0}],
        "test_0001": [{"emotion": "hap", "salience": 100}], "test_0002": [{"emotion": "neu", "salience": 100.0}],
    }}),
    "NaN and Infinity": dumps({"predictions": {"test_0005": [{"emotion": "fea", "salience": math.nan},
                                                             {"emotion": "sad", "salience": math.inf}]}}),
    "one clip with and without its suffix": dumps({"predictions": {"test_0001.mov": truth_entries("test_0001"),
                                                                   "test_0001": truth_entries("test_0001")}}),
    "non-ASCII and escapes": dumps({"predictions": {"tést_0001": [{"emotion": "h\u00e4p", "salience": 100}],
                                                    "test_0002": [{"emotion": "neu", "salience": 100}]}}),
}
for name, document, *_ in PROBLEMS:  # every kind of problem a clip can have
    USUAL[f"problem: {name}"] = dumps(document)


@pytest.mark.parametrize("text", list(USUAL.values()) + list(UNUSUAL.values()), ids=list(USUAL) + list(UNUSUAL))
def test_clip_by_clip_and_whole_give_the_same_result(tmp_path, text):
    path = tmp_path / "sub.json"
    path.write_text(text, encoding="utf-8")
    assert_same(path)


@pytest.mark.parametrize("text", list(USUAL.values()), ids=list(USUAL))
def test_usual_files_are_read_clip_by_clip(text):
    assert list(submission._streamed_clips(text)) == list(json.loads(text)["predictions"].items())


@pytest.mark.parametrize("text", list(UNUSUAL.values()), ids=list(UNUSUAL))
def test_anything_else_is_handed_over_to_the_whole_reader(text):
    with pytest.raises(submission._Unusual):
        list(submission._streamed_clips(text))


def test_a_usual_file_is_never_decoded_whole(tmp_path, monkeypatch):
    path = tmp_path / "sub.json"
    path.write_text(USUAL["perfect"])
    monkeypatch.setattr(submission, "_read_json_text", lambda *a: pytest.fail("decoded whole"))
    checked = submission.read_checked_submission(path, references=REFERENCES)
    assert checked.problems == [] and set(checked.predictions) == set(TRUTH)


def test_zips_and_byte_order_marks_read_alike(tmp_path):
    path = tmp_path / "sub.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("predictions.json", USUAL["problem: fractions"])
    assert_same(path)
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + USUAL["indented"].encode())
    assert_same(bom)


def test_random_damage_reads_alike(tmp_path):
    """Texts damaged at random (characters deleted, doubled, swapped for JSON's punctuation): same result or same
    message, whichever path each one takes."""
    rng = random.Random(7)
    texts = [USUAL["ints, floats, -0.0 and exponents"], USUAL["problem: three emotions"], USUAL["compact"]]
    path = tmp_path / "sub.json"
    for trial in range(400):
        chars = list(rng.choice(texts))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(chars))
            action = rng.randrange(3)
            if action == 0:
                del chars[at]
            elif action == 1:
                chars.insert(at, chars[at])
            else:
                chars[at] = rng.choice('{}[]:,"0 e-.')
        path.write_text("".join(chars))
        for options in ({}, {"references": REFERENCES, "lenient": True}):
            assert as_compared(streamed(path, **options)) == as_compared(whole(path, **options)), (trial, chars)


def test_shared_pairs_keep_each_salience_as_written():
    ints = submission._clean_pairs([{"emotion": "hap", "salience": 70}, {"emotion": "sad", "salience": 30}])
    floats = submission._clean_pairs([{"emotion": "hap", "salience": 70.0}, {"emotion": "sad", "salience": 30.0}])
    again = submission._clean_pairs([{"emotion": "hap", "salience": 70.0}, {"emotion": "sad", "salience": 30.0}])
    assert repr(ints) == "[('hap', 70), ('sad', 30)]" and repr(floats) == "[('hap', 70.0), ('sad', 30.0)]"
    assert again[0] is floats[0]  # one tuple for every clip with that pair
    for zero in ("0.0", "-0.0", "0.0"):  # equal as numbers, told apart as written
        pairs = submission._clean_pairs(json.loads(f'[{{"emotion": "hap", "salience": 100.0}}, '
                                                   f'{{"emotion": "sad", "salience": {zero}}}]'))
        assert repr(pairs[1]) == f"('sad', {zero})"

"""Reliability at the submission boundary (`blemore score`, `validate`, `zip`, the references and clip lists they
read): every input, however odd or hostile, gets a result or one line naming the file, never a traceback, never an
unbounded read, and never a changed input file."""

import csv
import io
import json
import struct
import time
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import blemore
from blemore_toolkit.evaluation import scoring, submission

ORGANISERS_COLUMNS = ["filename", "video_id", "mix", "emotion_1", "emotion_2", "emotion_1_salience",
                      "emotion_2_salience"]
TRUTH = {
    "test_0001": (("hap",), (100,)),
    "test_0002": (("ang", "hap"), (70, 30)),
    "test_0003": (("disg", "fea"), (50, 50)),
    "test_0004": (("neu",), (100,)),
}


def entries(emotions, salience):
    return [{"emotion": e, "salience": float(s)} for e, s in zip(emotions, salience)]


def perfect_document():
    return {"predictions": {f"{clip}.mov": entries(*label) for clip, label in TRUTH.items()}}


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    path = tmp_path_factory.mktemp("key") / "answer_key.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(ORGANISERS_COLUMNS)
        for clip, (emotions, salience) in TRUTH.items():
            blend = len(emotions) == 2
            writer.writerow([clip, "", int(blend), emotions[0], emotions[1] if blend else "",
                             salience[0] if blend else "", salience[1] if blend else ""])
    return path


def run_cli(capsys, *argv):
    code = blemore.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, argv, *needles):
    code, out, err = run_cli(capsys, *argv)
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert str(needle) in lines[0], lines[0]
    return lines[0]


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def patch_headers(data: bytes, *, declared_size: int | None = None, encrypted: bool = False) -> bytes:
    """Rewrite the one member's local and central headers: the uncompressed size it declares, its encryption flag
    (Python cannot write an encrypted zip; the flag is what a reader goes by)."""
    data = bytearray(data)
    for signature, flags_at, size_at in ((b"PK\x03\x04", 6, 22), (b"PK\x01\x02", 8, 24)):
        start = data.index(signature)
        if encrypted:
            flags = struct.unpack_from("<H", data, start + flags_at)[0] | 0x1
            struct.pack_into("<H", data, start + flags_at, flags)
        if declared_size is not None:
            struct.pack_into("<I", data, start + size_at, declared_size)
    return bytes(data)


# --- memory: nothing unbounded is read -----------------------------------------------------------------------------


def test_a_zip_bomb_is_refused_by_its_declared_size_without_reading_it(tmp_path, capsys):
    """A 1 MB zip whose member declares 1 GiB: refused at once, not inflated (it used to take 2.25 GB and 15 s)."""
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(patch_headers(zip_bytes({"submission.json": b" " * 1_000_000}), declared_size=1 << 30))
    before = bomb.read_bytes()
    started = time.perf_counter()
    one_line_error(capsys, ["validate", bomb], "bomb.zip:submission.json", "1,073,741,824 bytes",
                   f"{submission.MAX_SUBMISSION_BYTES:,}")
    assert time.perf_counter() - started < 5
    assert bomb.read_bytes() == before


def test_a_member_that_inflates_past_its_declared_size_is_not_read_past_it(tmp_path, capsys):
    fake = tmp_path / "fake.zip"
    document = json.dumps(perfect_document()).encode() + b" " * 100_000
    fake.write_bytes(patch_headers(zip_bytes({"submission.json": document}), declared_size=1000))
    one_line_error(capsys, ["validate", fake], "fake.zip:submission.json", "damaged in the zip")


def test_a_json_file_over_the_cap_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(submission, "MAX_SUBMISSION_BYTES", 1000)
    path = tmp_path / "big.json"
    path.write_text(json.dumps(perfect_document()) + " " * 2000)
    with pytest.raises(blemore.BlemoreError, match=r"big.json: 2,\d{3} bytes of JSON, more than the 1,000"):
        submission.read_submission(path)


def test_the_cap_can_be_raised_on_purpose_by_an_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setattr(submission, "MAX_SUBMISSION_BYTES", 1000)
    path = tmp_path / "big.json"
    path.write_text(json.dumps(perfect_document()) + " " * 2000)
    with pytest.raises(blemore.BlemoreError, match="BLEMORE_MAX_SUBMISSION_BYTES"):
        submission.read_submission(path)
    monkeypatch.setenv("BLEMORE_MAX_SUBMISSION_BYTES", "10_000")
    assert len(submission.read_submission(path).clips) == len(perfect_document()["predictions"])
    zipped = tmp_path / "big.zip"
    zipped.write_bytes(zip_bytes({"submission.json": path.read_bytes()}))
    assert len(submission.read_submission(zipped).clips) == len(perfect_document()["predictions"])
    monkeypatch.setenv("BLEMORE_MAX_SUBMISSION_BYTES", "2000")
    too_big = r"big.zip:submission.json: 2,\d{3} bytes of JSON, more than the 2,000"
    with pytest.raises(blemore.BlemoreError, match=too_big):
        submission.read_submission(zipped)
    monkeypatch.setenv("BLEMORE_MAX_SUBMISSION_BYTES", "lots")
    with pytest.raises(blemore.BlemoreError, match="BLEMORE_MAX_SUBMISSION_BYTES='lots': expected a positive"):
        submission.read_submission(path)


# --- one line naming the file ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, needle", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"predictions": {"test_0001.mov": ' + "[" * 100_000 + "]" * 100_000 + "}}", "nested too deeply"),
    ('{"predictions": {"test_0001.mov": [{"emotion": "hap", "salience": 1' + "0" * 400 + "}]}}", "401 digits"),
    ('{"predictions": {"test_0001.mov": [{"emotion": "hap", "salience": -1' + "0" * 5000 + "}]}}", "5001 digits"),
])
def test_hostile_json_is_one_line_naming_the_file(tmp_path, capsys, key, text, needle):
    path = tmp_path / "hostile.json"
    path.write_text(text)
    one_line_error(capsys, ["validate", path], "hostile.json", needle)
    one_line_error(capsys, ["score", path, "--references", key], "hostile.json", needle)
    one_line_error(capsys, ["score", path, "--references", key, "--lenient"], "hostile.json", needle)


def test_an_encrypted_member_is_one_line(tmp_path, capsys):
    path = tmp_path / "locked.zip"
    path.write_bytes(patch_headers(zip_bytes({"submission.json": json.dumps(perfect_document()).encode()}),
                                   encrypted=True))
    one_line_error(capsys, ["validate", path], "locked.zip:submission.json", "encrypted")


def test_a_member_in_an_unsupported_compression_is_one_line(tmp_path, capsys):
    data = bytearray(zip_bytes({"submission.json": json.dumps(perfect_document()).encode()}))
    for signature, method_at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        struct.pack_into("<H", data, data.index(signature) + method_at, 99)  # AES, as WinZip writes it
    path = tmp_path / "odd.zip"
    path.write_bytes(bytes(data))
    one_line_error(capsys, ["validate", path], "odd.zip:submission.json", "cannot be uncompressed")


def test_a_zip_of_a_format_version_python_cannot_read_is_one_line(tmp_path, capsys):
    """Found by the zip property test: a central directory asking for format version 6.4."""
    data = bytearray(zip_bytes({"submission.json": json.dumps(perfect_document()).encode()}))
    struct.pack_into("<B", data, data.index(b"PK\x01\x02") + 6, 64)  # "version needed to extract": 6.4
    path = tmp_path / "new.zip"
    path.write_bytes(bytes(data))
    one_line_error(capsys, ["validate", path], "new.zip", "zip file version 6.4")


def test_a_zip_whose_offsets_point_outside_it_is_one_line(tmp_path, capsys):
    """Found by fuzzing zips: the end record places the directory 18 bytes after where it is, so the member's
    header offset comes out negative and the seek to it fails."""
    path = tmp_path / "offsets.zip"
    path.write_bytes(
        b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00!\x00" + bytes(12) + b"\x08\x00\x00\x00SUB.JSON"
        b"PK\x01\x02\x14\x03\x14\x00\x00\x00\x00\x00\x00\x00!\x00" + bytes(12) + b"\x08\x00" + bytes(10)
        + b"\x80\x01\x00\x00\x00\x00SUB.JSON"
        b"PK\x05\x06\x00\x00\x00\x00\x01\x00\x01\x006\x00\x00\x00&\x01\x00\x00\x00\x00")
    one_line_error(capsys, ["validate", path], "offsets.zip:SUB.JSON", "damaged in the zip")


def test_non_utf8_references_and_clip_lists_are_one_line(tmp_path, capsys, key):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(perfect_document()))
    latin = tmp_path / "key_latin1.csv"
    latin.write_bytes(key.read_bytes() + "test_0009,Ren\xe9,0,hap,,,\n".encode("latin-1"))
    one_line_error(capsys, ["score", good, "--references", latin], "key_latin1.csv", "not UTF-8")
    clip_list = tmp_path / "clips.txt"
    clip_list.write_bytes(b"test_0001\ntest_0002\n# caf\xe9\n")
    one_line_error(capsys, ["validate", good, "--against", clip_list], "clips.txt", "not UTF-8")
    clip_csv = tmp_path / "clips.csv"
    clip_csv.write_bytes(b"filename,comment\ntest_0001,caf\xe9\n")
    one_line_error(capsys, ["validate", good, "--against", clip_csv], "clips.csv", "not UTF-8")


# --- strict validation warns about what can never be right ---------------------------------------------------------


@pytest.mark.parametrize("prediction, kind", [
    ([{"emotion": "neu", "salience": 50}, {"emotion": "hap", "salience": 50}], "neutral never blends"),
    ([{"emotion": "ang", "salience": 60}, {"emotion": "hap", "salience": 40}], "60/40"),
    ([{"emotion": "ang", "salience": 100}, {"emotion": "hap", "salience": 0}], "100/0"),
])
def test_predictions_that_can_never_be_right_are_warned_about_by_clip(tmp_path, capsys, key, prediction, kind):
    document = perfect_document()
    document["predictions"]["test_0002.mov"] = prediction
    path = tmp_path / "never.json"
    path.write_text(json.dumps(document))
    code, out, err = run_cli(capsys, "validate", path)
    assert code == 0 and "valid" in out and "1 can never be scored right" in out
    warnings = err.strip().splitlines()
    assert len(warnings) == 1 and "warning" in warnings[0] and "test_0002" in warnings[0] and kind in warnings[0]
    code, out, err = run_cli(capsys, "score", path, "--references", key)
    assert code == 0 and "test_0002" in err and kind in err
    assert json.loads(out)["acc_salience"] < 1


def test_the_grid_and_single_emotions_draw_no_warning(tmp_path, capsys):
    path = tmp_path / "fine.json"
    document = perfect_document()
    document["predictions"]["test_0003.mov"] = entries(("disg", "fea"), (30, 70))
    document["predictions"]["test_0001.mov"] = entries(("hap", "sad"), (69.6, 30.4))  # rounds onto the grid
    path.write_text(json.dumps(document))
    code, out, err = run_cli(capsys, "validate", path)
    assert code == 0 and err == "" and "never" not in out


# --- properties: no input makes a traceback or touches the file ----------------------------------------------------

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(allow_nan=True),
                         st.text(max_size=8), st.sampled_from(list(blemore.EMOTIONS) + ["emotion", "salience",
                                                                                        "predictions"]))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(["emotion", "salience", "predictions", "x",
                                                                "test_0001.mov", "test_0002"]), children,
                                               max_size=3)),
    max_leaves=20,
)


@st.composite
def submission_documents(draw):
    """A submission's shape with any JSON where a clip's value, an entry, a field or the whole document goes."""
    shape = draw(st.integers(0, 3))
    if shape == 0:
        return draw(JSON_VALUES)
    clips = draw(st.dictionaries(st.sampled_from(sorted(TRUTH) + [c + ".mov" for c in TRUTH] + ["x", ""]),
                                 st.one_of(JSON_VALUES, st.lists(st.dictionaries(
                                     st.sampled_from(["emotion", "salience", "extra"]), JSON_VALUES, max_size=3),
                                     max_size=3)), max_size=6))
    return {"predictions": clips} if shape < 3 else clips


def deep(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


@st.composite
def submission_texts(draw):
    """JSON text of a drawn document, sometimes spoiled: cut, deeply nested, with huge numbers or odd bytes."""
    text = json.dumps(draw(submission_documents()), allow_nan=True)
    spoil = draw(st.integers(0, 6))
    if spoil == 1:
        text = text[: draw(st.integers(0, len(text)))]
    elif spoil == 2:
        text = text.replace("null", deep(draw(st.sampled_from([10, 500, 990, 5000])),
                                         draw(st.sampled_from(["list", "dict"]))), 1)
    elif spoil == 3:
        text = text.replace("null", draw(st.sampled_from(["1" * 19, "-" + "9" * 400, "1e999", "-1e999", "NaN",
                                                           "1" * 5000, "0." + "1" * 500])), 1)
    return text.encode() if spoil != 4 else text.encode("utf-16")


def check_never_crashes(path, key):
    """Each entry point on one file: a result or a BlemoreError; the file's bytes as they were."""
    before = path.read_bytes()
    for call in (lambda: scoring.validate_submission(path), lambda: scoring.score_submission(path, key),
                 lambda: scoring.score_submission(path, key, lenient=True, details=True),
                 lambda: scoring.read_clip_ids(path)):
        try:
            call()
        except blemore.BlemoreError as error:
            assert str(error).strip(), "an empty error message"
    assert path.read_bytes() == before and path.exists()


@pytest.mark.filterwarnings("ignore:Duplicate name")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(submission_texts())
def test_any_json_text_gets_a_result_or_one_error_and_is_left_as_it_was(tmp_path, key, text):
    path = tmp_path / "submission.json"
    path.write_bytes(text)
    check_never_crashes(path, key)


@st.composite
def zip_archives(draw):
    """Zips of any structure: 0-3 members with odd names, directories, junk, several JSONs, stored or deflated,
    cut short, or headers rewritten (sizes, encryption)."""
    buffer = io.BytesIO()
    names = st.sampled_from(["submission.json", "predictions.json", "a/b/sub.json", "__MACOSX/._sub.json",
                             ".hidden.json", "readme.txt", "dir/", "SUB.JSON", "../escape.json", "/abs.json"])
    with zipfile.ZipFile(buffer, "w") as archive:
        for _ in range(draw(st.integers(0, 3))):
            name = draw(names)
            content = draw(st.one_of(submission_texts(), st.binary(max_size=64)))
            compression = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
            archive.writestr(zipfile.ZipInfo(name), b"" if name.endswith("/") else content, compress_type=compression)
    data = buffer.getvalue()
    spoil = draw(st.integers(0, 5))
    if spoil == 1 and b"PK\x01\x02" in data:
        data = patch_headers(data, declared_size=draw(st.sampled_from([0, 1, 1 << 30, 0xFFFFFFFF])))
    elif spoil == 2 and b"PK\x01\x02" in data:
        data = patch_headers(data, encrypted=True)
    elif spoil == 3:
        data = data[: draw(st.integers(0, len(data)))]
    elif spoil == 4:
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        data = data[:position] + bytes([draw(st.integers(0, 255))]) + data[position + 1:]
    return data


@pytest.mark.filterwarnings("ignore:Duplicate name")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(zip_archives())
def test_any_zip_gets_a_result_or_one_error_and_is_left_as_it_was(tmp_path, key, data):
    path = tmp_path / "submission.zip"
    path.write_bytes(data)
    check_never_crashes(path, key)

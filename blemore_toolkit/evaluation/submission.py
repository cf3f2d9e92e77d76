"""Challenge submissions: reading them (.json or the uploaded .zip), checking them, writing the upload file.

The format is the challenge's: ``{"predictions": {"test_0001.mov": [{"emotion": "sad", "salience": 100.0}], ...}}``,
clip keys with or without the ``.mov`` suffix, saliences in percent.

A submission is checked in one of two modes:

* **strict** (the default everywhere): anything that is not a clean submission is a problem, reported one per line
  naming the clip, and nothing is scored. Problems: a missing or unknown clip, a clip given twice, an entry that
  is not ``{"emotion", "salience"}``, an unknown emotion code, a duplicated emotion, more than two emotions, no
  emotion, a salience that is missing, not a number, NaN/infinite or outside 0-100, saliences that look like
  fractions (0.7/0.3) instead of percent, saliences that do not sum to 100 (after rounding to whole percent, as
  the challenge compares them), a JSON key given twice, a file without the ``"predictions"`` wrapper.
* **lenient**: scores what the challenge's own scorer would score, the way it would score it, and lists what it
  tolerated. That scorer averages over the clips *submitted* (a missing clip counts neither way), compares emotion
  *sets* (duplicates collapse, unknown codes are simply wrong), and compares rounded saliences without checking
  them (fractions and pairs not summing to 100 are scored, and come out wrong). Input it cannot read at all stays
  refused: an unknown clip, an entry without an ``emotion``, a non-numeric salience where it needs the number,
  and a clip given both with and without its ``.mov`` suffix (which of the two would count is not knowable).
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import math
import os
import re
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import blemore
from blemore_toolkit.data.atomic import write_bytes_atomically

#: File name of the predictions inside the upload zip written by ``write_submission``.
SUBMISSION_MEMBER = "submission.json"
#: Problems listed before the rest are summarised as "... and N more".
MAX_LISTED_PROBLEMS = 20
#: The most bytes of JSON read from a submission (a .json, or the member of a .zip once uncompressed). The real
#: test set's submission is about 60 kB; the cap leaves room for 100,000-clip stress files and keeps a zip bomb (a
#: 1 MB zip declaring 1 GiB) from being read at all.
MAX_SUBMISSION_BYTES = 64 * 1024 * 1024
#: Environment variable that raises (or lowers) the cap on purpose, in bytes, e.g. for a 1,000,000-clip stress
#: submission (about 92 MB): ``BLEMORE_MAX_SUBMISSION_BYTES=200000000 blemore score ...``.
MAX_SUBMISSION_BYTES_ENV = "BLEMORE_MAX_SUBMISSION_BYTES"
#: Integers longer than this are refused while parsing: no salience needs them, and Python's own limits (4,300
#: digits) or float conversion (over ~308) would fail later with a traceback.
MAX_INTEGER_DIGITS = 18

#: What the challenge's scorer does with each kind of sloppy input that it can still score (the ``--lenient`` rules).
TOLERATED_KINDS: dict[str, str] = {
    "missing_clip": "left out of both averages: the challenge's scorer averages over the submitted clips only",
    "no_wrapper": 'read as the mapping of clips (no top-level "predictions" key)',
    "duplicate_key": "the last value given counts, as a JSON reader keeps it",
    "no_emotion": "scored as wrong",
    "unknown_emotion": "scored as a wrong emotion",
    "duplicate_emotion": "counted once for presence (the emotions are compared as a set); salience wrong",
    "too_many_emotions": "presence compared as a set; salience wrong (it needs exactly two entries)",
    "salience_not_finite": "compared as given, so never equal to the truth",
    "salience_out_of_range": "compared after rounding, as given",
    "salience_fraction": "compared after rounding as if percent (0.7 -> 1), so the salience is wrong",
    "salience_sum": "compared after rounding, as given",
    "salience_unreadable": "not read (the scorer reads saliences of two-entry predictions on blends only), "
    "or true/false read as 1/0",
}

#: Well-formed predictions that can never be scored right: warned about (naming the clip), never refused.
NEVER_RIGHT_KINDS: dict[str, str] = {
    "neutral_in_blend": "neutral never blends, so presence is wrong whatever the clip",
    "salience_off_grid": "blends are 50/50, 70/30 or 30/70, so the salience is wrong whatever the clip",
}
_SALIENCE_GRID = frozenset(blemore.SALIENCE_LEVELS)

_MISSING = object()
_CODES = frozenset(blemore.EMOTIONS)
_VIDEO_SUFFIXES = tuple(blemore.VIDEO_EXTENSIONS)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One thing wrong with a submission. ``lenient_ok``: the challenge's scorer would still score it."""

    kind: str
    clip: str | None
    message: str
    lenient_ok: bool = True

    def line(self) -> str:
        return f"{self.clip}: {self.message}" if self.clip is not None else self.message


@dataclasses.dataclass
class RawSubmission:
    """A submission as read: ``clips`` lists ``(key as written, value)`` in file order, duplicates resolved.

    ``read_checked_submission`` passes ``check_submission`` a one-pass iterator instead of a list, so that a large
    file is never held decoded whole.
    """

    source: str
    clips: Iterable[tuple[str, Any]]
    findings: list[Finding]


@dataclasses.dataclass
class CheckedSubmission:
    """The result of ``check_submission``.

    ``predictions`` maps clip ids (no suffix) to ``[(emotion, salience), ...]`` ready for
    ``metrics.blemore.challenge``; ``problems`` are the findings that refuse the submission in the chosen mode,
    ``tolerated`` the ones accepted (lenient mode only); ``missing`` lists expected clips not submitted;
    ``warnings`` are well-formed predictions the challenge can never count as right (``NEVER_RIGHT_KINDS``).
    """

    source: str
    lenient: bool
    predictions: dict[str, list[tuple[Any, Any]]]
    problems: list[Finding]
    tolerated: list[Finding]
    missing: list[str]
    warnings: list[Finding] = dataclasses.field(default_factory=list)

    def raise_for_problems(self, hint: str | None = None) -> None:
        """Raise ``BlemoreError`` listing the problems (one line each, up to ``MAX_LISTED_PROBLEMS``) if any."""
        if self.problems:
            raise blemore.BlemoreError(format_problems(self.source, self.problems, hint=hint))

    def tolerated_summary(self) -> dict[str, int]:
        """How many clips each tolerated kind touched (a file-level kind counts 1)."""
        clips: dict[str, set] = {}
        for finding in self.tolerated:
            clips.setdefault(finding.kind, set()).add(finding.clip)
        return {kind: len(found) for kind, found in clips.items()}


def clip_key(key: str) -> str:
    """The clip id of a submission key: ``test_0001.mov`` and ``test_0001`` are the same clip."""
    if key.lower().endswith(_VIDEO_SUFFIXES):
        stem = key[:-4]  # both suffixes have four characters; splitext only where a dot or slash makes it subtle
        return stem if stem and stem[-1] not in "./" else os.path.splitext(key)[0]
    return key


def format_problems(source: str, problems: Sequence[Finding], cap: int = MAX_LISTED_PROBLEMS,
                    hint: str | None = None) -> str:
    """One line for a single problem, else a header and one indented line per problem, capped."""
    lines = [p.line() for p in problems]
    if len(lines) == 1:
        return "\n".join([f"{source}: {lines[0]}"] + ([hint] if hint else []))
    shown = lines[:cap] + ([f"... and {len(lines) - cap} more"] if len(lines) > cap else [])
    header = f"{source}: {len(lines)} problems, nothing scored"
    return "\n".join([header] + ["  " + line for line in shown] + ([hint] if hint else []))


# ---------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------


class _JsonObject(dict):
    """A JSON object that remembers keys the file gave more than once (``json`` silently keeps the last)."""

    duplicate_keys: tuple[str, ...] = ()


class _HugeInteger(ValueError):
    """An integer in the JSON with more than ``MAX_INTEGER_DIGITS`` digits."""


def _bounded_int(text: str) -> int:
    if len(text) > MAX_INTEGER_DIGITS + 1 and len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _HugeInteger(text)
    return int(text)


def _json_object(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # rare: only then pay for the subclass
        obj = _JsonObject(obj)
        obj.duplicate_keys = tuple(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
    return obj


def _parse_json(text: str) -> Any:
    """``json.loads`` with ``_json_object`` for every object (so repeated keys are remembered), fast.

    That hook is a Python call per object, 250,000 of them in a 100,000-clip file. Without it json's C parser
    silently keeps the last of repeated keys, so its result is kept only when the text proves there were none:
    each object of JSON text has one '{' and each of its keys one ':' outside strings. When the objects of a
    submission's usual shape (``_usual_objects``) match the count of '{' and their keys the count of ':', they
    are all the objects there are and none lost a key. Anything else (a repeated key, '{' or ':' inside a string,
    an object elsewhere) parses the text again with the hook, and so does any error, so that the error raised is
    the hook's own (it may meet the nesting limit first).
    """
    try:
        document = json.loads(text, parse_int=_bounded_int)
        if _usual_objects(document) == (text.count("{"), text.count(":")):
            return document
    except (ValueError, RecursionError):  # JSONDecodeError and _HugeInteger are ValueErrors
        pass
    return json.loads(text, object_pairs_hook=_json_object, parse_int=_bounded_int)


def _usual_objects(document: Any) -> tuple[int, int]:
    """How many objects, and keys in them, a decoded submission has where a submission has objects: the document,
    its "predictions" mapping (or the document itself as that mapping), and the entries in each clip's list."""
    if type(document) is not dict:
        return 0, 0
    objects, keys = 1, len(document)
    clips = document.get("predictions", document)
    if type(clips) is not dict:
        return objects, keys
    if clips is not document:
        objects, keys = objects + 1, keys + len(clips)
    entries = [entry for value in clips.values() if type(value) is list for entry in value if type(entry) is dict]
    return objects + len(entries), keys + sum(map(len, entries))


def _decode_json_bytes(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise blemore.BlemoreError(f"{source}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def _read_json_text(text: str, source: str) -> Any:
    try:
        return _parse_json(text)
    except json.JSONDecodeError as error:
        raise blemore.BlemoreError(f"{source}: not valid JSON ({error.msg} at line {error.lineno}, "
                                   f"column {error.colno})") from None
    except _HugeInteger as error:
        digits = str(error).lstrip("-")
        raise blemore.BlemoreError(f"{source}: a number of {len(digits)} digits ({digits[:10]}...); saliences are "
                                   "percent, 0-100") from None
    except RecursionError:
        raise blemore.BlemoreError(f"{source}: lists or objects nested too deeply to be a submission") from None


def max_submission_bytes() -> int:
    """The cap in force: ``MAX_SUBMISSION_BYTES`` unless ``BLEMORE_MAX_SUBMISSION_BYTES`` sets another."""
    text = os.environ.get(MAX_SUBMISSION_BYTES_ENV, "").strip()
    if not text:
        return MAX_SUBMISSION_BYTES
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise blemore.BlemoreError(f"{MAX_SUBMISSION_BYTES_ENV}={text!r}: expected a positive number of bytes "
                                   "(e.g. 200000000)")
    return value


def _too_big(source: str, size: int) -> blemore.BlemoreError:
    cap = max_submission_bytes()
    return blemore.BlemoreError(f"{source}: {size:,} bytes of JSON, more than the {cap:,} a submission can need; "
                                f"not read (set {MAX_SUBMISSION_BYTES_ENV} to a larger number of bytes to read it "
                                "on purpose)")


def _read_capped(stream, source: str) -> bytes:
    """Read at most the cap (a size declared in a zip can lie; what is read is what counts)."""
    cap = max_submission_bytes()
    data = stream.read(cap + 1)
    if len(data) > cap:
        raise _too_big(source, len(data))
    return data


def _zip_json_member(path: Path) -> tuple[str, bytes]:
    import zlib

    try:
        with zipfile.ZipFile(path) as archive:
            names = [
                name for name in archive.namelist()
                if not name.endswith("/") and not name.startswith("__MACOSX/")
                and not os.path.basename(name).startswith(".") and name.lower().endswith(".json")
            ]
            if len(names) != 1:
                found = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "") \
                    if names else "none"
                raise blemore.BlemoreError(f"{path}: the zip must hold exactly one .json file (found: {found})")
            info = archive.getinfo(names[0])
            source = f"{path}:{names[0]}"
            if _escaping_path(names[0]):
                raise blemore.BlemoreError(f"{source}: the member's name is an absolute path or leaves the folder it "
                                           "is extracted to ('..'); zip the file again under a plain name (e.g. "
                                           "predictions.json)")
            if info.flag_bits & 0x1:
                raise blemore.BlemoreError(f"{source}: encrypted; the challenge reads an unencrypted zip")
            if info.file_size > max_submission_bytes():
                raise _too_big(source, info.file_size)
            try:
                with archive.open(info) as member:
                    return names[0], _read_capped(member, source)
            except NotImplementedError as error:  # a compression method Python's zipfile cannot read
                raise blemore.BlemoreError(f"{source}: cannot be uncompressed ({error}); zip it with deflate") \
                    from None
            except (zlib.error, EOFError, zipfile.BadZipFile, OSError) as error:  # OSError: offsets past the file
                raise blemore.BlemoreError(f"{source}: damaged in the zip ({error or type(error).__name__})") \
                    from None
    except zipfile.BadZipFile:
        raise blemore.BlemoreError(f"{path}: not a readable zip file") from None
    except NotImplementedError as error:  # e.g. a zip format version Python's zipfile does not read
        raise blemore.BlemoreError(f"{path}: a zip this reader cannot open ({error}); zip it again with deflate") \
            from None


def _submission_text(path: str | os.PathLike) -> tuple[str, str]:
    """``(source, text)`` of a submission ``.json``, or of the one .json in an upload ``.zip``, capped in size."""
    path = Path(path)
    if not path.is_file():
        raise blemore.BlemoreError(f"{path}: no such file")
    if zipfile.is_zipfile(path):
        member, data = _zip_json_member(path)
        source = f"{path}:{member}"
    else:
        source = str(path)
        if path.stat().st_size > max_submission_bytes():
            raise _too_big(source, path.stat().st_size)
        with open(path, "rb") as f:
            data = _read_capped(f, source)
    return source, _decode_json_bytes(data, source)


def read_submission(path: str | os.PathLike) -> RawSubmission:
    """Read a submission from ``.json`` or from the ``.zip`` uploaded to the challenge (one .json inside)."""
    source, text = _submission_text(path)
    return parse_submission(_read_json_text(text, source), source)


def read_checked_submission(path: str | os.PathLike, references: Mapping[str, Sequence] | None = None,
                            expected: Iterable[str] | None = None, lenient: bool = False) -> CheckedSubmission:
    """``check_submission(read_submission(path), ...)``, reading the file one clip at a time where it can.

    A file of the usual shape (``{"predictions": {clip: [entries], ...}}``, no key given twice) is decoded clip by
    clip with json's own scanner and each clip is checked and dropped before the next is decoded, so only the
    checked pairs stay in memory (a 1,000,000-clip file decoded whole holds about 770 MB of JSON objects). Anything
    else, invalid JSON included, is read whole as ``read_submission`` reads it, so every finding, refusal and
    message is the same either way (``tests/test_submission_stream.py`` compares the two).
    """
    source, text = _submission_text(path)
    try:
        return check_submission(RawSubmission(source, _streamed_clips(text), []), references, expected, lenient)
    except _Unusual:
        pass
    return check_submission(parse_submission(_read_json_text(text, source), source), references, expected, lenient)


def read_submission_keys(path: str | os.PathLike) -> list[str]:
    """The clip keys of a submission as written, in file order (``read_submission(path).clips``' keys), read clip
    by clip where ``read_checked_submission`` would be."""
    source, text = _submission_text(path)
    try:
        return [key for key, _ in _streamed_clips(text)]
    except _Unusual:
        return [key for key, _ in parse_submission(_read_json_text(text, source), source).clips]


class _Unusual(Exception):
    """The text is not a submission of the usual shape, or not valid JSON: it is read whole instead."""


_SKIP_WHITESPACE = re.compile(r"[ \t\n\r]*").match  # JSON's whitespace, as json's own decoder skips it
#: ``{"predictions": {`` and the closing ``}}`` around the clips, with JSON's whitespace anywhere between (a key
#: spelt with escapes is left to the whole-file reader).
_OPENING = re.compile(r'[ \t\n\r]*\{[ \t\n\r]*"predictions"[ \t\n\r]*:[ \t\n\r]*\{[ \t\n\r]*')
_CLOSING = re.compile(r"\}[ \t\n\r]*\}[ \t\n\r]*")


def _streamed_clips(text: str) -> Iterator[tuple[str, Any]]:
    """``(key, value)`` of each clip of ``{"predictions": {...}}`` in file order, decoded one at a time.

    Raises ``_Unusual`` (possibly after yielding clips) unless the whole text is that object and nothing else: a
    top-level key other than "predictions", an exact key given twice, invalid JSON, an integer over
    ``MAX_INTEGER_DIGITS`` digits, nesting too deep. As in ``_parse_json``, the objects decoded and their keys are
    counted against the text's '{' and ':' at the end, which proves no entry repeated a key (json keeps the last).
    """
    scan = json.JSONDecoder(parse_int=_bounded_int).scan_once
    keys: set[str] = set()  # exact keys: one given twice is read whole, where json keeps its last value
    objects, pairs = 2, 1  # the document and "predictions"; its key
    opening = _OPENING.match(text)
    if opening is None:
        raise _Unusual
    position = opening.end()
    try:
        more = text[position] != "}"
        while more:
            if text[position] != '"':
                raise _Unusual
            key, position = scan(text, position)
            position = _SKIP_WHITESPACE(text, position).end()
            if text[position] != ":" or key in keys:
                raise _Unusual
            keys.add(key)
            value, position = scan(text, _SKIP_WHITESPACE(text, position + 1).end())
            pairs += 1
            if type(value) is list:
                for entry in value:
                    if type(entry) is dict:
                        objects += 1
                        pairs += len(entry)
            elif type(value) is dict:  # not a submission's, but counted too: a clip refused, not a file
                objects += 1
                pairs += len(value)
            yield key, value
            position = _SKIP_WHITESPACE(text, position).end()
            more = text[position] == ","
            if more:
                position = _SKIP_WHITESPACE(text, position + 1).end()
            elif text[position] != "}":
                raise _Unusual
        if _CLOSING.fullmatch(text, position) is None:
            raise _Unusual
    except (StopIteration, IndexError, ValueError, RecursionError):  # ValueError: JSONDecodeError, _HugeInteger
        raise _Unusual from None
    if (objects, pairs) != (text.count("{"), text.count(":")):
        raise _Unusual


def parse_submission(document: Any, source: str = "submission") -> RawSubmission:
    """Find the clip mapping in a decoded JSON document; file-level findings (no wrapper, repeated keys)."""
    findings: list[Finding] = []
    if isinstance(document, Mapping) and "predictions" in document:
        clips = document["predictions"]
        if not isinstance(clips, Mapping):
            raise blemore.BlemoreError(f'{source}: "predictions" must map clip names to lists of '
                                       f'{{"emotion", "salience"}} objects, not {type(clips).__name__}')
    elif isinstance(document, Mapping) and document and all(isinstance(v, list) for v in document.values()):
        clips = document
        findings.append(Finding("no_wrapper", None, 'no top-level "predictions" key: expected '
                                '{"predictions": {"test_0001.mov": [{"emotion": ..., "salience": ...}], ...}}'))
    else:
        raise blemore.BlemoreError(f'{source}: not a challenge submission (expected {{"predictions": '
                                   f'{{"test_0001.mov": [{{"emotion": "sad", "salience": 100.0}}], ...}}}})')
    for key in getattr(clips, "duplicate_keys", ()):
        findings.append(Finding("duplicate_key", clip_key(key), f"key {key!r} appears more than once in the file"))
    return RawSubmission(source, list(clips.items()), findings)


# ---------------------------------------------------------------------------------------------------------------
# Checking
# ---------------------------------------------------------------------------------------------------------------


def _describe(value: Any, limit: int = 40) -> str:
    try:
        text = json.dumps(value, default=repr) if not isinstance(value, float) else repr(value)
    except RecursionError:  # nesting just short of what the parser refuses
        text = f"a deeply nested {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _emotion_hint(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    lowered = value.strip().lower()
    for code, name in blemore.EMOTION_NAMES.items():
        if lowered in (code, name) or lowered.startswith(code) or (len(lowered) >= 3 and name.startswith(lowered)):
            return f"; did you mean {code!r}?"
    return ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


#: One shared ``(emotion, salience)`` tuple per distinct pair of clean clips: a large file repeats a few dozen pairs
#: a million times. Keyed with the salience's type, so that 70 and 70.0 each stay as written; a zero salience is
#: never shared (0.0 and -0.0 compare equal); bounded, for files of arbitrary float saliences.
_SHARED_PAIRS: dict[tuple, tuple] = {}
_MAX_SHARED_PAIRS = 4096


def _shared_pair(emotion: str, salience: Any) -> tuple[str, Any]:
    key = (emotion, salience, type(salience))
    pair = _SHARED_PAIRS.get(key)
    if pair is None:
        pair = (emotion, salience)
        if salience and len(_SHARED_PAIRS) < _MAX_SHARED_PAIRS:
            _SHARED_PAIRS[key] = pair
    return pair


def _clean_pairs(value: Any) -> list[tuple[str, Any]] | None:
    """The pairs of a clip that passes every strict check, found cheaply; ``None`` sends it to ``check_clip``.

    Most clips of a real submission are clean, so this spares 100,000-clip files the full diagnosis. It accepts
    exactly what ``check_clip`` finds nothing wrong with: one known emotion at 100 (after rounding), or two distinct
    known emotions with saliences in 0-100 whose rounded values sum to 100 (so they cannot be fractions).
    """
    if type(value) is not list:
        return None
    if len(value) == 1:
        first = _clean_entry(value[0])
        return [first] if first is not None and round(first[1]) == 100 else None
    if len(value) != 2:
        return None
    first, second = _clean_entry(value[0]), _clean_entry(value[1])
    if first is None or second is None or first[0] == second[0] or round(first[1]) + round(second[1]) != 100:
        return None
    return [first, second]


def _clean_entry(entry: Any) -> tuple[str, Any] | None:
    """``(emotion, salience)`` of a ``{"emotion": known code, "salience": number in 0-100}`` entry, else ``None``."""
    if type(entry) is not dict or len(entry) != 2:
        return None
    emotion, salience = entry.get("emotion"), entry.get("salience")
    if type(emotion) is not str or emotion not in _CODES:
        return None
    kind = type(salience)
    return _shared_pair(emotion, salience) if (kind is float or kind is int) and 0 <= salience <= 100 else None


def _quick_check(value: Any) -> tuple[list | None, bool]:
    """``(_clean_pairs(value), whether never_right may warn about it)``.

    Most clips of a large file are clean blends, so for them ``_clean_pairs``'s two-entry checks and
    ``never_right``'s test are written out here in one go: the calls they replace cost as much as the checks.
    """
    if type(value) is not list or len(value) != 2:
        clean = _clean_pairs(value)
        return clean, clean is not None
    first, second = value
    if type(first) is not dict or type(second) is not dict or len(first) != 2 or len(second) != 2:
        return None, False
    e1, s1, e2, s2 = first.get("emotion"), first.get("salience"), second.get("emotion"), second.get("salience")
    t1, t2 = type(s1), type(s2)
    if (type(e1) is not str or type(e2) is not str or e1 not in _CODES or e2 not in _CODES or e1 == e2
            or not (t1 is float or t1 is int) or not (t2 is float or t2 is int)
            or not 0 <= s1 <= 100 or not 0 <= s2 <= 100):
        return None, False
    r1, r2 = round(s1), round(s2)
    if r1 + r2 != 100:
        return None, False
    return [_shared_pair(e1, s1), _shared_pair(e2, s2)], e1 == "neu" or e2 == "neu" or (r1, r2) not in _SALIENCE_GRID


def check_clip(clip: str, value: Any, truth_is_blend: bool | None = None) -> tuple[list | None, list[Finding]]:
    """Check one clip's predictions; returns ``([(emotion, salience), ...] or None, findings)``.

    ``truth_is_blend`` (when known) decides whether the challenge's scorer would read the saliences: it does only
    for a two-entry prediction on a blend, so only there is an unreadable salience fatal in lenient mode.
    ``None`` is returned for the pairs when the scorer could not read the clip at all.
    """
    clean = _clean_pairs(value)
    if clean is not None:
        return clean, []
    return _diagnose_clip(clip, value, truth_is_blend)


def _diagnose_clip(clip: str, value: Any, truth_is_blend: bool | None) -> tuple[list | None, list[Finding]]:
    """Every check on one clip, naming each problem (the slow path of ``check_clip``)."""
    found: list[Finding] = []
    if not isinstance(value, list):
        found.append(Finding("bad_entry", clip, "expected a list of {\"emotion\", \"salience\"} objects, got "
                             f"{_describe(value)}", lenient_ok=False))
        return None, found
    if not value:
        found.append(Finding("no_emotion", clip, "no emotion predicted (an empty list)"))
    pairs: list[tuple[Any, Any]] = []
    readable = True
    for number, entry in enumerate(value, start=1):
        emotion = entry.get("emotion", _MISSING) if isinstance(entry, Mapping) else _MISSING
        if emotion is _MISSING or isinstance(emotion, (list, dict)):
            found.append(Finding("bad_entry", clip, f"entry {number} is not an object with an \"emotion\" code: "
                                 f"{_describe(entry)}", lenient_ok=False))
            readable = False
            continue
        for key in getattr(entry, "duplicate_keys", ()):
            found.append(Finding("duplicate_key", clip, f"entry {number} gives {key!r} more than once"))
        pairs.append((emotion, entry.get("salience", _MISSING)))
    if not readable:
        return None, found

    for emotion, _ in pairs:
        if emotion not in blemore.EMOTIONS:
            found.append(Finding("unknown_emotion", clip, f"unknown emotion code {_describe(emotion)} (expected one "
                                 f"of {', '.join(blemore.EMOTIONS)}){_emotion_hint(emotion)}"))
    for emotion, count in Counter(e for e, _ in pairs).items():
        if count > 1:
            found.append(Finding("duplicate_emotion", clip, f"emotion {_describe(emotion)} given {count} times"))
    if len(pairs) > 2:
        found.append(Finding("too_many_emotions", clip, f"{len(pairs)} emotions; a clip has one or two"))

    read_by_scorer = truth_is_blend is not False and len(pairs) == 2
    clean = True
    for emotion, salience in pairs:
        if isinstance(salience, bool):
            # numpy rounds true/false as 1/0, so the scorer reads them; strict mode still wants a number.
            found.append(Finding("salience_unreadable", clip, f"{_describe(emotion)}: salience "
                                 f"{_describe(salience)} is not a number"))
            clean = False
        elif salience is _MISSING or not _is_number(salience):
            what = "no salience" if salience is _MISSING else f"salience {_describe(salience)} is not a number"
            found.append(Finding("salience_unreadable", clip, f"{_describe(emotion)}: {what}",
                                 lenient_ok=not read_by_scorer))
            clean = False
        elif not math.isfinite(salience):
            found.append(Finding("salience_not_finite", clip, f"{_describe(emotion)}: salience {salience!r}"))
            clean = False
        elif not 0 <= salience <= 100:
            found.append(Finding("salience_out_of_range", clip,
                                 f"{_describe(emotion)}: salience {_fmt(salience)} is outside 0-100 (percent)"))
            clean = False
    if clean and pairs:
        values = [s for _, s in pairs]
        shown = "/".join(_fmt(v) for v in values)
        if all(v <= 1 for v in values) and any(v > 0 for v in values):
            percent = "/".join(_fmt(round(v * 100, 6)) for v in values)
            what = f"saliences {shown} look like fractions" if len(values) > 1 else \
                f"salience {shown} looks like a fraction"
            found.append(Finding("salience_fraction", clip, f"{what}; the challenge wants percent ({percent})"))
        elif sum(round(v) for v in values) != 100:
            total = sum(round(v) for v in values)
            found.append(Finding("salience_sum", clip, f"saliences {shown} sum to {total} after rounding to whole "
                                 "percent, not 100"))
    # The scorer never reads a salience it does not need; keep a placeholder there so nothing else does either.
    normalised = [(e, None if s is _MISSING or not (_is_number(s) or isinstance(s, bool)) else s) for e, s in pairs]
    return normalised, found


def never_right(clip: str, pairs: Sequence[tuple[Any, Any]]) -> Finding | None:
    """A warning for a clean two-emotion prediction the challenge can never count as right, else ``None``."""
    if len(pairs) != 2:
        return None
    (first, s1), (second, s2) = pairs
    if "neu" in (first, second):
        return Finding("neutral_in_blend", clip, f"{first}+{second}: {NEVER_RIGHT_KINDS['neutral_in_blend']}")
    if (round(s1), round(s2)) not in _SALIENCE_GRID:
        return Finding("salience_off_grid", clip, f"saliences {_fmt(s1)}/{_fmt(s2)}: "
                       f"{NEVER_RIGHT_KINDS['salience_off_grid']}")
    return None


def check_submission(
    raw: RawSubmission,
    references: Mapping[str, Sequence] | None = None,
    expected: Iterable[str] | None = None,
    lenient: bool = False,
) -> CheckedSubmission:
    """Check a read submission, strictly or leniently (see the module docstring).

    ``references`` (clip id -> reference clip) gives the expected clips and which are blends; ``expected``
    (clip ids) gives the clips alone, as ``blemore validate --against`` does. With neither, only the format is
    checked. Clip ids never carry the ``.mov`` suffix here.
    """
    findings = list(raw.findings)
    expected_ids = list(references) if references is not None else (list(expected) if expected is not None else None)
    expected_set = set(expected_ids) if expected_ids is not None else None
    seen: dict[str, str] = {}
    predictions: dict[str, list[tuple[Any, Any]]] = {}
    warnings: list[Finding] = []
    for key, value in raw.clips:
        clip = clip_key(key)
        if clip in seen:
            findings.append(Finding("duplicate_clip", clip, f"given twice, as {seen[clip]!r} and {key!r}",
                                    lenient_ok=False))
            predictions.pop(clip, None)
            continue
        seen[clip] = key
        if expected_set is not None and clip not in expected_set:
            findings.append(Finding("unknown_clip", clip, "not a clip of the references", lenient_ok=False))
            continue
        pairs, may_warn = _quick_check(value)  # check_clip's fast path: most clips of a large file take it
        if pairs is None:
            truth = references.get(clip) if references is not None else None
            pairs, clip_findings = _diagnose_clip(clip, value, None if truth is None else len(truth) == 2)
            findings.extend(clip_findings)
            may_warn = not clip_findings
        if pairs is not None:
            predictions[clip] = pairs
            if may_warn and len(pairs) == 2 and (warning := never_right(clip, pairs)) is not None:
                warnings.append(warning)
    missing = list(itertools.filterfalse(seen.__contains__, expected_ids)) if expected_ids is not None else []
    findings.extend(Finding("missing_clip", c, "missing from the submission") for c in missing)

    problems = [f for f in findings if not (lenient and f.lenient_ok)]
    tolerated = [f for f in findings if lenient and f.lenient_ok]
    if not problems and not predictions:
        what = "no clip of the references is in the submission" if expected_ids else "the submission lists no clip"
        problems.append(Finding("empty", None, f"{what}: nothing to score", lenient_ok=False))
    return CheckedSubmission(raw.source, lenient, predictions, problems, tolerated, missing, warnings)


# ---------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------


def submission_document(predictions: Mapping[str, Sequence]) -> dict:
    """The challenge's JSON document: keys as ``<clip>.mov`` (the template's spelling), saliences as floats."""
    from blemore_toolkit.metrics.blemore.challenge import clip_pairs

    return {
        "predictions": {
            f"{clip_key(clip)}.mov": [{"emotion": str(e), "salience": float(s)} for e, s in clip_pairs(entries)]
            for clip, entries in predictions.items()
        }
    }


def write_submission(predictions: Mapping[str, Sequence], path: str | os.PathLike,
                     member: str = SUBMISSION_MEMBER) -> Path:
    """Write predictions as the challenge's JSON, or as the upload zip (``member`` inside) when ``path`` ends in .zip.

    ``predictions`` maps clip ids (with or without ``.mov``) to ``[{"emotion", "salience"}]`` lists or
    ``[(emotion, salience)]`` pairs. Nothing is checked here: run ``check_submission`` first.
    """
    path = Path(path)
    problem = unsafe_member_name(member)
    if problem:
        raise blemore.BlemoreError(f"--member {member!r}: {problem}")
    text = json.dumps(submission_document(predictions), indent=4) + "\n"
    if path.suffix.lower() == ".zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(member, text)
        data = buffer.getvalue()
    else:
        data = text.encode("utf-8")
    try:  # whole or not at all: a full disk leaves the previous file (or none), never a 0-byte or half zip
        return write_bytes_atomically(path, data)
    except OSError as error:
        raise blemore.BlemoreError(f"{error.filename or path}: cannot write ({error.strerror or error}); nothing "
                                   "was written there") from None


def _escaping_path(name: str) -> bool:
    """Whether a zip member's name is absolute (``/x``, ``C:x``) or climbs out of the folder (``../x``)."""
    return name.startswith(("/", "\\")) or name[1:2] == ":" or ".." in name.replace("\\", "/").split("/")


def unsafe_member_name(name: str) -> str | None:
    """Why a zip member's name is not one the challenge's upload can hold (``None`` when it is fine): it must be a
    plain ``.json`` file name, not a path that leaves the folder it is extracted to, absolute, or hidden."""
    if _escaping_path(name):
        return "an absolute path or one leaving the folder it is extracted to ('..'); the member must be a plain " \
            "file name such as predictions.json"
    if "/" in name or "\\" in name or not name:
        return "a path with folders; the member must be a plain file name such as predictions.json"
    if name.startswith(".") or not name.lower().endswith(".json"):
        return "not a .json file name (the challenge reads the one .json file of the zip, hidden ones skipped)"
    return None

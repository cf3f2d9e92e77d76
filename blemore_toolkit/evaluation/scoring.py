"""``blemore score``, ``blemore validate`` and ``blemore zip``: challenge submissions on the command line.

``blemore score SUBMISSION --references REF`` prints one JSON object (``acc_presence``, ``acc_salience``,
``score``, counts) on stdout. Strict by default: an invalid submission is refused with one line per problem,
naming the clip. ``--lenient`` scores it the way the challenge's own scorer would and says on stderr what it
tolerated. ``blemore validate`` runs the same checks before upload, ``blemore zip`` writes the upload file.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import json
import math
import operator
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import blemore
from blemore_toolkit.data import references
from blemore_toolkit.evaluation import submission
from blemore_toolkit.metrics.blemore import challenge

_SCORE_EPILOG = """\
REF is a prepared dataset folder (choose the split with --split; default: test), the organisers' metadata CSV,
the answer key written by `blemore synth`, or any CSV with a filename column of real clip names (labels are read
from the names), e.g. the shipped manifest with --split test or --split fold0.
"""


# ---------------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------------


def json_ready(value: Any) -> Any:
    """``value`` with NaN and infinities (an undefined accuracy) as JSON null, numpy scalars and arrays as Python
    numbers and lists, paths as strings: what ``json.dumps(..., allow_nan=False)`` accepts."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    arrays, scalars = _numpy_types()
    if isinstance(value, arrays):
        return json_ready(value.tolist())
    if isinstance(value, scalars):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _numpy_types() -> tuple[tuple, tuple]:
    """(array types, scalar types) of numpy when it is already imported (scoring itself never imports it)."""
    import sys

    numpy = sys.modules.get("numpy")
    if numpy is None:
        return (), ()
    return (numpy.ndarray,), (numpy.generic,)


def json_text(data: Any, indent: int | None = 2) -> str:
    """JSON for a file the toolkit writes: never a ``NaN`` token (undefined numbers are null), one final newline."""
    return json.dumps(json_ready(data), indent=indent, allow_nan=False, default=str) + "\n"


_SCALAR_LIST = re.compile(r"\[\s*((?:[^\[\]{}\s][^\[\]{}]*?)?)\s*\]", re.S)


def dumps(result: dict) -> str:
    """Indented JSON with lists of numbers kept on one line (confusion matrices stay readable)."""
    text = json.dumps(json_ready(result), indent=2, allow_nan=False)
    return _SCALAR_LIST.sub(lambda m: "[" + re.sub(r"\s*\n\s*", " ", m.group(1)) + "]", text)


# ---------------------------------------------------------------------------------------------------------------
# Scoring as a function
# ---------------------------------------------------------------------------------------------------------------


def _mismatch_hint(checked: submission.CheckedSubmission, truth: dict) -> str | None:
    if checked.predictions or not checked.missing or not truth:
        return None
    unknown = next((f.clip for f in checked.problems if f.kind == "unknown_clip"), None)
    if unknown is None:
        return None
    return (f"none of the submitted clips is in the references: the submission names clips like {unknown!r}, "
            f"the references {next(iter(truth))!r} (anonymised test clips need an answer key that uses their names)")


def _lenient_hint(checked: submission.CheckedSubmission) -> str | None:
    if checked.lenient or not all(f.lenient_ok for f in checked.problems):
        return None
    return "--lenient scores such a submission the way the challenge's scorer does, and lists what it tolerated"


@contextlib.contextmanager
def _collector_paused():
    """Pause the cyclic garbage collector while hundreds of thousands of small objects are built.

    They hold no cycles, yet each collection walks all of them again; pausing it took a 100,000-clip file from
    4.9 s to 3.0 s on a busy 2-core machine.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def score_submission(submission_path: str | Path, references_source: str | Path, split: str | None = None,
                     lenient: bool = False, details: bool = False, interval: dict | None = None
                     ) -> tuple[dict, submission.CheckedSubmission]:
    """Score a submission file against references; ``BlemoreError`` (listing every problem) when it is refused.

    ``interval``: add 95 % intervals (``statistics.bootstrap_interval``'s options: ``resamples``, ``seed``,
    ``level``) from a bootstrap over the clips' actors, or over clips where an actor is unknown.
    """
    with _collector_paused():
        return _score_submission(submission_path, references_source, split, lenient, details, interval)


def _score_submission(submission_path, references_source, split, lenient, details, interval=None):
    truth = references.load_references(references_source, split)
    # Built with map and filter (loops in C), and with as few lookups by clip name as can be: over 100,000 clips
    # the comprehensions they replace were a tenth of the scoring time.
    truth_pairs = dict(zip(truth, map(operator.attrgetter("pairs"), truth.values())))
    checked = submission.read_checked_submission(submission_path, references=truth_pairs, lenient=lenient)
    checked.raise_for_problems(hint=_mismatch_hint(checked, truth) or _lenient_hint(checked))
    predictions = checked.predictions
    if len(predictions) == len(truth):  # predictions hold clips of the references only: here every one of them
        clips, reference_pairs = list(truth), list(truth_pairs.values())
    else:
        clips = list(filter(predictions.__contains__, truth))
        reference_pairs = list(map(truth_pairs.__getitem__, clips))
    prediction_pairs = list(map(predictions.__getitem__, clips))
    result = challenge.challenge_scores(reference_pairs, prediction_pairs)
    result.update(
        n_references=len(truth),
        n_missing=len(checked.missing),
        mode="lenient" if lenient else "strict",
        submission=str(submission_path),
        references=str(references_source),
        split=split if split is not None or not Path(references_source).is_dir() else "test",
    )
    if lenient:
        result["tolerated"] = checked.tolerated_summary()
    if interval is not None:
        from blemore_toolkit.evaluation import statistics

        correctness = statistics.ClipCorrectness.from_clips(reference_pairs, prediction_pairs)
        result.update(statistics.bootstrap_interval(correctness, [truth[clip].actor_id for clip in clips], **interval))
    if details:
        result["details"] = challenge.challenge_details(reference_pairs, prediction_pairs)
    return result, checked


def warning_lines(checked: submission.CheckedSubmission, limit: int = submission.MAX_LISTED_PROBLEMS) -> list[str]:
    """Predictions the challenge can never count as right, one line per clip naming it, capped."""
    lines = [f"{checked.source}: {finding.line()}" for finding in checked.warnings[:limit]]
    if len(checked.warnings) > limit:
        lines.append(f"... and {len(checked.warnings) - limit} more clips that can never be scored right")
    return lines


def tolerated_lines(checked: submission.CheckedSubmission, limit: int = submission.MAX_LISTED_PROBLEMS) -> list[str]:
    """What lenient mode accepted, one line per kind with its rule and the first example."""
    by_kind: dict[str, list[submission.Finding]] = {}
    for finding in checked.tolerated:
        by_kind.setdefault(finding.kind, []).append(finding)
    lines = []
    for kind, found in list(by_kind.items())[:limit]:
        clips = len({f.clip for f in found})
        lines.append(f"tolerated {kind} ({clips} clip{'s' if clips != 1 else ''}): {submission.TOLERATED_KINDS[kind]};"
                     f" first: {found[0].line()}")
    return lines


# ---------------------------------------------------------------------------------------------------------------
# blemore score
# ---------------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------------
# Clip lists (what `blemore validate --against` checks a submission against)
# ---------------------------------------------------------------------------------------------------------------


def read_clip_ids(source: str | os.PathLike) -> list[str]:
    """The clip ids a submission must cover, from whatever lists the test clips (see ``_read_clip_ids``)."""
    try:
        return _read_clip_ids(source)
    except UnicodeDecodeError as error:
        raise blemore.BlemoreError(f"{source}: not UTF-8 text ({error.reason} at byte {error.start}); save the list "
                                   "as UTF-8") from None


def _read_clip_ids(source: str | os.PathLike) -> list[str]:
    """The clip ids a submission must cover, from whatever lists the test clips.

    A folder of videos (or a download whose ``test/`` folder holds them), a prepared dataset folder (its test
    split), a submission or template ``.json`` (its keys), a CSV with a ``filename`` column (its ``test`` rows when
    it has a ``split`` column), or a text file with one clip per line.
    """
    path = Path(source)
    if path.is_dir():
        if any(path.glob("data/*.parquet")):
            if (path / "README.md").is_file():  # a missing or changed shard named, not taken for a missing split
                from blemore_toolkit.data.loading import check_against_card

                check_against_card(path)
            try:
                test = references.load_quietly(path, split="test", columns=["clip_id"])
            except Exception as error:  # many types; the user needs the folder and the reason
                raise blemore.BlemoreError(f"{path}: no test split to check against ({type(error).__name__}: "
                                           f"{error})") from None
            ids = list(test["clip_id"])
        else:
            folder = path / "test" if (path / "test").is_dir() else path
            ids = [blemore.clip_id_from_path(p) for p in blemore.find_clip_files(folder)]
    elif not path.is_file():
        raise blemore.BlemoreError(f"{path}: no such file or folder")
    elif path.suffix.lower() in (".json", ".zip"):
        ids = [submission.clip_key(key) for key in submission.read_submission_keys(path)]
    elif path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if "filename" not in (reader.fieldnames or []):
                raise blemore.BlemoreError(f"{path}: no 'filename' column")
            rows = list(reader)
        if rows and "split" in rows[0]:
            rows = [row for row in rows if blemore.metadata_cell(row, "split") == "test"]
        ids = [blemore.clip_id_from_path(blemore.metadata_cell(row, "filename") or "") for row in rows]
    else:
        lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
        ids = [blemore.clip_id_from_path(line) for line in lines if line and not line.startswith("#")]
    if not ids:
        raise blemore.BlemoreError(f"{path}: lists no clip")
    duplicated = [clip for clip, n in Counter(ids).items() if n > 1]
    if duplicated:
        raise blemore.BlemoreError(f"{path}: clip {duplicated[0]} is listed twice")
    return ids


# ---------------------------------------------------------------------------------------------------------------
# blemore validate
# ---------------------------------------------------------------------------------------------------------------


def validate_submission(submission_path: str | Path, against: str | Path | None = None
                        ) -> submission.CheckedSubmission:
    """Strict checks of a submission, against a list of test clips when given; ``BlemoreError`` if invalid."""
    expected = read_clip_ids(against) if against is not None else None
    checked = submission.read_checked_submission(submission_path, expected=expected)
    checked.raise_for_problems()
    return checked


# ---------------------------------------------------------------------------------------------------------------
# blemore zip
# ---------------------------------------------------------------------------------------------------------------

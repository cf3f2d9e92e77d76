"""``blemore score``, ``blemore validate`` and ``blemore zip``: challenge submissions on the command line.

``blemore score SUBMISSION --references REF`` prints one JSON object (``acc_presence``, ``acc_salience``,
``score``, counts) on stdout. Strict by default: an invalid submission is refused with one line per problem,
naming the clip. ``--lenient`` scores it the way the challenge's own scorer would and says on stderr what it
tolerated. ``blemore validate`` runs the same checks before upload, ``blemore zip`` writes the upload file.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import blemore
from blemore_toolkit import challenge, references, submission

_SCORE_EPILOG = """\
REF is a prepared dataset folder (choose the split with --split; default: test), the organisers' metadata CSV,
the answer key written by `blemore synth`, or any CSV with a filename column of real clip names (labels are read
from the names), e.g. the shipped manifest with --split test or --split fold0.
"""


# ---------------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    """NaN (an undefined accuracy) as JSON null; everything else unchanged."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


_SCALAR_LIST = re.compile(r"\[\s*((?:[^\[\]{}\s][^\[\]{}]*?)?)\s*\]", re.S)


def dumps(result: dict) -> str:
    """Indented JSON with lists of numbers kept on one line (confusion matrices stay readable)."""
    text = json.dumps(_json_safe(result), indent=2, allow_nan=False)
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
                     lenient: bool = False, details: bool = False) -> tuple[dict, submission.CheckedSubmission]:
    """Score a submission file against references; ``BlemoreError`` (listing every problem) when it is refused."""
    with _collector_paused():
        return _score_submission(submission_path, references_source, split, lenient, details)


def _score_submission(submission_path, references_source, split, lenient, details):
    truth = references.load_references(references_source, split)
    raw = submission.read_submission(submission_path)
    checked = submission.check_submission(raw, references={k: c.pairs for k, c in truth.items()}, lenient=lenient)
    checked.raise_for_problems(hint=_mismatch_hint(checked, truth) or _lenient_hint(checked))
    clips = [clip for clip in truth if clip in checked.predictions]
    reference_pairs = [truth[clip].pairs for clip in clips]
    prediction_pairs = [checked.predictions[clip] for clip in clips]
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
    if details:
        result["details"] = challenge.challenge_details(reference_pairs, prediction_pairs)
    return result, checked


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


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = _SCORE_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("submission", help="challenge submission, .json or the upload .zip")
    parser.add_argument("--references", "-r", required=True, metavar="REF",
                        help="prepared dataset folder or CSV with the true labels")
    parser.add_argument("--split", default=None,
                        help="train, test or fold0..fold4 (validation clips of that fold); default: every clip of "
                             "a CSV, the test split of a folder")
    parser.add_argument("--details", action="store_true",
                        help="add per-emotion and per-blend accuracy and the presence and salience confusions")
    parser.add_argument("--lenient", action="store_true",
                        help="score sloppy input exactly as the challenge's scorer would, listing what it tolerated")


def run_score(args: argparse.Namespace) -> int:
    result, checked = score_submission(args.submission, args.references, args.split, args.lenient, args.details)
    for line in tolerated_lines(checked):
        print(f"blemore score: lenient: {line}", file=sys.stderr)
    print(dumps(result))
    return 0


# ---------------------------------------------------------------------------------------------------------------
# blemore validate
# ---------------------------------------------------------------------------------------------------------------


def validate_submission(submission_path: str | Path, against: str | Path | None = None
                        ) -> submission.CheckedSubmission:
    """Strict checks of a submission, against a list of test clips when given; ``BlemoreError`` if invalid."""
    expected = references.read_clip_ids(against) if against is not None else None
    checked = submission.check_submission(submission.read_submission(submission_path), expected=expected)
    checked.raise_for_problems()
    return checked


def add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submission", help="challenge submission, .json or the upload .zip")
    parser.add_argument("--against", metavar="TEST_DIR_OR_LIST", default=None,
                        help="the test clips: a folder of videos (or a download with a test/ folder), a prepared "
                             "dataset folder, the submission template .json, a CSV with a filename column, or a "
                             "text file with one clip per line; without it only the format is checked")


def run_validate(args: argparse.Namespace) -> int:
    checked = validate_submission(args.submission, args.against)
    coverage = f", exactly the {len(checked.predictions)} clips of {args.against}" if args.against else \
        " (format only: give --against to check the clip list)"
    print(f"{checked.source}: valid, {len(checked.predictions)} clips{coverage}")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# blemore zip
# ---------------------------------------------------------------------------------------------------------------


def add_zip_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("predictions", help="predictions in the challenge's JSON format (or a .zip holding it)")
    parser.add_argument("--output", "-o", default=None,
                        help="the zip to write (default: PREDICTIONS with the .zip suffix)")
    parser.add_argument("--against", metavar="TEST_DIR_OR_LIST", default=None,
                        help="check the clip list too (see `blemore validate --help`)")
    parser.add_argument("--member", default=submission.SUBMISSION_MEMBER,
                        help="name of the JSON file inside the zip (default: %(default)s)")


def run_zip(args: argparse.Namespace) -> int:
    checked = validate_submission(args.predictions, args.against)
    output = Path(args.output) if args.output else Path(args.predictions).with_suffix(".zip")
    if output.resolve() == Path(args.predictions).resolve():
        raise blemore.BlemoreError(f"{output}: would overwrite the predictions; give --output")
    submission.write_submission(checked.predictions, output, member=args.member)
    print(f"{output}: {len(checked.predictions)} clips in {args.member}, ready to upload")
    return 0

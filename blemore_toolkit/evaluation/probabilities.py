"""``probabilities.csv``: a model's six emotion probabilities per clip (and the true outcome, when known).

Written by ``blemore train``/``predict``/``heads``/``ensemble``; read back by the final fit's threshold tuning,
``train --resume``, ``compare``, ``report`` and ``ensemble``, all through ``read_probabilities``, which accepts only
what ``write_probabilities`` could have written: UTF-8 (a byte-order mark is allowed), a header with ``clip_id``
and the six ``p_<code>`` columns (and optionally ``outcome``), every row as wide as the header, each clip once,
every probability a finite number in [0, 1] and each row summing to 1 (within ``SUM_TOLERANCE``: six values
rounded to six decimals). Anything else is one ``BlemoreError`` line naming the file and the line.
"""

from __future__ import annotations

import csv
import io
import operator
import os
from array import array
from pathlib import Path

import numpy as np

import blemore
from blemore_toolkit.data.atomic import write_text_atomically

PROBABILITY_COLUMNS = tuple(f"p_{code}" for code in blemore.EMOTIONS)
#: How far a row's probabilities may sum from 1 (written with six decimals, six values: at most 3e-6 off).
SUM_TOLERANCE = 1e-3
#: How far a probability may lie outside [0, 1] (rounding only).
RANGE_TOLERANCE = 1e-6
_OUTCOME_INDEX = {name: index for index, name in enumerate(blemore.OUTCOME_NAMES)}


def check_probabilities(probabilities, clip_ids, source: str) -> np.ndarray:
    """``probabilities`` as a float (N, 6) array, or ``BlemoreError`` naming the first clip whose row is not a
    probability distribution (non-finite, negative, above 1, not summing to 1)."""
    values = np.asarray(probabilities, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(PROBABILITY_COLUMNS) or values.shape[0] != len(clip_ids):
        raise blemore.BlemoreError(f"{source}: expected ({len(clip_ids)}, {len(PROBABILITY_COLUMNS)}) emotion "
                                   f"probabilities, got shape {values.shape}")
    problem = _first_bad_row(values)
    if problem is not None:
        row, reason = problem
        raise blemore.BlemoreError(f"{source}: clip {clip_ids[row]}: {reason}")
    return values


def _first_bad_row(values: np.ndarray) -> tuple[int, str] | None:
    """(row, reason) of the first row that is not a probability distribution, else None."""
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(values).all(axis=1)
        in_range = (values >= -RANGE_TOLERANCE).all(axis=1) & (values <= 1.0 + RANGE_TOLERANCE).all(axis=1)
        sums = values.sum(axis=1)
        normalised = np.abs(sums - 1.0) <= SUM_TOLERANCE
    bad = ~(finite & in_range & normalised)
    if not bad.any():
        return None
    row = int(np.argmax(bad))
    cells = values[row]
    if not finite[row]:
        column = int(np.argmax(~np.isfinite(cells)))
        return row, f"{PROBABILITY_COLUMNS[column]} is {cells[column]}, not a finite number"
    if not in_range[row]:
        column = int(np.argmax((cells < -RANGE_TOLERANCE) | (cells > 1.0 + RANGE_TOLERANCE)))
        return row, f"{PROBABILITY_COLUMNS[column]} is {cells[column]:g}, outside [0, 1]"
    return row, f"the six probabilities sum to {sums[row]:.6g}, not 1"


def write_probabilities(path: str | os.PathLike, clip_ids, probabilities, truth=None) -> Path:
    """``clip_id, p_ang … p_neu[, outcome]``: the model's emotion probabilities per clip (outcome: the true one).

    Refuses (``BlemoreError`` naming the clip) probabilities that ``read_probabilities`` would refuse, so no
    command ever writes a file that the next one cannot read.
    """
    values = check_probabilities(probabilities, list(clip_ids), str(path))
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["clip_id", *PROBABILITY_COLUMNS] + (["outcome"] if truth is not None else []))
    for index, clip_id in enumerate(clip_ids):
        row = [clip_id, *(f"{value:.6f}" for value in values[index])]
        if truth is not None:
            row.append(blemore.OUTCOME_NAMES[int(truth[index])])
        writer.writerow(row)
    return write_text_atomically(path, text.getvalue())


def read_probabilities(path: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """The clip ids, (N, 6) probabilities and true outcome indices (None without them) of ``write_probabilities``.

    ``BlemoreError`` (one line naming the file and line) for anything that is not such a file (see the module
    docstring).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise blemore.BlemoreError(f"{path}: no such file") from None
    except OSError as error:
        raise blemore.BlemoreError(f"{path}: cannot be read ({error.strerror or error})") from None
    try:
        data.decode("utf-8-sig")  # checked whole, the text dropped: the parse below decodes as it reads
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise blemore.BlemoreError(f"{path}:{line}: not UTF-8 text ({error.reason} at byte {error.start}); a "
                                   "probabilities.csv is written as UTF-8") from None
    # A text stream decoding the bytes a block at a time (the same lines as io.StringIO(text, newline="")), not
    # a StringIO of the whole text, which holds four bytes a character.
    reader = csv.reader(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline=""))
    try:
        return _parse(path, reader)
    except csv.Error as error:  # a field over csv's limit (128 KiB), a NUL byte, a quote left open
        raise blemore.BlemoreError(f"{path}:{reader.line_num}: not a readable CSV ({error})") from None


def _parse(path: Path, reader) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    header = next(reader, None)
    if not header:
        raise blemore.BlemoreError(f"{path}: empty; a probabilities.csv starts with the header clip_id,"
                                   f"{','.join(PROBABILITY_COLUMNS)}")
    header = [cell.strip() for cell in header]
    needed = ["clip_id", *PROBABILITY_COLUMNS]
    missing = [column for column in needed if column not in header]
    if missing:
        raise blemore.BlemoreError(f"{path}:1: no {missing[0]} column (a probabilities.csv has the columns "
                                   f"{', '.join(needed)}[, outcome]; this header: {', '.join(header)[:200]})")
    repeated = next((column for column in header if header.count(column) > 1), None)
    if repeated is not None:
        raise blemore.BlemoreError(f"{path}:1: the column {repeated} appears twice")
    width = len(header)
    id_at = header.index("clip_id")
    value_cells = operator.itemgetter(*(header.index(column) for column in PROBABILITY_COLUMNS))
    outcome_at = header.index("outcome") if "outcome" in header else None
    clip_ids: list[str] = []
    lines = array("q")
    flat = array("d")
    outcomes = array("q")
    for row in reader:
        if not row:
            continue  # a blank line
        line = reader.line_num
        if len(row) != width:
            raise blemore.BlemoreError(f"{path}:{line}: {len(row)} cells where the header has {width}")
        clip = row[id_at].strip()
        if not clip:
            raise blemore.BlemoreError(f"{path}:{line}: no clip id")
        cells = value_cells(row)
        try:
            flat.extend(map(float, cells))
        except ValueError:
            column, cell = next((c, v) for c, v in zip(PROBABILITY_COLUMNS, cells) if not _is_number(v))
            raise blemore.BlemoreError(f"{path}:{line}: clip {clip}: {column} is {cell[:40]!r}, not a number"
                                       ) from None
        if outcome_at is not None:
            outcome = _OUTCOME_INDEX.get(row[outcome_at].strip())
            if outcome is None:
                raise blemore.BlemoreError(f"{path}:{line}: clip {clip}: outcome {row[outcome_at][:40]!r} is not "
                                           "one of the 36 outcomes (e.g. ang, ang_hap_70_30)")
            outcomes.append(outcome)
        clip_ids.append(clip)
        lines.append(line)
    if not clip_ids:
        raise blemore.BlemoreError(f"{path}: a header but no clip")
    if len(set(clip_ids)) != len(clip_ids):
        first_line: dict[str, int] = {}
        for clip, line in zip(clip_ids, lines):
            if clip in first_line:
                raise blemore.BlemoreError(f"{path}:{line}: clip {clip} is listed twice (first on line "
                                           f"{first_line[clip]})")
            first_line[clip] = line
    probabilities = np.frombuffer(flat, dtype=np.float64).reshape(-1, len(PROBABILITY_COLUMNS)).copy()
    problem = _first_bad_row(probabilities)
    if problem is not None:
        row, reason = problem
        raise blemore.BlemoreError(f"{path}:{lines[row]}: clip {clip_ids[row]}: {reason}")
    truth = np.frombuffer(outcomes, dtype=np.int64).copy() if outcome_at is not None else None
    return clip_ids, probabilities, truth


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


"""``probabilities.csv``: a model's six emotion probabilities per clip (and the true outcome, when known).

Written by ``blemore train``/``predict``/``heads``; read back by the final fit's threshold tuning and by anything that
re-decodes or compares predictions without re-running a model.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

import blemore
from blemore_toolkit.data.atomic import write_text_atomically

PROBABILITY_COLUMNS = tuple(f"p_{code}" for code in blemore.EMOTIONS)


def write_probabilities(path: str | os.PathLike, clip_ids, probabilities, truth=None) -> Path:
    """``clip_id, p_ang … p_neu[, outcome]``: the model's emotion probabilities per clip (outcome: the true one)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["clip_id", *PROBABILITY_COLUMNS] + (["outcome"] if truth is not None else []))
    for index, clip_id in enumerate(clip_ids):
        row = [clip_id, *(f"{value:.6f}" for value in probabilities[index])]
        if truth is not None:
            row.append(blemore.OUTCOME_NAMES[int(truth[index])])
        writer.writerow(row)
    return write_text_atomically(path, text.getvalue())


def read_probabilities(path: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """The clip ids, (N, 6) probabilities and true outcome indices (None without them) of ``write_probabilities``."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    clip_ids = [row["clip_id"] for row in rows]
    probabilities = np.array([[float(row[column]) for column in PROBABILITY_COLUMNS] for row in rows])
    truth = None
    if rows and "outcome" in rows[0]:
        truth = np.array([blemore.OUTCOME_NAMES.index(row["outcome"]) for row in rows])
    return clip_ids, probabilities, truth

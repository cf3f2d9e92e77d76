"""Predictions from a file, aligned clip for clip with their references: what ``compare`` and ``report`` read.

A file is either a challenge submission (``.json`` or the upload ``.zip``, checked strictly as ``blemore score``
does) or a ``probabilities.csv`` (``blemore predict``/``train``/``heads``), decoded with the paper's α/β threshold
rule. The thresholds are the ones given, else the ones stored in a model's ``config.json`` (``--model``: the folder
``blemore train`` or ``blemore heads`` saved, whose decoder was tuned on validation data), so the figures are those
of the predictions the model would submit. Tuning α/β on the very clips being evaluated is never done silently: it
would flatter the model.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

import blemore
from blemore_toolkit.data import references as reference_io
from blemore_toolkit.evaluation import submission
from blemore_toolkit.evaluation.probabilities import read_probabilities
from blemore_toolkit.evaluation.statistics import ClipCorrectness
from blemore_toolkit.metrics.blemore.challenge import clip_pairs


@dataclasses.dataclass
class AlignedPredictions:
    """Predictions of one file on the reference clips it covers, in reference order."""

    source: str
    references: list[reference_io.ReferenceClip]
    predictions: list[list[tuple]]  # (emotion, salience) pairs per clip, the form ``challenge`` scores
    n_missing: int = 0
    probabilities: np.ndarray | None = None  # (N, 6) when read from a probabilities.csv
    thresholds: tuple[float, float] | None = None  # (α, β) the probabilities were decoded with

    @property
    def clip_ids(self) -> list[str]:
        return [clip.clip_id for clip in self.references]

    @property
    def actors(self) -> list[str | None]:
        return [clip.actor_id for clip in self.references]

    @property
    def reference_pairs(self) -> list[tuple]:
        return [clip.pairs for clip in self.references]

    def correctness(self) -> ClipCorrectness:
        return ClipCorrectness.from_clips(self.reference_pairs, self.predictions)

    @property
    def true_outcomes(self) -> np.ndarray:
        return np.array([blemore.outcome_index(c.emotions, c.salience) for c in self.references], dtype=np.int64)


def is_probabilities_file(path: str | os.PathLike) -> bool:
    """True for a ``.csv``: predictions in a CSV are a ``probabilities.csv`` (submissions are ``.json``/``.zip``);
    ``read_probabilities`` says what a CSV that is not one lacks."""
    path = Path(path)
    return path.suffix.lower() == ".csv" and path.is_file()


def stored_thresholds(model: str | os.PathLike) -> tuple[float, float]:
    """(α, β) from a saved model's ``config.json`` (the folder itself, or a file)."""
    path = Path(model)
    config_path = path / "config.json" if path.is_dir() else path
    if not config_path.is_file():
        raise blemore.BlemoreError(f"{model}: no config.json holding the decoding thresholds (give a model folder "
                                   "written by `blemore train` or `blemore heads`)")
    config = json.loads(config_path.read_text())
    # `decoder` is what config.json files written before the field was renamed call the decoding rule.
    rule = config.get("decoding_rule", config.get("decoder", "thresholds"))
    if rule != "thresholds":
        raise blemore.BlemoreError(f"{config_path}: the model decodes with {rule!r}, not the α/β "
                                   "thresholds that a probabilities.csv is decoded with here; give --thresholds")
    try:
        return float(config["presence_threshold"]), float(config["salience_threshold"])
    except KeyError as missing:
        raise blemore.BlemoreError(f"{config_path}: no {missing.args[0]} in the config") from None


def load_predictions(path: str | os.PathLike, references: dict[str, reference_io.ReferenceClip], *,
                     thresholds: tuple[float, float] | None = None, model: str | os.PathLike | None = None,
                     lenient: bool = False) -> AlignedPredictions:
    """A submission or probabilities.csv, aligned with ``references`` (``data.references.load_references``)."""
    path = Path(path)
    if not path.exists():
        raise blemore.BlemoreError(f"{path}: no such file")
    if is_probabilities_file(path):
        if thresholds is None:
            if model is None:
                raise blemore.BlemoreError(
                    f"{path}: probabilities need decoding thresholds: give --thresholds ALPHA BETA, or --model "
                    "MODEL_DIR whose config.json stores the ones tuned on validation data")
            thresholds = stored_thresholds(model)
        return _from_probabilities(path, references, thresholds)
    return _from_submission(path, references, lenient)


def _from_submission(path: Path, truth: dict, lenient: bool) -> AlignedPredictions:
    checked = submission.read_checked_submission(path, references={k: c.pairs for k, c in truth.items()},
                                                 lenient=lenient)
    checked.raise_for_problems()
    clips = [clip for clip in truth if clip in checked.predictions]
    predictions = [clip_pairs(checked.predictions[clip]) for clip in clips]
    return AlignedPredictions(str(path), [truth[clip] for clip in clips], predictions, len(checked.missing))


def _from_probabilities(path: Path, truth: dict, thresholds: tuple[float, float]) -> AlignedPredictions:
    from blemore_toolkit.modeling.decoding_blemore import decode_outcomes, outcomes_to_predictions

    clip_ids, probabilities, _ = read_probabilities(path)
    ids = [blemore.clip_id_from_path(clip) for clip in clip_ids]
    unknown = next((clip for clip in ids if clip not in truth), None)
    if unknown is not None:
        raise blemore.BlemoreError(f"{path}: clip {unknown} is not in the references")
    row_of = {clip: i for i, clip in enumerate(ids)}
    if len(row_of) != len(ids):  # (no set of the ids beside this dict: a million clips cost tens of MB each)
        seen: set[str] = set()
        twice = next(clip for clip in ids if clip in seen or seen.add(clip))
        raise blemore.BlemoreError(f"{path}: clip {twice} is listed twice (under two names)")
    del clip_ids, ids
    clips = [clip for clip in truth if clip in row_of]
    probabilities = probabilities[[row_of[clip] for clip in clips]]
    outcomes = decode_outcomes(probabilities, "thresholds", presence_threshold=thresholds[0],
                               salience_threshold=thresholds[1])
    # one shared list of (emotion, salience) pairs per outcome: 36 objects, not two dicts per clip
    table = [tuple((e["emotion"], e["salience"]) for e in clip)
             for clip in outcomes_to_predictions(range(len(blemore.OUTCOMES)))]
    predictions = [table[outcome] for outcome in outcomes.tolist()]
    return AlignedPredictions(str(path), [truth[clip] for clip in clips], predictions, len(truth) - len(clips),
                              probabilities, (float(thresholds[0]), float(thresholds[1])))


def align_pair(a: AlignedPredictions, b: AlignedPredictions) -> None:
    """``BlemoreError`` unless both cover the same clips (a paired comparison needs them)."""
    if a.clip_ids != b.clip_ids:
        only_a = next((c for c in a.clip_ids if c not in set(b.clip_ids)), None)
        only_b = next((c for c in b.clip_ids if c not in set(a.clip_ids)), None)
        example = f"{only_a} only in {a.source}" if only_a else f"{only_b} only in {b.source}"
        raise blemore.BlemoreError(f"a paired comparison needs both on the same clips: {a.source} has "
                                   f"{len(a.clip_ids)}, {b.source} {len(b.clip_ids)} ({example})")

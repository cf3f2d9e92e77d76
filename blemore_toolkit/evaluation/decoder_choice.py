"""Which decoder turns out-of-fold probabilities into the best challenge score: α/β thresholds or expected score.

The paper decodes with two thresholds (α presence, β salience; ``tuning.tune_thresholds``). The model can also
decode by maximising the expected challenge score of each clip (``decoding_blemore.expected_score_outcomes``), whose
only free parameter on six-emotion probabilities is the temperature that turns them into an outcome distribution.
Neither wins everywhere, so the choice is made on out-of-fold predictions:

* each decoder's parameters are tuned on four folds and applied to the fifth (``nested_decoding``), so the figure
  that decides is never tuned on its own clips;
* the decoder with the better pooled nested score is chosen, and its parameters are then tuned once on all clips
  for the test predictions.

The choice between two figures is itself made on the same clips (a mild optimism that the report states).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from blemore_toolkit.evaluation.tuning import outcome_scores, tune_thresholds
from blemore_toolkit.metrics.blemore.challenge import METRICS
from blemore_toolkit.modeling.decoding_blemore import (
    EMOTIONS,
    OUTCOME_IS_BLEND,
    decode_outcomes,
    expected_score_outcomes,
    outcome_log_likelihoods,
    tempered_outcome_probabilities,
)

DECODER_CHOICES: tuple[str, ...] = ("thresholds", "expected_score")
#: Temperatures tried for the expected-score decoder (emotion probabilities → outcome distribution).
TEMPERATURE_GRID: tuple[float, ...] = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0)
#: Clips decoded at once: the expected-score decoder makes several (clips, 36) arrays, 36 MB each at this size.
DECODE_CHUNK = 131_072


def decode_in_chunks(probabilities: np.ndarray, **parameters) -> np.ndarray:
    """``decode_outcomes`` a block of clips at a time (the same outcomes, memory bounded by ``DECODE_CHUNK``)."""
    if len(probabilities) <= DECODE_CHUNK:
        return decode_outcomes(probabilities, **parameters)
    return np.concatenate([decode_outcomes(probabilities[start:start + DECODE_CHUNK], **parameters)
                           for start in range(0, len(probabilities), DECODE_CHUNK)])


def expected_score_outcomes_by_temperature(probabilities: np.ndarray, temperatures, blend_fraction: float,
                                           prior: str = "blemore") -> np.ndarray:
    """(temperatures, N) int8 outcomes of the expected-score decoder on (N, 6) emotion probabilities at each
    temperature: the same outcomes as ``decode_in_chunks`` at each one, the temperature-free log-likelihoods
    computed once per block of ``DECODE_CHUNK`` clips instead of once per temperature."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(EMOTIONS):
        raise ValueError(f"expected (N, {len(EMOTIONS)}) emotion probabilities, got shape {probabilities.shape}")
    decoded = np.empty((len(temperatures), len(probabilities)), dtype=np.int8)
    for start in range(0, len(probabilities), DECODE_CHUNK):
        log_likelihoods = outcome_log_likelihoods(probabilities[start:start + DECODE_CHUNK])
        for row, temperature in enumerate(temperatures):
            outcome_probs = tempered_outcome_probabilities(log_likelihoods, temperature, prior)
            decoded[row, start:start + len(log_likelihoods)] = expected_score_outcomes(outcome_probs, blend_fraction)
    return decoded


def tune_decoder(decoder: str, probabilities: np.ndarray, outcomes: np.ndarray) -> dict:
    """The decoder's parameters with the best challenge score on these clips (``decode_outcomes`` keywords)."""
    if decoder == "thresholds":
        search = tune_thresholds(probabilities, outcomes)
        return {"decoder": "thresholds", "presence_threshold": search.presence_threshold,
                "salience_threshold": search.salience_threshold}
    if decoder != "expected_score":
        raise ValueError(f"decoder must be one of {DECODER_CHOICES}, got {decoder!r}")
    blend_fraction = float(np.clip(OUTCOME_IS_BLEND[outcomes].mean(), 1e-3, 1.0))
    by_temperature = expected_score_outcomes_by_temperature(probabilities, TEMPERATURE_GRID, blend_fraction)
    best = None
    for temperature, decoded in zip(TEMPERATURE_GRID, by_temperature):
        parameters = {"decoder": "expected_score", "outcome_temperature": float(temperature),
                      "blend_fraction": blend_fraction}
        score = outcome_scores(outcomes, decoded)["score"]
        if best is None or score > best[0] + 1e-12:
            best = (score, parameters)
    return best[1]


@dataclasses.dataclass
class NestedDecoding:
    """Per-fold and pooled scores of one decoder, its parameters tuned on the other folds each time."""

    decoder: str
    folds: list[dict]
    pooled: dict
    outcomes: np.ndarray

    def as_dict(self) -> dict:
        return {"decoder": self.decoder, "folds": self.folds, "pooled": self.pooled}


def nested_decoding(decoder: str, probabilities_by_fold, outcomes: np.ndarray, folds: np.ndarray) -> NestedDecoding:
    """Decode each fold with parameters tuned on the other folds.

    ``probabilities_by_fold(k)`` returns the (N, 6) probabilities to use while fold ``k`` is held out (for a fixed
    model simply the same array; for an ensemble the fusion fitted without fold ``k``).
    """
    decoded = np.full(len(outcomes), -1, dtype=np.int64)
    results = []
    for fold in sorted(set(folds.tolist())):
        probabilities = probabilities_by_fold(fold)
        inner, outer = folds != fold, folds == fold
        parameters = tune_decoder(decoder, probabilities[inner], outcomes[inner])
        decoded[outer] = decode_in_chunks(probabilities[outer], **parameters)
        scores = outcome_scores(outcomes[outer], decoded[outer])
        results.append({"fold": int(fold), "n_clips": int(outer.sum()), "parameters": parameters,
                        **{m: scores[m] for m in METRICS}})
    pooled = outcome_scores(outcomes, decoded)
    return NestedDecoding(decoder, results, {m: pooled[m] for m in METRICS}, decoded)


def choose_decoder(probabilities_by_fold, all_probabilities: np.ndarray, outcomes: np.ndarray,
                   folds: np.ndarray) -> dict:
    """Both decoders' nested figures, the chosen one (best pooled nested score) and its parameters tuned on all
    clips."""
    nested = {name: nested_decoding(name, probabilities_by_fold, outcomes, folds) for name in DECODER_CHOICES}
    chosen = max(DECODER_CHOICES, key=lambda name: (nested[name].pooled["score"], name == "thresholds"))
    return {"chosen": chosen, "parameters": tune_decoder(chosen, all_probabilities, outcomes),
            "nested": {name: result.as_dict() for name, result in nested.items()},
            "rule": "the decoder with the better pooled score when each fold is decoded with parameters tuned on "
                    "the other folds (the choice itself is made on these clips)"}


__all__ = ["DECODER_CHOICES", "NestedDecoding", "choose_decoder", "decode_in_chunks",
           "expected_score_outcomes_by_temperature", "nested_decoding",
           "tune_decoder"]

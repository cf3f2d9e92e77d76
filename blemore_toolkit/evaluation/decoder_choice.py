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
    add_blend_bonus,
    decode_outcomes,
    outcome_log_likelihoods,
    presence_scores,
    tempered_outcome_probabilities,
)

DECODER_CHOICES: tuple[str, ...] = ("thresholds", "expected_score")
#: Temperatures tried for the expected-score decoder (emotion probabilities → outcome distribution).
TEMPERATURE_GRID: tuple[float, ...] = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0)
#: Clips decoded at once: the expected-score decoder makes several (clips, 36) arrays, 9 MB each at this size.
DECODE_CHUNK = 32_768


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
    return _expected_score_grid(probabilities, temperatures, [blend_fraction], prior)[0]


def _expected_score_grid(probabilities: np.ndarray, temperatures, blend_fractions, prior: str = "blemore"
                         ) -> np.ndarray:
    """(blend fractions, temperatures, N) int8 expected-score outcomes: per block of clips the log-likelihoods
    once, the outcome distribution and presence scores once per temperature, the blends' bonus per fraction."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(EMOTIONS):
        raise ValueError(f"expected (N, {len(EMOTIONS)}) emotion probabilities, got shape {probabilities.shape}")
    for blend_fraction in blend_fractions:
        if not 0 < blend_fraction <= 1:
            raise ValueError(f"blend fraction must be in (0, 1], got {blend_fraction}")
    decoded = np.empty((len(blend_fractions), len(temperatures), len(probabilities)), dtype=np.int8)
    for start in range(0, len(probabilities), DECODE_CHUNK):
        log_likelihoods = outcome_log_likelihoods(probabilities[start:start + DECODE_CHUNK])
        block = slice(start, start + len(log_likelihoods))
        for row, temperature in enumerate(temperatures):
            outcome_probs = tempered_outcome_probabilities(log_likelihoods, temperature, prior)
            presence = presence_scores(outcome_probs)
            for index, blend_fraction in enumerate(blend_fractions):
                scores = presence.copy() if index < len(blend_fractions) - 1 else presence
                decoded[index, row, block] = np.argmax(add_blend_bonus(scores, outcome_probs, blend_fraction), axis=1)
    return decoded


def _blend_fraction(outcomes: np.ndarray) -> float:
    return float(np.clip(OUTCOME_IS_BLEND[outcomes].mean(), 1e-3, 1.0))


def _best_temperature(outcomes: np.ndarray, by_temperature: np.ndarray, blend_fraction: float) -> dict:
    """The expected-score parameters whose outcomes (one row per ``TEMPERATURE_GRID`` entry) score best (the first
    of equals)."""
    best = None
    for temperature, decoded in zip(TEMPERATURE_GRID, by_temperature):
        parameters = {"decoder": "expected_score", "outcome_temperature": float(temperature),
                      "blend_fraction": blend_fraction}
        score = outcome_scores(outcomes, decoded)["score"]
        if best is None or score > best[0] + 1e-12:
            best = (score, parameters)
    return best[1]


def tune_decoder(decoder: str, probabilities: np.ndarray, outcomes: np.ndarray) -> dict:
    """The decoder's parameters with the best challenge score on these clips (``decode_outcomes`` keywords)."""
    if decoder == "thresholds":
        search = tune_thresholds(probabilities, outcomes)
        return {"decoder": "thresholds", "presence_threshold": search.presence_threshold,
                "salience_threshold": search.salience_threshold}
    if decoder != "expected_score":
        raise ValueError(f"decoder must be one of {DECODER_CHOICES}, got {decoder!r}")
    blend_fraction = _blend_fraction(outcomes)
    return _best_temperature(
        outcomes, expected_score_outcomes_by_temperature(probabilities, TEMPERATURE_GRID, blend_fraction),
        blend_fraction)


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
    model simply the same array, for which ``nested_decoding_fixed`` does the same work faster; for an ensemble
    the fusion fitted without fold ``k``).
    """
    def fold_decoding(fold, inner, outer):
        probabilities = probabilities_by_fold(fold)
        parameters = tune_decoder(decoder, probabilities[inner], outcomes[inner])
        return parameters, decode_in_chunks(probabilities[outer], **parameters)

    return _nested(decoder, fold_decoding, outcomes, folds)


def nested_decoding_fixed(decoder: str, probabilities: np.ndarray, outcomes: np.ndarray,
                          folds: np.ndarray) -> NestedDecoding:
    """``nested_decoding`` of one fixed (N, 6) array (the same result): with the expected-score decoder, each clip's
    outcome distribution at each temperature is computed once for all folds, not once per fold it is tuned or
    decoded in (every clip's outcome depends on its own row only)."""
    if decoder != "expected_score":
        return nested_decoding(decoder, lambda fold: probabilities, outcomes, folds)
    fold_ids = sorted(set(folds.tolist()))
    fractions = [_blend_fraction(outcomes[folds != fold]) for fold in fold_ids]
    grid = _expected_score_grid(probabilities, TEMPERATURE_GRID, fractions)  # (folds, temperatures, N)

    def fold_decoding(fold, inner, outer):
        index = fold_ids.index(fold)
        parameters = _best_temperature(outcomes[inner], grid[index][:, inner], fractions[index])
        row = TEMPERATURE_GRID.index(parameters["outcome_temperature"])
        return parameters, grid[index, row, outer].astype(np.int64)

    return _nested(decoder, fold_decoding, outcomes, folds)


def _nested(decoder: str, fold_decoding, outcomes: np.ndarray, folds: np.ndarray) -> NestedDecoding:
    """Per-fold and pooled figures; ``fold_decoding(fold, inner, outer)`` gives the parameters tuned on the inner
    clips and the outcomes of the outer (held-out) ones."""
    decoded = np.full(len(outcomes), -1, dtype=np.int64)
    results = []
    for fold in sorted(set(folds.tolist())):
        inner, outer = folds != fold, folds == fold
        parameters, decoded[outer] = fold_decoding(fold, inner, outer)
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
           "nested_decoding_fixed",
           "tune_decoder"]

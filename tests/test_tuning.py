"""The α/β search and outcome scoring agree with the decoder and with the challenge's own arithmetic."""

import numpy as np

from blemore_toolkit.evaluation.tuning import DEFAULT_THRESHOLDS, outcome_scores, tune_thresholds
from blemore_toolkit.metrics.blemore.challenge import challenge_scores
from blemore_toolkit.modeling.decoding_blemore import OUTCOME_TARGETS, outcomes_to_predictions, threshold_outcomes


def _noisy_probs(truth: np.ndarray, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    probs = OUTCOME_TARGETS[truth] + rng.normal(0, noise, size=(len(truth), 6))
    probs = np.clip(probs, 1e-4, None)
    return probs / probs.sum(axis=1, keepdims=True)


def test_outcome_scores_match_the_challenge_scorer():
    rng = np.random.default_rng(0)
    truth, guess = rng.integers(0, 36, 500), rng.integers(0, 36, 500)
    guess[:200] = truth[:200]
    expected = challenge_scores(outcomes_to_predictions(truth), outcomes_to_predictions(guess))
    got = outcome_scores(truth, guess)
    for key in ("acc_presence", "acc_salience", "score", "n_clips", "n_blends"):
        assert got[key] == expected[key]


def test_tuned_thresholds_score_what_the_decoder_scores_and_beat_a_bad_start():
    truth = np.random.default_rng(1).integers(0, 36, 400)
    probs = _noisy_probs(truth, 0.08, seed=2)
    search = tune_thresholds(probs, truth)
    decoded = threshold_outcomes(probs, search.presence_threshold, search.salience_threshold)
    assert outcome_scores(truth, decoded)["score"] == search.score
    grid_max = max(
        outcome_scores(truth, threshold_outcomes(probs, a, b))["score"]
        for a in np.arange(0, 0.51, 0.05) for b in np.arange(0, 0.51, 0.05)
    )
    assert search.score >= grid_max
    assert search.score > outcome_scores(truth, threshold_outcomes(probs, 0.45, 0.0))["score"]


def test_ties_fall_back_to_the_defaults():
    truth = np.zeros(10, dtype=int)  # all "ang": any α above 0 and every β decode the same
    probs = np.tile([[1.0, 0, 0, 0, 0, 0]], (10, 1))
    search = tune_thresholds(probs, truth)
    assert (search.presence_threshold, search.salience_threshold) == DEFAULT_THRESHOLDS
    assert search.acc_presence == 1.0 and np.isnan(search.score)

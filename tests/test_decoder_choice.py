"""``evaluation.decoder_choice``: each fold is decoded with parameters tuned on the other folds only.

The parameters are recomputed here from the data (``tune_decoder`` on the four other folds), not read back from the
report, so a nested figure tuned on its own fold cannot pass."""

import numpy as np
import pytest

from blemore_toolkit.evaluation import decoder_choice
from blemore_toolkit.evaluation.decoder_choice import (
    DECODER_CHOICES,
    TEMPERATURE_GRID,
    choose_decoder,
    expected_score_outcomes_by_temperature,
    nested_decoding,
    tune_decoder,
)
from blemore_toolkit.evaluation.tuning import outcome_scores
from blemore_toolkit.modeling.decoding_blemore import (
    BLEMORE_BLEND_FRACTION,
    BLEMORE_OUTCOME_PRIOR,
    OUTCOME_IS_BLEND,
    OUTCOME_PRESENCE,
    OUTCOME_TARGETS,
    PRESENCE_NAMES,
    decode_outcomes,
    expected_scores,
    outcome_probabilities,
    softmax,
)

FOLDS = 5


@pytest.fixture(scope="module")
def clips():
    """Out-of-fold probabilities whose best thresholds differ from fold to fold (each fold's model is more or less
    sure of itself), so tuning on the held-out fold gives other parameters than tuning on the rest."""
    rng = np.random.default_rng(7)
    n = 400
    outcomes = rng.integers(0, len(OUTCOME_TARGETS), n)
    folds = np.arange(n) % FOLDS
    sureness = np.array([0.9, 0.35, 0.6, 0.2, 0.75])[folds][:, None]
    noise = rng.dirichlet(np.ones(6) * 0.7, n)
    probabilities = sureness * OUTCOME_TARGETS[outcomes] + (1 - sureness) * noise
    return probabilities, outcomes, folds


@pytest.mark.parametrize("decoder", DECODER_CHOICES)
def test_each_fold_is_decoded_with_parameters_tuned_on_the_other_folds(clips, decoder):
    probabilities, outcomes, folds = clips
    nested = nested_decoding(decoder, lambda fold: probabilities, outcomes, folds)
    decoded = np.empty(len(outcomes), dtype=np.int64)
    differs_from_own_fold = 0
    for fold in range(FOLDS):
        inner, outer = folds != fold, folds == fold
        expected = tune_decoder(decoder, probabilities[inner], outcomes[inner])
        (reported,) = [f for f in nested.folds if f["fold"] == fold]
        assert reported["parameters"] == expected
        decoded[outer] = decode_outcomes(probabilities[outer], **expected)
        own = tune_decoder(decoder, probabilities[outer], outcomes[outer])
        differs_from_own_fold += own != expected
        scores = outcome_scores(outcomes[outer], decoded[outer])
        assert reported["score"] == pytest.approx(scores["score"], nan_ok=True)
    assert differs_from_own_fold >= 2  # the data tell the two apart, so the check above has teeth
    np.testing.assert_array_equal(nested.outcomes, decoded)
    assert nested.pooled["score"] == pytest.approx(outcome_scores(outcomes, decoded)["score"])


def test_the_chosen_decoder_has_the_better_nested_score_and_is_tuned_on_all_clips(clips):
    probabilities, outcomes, folds = clips
    choice = choose_decoder(lambda fold: probabilities, probabilities, outcomes, folds)
    pooled = {name: nested_decoding(name, lambda fold: probabilities, outcomes, folds).pooled["score"]
              for name in DECODER_CHOICES}
    assert choice["chosen"] == max(DECODER_CHOICES, key=lambda name: (pooled[name], name == "thresholds"))
    assert choice["parameters"] == tune_decoder(choice["chosen"], probabilities, outcomes)
    for name in DECODER_CHOICES:
        assert choice["nested"][name]["pooled"]["score"] == pytest.approx(pooled[name])


def _expected_score_outcomes_as_before(emotion_probs, temperature, blend_fraction):
    """The expected-score decoder as it was written before the temperature-free part was computed once: the Gibbs
    posterior over outcomes, then the outcome with the best expected score (the reference for the tests below)."""
    probs = np.clip(np.asarray(emotion_probs, dtype=np.float64), 1e-12, None)
    probs = probs / probs.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        target_entropy = -np.nansum(np.where(OUTCOME_TARGETS > 0, OUTCOME_TARGETS * np.log(OUTCOME_TARGETS), 0), -1)
    negative_kl = np.log(probs) @ OUTCOME_TARGETS.T + target_entropy
    scores = negative_kl / temperature + np.log(np.clip(BLEMORE_OUTCOME_PRIOR, 1e-300, None))
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    outcome_probs = shifted / shifted.sum(axis=1, keepdims=True)
    membership = OUTCOME_PRESENCE[:, None] == np.arange(len(PRESENCE_NAMES))[None, :]
    presence = outcome_probs @ membership
    expected = presence[:, OUTCOME_PRESENCE] + outcome_probs * OUTCOME_IS_BLEND / blend_fraction
    return np.argmax(expected, axis=1)


def _probabilities_with_ties(rng, n):
    """Random emotion probabilities, a third of them rounded to tenths (equal emotions, equal outcome scores), with
    uniform, one-hot, two-way tied and zero-holding rows."""
    probs = rng.dirichlet(np.full(6, 0.5), n)
    coarse = rng.random(n) < 1 / 3
    probs[coarse] = np.round(probs[coarse], 1) + 1e-3
    probs[0] = 1 / 6
    probs[1] = np.eye(6)[2]
    probs[2] = [0.4, 0.4, 0.1, 0.05, 0.05, 0.0]
    probs[3] = [0.0, 0.35, 0.0, 0.35, 0.3, 0.0]
    probs[4] = [0.25, 0.25, 0.25, 0.25, 0.0, 0.0]
    return probs / probs.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("chunk", [50, 131_072])
def test_all_temperatures_at_once_decode_as_one_temperature_at_a_time(monkeypatch, chunk):
    """Decoding every temperature from one computation of the log-likelihoods gives the very outcomes of the
    decoder applied one temperature at a time (random and tied inputs, in blocks or whole), and tuning picks the
    same temperature as scoring the temperatures one by one."""
    monkeypatch.setattr(decoder_choice, "DECODE_CHUNK", chunk)
    rng = np.random.default_rng(11)
    probs = _probabilities_with_ties(rng, 700)
    assert len(np.unique(np.round(probs, 9), axis=0)) < len(probs)  # tied rows are really there
    truth = rng.integers(0, 36, len(probs))
    for blend_fraction in (0.2, BLEMORE_BLEND_FRACTION, 1.0):
        together = expected_score_outcomes_by_temperature(probs, TEMPERATURE_GRID, blend_fraction)
        for temperature, decoded in zip(TEMPERATURE_GRID, together):
            before = _expected_score_outcomes_as_before(probs, temperature, blend_fraction)
            assert np.abs(decoded.astype(np.int64) - before).max() == 0
            one = decode_outcomes(probs, "expected_score", outcome_temperature=temperature,
                                  blend_fraction=blend_fraction)
            np.testing.assert_array_equal(one, before)
    blend_fraction = float(np.clip(OUTCOME_IS_BLEND[truth].mean(), 1e-3, 1.0))
    scores = [outcome_scores(truth, _expected_score_outcomes_as_before(probs, t, blend_fraction))["score"]
              for t in TEMPERATURE_GRID]
    best = None
    for temperature, score in zip(TEMPERATURE_GRID, scores):
        if best is None or score > best[0] + 1e-12:
            best = (score, temperature)
    assert len(set(scores)) > 1
    assert tune_decoder("expected_score", probs, truth)["outcome_temperature"] == best[1]


def test_outcome_distribution_and_expected_scores_equal_the_formulas_as_before():
    """The posterior (log-likelihoods once, softmax in place) and the expected scores (gathered presence sums plus
    the blends' bonus) are the very numbers of the formulas as first written, not merely close."""
    rng = np.random.default_rng(5)
    probs = _probabilities_with_ties(rng, 500)
    with np.errstate(divide="ignore", invalid="ignore"):
        target_entropy = -np.nansum(np.where(OUTCOME_TARGETS > 0, OUTCOME_TARGETS * np.log(OUTCOME_TARGETS), 0), -1)
    clipped = np.clip(probs, 1e-12, None)
    clipped = clipped / clipped.sum(axis=-1, keepdims=True)
    for temperature in (0.05, 0.35, 2.0):
        scores = (np.log(clipped) @ OUTCOME_TARGETS.T + target_entropy) / temperature + np.log(BLEMORE_OUTCOME_PRIOR)
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        before = shifted / shifted.sum(axis=1, keepdims=True)
        now = outcome_probabilities(probs, temperature)
        assert np.abs(now - before).max() == 0
        assert np.abs(softmax(scores) - before).max() == 0
        membership = OUTCOME_PRESENCE[:, None] == np.arange(len(PRESENCE_NAMES))[None, :]
        for blend_fraction in (0.3, BLEMORE_BLEND_FRACTION):
            expected = (before @ membership)[:, OUTCOME_PRESENCE] + before * OUTCOME_IS_BLEND / blend_fraction
            assert np.abs(expected_scores(now, blend_fraction) - expected).max() == 0


@pytest.mark.parametrize("chunk", [64, 131_072])
def test_nested_decoding_of_a_fixed_array_equals_the_fold_by_fold_nested_decoding(monkeypatch, chunk):
    """One outcome distribution per clip and temperature shared by all folds gives the very folds, parameters,
    outcomes and figures of tuning and decoding fold by fold (random and tied probabilities, blocks or whole)."""
    monkeypatch.setattr(decoder_choice, "DECODE_CHUNK", chunk)
    rng = np.random.default_rng(23)
    n = 900
    probs = _probabilities_with_ties(rng, n)
    outcomes = rng.integers(0, 36, n)
    sure = rng.random(n) < 0.4
    probs[sure] = 0.7 * OUTCOME_TARGETS[outcomes[sure]] + 0.3 * probs[sure]
    folds = rng.integers(0, FOLDS, n)
    for decoder in DECODER_CHOICES:
        fixed = decoder_choice.nested_decoding_fixed(decoder, probs, outcomes, folds)
        by_fold = nested_decoding(decoder, lambda fold: probs, outcomes, folds)
        assert fixed.as_dict() == by_fold.as_dict()
        assert np.abs(fixed.outcomes - by_fold.outcomes).max() == 0
    temperatures = {fold["parameters"]["outcome_temperature"] for fold in fixed.folds}
    fractions = {fold["parameters"]["blend_fraction"] for fold in fixed.folds}
    assert len(fractions) == FOLDS and len(temperatures) >= 1

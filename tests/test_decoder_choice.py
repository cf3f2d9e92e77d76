"""``evaluation.decoder_choice``: each fold is decoded with parameters tuned on the other folds only.

The parameters are recomputed here from the data (``tune_decoder`` on the four other folds), not read back from the
report, so a nested figure tuned on its own fold cannot pass."""

import numpy as np
import pytest

from blemore_toolkit.evaluation.decoder_choice import DECODER_CHOICES, choose_decoder, nested_decoding, tune_decoder
from blemore_toolkit.evaluation.tuning import outcome_scores
from blemore_toolkit.modeling.decoding_blemore import OUTCOME_TARGETS, decode_outcomes

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

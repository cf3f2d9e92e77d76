"""The `metrics/blemore` evaluate module: loads offline from the repo root, runs its documented examples, and agrees
with the challenge arithmetic the command line uses."""

import doctest
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import blemore
from metrics.blemore import challenge

REPO = Path(__file__).resolve().parents[1]
CARD = REPO / "metrics" / "blemore" / "README.md"


@pytest.fixture(scope="module")
def metric():
    import evaluate

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)
        return evaluate.load("metrics/blemore")


def run_examples(text, name, globs=None):
    """Run the ``>>>`` examples of a text as a doctest from the repo root; (failed, attempted)."""
    test = doctest.DocTestParser().get_doctest(text, dict(globs or {}), name, name, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)
        runner.run(test)
    return runner.summarize(verbose=False)


def test_kwargs_description_examples_run(metric):
    module = sys.modules[type(metric).__module__]
    failed, attempted = run_examples(module._KWARGS_DESCRIPTION, "metrics/blemore/blemore.py")
    assert attempted >= 10 and failed == 0


def test_metric_card_examples_run():
    card = CARD.read_text()
    examples = "\n".join(re.findall(r"```python\n(>>>.*?)```", card, flags=re.S))
    failed, attempted = run_examples(examples, str(CARD))
    assert attempted >= 5 and failed == 0


def test_metric_card_has_the_evaluate_sections():
    card = CARD.read_text()
    for heading in ("## Metric Description", "## How to Use", "### Inputs", "### Output Values",
                    "#### Values from Popular Papers", "### Examples", "## Limitations and Bias", "## Citation"):
        assert heading in card
    assert "2601.13225" in card


def test_output_is_flat_and_named(metric):
    result = metric.compute(predictions=[[{"emotion": "hap", "salience": 100}]],
                            references=[[{"emotion": "hap", "salience": 100}]])
    assert set(result) == {"acc_presence", "acc_salience", "score", "n_clips", "n_blends", "n_presence_correct",
                           "n_salience_correct"}
    assert result["acc_presence"] == 1.0 and math.isnan(result["acc_salience"])  # no blend: undefined


def test_float32_storage_does_not_change_a_result(metric):
    references = [[{"emotion": "ang", "salience": 70}, {"emotion": "hap", "salience": 30}],
                  [{"emotion": "disg", "salience": 50}, {"emotion": "sad", "salience": 50}]]
    # a model's float32 probabilities in percent: 69.9999988079071, 30.000001192092896, ...
    probabilities = np.array([[0.7, 0.3], [0.5, 0.5]], dtype=np.float32)
    predictions = [[{"emotion": e, "salience": float(p) * 100} for e, p in zip(pair, row)]
                   for pair, row in zip([("ang", "hap"), ("disg", "sad")], probabilities)]
    assert predictions[0][0]["salience"] != 70
    result = metric.compute(predictions=predictions, references=references)
    assert (result["acc_presence"], result["acc_salience"]) == (1.0, 1.0)


entries = st.lists(
    st.fixed_dictionaries({"emotion": st.sampled_from(blemore.EMOTIONS),
                           "salience": st.sampled_from([0.0, 30.0, 50.0, 70.0, 100.0, 69.6, 0.7])}),
    min_size=0, max_size=3,
)
truths = st.sampled_from(blemore.OUTCOMES).map(lambda outcome: outcome.as_prediction())


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(truths, entries), min_size=1, max_size=20))
def test_module_and_command_line_share_the_arithmetic(metric, clips):
    references, predictions = map(list, zip(*clips))
    from_module = metric.compute(predictions=predictions, references=references)
    from_challenge = challenge.challenge_scores(references, predictions)
    assert from_module.keys() == from_challenge.keys()
    for name, value in from_challenge.items():
        assert from_module[name] == value or (math.isnan(value) and math.isnan(from_module[name]))

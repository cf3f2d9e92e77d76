"""The `metrics/blemore` evaluate module: loads offline from the repo root, runs its documented examples, and agrees
with the challenge arithmetic the command line uses."""

import doctest
import importlib.metadata as importlib_metadata
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import blemore
from blemore_toolkit.metrics.blemore import challenge

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


def test_the_doctests_pass_under_evaluates_own_harness(tmp_path, monkeypatch):
    """What evaluate's ``tests/test_metric_common.py`` does to every metric of its repository, done to ours: from a
    folder holding ``metrics/blemore/``, load the module by its folder path, check that ``_compute`` takes no
    ``**kwargs``, and run the module's doctests with ``evaluate.load(NAME)`` patched to load ``metrics/NAME``."""
    import importlib
    import inspect
    from unittest.mock import patch

    import evaluate

    root = tmp_path / "checkout"
    shutil.copytree(REPO / "metrics" / "blemore", root / "metrics" / "blemore",
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(root)
    monkeypatch.setattr(doctest, "ELLIPSIS_MARKER", "[...]")
    factory = evaluate.loading.evaluation_module_factory(os.path.join("metrics", "blemore"), module_type="metric")
    module = importlib.import_module(factory.module_path)
    main_class = evaluate.loading.import_main_class(module.__name__)
    parameters = inspect.signature(main_class._compute).parameters
    assert all(parameter.kind != parameter.VAR_KEYWORD for parameter in parameters.values())
    real_load = evaluate.load

    def load_local(name, *args, **kwargs):
        return real_load(os.path.join("metrics", name), *args, **kwargs)

    with patch("evaluate.load") as mock_load:
        mock_load.side_effect = load_local
        try:
            results = doctest.testmod(module, verbose=False, raise_on_error=True)
        except doctest.UnexpectedException as error:
            raise error.exc_info[1] from None
    assert results.failed == 0 and results.attempted >= 10


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
    from_module = metric.compute(predictions=predictions, references=references, strict=False)
    from_challenge = challenge.challenge_scores(references, predictions)
    assert from_module.keys() == from_challenge.keys()
    for name, value in from_challenge.items():
        assert from_module[name] == value or (math.isnan(value) and math.isnan(from_module[name]))


BLEND = [{"emotion": "ang", "salience": 70}, {"emotion": "hap", "salience": 30}]


@pytest.mark.parametrize(("bad", "problem"), [
    ([{"emotion": "joy", "salience": 100}], "unknown emotion code 'joy'"),
    ([{"emotion": "anger", "salience": 100}], "unknown emotion code 'anger'"),
    ([{"emotion": "ang", "salience": 0.7}, {"emotion": "hap", "salience": 0.3}], "fractional saliences"),
    ([{"emotion": "ang"}], "lacks the key 'salience'"),
    ([{"emotion": "ang", "salience": 70}, {"emotion": "hap", "salience": 20}], "sum to 90, not 100"),
    ([{"emotion": "ang", "salience": 50}, {"emotion": "ang", "salience": 50}], "given twice"),
    ([{"emotion": "ang", "salience": 100, "score": 1}], "unknown key 'score'"),
])
def test_strict_input_checks_name_the_clip_and_the_problem(metric, bad, problem):
    predictions = [BLEND, bad]
    with pytest.raises(ValueError, match=rf"^predictions\[1\]: .*{re.escape(problem)}"):
        metric.compute(predictions=predictions, references=[BLEND, BLEND])


@pytest.mark.parametrize(("entry", "problem"), [
    ({"emotion": "ang"}, "lacks the key 'salience'"),
    ({"salience": 100}, "lacks the key 'emotion'"),
    ({"emotion": "ang", "salience": 100, "score": 1}, "unknown key 'score'"),
])
def test_add_refuses_a_missing_or_extra_key_with_a_value_error(metric, entry, problem):
    with pytest.raises(ValueError, match=rf"^prediction: .*{re.escape(problem)}"):
        metric.add(prediction=[entry], reference=[{"emotion": "ang", "salience": 100}])
    with pytest.raises(ValueError, match=rf"^reference: .*{re.escape(problem)}"):
        metric.add(prediction=[{"emotion": "ang", "salience": 100}], reference=[entry])
    metric.add(prediction=BLEND, reference=BLEND)  # what was refused left nothing behind
    assert metric.compute()["n_clips"] == 1


def test_requirements_name_versions_that_load_the_module():
    """The module builds its features with ``datasets.List`` (datasets 4.0 and later): an older datasets, which the
    requirements once allowed, fails to load it."""
    import datasets
    from packaging.requirements import Requirement
    from packaging.version import Version

    text = (REPO / "metrics" / "blemore" / "requirements.txt").read_text()
    requirements = {r.name: r for r in map(Requirement, filter(None, (line.split("#")[0].strip()
                                                                       for line in text.splitlines())))}
    assert "datasets.List(" in (REPO / "metrics" / "blemore" / "blemore.py").read_text()
    assert not requirements["datasets"].specifier.contains("3.6.0")
    assert hasattr(datasets, "List")
    for name, requirement in requirements.items():
        installed = Version(importlib_metadata.version(name))
        assert requirement.specifier.contains(installed), (name, str(installed))


def test_references_are_checked_too(metric):
    with pytest.raises(ValueError, match=r"^references\[0\]: unknown emotion code 'happy'"):
        metric.compute(predictions=[BLEND], references=[[{"emotion": "happy", "salience": 100}]])


def test_lenient_scoring_keeps_the_challenges_rules(metric):
    predictions = [[{"emotion": "joy", "salience": 100}], [{"emotion": "ang", "salience": 0.7},
                                                           {"emotion": "hap", "salience": 0.3}]]
    references = [[{"emotion": "hap", "salience": 100}], BLEND]
    result = metric.compute(predictions=predictions, references=references, strict=False)
    assert result == challenge.challenge_scores(references, predictions)
    assert (result["n_presence_correct"], result["n_salience_correct"]) == (1, 0)


def test_the_metric_cites_the_dataset_paper(metric):
    assert metric.citation.strip() == blemore._CITATION.strip()
    assert blemore._CITATION.strip() in CARD.read_text()


# Refuses the toolkit's packages in the child process, whatever the installed .pth files put on sys.path.
_LOAD_WITHOUT_TOOLKIT = """
import importlib.abc, json, sys
class NoToolkit(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("blemore", "blemore_toolkit", "metrics", "modeling"):
            raise ModuleNotFoundError(f"{name} is blocked in this test")
sys.meta_path.insert(0, NoToolkit())
import evaluate
for source in sys.argv[1:]:
    metric = evaluate.load(source)
    references = [[{"emotion": "ang", "salience": 70}, {"emotion": "hap", "salience": 30}]]
    try:
        metric.compute(predictions=[[{"emotion": "joy", "salience": 100}]], references=references)
        refused = None
    except ValueError as error:
        refused = str(error)
    result = metric.compute(predictions=[[{"emotion": "hap", "salience": 30.0}, {"emotion": "ang", "salience": 70}]],
                            references=references)
    print(json.dumps({"score": result["score"], "refused": refused}))
try:
    import blemore_toolkit
    print("toolkit importable")
except ModuleNotFoundError:
    pass
"""


def test_a_copy_of_the_folder_loads_where_the_toolkit_cannot_be_imported(tmp_path):
    folder = tmp_path / "space" / "blemore"
    shutil.copytree(REPO / "metrics" / "blemore", folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("requirements.txt", "app.py", "README.md", "challenge.py", "blemore.py"):
        assert (folder / name).is_file(), name
    assert "evaluate" in (folder / "requirements.txt").read_text()
    # app.py loads the module by the path of blemore.py beside it (what a Space under any name needs)
    assert 'with_name("blemore.py")' in (folder / "app.py").read_text()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    run = subprocess.run([sys.executable, "-c", _LOAD_WITHOUT_TOOLKIT, "blemore", str(folder / "blemore.py")],
                         cwd=folder.parent, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert "toolkit importable" not in run.stdout
    assert len(lines) == 2
    for line in lines:
        assert line["score"] == 1.0
        assert line["refused"].startswith("predictions[0]: unknown emotion code 'joy'")

"""The notebooks run top to bottom on small synthetic data, say something true, and are committed without outputs.

Each notebook is executed with nbclient in a kernel of this very interpreter, in a temporary working folder, after
a cell that overrides its ``parameters`` cell (fewer clips, shorter clips, a few training steps) the way papermill
injects parameters. The checks then read what the notebook printed and wrote, and recompute it independently.
"""

import json
import math
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import blemore
from blemore_toolkit.data.references import load_references
from blemore_toolkit.data.synth import answer_key_path
from blemore_toolkit.evaluation.tuning import outcome_scores

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
KERNEL_NAME = "blemore-tests"
SCORE_KEYS = ("acc_presence", "acc_salience", "score")


def _kernel_spec(folder: Path) -> Path:
    """A kernel spec that starts this interpreter, so the notebooks import the same installed toolkit."""
    spec = folder / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL_NAME, "language": "python"}))
    return folder


def _parameters_index(notebook) -> int:
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def execute(name: str, workdir: Path, kernels: Path, env: dict | None = None, **parameters):
    """Run a notebook in ``workdir`` with ``parameters`` overriding its parameters cell; returns the run notebook.

    ``env`` is set last in the kernel's environment (e.g. a local Hub's endpoint and caches)."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    index = _parameters_index(notebook)
    declared = notebook.cells[index].source
    for key in parameters:
        assert re.search(rf"^{key} = ", declared, re.M), f"{name}: no parameter {key} to override"
    injected = nbformat.v4.new_code_cell("\n".join(f"{key} = {value!r}" for key, value in parameters.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(index + 1, injected)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(kernels))
        patch.setenv("HF_HUB_OFFLINE", "1")  # nothing may be downloaded
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        # A cache of its own: datasets keys a local folder's cache by the folder's name, and the notebook's
        # `blemore` folder must not replace (or be replaced by) the cache of the session's prepared `blemore`.
        for variable, folder in (("HF_HOME", ""), ("HF_DATASETS_CACHE", "datasets"), ("HF_MODULES_CACHE", "modules")):
            patch.setenv(variable, str(workdir / "hf-cache" / folder))
        for variable, value in (env or {}).items():
            patch.setenv(variable, value)
        client = NotebookClient(notebook, timeout=600, kernel_name=KERNEL_NAME,
                                resources={"metadata": {"path": str(workdir)}})
        client.execute()
    return notebook


def printed_json(notebook, key: str) -> list[dict]:
    """The JSON objects the notebook printed on their own line that have ``key``."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type != "stream" or output.name != "stdout":
                continue
            for line in output.text.splitlines():
                if line.startswith("{") and f'"{key}"' in line:
                    found.append(json.loads(line))
    return found


def images(notebook) -> int:
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))


def assert_accuracies(scores: dict) -> None:
    for key in SCORE_KEYS:
        assert isinstance(scores[key], float) and not math.isnan(scores[key]) and 0.0 <= scores[key] <= 1.0, scores


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    return _kernel_spec(tmp_path_factory.mktemp("jupyter"))


@pytest.fixture(scope="module")
def quickstart(kernels, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("quickstart")
    notebook = execute("01_quickstart.ipynb", workdir, kernels, WORK_DIR="work", WIDTH=64, HEIGHT=48,
                       CLIP_SECONDS=(1.0, 2.0), ACTORS_PER_FOLD=1, TEST_ACTORS=1)
    return notebook, workdir / "work"


@pytest.fixture(scope="module")
def finetune(kernels, tmp_path_factory, synthetic_raw, prepared_dataset):
    workdir = tmp_path_factory.mktemp("finetune")
    notebook = execute("02_finetune.ipynb", workdir, kernels, WORK_DIR="work", RAW_DIR=str(synthetic_raw),
                       DATASET_DIR=str(prepared_dataset), MAX_STEPS=3)
    return notebook, workdir / "work", synthetic_raw


@pytest.fixture(scope="module")
def own_trainer(kernels, tmp_path_factory, prepared_dataset):
    from local_hub import TOKEN, run_local_hub

    workdir = tmp_path_factory.mktemp("own_trainer")
    with run_local_hub(workdir) as hub:
        environment = hub.environment(workdir / "hf-hub", token=TOKEN)
        notebook = execute("03_your_own_trainer.ipynb", workdir, kernels, env=environment, WORK_DIR="work",
                           DATASET_DIR=str(prepared_dataset), METRIC=str(REPO / "metrics" / "blemore"), MAX_STEPS=4,
                           HUB_REPO="me/blemore-own")
        repo = hub.repo("me/blemore-own")
        _, files = repo.files("main")
        card = repo.read(files["README.md"]["sha256"]).decode()
    return notebook, workdir / "work", card


def test_quickstart_runs_and_scores_the_most_frequent_blend(quickstart):
    notebook, work = quickstart
    assert (work / "blemore" / "README.md").is_file() and answer_key_path(work / "raw").is_file()
    assert images(notebook) >= 3  # frame grid, waveform + spectrogram, label statistics

    (printed,) = printed_json(notebook, "acc_presence")
    assert_accuracies(printed)
    # Recompute the baseline from the files: the most frequent training blend, predicted for every test clip.
    train = load_references(work / "raw" / "train_metadata.csv").values()
    counts = {}
    for clip in train:
        if clip.is_blend:
            counts[(clip.emotions, clip.salience)] = counts.get((clip.emotions, clip.salience), 0) + 1
    order = [(o.emotions, o.salience) for o in blemore.OUTCOMES]
    best = min(counts, key=lambda label: (-counts[label], order.index(label)))
    truth = load_references(answer_key_path(work / "raw"))
    expected = outcome_scores([blemore.outcome_index(c.emotions, c.salience) for c in truth.values()],
                              [blemore.outcome_index(*best)] * len(truth))
    assert printed["n_clips"] == len(truth)
    for key in SCORE_KEYS:
        assert printed[key] == pytest.approx(expected[key])


def test_finetune_trains_predicts_and_scores(finetune):
    notebook, work, raw = finetune
    assert images(notebook) >= 2  # the 36-outcome confusion and the presence/salience confusions
    assert (work / "train" / "fold0" / "model" / "config.json").is_file()

    printed = printed_json(notebook, "acc_presence")
    (validation,) = [found for found in printed if "n_clips" not in found]
    (scores,) = [found for found in printed if "n_clips" in found]
    assert_accuracies(validation)
    assert_accuracies(scores)

    truth = load_references(answer_key_path(raw))
    submitted = json.loads((work / "predict" / "predictions.json").read_text())["predictions"]
    assert sorted(submitted) == sorted(f"{clip}.mov" for clip in truth)
    assert scores["n_clips"] == len(truth)
    predicted = [blemore.outcome_index([e["emotion"] for e in submitted[f"{clip}.mov"]],
                                       [e["salience"] for e in submitted[f"{clip}.mov"]]) for clip in truth]
    expected = outcome_scores([blemore.outcome_index(c.emotions, c.salience) for c in truth.values()], predicted)
    for key in SCORE_KEYS:
        assert scores[key] == pytest.approx(expected[key])


def test_own_trainer_script_trains_scores_predicts_and_pushes(own_trainer, prepared_dataset):
    from datasets import load_dataset

    from blemore_toolkit.metrics.blemore.challenge import challenge_scores
    from blemore_toolkit.modeling.decoding_blemore import outcomes_to_predictions

    notebook, work, card = own_trainer
    source = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert "blemore.main" not in source and "!blemore" not in source and "subprocess" not in source  # no CLI
    (evaluation,) = [found for found in printed_json(notebook, "acc_presence") if "metric" not in found]
    (scored,) = printed_json(notebook, "metric")
    assert_accuracies(evaluation)
    assert_accuracies(scored)

    # The metric's numbers, recomputed from the predictions the notebook wrote and the dataset's own labels.
    validation = load_dataset(str(prepared_dataset), "fold0", split="validation")
    predicted = json.loads((work / "own_trainer" / "validation_predictions.json").read_text())
    assert list(predicted) == validation["clip_id"]
    expected = challenge_scores(outcomes_to_predictions(validation["outcome"]), list(predicted.values()))
    for key in SCORE_KEYS:
        assert scored[key] == pytest.approx(expected[key], nan_ok=True)
    assert scored["n_clips"] == len(validation)

    # The pipeline on the saved folder, and on the pushed repo, predicts what the Trainer predicted.
    (labels,) = printed_json(notebook, "labels")
    scores = [entry["score"] for entry in labels["labels"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
    piped = printed_json(notebook, "pipeline")
    assert len(piped) == 4
    for result in piped:
        assert result["emotions"] == predicted[result["pipeline"]]
    (from_hub,) = printed_json(notebook, "hub")
    assert from_hub["pipeline_tag"] == "video-classification"
    assert from_hub["emotions"] == predicted[from_hub["clip_id"]]
    assert "pipeline_tag: video-classification" in card and "# me/blemore-own" in card
    assert "trust_remote_code=True" in card and "🤗 transformers model that has been pushed" not in card
    # trainer.push_to_hub() of the BlemoreTrainer: the BLEMORE card with the run's evaluation and training
    assert "generated automatically according to the information the Trainer" not in card
    assert "| fold0 validation | " + " | ".join(f"{evaluation[key]:.3f}" for key in SCORE_KEYS) + " |" in card
    assert "Trained with the transformers Trainer (`BlemoreTrainer`) on `fold0 train`" in card
    assert "thresholds α/β are those the last evaluation on `fold0 validation` tuned" in card


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda path: path.name)
def test_committed_notebooks_have_no_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    _parameters_index(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs before commit"


def test_the_notebooks_are_there():
    assert {path.name for path in NOTEBOOKS.glob("*.ipynb")} >= {"01_quickstart.ipynb", "02_finetune.ipynb",
                                                                  "03_your_own_trainer.ipynb"}

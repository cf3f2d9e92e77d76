"""Training, prediction and the model's way to the Hub, on the synthetic dataset with the tiny random model.

The runs are cut to a few optimiser steps: these tests check the wiring (folds, saving, thresholds, resume, the
submission, several processes, pushing), not accuracy; ``test_demo.py`` checks that the wiring learns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from local_hub import run_client

import blemore
from blemore_toolkit.data.loading import load_split
from blemore_toolkit.evaluation.probabilities import read_probabilities
from blemore_toolkit.evaluation.tuning import TOOLKIT_GRID, outcome_scores, tune_thresholds
from blemore_toolkit.training.predict import load_model, predict_split
from blemore_toolkit.training.train import TrainSettings, run_training

REPO_ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning",
                                      "ignore:Use 'content=<...>':DeprecationWarning")


def quick_settings(output_dir, **overrides) -> TrainSettings:
    settings = dict(output_dir=str(output_dir), epochs=2, batch_size=16, num_workers=0, progress=False,
                    logging_steps=1)
    return TrainSettings(**{**settings, **overrides})


@pytest.fixture(scope="module")
def fold_run(prepared_dataset, tmp_path_factory):
    """One fold trained for two epochs: the run other tests look at."""
    output = tmp_path_factory.mktemp("train") / "run"
    summary = run_training(str(prepared_dataset), "1", quick_settings(output))
    return output, summary


def test_a_fold_run_saves_a_model_that_predicts_as_it_was_validated(fold_run, prepared_dataset):
    output, summary = fold_run
    results = json.loads((output / "fold1" / "results.json").read_text())
    metrics = results["metrics"]
    model_dir = Path(summary["model_dir"])
    assert model_dir == output / "fold1" / "model"
    config = json.loads((model_dir / "config.json").read_text())
    # The thresholds tuned on validation are the ones the saved model decodes with.
    assert config["presence_threshold"] == metrics["presence_threshold"]
    assert config["salience_threshold"] == metrics["salience_threshold"]
    assert {"modeling_blemore.py", "processing_blemore.py", "processor_config.json", "model.safetensors"} <= {
        path.name for path in model_dir.iterdir()
    }
    # Reloaded from disk, the model reproduces the validation predictions and scores of the best epoch exactly
    # (this fails when a checkpoint's renamed weights are not restored).
    model, processor = load_model(str(model_dir))
    validation = load_split(str(prepared_dataset), "fold1", "validation")
    predicted = predict_split(model, processor, validation, num_workers=0, progress=False)
    clip_ids, probabilities, truth = read_probabilities(output / "fold1" / "validation_probabilities.csv")
    assert predicted["clip_ids"] == clip_ids
    np.testing.assert_allclose(predicted["probabilities"], probabilities, atol=2e-6)
    scores = outcome_scores(truth, predicted["outcomes"])
    assert scores["score"] == pytest.approx(metrics["score"])
    assert set(validation["actor_id"]).isdisjoint(load_split(str(prepared_dataset), "fold1", "train")["actor_id"])


def test_fold_all_prints_the_table_and_fits_a_final_model(prepared_dataset, tmp_path, capsys):
    summary = run_training(str(prepared_dataset), "all", quick_settings(tmp_path, epochs=1))
    table = summary["validation"]
    assert list(table["folds"]) == [f"fold{k}" for k in range(5)]
    scores = [row["score"] for row in table["folds"].values()]
    assert table["summary"]["score"]["mean"] == pytest.approx(np.mean(scores))
    assert table["summary"]["score"]["std"] == pytest.approx(np.std(scores, ddof=1))
    printed = capsys.readouterr().out
    assert "mean±std" in printed and "pooled out-of-fold" in printed and "actor bootstrap" in printed
    pooled = table["pooled"]
    assert pooled["n_clips"] == sum(len(load_split(str(prepared_dataset), f"fold{k}", "validation")) for k in range(5))
    assert pooled["presence_threshold"] == summary["final"]["presence_threshold"]
    assert pooled["ci"]["score"][0] <= pooled["score"] <= pooled["ci"]["score"][1]
    assert json.loads((tmp_path / "results.json").read_text())["validation"]["pooled"]["ci"] == pooled["ci"]
    final = json.loads((tmp_path / "final" / "model" / "config.json").read_text())
    assert final["presence_threshold"] == summary["final"]["presence_threshold"]
    assert summary["model_dir"] == str(tmp_path / "final" / "model")
    assert json.loads((tmp_path / "results.json").read_text())["final"] == summary["final"]
    # No fold trains on its own clips: each fold's training clips are exactly the other folds' clips.
    train_clips = load_split(str(prepared_dataset), "default", "train")
    fold_of = dict(zip(train_clips["clip_id"], train_clips["fold"]))
    probabilities, truth = [], []
    for k in range(5):
        trained = json.loads((tmp_path / f"fold{k}" / "results.json").read_text())["training_clips"]
        assert sorted(trained) == sorted(c for c, f in fold_of.items() if f != k)
        clip_ids, fold_probabilities, fold_truth = read_probabilities(tmp_path / f"fold{k}" /
                                                                      "validation_probabilities.csv")
        assert {fold_of[c] for c in clip_ids} == {k}
        probabilities.append(fold_probabilities)
        truth.append(fold_truth)
    # The final model's α/β: the toolkit's search on the saved out-of-fold probabilities, recomputed here.
    search = tune_thresholds(np.concatenate(probabilities), np.concatenate(truth), grid=TOOLKIT_GRID)
    assert (final["presence_threshold"], final["salience_threshold"]) == (search.presence_threshold,
                                                                         search.salience_threshold)


def test_the_paper_protocols_final_fit_takes_the_best_folds_alpha_beta(tmp_path):
    from blemore_toolkit.training.train import RunResult, final_fit_thresholds

    rng = np.random.default_rng(0)
    results = []
    for k, score in enumerate([0.2, 0.31, 0.25, 0.31, 0.1]):  # folds 1 and 3 tie: the first one wins
        metrics = {"score": score, "presence_threshold": 0.05 * (k + 1), "salience_threshold": 0.9 - 0.1 * k}
        results.append(RunResult(f"fold{k}", tmp_path, metrics, [f"c{k}"] * 4, rng.dirichlet(np.ones(6), 4),
                                 rng.integers(36, size=4)))
    paper = final_fit_thresholds(results, quick_settings(tmp_path, protocol="paper"))
    assert (paper["presence_threshold"], paper["salience_threshold"]) == (0.1, 0.8)
    toolkit = final_fit_thresholds(results, quick_settings(tmp_path))
    pooled = tune_thresholds(np.concatenate([r.probabilities for r in results]),
                             np.concatenate([r.truth for r in results]), grid=TOOLKIT_GRID)
    assert (toolkit["presence_threshold"], toolkit["salience_threshold"]) == (pooled.presence_threshold,
                                                                             pooled.salience_threshold)


def test_resume_continues_from_the_last_checkpoint(prepared_dataset, tmp_path):
    settings = quick_settings(tmp_path, epochs=1)
    run_training(str(prepared_dataset), "2", settings)
    # Pretend the run was stopped after its first epoch: no result, only the checkpoint.
    (tmp_path / "fold2" / "results.json").unlink()
    resumed = quick_settings(tmp_path, epochs=2, resume=True)
    run_training(str(prepared_dataset), "2", resumed)
    checkpoints = sorted((tmp_path / "fold2" / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name[11:]))
    state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
    evaluated_epochs = [entry["epoch"] for entry in state["log_history"] if "eval_score" in entry]
    assert evaluated_epochs == [1.0, 2.0]  # epoch 1 was not trained (nor evaluated) again
    # A finished fold is not trained again.
    mtime = (tmp_path / "fold2" / "model" / "model.safetensors").stat().st_mtime
    run_training(str(prepared_dataset), "2", resumed)
    assert (tmp_path / "fold2" / "model" / "model.safetensors").stat().st_mtime == mtime


def test_predict_command_writes_a_valid_submission(fold_run, prepared_dataset, tmp_path, capsys):
    _, summary = fold_run
    out = tmp_path / "predictions"
    assert blemore.main(["predict", summary["model_dir"], str(prepared_dataset), "--split", "test",
                         "-o", str(out), "--num-workers", "0"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    test_ids = load_split(str(prepared_dataset), "default", "test")["clip_id"]
    assert printed["clips"] == len(test_ids)
    assert blemore.main(["validate", str(out / "submission.zip"), "--against", str(prepared_dataset)]) == 0
    document = json.loads((out / "predictions.json").read_text())
    assert sorted(document["predictions"]) == sorted(f"{clip}.mov" for clip in test_ids)
    clip_ids, probabilities, truth = read_probabilities(out / "probabilities.csv")
    assert truth is None and clip_ids == list(test_ids)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_predict_names_a_missing_model(prepared_dataset, tmp_path, capsys):
    assert blemore.main(["predict", str(tmp_path), str(prepared_dataset)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no config.json" in err and str(tmp_path) in err


def test_training_runs_under_torchrun_with_two_processes(prepared_dataset, tmp_path):
    # Run as the README does, from the folder that holds the prepared `blemore/`: the module must win over the folder.
    assert prepared_dataset.name == "blemore"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "blemore", "train", "blemore", "--fold", "3", "--epochs", "1", "--batch-size", "8",
               "--num-workers", "0", "-o", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=prepared_dataset.parent, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "fold3" / "results.json").read_text())
    assert 0.0 <= results["metrics"]["score"] <= 1.0
    # Both processes trained the same model on half the batches each: one save, by the main process.
    assert (tmp_path / "fold3" / "model" / "model.safetensors").is_file()
    assert result.stdout.count('"dataset"') == 1  # the summary is printed once
    assert result.stdout.count("fold3: acc_presence") == 1 and result.stdout.count("mean±std") == 1  # the table too
    assert result.stdout.count("training in 2 processes on cpu (world size 2)") == 1  # said once, at the start
    assert "find_unused_parameters" not in result.stderr  # DDP is not asked to search when every weight is used


def test_push_to_hub_with_a_card_then_load_it_elsewhere(fold_run, hub, tmp_path):
    from blemore_toolkit.training.model_card import metric_name, push_model_with_card

    output, summary = fold_run
    info = push_model_with_card(summary, "me/blemore-tiny", endpoint=hub.url, dataset_repo="me/blemore")
    card = (Path(summary["model_dir"]) / "README.md").read_text()
    assert "model-index" in card and "me/blemore" in card and f'revision="{info.oid}"' in card
    reader = """
        import json, sys
        import numpy as np
        from transformers import AutoModelForVideoClassification
        from huggingface_hub import ModelCard
        repo, revision = sys.argv[1], sys.argv[2]
        model = AutoModelForVideoClassification.from_pretrained(repo, trust_remote_code=True, revision=revision)
        card = ModelCard.load(repo)
        results = card.data.eval_results
        print(json.dumps({"class": type(model).__name__, "alpha": model.config.presence_threshold,
                          "metrics": {r.metric_name: r.metric_value for r in results}}))
    """
    loaded = json.loads(run_client(hub, tmp_path / "reader", reader, "me/blemore-tiny", info.oid).splitlines()[-1])
    metrics = json.loads((output / "fold1" / "results.json").read_text())["metrics"]
    assert loaded["class"] == "BlemoreForBlendedEmotionRecognition"
    assert loaded["alpha"] == metrics["presence_threshold"]
    assert loaded["metrics"][metric_name("score", 1)] == pytest.approx(metrics["score"], abs=1e-4)


def test_validation_metrics_are_the_challenge_scores_of_the_tuned_decoder():
    from blemore_toolkit.evaluation.tuning import tune_thresholds
    from blemore_toolkit.metrics.blemore.challenge import challenge_scores
    from blemore_toolkit.modeling import BlemoreConfig
    from blemore_toolkit.modeling.decoding_blemore import (
        OUTCOME_TARGETS,
        outcomes_to_predictions,
        softmax,
        threshold_outcomes,
    )
    from blemore_toolkit.training.train import validation_scores

    rng = np.random.default_rng(3)
    truth = rng.integers(0, 36, 300)
    logits = np.log(np.clip(OUTCOME_TARGETS[truth] + rng.normal(0, 0.1, (300, 6)), 1e-3, None))
    metrics = validation_scores(BlemoreConfig(), logits, truth)
    search = tune_thresholds(softmax(logits), truth)
    assert (metrics["presence_threshold"], metrics["salience_threshold"]) == (search.presence_threshold,
                                                                              search.salience_threshold)
    decoded = threshold_outcomes(softmax(logits), search.presence_threshold, search.salience_threshold)
    expected = challenge_scores(outcomes_to_predictions(truth), outcomes_to_predictions(decoded))
    assert metrics["score"] == expected["score"] == pytest.approx(search.score)
    assert metrics["untuned_score"] <= metrics["score"]


def test_cpu_threads_never_exceed_what_the_process_was_given():
    import torch

    from blemore_toolkit.training.batches import cpu_threads_beside_workers

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as OMP_NUM_THREADS=1 (torchrun, test workers) leaves it
    try:
        with cpu_threads_beside_workers(0) as threads:
            assert threads == torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_training_says_how_many_processes_it_runs_in(monkeypatch):
    """``accelerate launch --num_processes 2 --cpu`` starts one process without a word: the run says so itself."""
    from blemore_toolkit.training.train import _world_size_line

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert _world_size_line().startswith("training in 1 process on ")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert _world_size_line().startswith("training in 2 processes on ")


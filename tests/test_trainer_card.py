"""``BlemoreTrainer.push_to_hub()`` uploads the BLEMORE model card, with what the run knows, where a plain
``Trainer`` uploads transformers' generic card; the facts travel with the saved folder to a later
``model.push_to_hub``; a model that is not a BLEMORE model keeps transformers' card.

The runs happen in one fresh process against the local Hub stand-in (``huggingface_hub`` reads its endpoint at
import): a feature-input BLEMORE model, a few steps on random rows."""

from __future__ import annotations

import json
import re

import pytest
from local_hub import run_client, run_local_hub
from transformers import TrainingArguments

from blemore_toolkit.modeling import BlemoreConfig, BlemoreForBlendedEmotionRecognition
from blemore_toolkit.modeling.model_card_blemore import CARD_FACTS_FILE, TRAINER_CARD_MARK, render_model_card

RUNS = """
import json, sys
import torch
from huggingface_hub import ModelCard
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
from blemore_toolkit.modeling import BlemoreConfig, BlemoreForBlendedEmotionRecognition
from blemore_toolkit.training import BlemoreTrainer
from blemore_toolkit.training.train import challenge_metrics

out = sys.argv[1]
torch.manual_seed(0)
rows = [{"features": torch.randn(6), "labels": torch.tensor(i % 36)} for i in range(12)]
printed = {}
for name, trainer_class in (("with-card", BlemoreTrainer), ("plain", Trainer)):
    torch.manual_seed(0)
    model = BlemoreForBlendedEmotionRecognition(BlemoreConfig(feature_sizes={"clip": 6}))
    args = TrainingArguments(output_dir=f"{out}/{name}", hub_model_id=f"me/{name}", max_steps=3,
                             per_device_train_batch_size=4, learning_rate=1e-3, report_to=[], use_cpu=True,
                             save_strategy="no", disable_tqdm=True)
    trainer = trainer_class(model=model, args=args, train_dataset=rows, eval_dataset=rows[:8],
                            compute_metrics=challenge_metrics(model.config))
    trainer.train()
    evaluation = trainer.evaluate()
    model.config.presence_threshold = evaluation["eval_presence_threshold"]
    model.config.salience_threshold = evaluation["eval_salience_threshold"]
    if name == "with-card":
        trainer.save_model(f"{out}/saved")  # saved before the push: no dataset or tags given yet
    trainer.push_to_hub(dataset="me/blemore", tags=["my-tag"], finetuned_from="MCG-NJU/videomae-base")
    printed[name] = {"card": ModelCard.load(f"me/{name}").content,
                     "evaluation": {key: evaluation[f"eval_{key}"] for key in ("acc_presence", "acc_salience",
                                                                                "score")}}

# The pushed folder, loaded and pushed again elsewhere with model.push_to_hub.
reloaded = BlemoreForBlendedEmotionRecognition.from_pretrained(f"{out}/with-card")
reloaded.push_to_hub("me/copy")
printed["copy"] = ModelCard.load("me/copy").content
BlemoreForBlendedEmotionRecognition.from_pretrained(f"{out}/saved").push_to_hub("me/saved")
printed["saved"] = ModelCard.load("me/saved").content

# Not a BLEMORE model: transformers' card.
bert = BertForSequenceClassification(BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1,
                                                num_attention_heads=2, intermediate_size=8, num_labels=2))
words = [{"input_ids": torch.tensor([1, 2, 3, i % 16]), "labels": torch.tensor(i % 2)} for i in range(8)]
args = TrainingArguments(output_dir=f"{out}/bert", hub_model_id="me/bert", max_steps=1, per_device_train_batch_size=4,
                         report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True)
trainer = BlemoreTrainer(model=bert, args=args, train_dataset=words)
trainer.train()
trainer.push_to_hub(tags=["my-tag"])
printed["bert"] = ModelCard.load("me/bert").content
print(json.dumps(printed))
"""


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """Every run's card on the Hub, and the evaluations they were made from."""
    folder = tmp_path_factory.mktemp("trainer_card")
    with run_local_hub(folder / "hub") as hub:
        printed = json.loads(run_client(hub, folder / "client", RUNS, str(folder / "out")).splitlines()[-1])
    return printed, folder / "out"


def _card_yaml(card: str) -> dict:
    from huggingface_hub import ModelCard

    return ModelCard(card).data.to_dict()


def _row(name: str, evaluation: dict) -> str:
    return f"| {name} | " + " | ".join(f"{evaluation[key]:.3f}" for key in ("acc_presence", "acc_salience",
                                                                              "score")) + " |"


def test_push_to_hub_uploads_the_blemore_card_with_the_evaluation_and_the_training(pushed):
    printed, _ = pushed
    card, evaluation = printed["with-card"]["card"], printed["with-card"]["evaluation"]
    assert "# me/with-card" in card and TRAINER_CARD_MARK not in card and "BLEMORE (arXiv 2601.13225)" in card
    assert _row("eval_dataset", evaluation) in card and "mean ± std" not in card
    assert "The last evaluation of the Trainer run on the evaluation set;" in card
    assert ("Trained with the transformers Trainer (`BlemoreTrainer`) on the Hub dataset [me/blemore]"
            "(https://huggingface.co/datasets/me/blemore) (12 clips): 1 epoch, 3 optimizer steps, learning rate "
            "0.001 (linear schedule), batch size 4 (4 per device × 1 process), seed 42. Evaluated on `eval_dataset` "
            "(8 clips) with the challenge metrics. The decoder's thresholds α/β are those the last evaluation on "
            "`eval_dataset` tuned.") in card
    data = _card_yaml(card)
    assert data["datasets"] == ["me/blemore"] and data["base_model"] == "MCG-NJU/videomae-base"
    assert data["tags"] == ["blemore", "emotion-recognition", "audio-visual", "my-tag"]
    (result,) = data["model-index"][0]["results"]
    assert result["dataset"] == {"name": "BLEMORE", "type": "me/blemore", "split": "eval_dataset"}
    assert {metric["name"]: metric["value"] for metric in result["metrics"]} == {
        "ACC_presence (eval_dataset)": round(evaluation["acc_presence"], 4),
        "ACC_salience (eval_dataset)": round(evaluation["acc_salience"], 4),
        "challenge score (eval_dataset)": round(evaluation["score"], 4)}


def test_a_plain_trainer_uploads_the_generic_card(pushed):
    printed, _ = pushed
    card = printed["plain"]["card"]
    assert TRAINER_CARD_MARK in card and "BLEMORE (arXiv 2601.13225)" not in card
    assert "Trained with the transformers Trainer (`BlemoreTrainer`)" not in card


def test_the_saved_folder_pushed_with_model_push_to_hub_gets_the_same_card(pushed):
    printed, out = pushed
    assert (out / "with-card" / CARD_FACTS_FILE).is_file()
    assert "me/with-card" in printed["with-card"]["card"]  # the title, usage and model-index name the repo
    assert printed["copy"] == printed["with-card"]["card"].replace("me/with-card", "me/copy")
    # save_model alone also keeps the run's facts (those given to push_to_hub later are not in it)
    saved = printed["saved"]
    assert _row("eval_dataset", printed["with-card"]["evaluation"]) in saved and TRAINER_CARD_MARK not in saved
    assert "Trained with the transformers Trainer (`BlemoreTrainer`) on its training set (12 clips)" in saved


def test_a_model_that_is_not_blemore_gets_the_transformers_card(pushed):
    printed, _ = pushed
    card = printed["bert"]
    assert TRAINER_CARD_MARK in card and "BLEMORE" not in card
    assert "my-tag" in _card_yaml(card)["tags"]


def test_a_later_run_replaces_the_saved_results_and_keeps_the_dataset(tmp_path):
    """Facts saved by an earlier run (its results) do not describe a model trained further; its dataset does."""
    import torch

    from blemore_toolkit.modeling.model_card_blemore import read_card_facts, write_card_facts
    from blemore_toolkit.training import BlemoreTrainer

    torch.manual_seed(0)
    model = BlemoreForBlendedEmotionRecognition(BlemoreConfig(feature_sizes={"clip": 6}))
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=2,
                             report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True)
    rows = [{"features": torch.randn(6), "labels": torch.tensor(i)} for i in range(4)]
    (tmp_path / "run").mkdir()
    old = {"folds": {"fold0": {"acc_presence": 0.9, "acc_salience": 0.9, "score": 0.9}},
           "summary": {key: {"mean": 0.9, "std": 0.0} for key in ("acc_presence", "acc_salience", "score")}}
    write_card_facts(tmp_path / "run", validation=old, training="An earlier run.", dataset_repo="me/blemore",
                     tags=["old-tag"])
    trainer = BlemoreTrainer(model=model, args=args, train_dataset=rows)
    trainer.train()
    trainer.create_model_card(tags="new-tag")
    facts = read_card_facts(tmp_path / "run")
    assert "validation" not in facts and facts["dataset_repo"] == "me/blemore"
    assert facts["tags"] == ["old-tag", "new-tag"] and facts["training"].startswith("Trained with the transformers")
    card = (tmp_path / "run" / "README.md").read_text()
    assert card == render_model_card(model.config, "run", **facts)
    assert "No validation results were recorded" in card and "No evaluation with the challenge metrics" in card


def test_each_evaluated_set_is_a_row_named_as_evaluate_saw_it(tmp_path):
    import torch

    from blemore_toolkit.training import BlemoreTrainer
    from blemore_toolkit.training.train import challenge_metrics

    torch.manual_seed(0)
    model = BlemoreForBlendedEmotionRecognition(BlemoreConfig(feature_sizes={"clip": 6}))
    rows = [{"features": torch.randn(6), "labels": torch.tensor(i % 36)} for i in range(14)]
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=2,
                             report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True)
    trainer = BlemoreTrainer(model=model, args=args, train_dataset=rows[:2],
                             eval_dataset={"actors_a": rows[2:6], "actors_b": rows[6:9]},
                             compute_metrics=challenge_metrics(model.config))
    trainer.train()
    evaluation = trainer.evaluate()
    held_out = trainer.evaluate(eval_dataset=rows[9:], metric_key_prefix="held_out")
    model.config.presence_threshold, model.config.salience_threshold = 0.999, 0.999  # not tuned by any
    trainer.create_model_card()
    card = (tmp_path / "run" / "README.md").read_text()
    sets = {"actors_a": (evaluation, "eval_actors_a_"), "actors_b": (evaluation, "eval_actors_b_"),
            "held_out": (held_out, "held_out_")}
    for name, (scores, prefix) in sets.items():
        assert f"| {name} | " + " | ".join(f"{scores[prefix + key]:.3f}"
                                           for key in ("acc_presence", "acc_salience", "score")) + " |" in card
    assert "mean ± std" not in card and "on each evaluation set;" in card
    assert "Evaluated on `actors_a` (4 clips), `actors_b` (3 clips), `held_out` (5 clips) with the challenge" in card
    assert "thresholds α/β are those" not in card

    model.config.presence_threshold = evaluation["eval_actors_b_presence_threshold"]
    model.config.salience_threshold = evaluation["eval_actors_b_salience_threshold"]
    trainer.create_model_card()
    (named,) = re.findall(r"thresholds α/β are those the last evaluation on `(\w+)` tuned",
                          (tmp_path / "run" / "README.md").read_text())
    scores, prefix = sets[named]
    assert (scores[prefix + "presence_threshold"], scores[prefix + "salience_threshold"]) == (
        model.config.presence_threshold, model.config.salience_threshold)


def test_one_fold_has_no_spread_row_and_several_do():
    config = BlemoreConfig(feature_sizes={"clip": 6})
    row = {"acc_presence": 0.5, "acc_salience": 0.25, "score": 0.375}
    summary = {key: {"mean": value, "std": 0.0} for key, value in row.items()}
    one = render_model_card(config, "me/m", validation={"folds": {"fold1": row}, "summary": summary})
    assert "| fold1 | 0.500 | 0.250 | 0.375 |" in one and "mean ± std" not in one and "Actor-disjoint folds" in one
    two = render_model_card(config, "me/m", validation={"folds": {"fold1": row, "fold2": row}, "summary": summary})
    assert "| mean ± std | 0.500 ± 0.000 | 0.250 ± 0.000 | 0.375 ± 0.000 |" in two

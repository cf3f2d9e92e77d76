"""The building blocks of a Trainer script of one's own: the collator on plain dataset rows, ``challenge_metrics``,
the processor's feature-extractor arguments, references in the metric's form, ``push_to_hub`` with the BLEMORE card,
and what the train command's card says happened."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from local_hub import run_client

import blemore
from blemore_toolkit.metrics.blemore.challenge import challenge_scores
from blemore_toolkit.modeling.decoding_blemore import OUTCOME_TARGETS, decode_outcomes, outcomes_to_predictions
from blemore_toolkit.training.batches import ClipCollator
from blemore_toolkit.training.tiny import tiny_config, tiny_model, tiny_processor


@pytest.fixture(scope="module")
def fold0(prepared_dataset):
    from datasets import load_dataset

    return load_dataset(str(prepared_dataset), "fold0")


def test_the_collator_takes_plain_dataset_rows(fold0):
    processor = tiny_processor()
    rows = [fold0["train"][i] for i in range(3)]
    batch = ClipCollator(processor)(rows)
    expected = processor(videos=[row["video"] for row in rows], audio=[row["audio"] for row in rows])
    assert set(batch) == {"pixel_values_videos", "input_values", "attention_mask", "labels"}
    for key in expected:
        torch.testing.assert_close(batch[key], expected[key])
    assert batch["labels"].tolist() == [row["outcome"] for row in rows]
    with torch.no_grad():
        assert tiny_model()(**batch).loss is not None
    unlabelled = ClipCollator(processor)([fold0["test"][0], fold0["test"][1]])
    assert "labels" not in unlabelled and unlabelled["pixel_values_videos"].shape[0] == 2


def test_the_collator_names_what_the_rows_lack(fold0):
    rows = [{key: value for key, value in fold0["train"][0].items() if key != "audio"}]
    with pytest.raises(blemore.BlemoreError, match=r"rows lack \['audio'\].*remove_unused_columns=False"):
        ClipCollator(tiny_processor())(rows)


def test_the_processor_takes_the_feature_extractors_arguments(fold0):
    """The audio classification tutorial's ``ds.map(preprocess, batched=True)`` + the default collator."""
    from transformers import default_data_collator

    processor = tiny_processor()
    split = fold0["validation"].select(range(4))
    ragged = processor(audio=[row["array"] for row in split["audio"]], sampling_rate=16000, padding=False,
                       return_tensors=None)
    lengths = [len(values) for values in ragged["input_values"]]
    assert len(set(lengths)) > 1 and max(lengths) == 32000  # max_audio_seconds=2 cuts, nothing pads
    cut = processor(audio=split["audio"], max_length=8000, truncation=True, return_attention_mask=False)
    assert set(cut) == {"input_values"} and cut["input_values"].shape == (4, 8000)

    def preprocess(rows):
        return processor(videos=rows["video"], audio=rows["audio"], padding="max_length", max_length=16000,
                         return_tensors=None)

    encoded = split.map(preprocess, batched=True, batch_size=2, remove_columns=split.column_names)
    batch = default_data_collator([encoded[i] for i in range(4)])
    assert batch["input_values"].shape == (4, 16000) and batch["pixel_values_videos"].shape == (4, 4, 3, 32, 32)
    with torch.no_grad():
        assert tiny_model()(**batch).logits.shape == (4, 6)


def test_references_in_the_metrics_form_come_from_the_outcome_column(fold0):
    split = fold0["validation"]
    references = outcomes_to_predictions(split["outcome"])
    names = split.features["emotions"].feature.names
    for row, reference in zip(split, references):
        assert reference == [{"emotion": names[e], "salience": float(s)} for e, s in zip(row["emotions"],
                                                                                         row["salience"])]


def test_challenge_metrics_scores_what_the_trainer_gathers():
    from transformers import EvalPrediction

    from blemore_toolkit.training.train import challenge_metrics

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 36, 200)
    logits = np.log(np.clip(OUTCOME_TARGETS[truth] + rng.normal(0, 0.15, (200, 6)), 1e-3, None)).astype(np.float32)
    config = tiny_config()
    prediction = EvalPrediction(predictions=logits, label_ids=truth)
    untuned = challenge_metrics(config, tune_thresholds=False)(prediction)
    decoded = decode_outcomes(torch.tensor(logits).softmax(-1).numpy(), **config.decoding_parameters)
    expected = challenge_scores(outcomes_to_predictions(truth), outcomes_to_predictions(decoded))
    assert untuned == {key: expected[key] for key in ("acc_presence", "acc_salience", "score")}
    tuned = challenge_metrics(config)(prediction)
    assert tuned["score"] >= untuned["score"] and "presence_threshold" in tuned
    with pytest.raises(ValueError, match="outcome indices"):
        challenge_metrics(config)(EvalPrediction(predictions=logits, label_ids=OUTCOME_TARGETS[truth]))


def test_ddp_searches_for_unused_weights_only_when_some_can_be_unused():
    from blemore_toolkit.training.train import may_leave_parameters_unused

    assert not may_leave_parameters_unused(tiny_config())
    assert not may_leave_parameters_unused(tiny_config(audio_hidden_layers=[0, 1]))  # 1 layer: state 1 is the top
    assert not may_leave_parameters_unused(tiny_config(audio_hidden_layers=[0, 1], freeze_audio_encoder=True))
    assert may_leave_parameters_unused(tiny_config(audio_hidden_layers=[0]))  # the layer above state 0 is unused


def test_the_train_card_says_what_happened(tmp_path):
    from blemore_toolkit.training.model_card import render_model_card

    folder = tmp_path / "model"
    tiny_model().save_pretrained(folder)
    base = {"model_dir": str(folder), "dataset": "blemore", "model": {"tiny": True}}
    card = render_model_card({**base, "fold": "none", "thresholds_source": "init_from",
                              "model": {"init_from": "runs/old/model"}}, "me/m", dataset_repo="me/blemore").content
    assert "are those of the `--init-from` model" in card and "pooled" not in card
    assert "Hub dataset [me/blemore]" in card and "folder `blemore`" not in card
    card = render_model_card({**base, "fold": "none", "thresholds_source": "default"}, "me/m").content
    assert "tiny, randomly initialised `videomae` (no pretrained weights)" in card
    assert "prepared dataset folder `blemore`" in card and "config's defaults (not tuned)" in card
    assert "pipeline_tag: video-classification" in card and 'pipeline(model="me/m", trust_remote_code=True)' in card


def test_the_card_cites_the_dataset_paper():
    from blemore_toolkit.modeling.model_card_blemore import CITATION

    assert CITATION.strip() == blemore._CITATION.strip()


PUSH_AND_USE = """
    import json, sys
    from huggingface_hub import ModelCard
    from transformers import AutoModelForVideoClassification, pipeline
    folder, clip = sys.argv[1], sys.argv[2]
    model = AutoModelForVideoClassification.from_pretrained(folder, trust_remote_code=True)
    from transformers import AutoProcessor
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    processor.push_to_hub("me/own")
    model.push_to_hub("me/own")
    card = ModelCard.load("me/own")
    classify = pipeline(model="me/own", trust_remote_code=True)
    print(json.dumps({"card": card.content, "tag": card.data.pipeline_tag, "prediction": classify(clip, blend=True)}))
"""


def test_push_to_hub_writes_the_blemore_card_and_the_pipeline_loads_from_the_hub(hub, tmp_path, synthetic_raw):
    folder = tmp_path / "model"
    model = tiny_model(seed=1).eval()
    model.save_pretrained(folder)
    processor = tiny_processor()
    processor.save_pretrained(folder)
    clip = sorted((synthetic_raw / "test").glob("*.mov"))[0]
    printed = json.loads(run_client(hub, tmp_path / "client", PUSH_AND_USE, str(folder), str(clip)).splitlines()[-1])
    assert printed["tag"] == "video-classification"
    assert "# me/own" in printed["card"] and "pipeline(model=\"me/own\", trust_remote_code=True)" in printed["card"]
    assert "This is the model card of a 🤗 transformers model" not in printed["card"]
    with torch.no_grad():
        expected = model.decode(model(**processor(videos=[str(clip)], audio=[str(clip)])))[0]
    assert printed["prediction"]["emotions"] == expected


LOAD_AND_RUN = """
import sys, torch
from blemore_toolkit.modeling import BlemoreProcessor
from blemore_toolkit.training.tiny import tiny_model
processor = BlemoreProcessor.from_pretrained(sys.argv[1])
batch = processor(videos=sys.argv[2:4], audio=sys.argv[2:4])  # two clips of different lengths: padded audio
assert batch["attention_mask"].min() == 0
with torch.no_grad():
    tiny_model().train()(**batch, labels=torch.tensor([0, 7]))
print("ran")
"""


def test_loading_a_processor_and_a_forward_pass_print_no_warnings(tmp_path, synthetic_raw):
    import os
    import subprocess
    import sys

    tiny_processor().save_pretrained(tmp_path)
    clips = sorted(str(p) for p in (synthetic_raw / "test").glob("*.mov"))
    reader, lengths = tiny_processor(max_audio_seconds=None), {}
    for clip in clips:  # two clips whose audio differs in length (durations are drawn from 1-3 s)
        lengths.setdefault(round(len(reader.load_audio(clip)) / 1600), clip)
        if len(lengths) == 2:
            break
    assert len(lengths) == 2
    env = {**os.environ, "PYTHONWARNINGS": "always"}
    run = subprocess.run([sys.executable, "-c", LOAD_AND_RUN, str(tmp_path), *list(lengths.values())[:2]],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0 and "ran" in run.stdout, run.stderr[-2000:]
    assert "torchvision" not in run.stderr and "key_padding_mask" not in run.stderr, run.stderr[-2000:]

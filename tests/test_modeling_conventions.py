"""BLEMORE models keep transformers' conventions: encoder outputs on request, torch.export, a config without names
transformers reserves, the main input of the model's modalities, the attention switch, the encoders' own weight
init, and a model card the Hub reads (base model, Hub ids, the run's results). Tiny random encoders; no network."""

import json
import os

import numpy as np
import pytest
import torch
from local_hub import run_client
from safetensors.torch import load_file, save_file
from tiny_encoder_configs import IMAGE_SIZE, NUM_FRAMES, NUM_SAMPLES, VIDEO_TOKENS, audio_config, video_config
from transformers import Trainer, TrainingArguments, WavLMModel

from blemore_toolkit.modeling import BlemoreConfig, BlemoreForBlendedEmotionRecognition, BlemoreModel
from blemore_toolkit.modeling.model_card_blemore import CARD_FACTS_FILE, render_model_card, write_card_facts


def model_of(video=False, audio=False, **settings) -> BlemoreForBlendedEmotionRecognition:
    torch.manual_seed(0)
    config = BlemoreConfig(video_config=video_config() if video else None,
                           audio_config=audio_config() if audio else None,
                           fusion_hidden_size=8, fusion_num_heads=2, head_hidden_sizes=[8], **settings)
    return BlemoreForBlendedEmotionRecognition(config).eval()


def inputs_of(video=False, audio=False, batch_size=2, padded=True) -> dict:
    generator = torch.Generator().manual_seed(1)
    inputs = {}
    if video:
        inputs["pixel_values_videos"] = torch.randn(batch_size, NUM_FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE,
                                                    generator=generator)
    if audio:
        mask = torch.ones(batch_size, NUM_SAMPLES, dtype=torch.long)
        if padded:
            mask[-1, NUM_SAMPLES // 2 :] = 0
        inputs["input_values"] = torch.randn(batch_size, NUM_SAMPLES, generator=generator) * mask
        inputs["attention_mask"] = mask
    return inputs


# ---------------------------------------------------------------------------------------------------------------
# Config: `decoding_rule` (was `decoder`, a name transformers reserves for a decoder sub-config)
# ---------------------------------------------------------------------------------------------------------------


def test_the_config_has_no_text_config_of_its_own():
    config = BlemoreConfig(decoding_rule="expected_score")
    assert config.get_text_config() is config
    assert config.to_dict()["decoding_rule"] == "expected_score" and "decoder" not in config.to_dict()


def test_an_old_config_json_with_decoder_still_loads(tmp_path):
    model = model_of(feature_sizes={"clip": 6})
    model.save_pretrained(tmp_path / "old")
    path = tmp_path / "old" / "config.json"
    saved = json.loads(path.read_text())
    saved["decoder"] = "expected_score"  # as models saved before the rename hold it
    del saved["decoding_rule"]
    path.write_text(json.dumps(saved))

    config = BlemoreConfig.from_pretrained(tmp_path / "old")
    assert config.decoding_rule == "expected_score" and not hasattr(config, "decoder")
    reloaded = BlemoreForBlendedEmotionRecognition.from_pretrained(tmp_path / "old")
    assert reloaded.config.decoding_parameters["decoder"] == "expected_score"
    reloaded.save_pretrained(tmp_path / "new")  # the old key is read once, and written under its new name
    written = json.loads((tmp_path / "new" / "config.json").read_text())
    assert written["decoding_rule"] == "expected_score" and "decoder" not in written
    with pytest.raises(ValueError, match="contradicts"):
        BlemoreConfig(decoder="thresholds", decoding_rule="expected_score")


# ---------------------------------------------------------------------------------------------------------------
# Encoder outputs on request
# ---------------------------------------------------------------------------------------------------------------


def test_encoders_hidden_states_and_attentions_are_returned_on_request():
    model = model_of(video=True, audio=True)
    model.set_attn_implementation("eager")
    inputs = inputs_of(video=True, audio=True)
    with torch.no_grad():
        plain = model(**inputs)
        asked = model(**inputs, output_hidden_states=True, output_attentions=True)
    assert not any(key.endswith(("hidden_states", "attentions")) for key in plain)
    torch.testing.assert_close(asked.logits, plain.logits)
    audio_frames = asked.audio_hidden_states[0].shape[1]
    for name, tokens in (("video", VIDEO_TOKENS), ("audio", audio_frames)):
        hidden, attentions = asked[f"{name}_hidden_states"], asked[f"{name}_attentions"]
        assert len(hidden) == 3 and all(tuple(h.shape) == (2, tokens, 16) for h in hidden)
        assert len(attentions) == 2 and all(tuple(a.shape) == (2, 2, tokens, tokens) for a in attentions)
    torch.testing.assert_close(asked.video_hidden_states[-1].mean(1), asked.video_embeds)

    model.config.output_hidden_states = True  # the config's setting is the default, as in transformers' models
    with torch.no_grad():
        by_config = model(**inputs)
    assert len(by_config.video_hidden_states) == 3 and len(by_config.audio_hidden_states) == 3
    assert "video_attentions" not in by_config
    base = BlemoreModel(model.config).eval()
    with torch.no_grad():
        assert len(base(**inputs, output_attentions=True).audio_attentions) == 2


# ---------------------------------------------------------------------------------------------------------------
# torch.export
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("video, audio", [(False, True), (True, True)], ids=["audio", "video+audio"])
def test_torch_export(video, audio):
    """The audio path has no data-dependent branch: the exported program reproduces the model, padded or not."""
    model = model_of(video=video, audio=audio)
    program = torch.export.export(model, (), inputs_of(video=video, audio=audio, padded=False), strict=False)
    for padded in (False, True):
        inputs = inputs_of(video=video, audio=audio, padded=padded)
        with torch.no_grad():
            expected = model(**inputs).logits
        torch.testing.assert_close(program.module()(**inputs)["logits"], expected, rtol=1e-4, atol=1e-5)


def test_an_unpadded_mask_gives_the_result_of_no_mask():
    model = model_of(audio=True)
    inputs = inputs_of(audio=True, padded=False)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits,
                                   model(input_values=inputs["input_values"]).logits, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# main_input_name and the Trainer
# ---------------------------------------------------------------------------------------------------------------


def test_main_input_name_follows_the_modalities():
    assert model_of(video=True, audio=True).main_input_name == "pixel_values_videos"
    assert model_of(audio=True).main_input_name == "input_values"
    assert model_of(feature_sizes={"clip": 6}).main_input_name == "features"


class _AudioClips(torch.utils.data.Dataset):
    def __init__(self):
        batch = inputs_of(audio=True, batch_size=4)
        self.rows = [{"input_values": batch["input_values"][i], "attention_mask": batch["attention_mask"][i],
                      "labels": torch.tensor(i)} for i in range(4)]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]


def test_trainer_evaluate_with_inputs_for_metrics_on_an_audio_model(tmp_path):
    seen = {}

    def metrics(prediction):
        seen["inputs"] = prediction.inputs
        return {"n": float(len(prediction.predictions))}

    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=2, report_to=[], use_cpu=True,
                             include_for_metrics=["inputs"])
    trainer = Trainer(model=model_of(audio=True), args=args, eval_dataset=_AudioClips(), compute_metrics=metrics)
    assert trainer.evaluate()["eval_n"] == 4.0
    assert tuple(seen["inputs"].shape) == (4, NUM_SAMPLES)


# ---------------------------------------------------------------------------------------------------------------
# Attention implementation
# ---------------------------------------------------------------------------------------------------------------


def _implementations(model) -> tuple:
    config = model.config
    return tuple(c._attn_implementation for c in (config, config.video_config, config.audio_config) if c is not None)


def test_set_attn_implementation_switches_the_whole_model():
    model = model_of(video=True)
    inputs = inputs_of(video=True)
    model.set_attn_implementation("eager")
    assert _implementations(model) == ("eager", "eager")
    with torch.no_grad():
        eager = model(**inputs).logits
    model.set_attn_implementation("sdpa")
    assert _implementations(model) == ("sdpa", "sdpa")
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, eager, rtol=1e-4, atol=1e-5)


def test_what_an_encoder_cannot_run_is_refused_before_anything_switches():
    model = model_of(video=True, audio=True)  # WavLM has eager attention only
    assert not model._supports_sdpa and not model._supports_flex_attn
    model.set_attn_implementation("eager")
    assert _implementations(model) == ("eager", "eager", "eager")
    for wanted in ("sdpa", "flex_attention"):
        with pytest.raises(ValueError, match="does not support"):
            model.set_attn_implementation(wanted)
        assert _implementations(model) == ("eager", "eager", "eager")
    with torch.no_grad():
        model(**inputs_of(video=True, audio=True))


# ---------------------------------------------------------------------------------------------------------------
# Weight init of what a checkpoint lacks
# ---------------------------------------------------------------------------------------------------------------


def test_missing_encoder_weights_get_the_encoders_own_init(tmp_path):
    model = model_of(audio=True)
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    dropped = ("feature_projection", "pos_conv_embed", "blemore.projections")
    save_file({key: value for key, value in weights.items() if not any(part in key for part in dropped)},
              tmp_path / "model.safetensors", metadata={"format": "pt"})

    torch.manual_seed(1)
    reloaded = BlemoreForBlendedEmotionRecognition.from_pretrained(tmp_path)
    encoder = reloaded.blemore.audio_encoder
    # WavLM's own rules: feature projection uniform in ±1/sqrt(fan_in), positional-conv bias zero.
    projection = encoder.feature_projection.projection.weight
    bound = 1 / np.sqrt(projection.shape[1])
    assert projection.abs().max() <= bound and projection.std() > 0.8 * bound / np.sqrt(3)
    assert torch.count_nonzero(encoder.encoder.pos_conv_embed.conv.bias) == 0
    # the BLEMORE layers keep their own rule: N(0, initializer_range), zero bias
    linear = reloaded.blemore.projections["audio"].linear
    assert abs(linear.weight.std().item() - reloaded.config.initializer_range) < 0.01
    assert torch.count_nonzero(linear.bias) == 0
    # loaded weights are left alone
    torch.testing.assert_close(reloaded.head[-1].weight, model.head[-1].weight)
    # the same rules as WavLM applies alone
    alone = WavLMModel(audio_config())
    assert abs(alone.feature_projection.projection.weight.std() - projection.std()) < 0.3 * projection.std()


# ---------------------------------------------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------------------------------------------

VALIDATION = {
    "folds": {f"fold{k}": {"acc_presence": 0.5, "acc_salience": 0.25, "score": 0.375} for k in range(2)},
    "summary": {"acc_presence": {"mean": 0.5, "std": 0.0}, "acc_salience": {"mean": 0.25, "std": 0.0},
                "score": {"mean": 0.375, "std": 0.0}},
}


def _card_yaml(card: str):
    from huggingface_hub import ModelCard

    return ModelCard(card).data.to_dict()


def test_card_metadata_uses_hub_ids():
    model = model_of(video=True, audio=True)
    model.config.video_config._name_or_path = "MCG-NJU/videomae-base"
    model.config.audio_config._name_or_path = "microsoft/wavlm-base-plus"
    data = _card_yaml(render_model_card(model.config, "me/m", validation=VALIDATION, dataset_repo="me/blemore",
                                        metric_repo="me/blemore-metric"))
    assert data["base_model"] == ["MCG-NJU/videomae-base", "microsoft/wavlm-base-plus"]
    result = data["model-index"][0]["results"][0]
    assert result["dataset"]["type"] == "me/blemore"
    assert {metric["type"] for metric in result["metrics"]} == {"me/blemore-metric"}
    assert "model_name" not in data

    local = model_of(audio=True)
    local.config.audio_config._name_or_path = os.getcwd()  # a local folder is no Hub id
    data = _card_yaml(render_model_card(local.config, "me/m", validation=VALIDATION))
    assert "base_model" not in data and "model_name" not in data
    assert "model-index" not in data  # no dataset id to name: the results stay in the text
    data = _card_yaml(render_model_card(local.config, "me/m", validation=VALIDATION, dataset_repo="me/blemore"))
    assert {metric["type"] for metric in data["model-index"][0]["results"][0]["metrics"]} == {"accuracy"}


PUSH_SAVED_MODEL = """
import json, sys
from huggingface_hub import ModelCard
from transformers import AutoModelForVideoClassification
model = AutoModelForVideoClassification.from_pretrained(sys.argv[1], trust_remote_code=True)
model.push_to_hub("me/with-results")
print(json.dumps({"card": ModelCard.load("me/with-results").content}))
"""


def test_push_to_hub_of_a_saved_model_carries_its_results(hub, tmp_path):
    model = model_of(feature_sizes={"clip": 6})
    model.save_pretrained(tmp_path / "run")
    write_card_facts(tmp_path / "run", validation=VALIDATION, dataset_repo="me/blemore",
                     training="Trained on two folds of the synthetic data.")
    reloaded = BlemoreForBlendedEmotionRecognition.from_pretrained(tmp_path / "run")
    reloaded.save_pretrained(tmp_path / "copy")  # the facts travel with every copy
    assert (tmp_path / "copy" / CARD_FACTS_FILE).read_text() == (tmp_path / "run" / CARD_FACTS_FILE).read_text()

    card = json.loads(run_client(hub, tmp_path / "client", PUSH_SAVED_MODEL, str(tmp_path / "copy")).splitlines()[-1])
    card = card["card"]
    assert "No validation results were recorded" not in card
    assert "| fold0 | 0.500 | 0.250 | 0.375 |" in card and "Trained on two folds of the synthetic data." in card
    assert _card_yaml(card)["model-index"][0]["results"][0]["dataset"]["type"] == "me/blemore"


def test_the_backbones_hub_ids_survive_saving(tmp_path):
    model = model_of(audio=True)
    model.config.audio_config._name_or_path = "microsoft/wavlm-base-plus"  # as from_pretrained_backbones leaves it
    model.save_pretrained(tmp_path)
    reloaded = BlemoreForBlendedEmotionRecognition.from_pretrained(tmp_path)
    assert _card_yaml(render_model_card(reloaded.config, "me/m"))["base_model"] == "microsoft/wavlm-base-plus"


TRAINER_THEN_MODEL_PUSH = """
import json, sys
import torch
from huggingface_hub import ModelCard
from transformers import Trainer, TrainingArguments
from blemore_toolkit.modeling import BlemoreConfig, BlemoreForBlendedEmotionRecognition
model = BlemoreForBlendedEmotionRecognition(BlemoreConfig(feature_sizes={"clip": 6}))
rows = [{"features": torch.randn(6), "labels": torch.tensor(i)} for i in range(4)]
args = TrainingArguments(output_dir=sys.argv[1], push_to_hub=True, hub_model_id="me/trained", max_steps=1,
                         per_device_train_batch_size=2, report_to=[], use_cpu=True, save_strategy="no")
trainer = Trainer(model=model, args=args, train_dataset=rows)
trainer.train()
trainer.push_to_hub()
after_trainer = ModelCard.load("me/trained").content
model.push_to_hub("me/trained")
print(json.dumps({"after_trainer": after_trainer, "after_model": ModelCard.load("me/trained").content}))
"""


def test_model_push_to_hub_replaces_the_trainers_generic_card(hub, tmp_path):
    printed = json.loads(run_client(hub, tmp_path / "client", TRAINER_THEN_MODEL_PUSH, str(tmp_path / "out"))
                         .splitlines()[-1])
    assert "generated automatically according to the information the Trainer" in printed["after_trainer"]
    assert "generated automatically" not in printed["after_model"]
    assert "# me/trained" in printed["after_model"] and "BLEMORE" in printed["after_model"]

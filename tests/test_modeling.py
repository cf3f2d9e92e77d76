"""BLEMORE models (modeling/): label space, shapes, objectives, training signal, Auto classes, Hub round trip,
and the decoders on crafted probabilities. Tiny random encoders only; nothing is downloaded."""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForAudioClassification,
    AutoModelForVideoClassification,
    Trainer,
    TrainingArguments,
    VideoMAEConfig,
    VideoMAEForVideoClassification,
    WavLMConfig,
    WavLMModel,
)

import blemore
from blemore_toolkit.modeling import (
    BlemoreConfig,
    BlemoreForBlendedEmotionRecognition,
    BlemoreModel,
    decoding_blemore,
)
from blemore_toolkit.modeling.decoding_blemore import (
    EMOTIONS,
    OUTCOMES,
    decode,
    decode_outcomes,
    emotion_probabilities,
    expected_score_outcomes,
    expected_scores,
    outcome_probabilities,
    outcomes_to_predictions,
    threshold_outcomes,
)

NUM_FRAMES, IMAGE_SIZE, NUM_SAMPLES = 16, 32, 8000


def tiny_video_config(**overrides) -> VideoMAEConfig:
    settings = dict(
        image_size=IMAGE_SIZE, patch_size=16, num_frames=NUM_FRAMES, tubelet_size=2, hidden_size=32,
        num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
    )  # fmt: skip
    return VideoMAEConfig(**{**settings, **overrides})


def tiny_audio_config(**overrides) -> WavLMConfig:
    settings = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
        conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        num_buckets=16, max_bucket_distance=64, feat_extract_norm="layer",
    )  # fmt: skip
    return WavLMConfig(**{**settings, **overrides})


def tiny_config(video=True, audio=True, **overrides) -> BlemoreConfig:
    settings = dict(fusion_hidden_size=16, fusion_num_heads=2, head_hidden_sizes=[16])
    return BlemoreConfig(
        video_config=tiny_video_config() if video else None,
        audio_config=tiny_audio_config() if audio else None,
        **{**settings, **overrides},
    )


def tiny_batch(batch_size=2, seed=0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    attention_mask = torch.ones(batch_size, NUM_SAMPLES, dtype=torch.long)
    attention_mask[-1, NUM_SAMPLES // 2 :] = 0
    input_values = torch.randn(batch_size, NUM_SAMPLES, generator=generator) * attention_mask
    return {
        "pixel_values_videos": torch.randn(batch_size, NUM_FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
        "input_values": input_values,
        "attention_mask": attention_mask,
    }


def soft_targets(*outcomes: int) -> torch.Tensor:
    return torch.tensor([blemore.soft_target(*blemore.canonical_label(*OUTCOMES[o])) for o in outcomes])


# ---------------------------------------------------------------------------------------------------------------
# One source of truth
# ---------------------------------------------------------------------------------------------------------------


def test_label_space_mirrors_blemore():
    assert decoding_blemore.EMOTIONS == blemore.EMOTIONS
    assert decoding_blemore.BLENDABLE_EMOTIONS == blemore.BLENDABLE_EMOTIONS
    assert decoding_blemore.BLEND_PAIRS == blemore.BLEND_PAIRS
    assert decoding_blemore.SALIENCE_LEVELS == blemore.SALIENCE_LEVELS
    assert decoding_blemore.OUTCOMES == tuple((o.emotions, o.salience) for o in blemore.OUTCOMES)
    assert decoding_blemore.OUTCOME_NAMES == blemore.OUTCOME_NAMES
    assert decoding_blemore.PRESENCE_NAMES == blemore.PRESENCE_NAMES
    expected_targets = [blemore.soft_target(o.emotions, o.salience) for o in blemore.OUTCOMES]
    np.testing.assert_array_equal(decoding_blemore.OUTCOME_TARGETS, expected_targets)

    config = BlemoreConfig()
    assert [config.id2label[i] for i in range(6)] == list(blemore.EMOTIONS)
    assert config.label2id == {e: i for i, e in enumerate(blemore.EMOTIONS)}
    assert (config.emotions, config.blend_pairs, config.salience_levels) == (
        blemore.EMOTIONS,
        blemore.BLEND_PAIRS,
        blemore.SALIENCE_LEVELS,
    )
    assert config.outcome_names == blemore.OUTCOME_NAMES


def test_config_rejects_bad_settings():
    with pytest.raises(Exception, match="fusion"):
        BlemoreConfig(fusion="sum")
    with pytest.raises(Exception, match="clashes"):
        tiny_config(feature_sizes={"video": 8})
    with pytest.raises(Exception, match="divisible"):
        tiny_config(fusion="cross_attention", fusion_hidden_size=10, fusion_num_heads=4)
    with pytest.raises(Exception, match="36"):
        BlemoreConfig(outcome_prior=[1.0, 2.0])
    with pytest.raises(ValueError, match="needs a video_config"):
        BlemoreModel(BlemoreConfig())


# ---------------------------------------------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "video, audio, feature_sizes, num_modalities",
    [
        (True, True, None, 2),
        (True, False, None, 1),
        (False, True, None, 1),
        (False, False, {"video": 12, "audio": 20}, 2),
        (True, False, {"audio": 20}, 2),
    ],
    ids=["video+audio", "video-only", "audio-only", "features-only", "video+audio-features"],
)
def test_output_shapes(video, audio, feature_sizes, num_modalities):
    torch.manual_seed(0)
    model = BlemoreForBlendedEmotionRecognition(tiny_config(video, audio, feature_sizes=feature_sizes)).eval()
    batch = tiny_batch()
    inputs = {}
    if video:
        inputs["pixel_values_videos"] = batch["pixel_values_videos"]
    if audio:
        inputs["input_values"], inputs["attention_mask"] = batch["input_values"], batch["attention_mask"]
    if feature_sizes:
        inputs["features"] = {name: torch.randn(2, size) for name, size in feature_sizes.items()}
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits.shape == (2, 6)
    assert out.outcome_logits is None
    assert out.modality_embeds.shape == (2, num_modalities, 16)
    assert out.fused_embeds.shape == (2, 16)  # gated fusion keeps the projection width
    assert (out.video_embeds is not None) == video and (out.audio_embeds is not None) == audio
    if video:
        assert out.video_embeds.shape == (2, 32)
    if audio:
        assert out.audio_embeds.shape == (2, 32)
    assert model.config.modality_names == (["video"] if video else []) + (["audio"] if audio else []) + sorted(
        feature_sizes or {}
    )
    if feature_sizes:  # the same features concatenated in config order give the same result
        concatenated = torch.cat([inputs["features"][name] for name in model.config.feature_sizes], dim=-1)
        with torch.no_grad():
            again = model(**{**inputs, "features": concatenated})
        torch.testing.assert_close(again.logits, out.logits)


@pytest.mark.parametrize("fusion", ["concat", "gated", "cross_attention"])
@pytest.mark.parametrize("objective", ["soft_kl", "outcome"])
def test_fusions_and_objectives(fusion, objective):
    torch.manual_seed(0)
    config = tiny_config(fusion=fusion, objective=objective, feature_sizes={"extra": 5})
    model = BlemoreForBlendedEmotionRecognition(config).eval()
    with torch.no_grad():
        out = model(**tiny_batch(), features=torch.randn(2, 5), labels=soft_targets(0, 10))
    fused_size = 16 if fusion == "gated" else 3 * 16
    assert out.fused_embeds.shape == (2, fused_size)
    assert out.logits.shape == (2, 6) and torch.isfinite(out.loss)
    if objective == "outcome":
        assert out.outcome_logits.shape == (2, 36)
        # logits are the log emotion proportions implied by the outcome distribution
        implied = emotion_probabilities(out.outcome_logits.softmax(-1))
        np.testing.assert_allclose(out.logits.exp().numpy(), implied, rtol=1e-5, atol=1e-6)
    else:
        assert out.outcome_logits is None
    assert len(model.decode(out)) == 2


def test_missing_inputs_are_named():
    model = BlemoreForBlendedEmotionRecognition(tiny_config(feature_sizes={"extra": 5}))
    batch = tiny_batch()
    with pytest.raises(ValueError, match="pixel_values_videos"):
        model(input_values=batch["input_values"], features=torch.randn(2, 5))
    with pytest.raises(ValueError, match="input_values"):
        model(pixel_values_videos=batch["pixel_values_videos"], features=torch.randn(2, 5))
    with pytest.raises(ValueError, match="features"):
        model(pixel_values_videos=batch["pixel_values_videos"], input_values=batch["input_values"])
    with pytest.raises(ValueError, match="width 4"):
        model(**batch, features=torch.randn(2, 4))


# ---------------------------------------------------------------------------------------------------------------
# Objectives, training signal, gradients
# ---------------------------------------------------------------------------------------------------------------


def test_objectives_accept_soft_targets_and_outcome_indices():
    torch.manual_seed(0)
    batch, outcomes = tiny_batch(), torch.tensor([3, 20])
    for objective in ("soft_kl", "outcome"):
        model = BlemoreForBlendedEmotionRecognition(tiny_config(objective=objective)).eval()
        with torch.no_grad():
            by_index = model(**batch, labels=outcomes).loss
            by_target = model(**batch, labels=soft_targets(3, 20)).loss
        torch.testing.assert_close(by_index, by_target)
        if objective == "outcome":
            with pytest.raises(ValueError, match="not one of the 36"):
                model(**batch, labels=torch.full((2, 6), 1 / 6))
    # soft_kl is the KL divergence from the target to the predicted proportions
    model = BlemoreForBlendedEmotionRecognition(tiny_config()).eval()
    with torch.no_grad():
        out = model(**batch, labels=soft_targets(3, 20))
    target, log_probs = soft_targets(3, 20), out.logits.log_softmax(-1)
    kl = torch.where(target > 0, target * (target.clamp(min=1e-12).log() - log_probs), 0.0).sum(-1).mean()
    torch.testing.assert_close(out.loss, kl)


@pytest.mark.parametrize("objective", ["soft_kl", "outcome"])
def test_loss_falls_on_a_fixed_batch(objective):
    torch.manual_seed(0)
    model = BlemoreForBlendedEmotionRecognition(tiny_config(objective=objective, dropout=0.0))
    batch, labels = tiny_batch(batch_size=4), torch.tensor([0, 5, 9, 31])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("fusion", ["concat", "gated", "cross_attention"])
def test_gradients_reach_both_encoders_and_the_fusion(fusion):
    torch.manual_seed(0)
    config = tiny_config(fusion=fusion, audio_hidden_layers=[1, 2])
    model = BlemoreForBlendedEmotionRecognition(config)
    model(**tiny_batch(), labels=soft_targets(0, 10)).loss.backward()
    parts = {
        "video encoder": model.blemore.video_encoder,
        "audio encoder": model.blemore.audio_encoder,
        "audio layer weights": model.blemore.audio_layer_weights,
        "video projection": model.blemore.projections["video"],
        "audio projection": model.blemore.projections["audio"],
        "head": model.head,
    }
    if model.blemore.fusion is not None:
        parts["fusion"] = model.blemore.fusion
    for name, module in parts.items():
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads), f"{name}: missing gradients"
        assert sum(g.abs().sum().item() for g in grads) > 0, f"{name}: zero gradients"


def test_audio_padding_does_not_change_a_clip():
    torch.manual_seed(0)
    model = BlemoreModel(tiny_config(video=False)).eval()
    clip = torch.randn(1, NUM_SAMPLES // 2)
    padded = torch.cat([clip, torch.zeros(1, NUM_SAMPLES // 2)], dim=1)
    mask = torch.cat([torch.ones(1, NUM_SAMPLES // 2), torch.zeros(1, NUM_SAMPLES // 2)], dim=1).long()
    with torch.no_grad():
        alone = model(input_values=clip, attention_mask=torch.ones_like(clip).long()).audio_embeds
        in_batch = model(input_values=padded, attention_mask=mask).audio_embeds
        unmasked = model(input_values=padded).audio_embeds
    torch.testing.assert_close(in_batch, alone, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(unmasked, alone, atol=1e-3)  # the mask is what makes the difference


def test_audio_layer_selection():
    def build(**settings):
        return BlemoreModel(tiny_config(video=False, **settings))

    assert build().audio_layer_weights is None  # "last": the encoder's last_hidden_state
    assert build(audio_hidden_layers="all").audio_layer_weights.logits.shape == (3,)
    assert build(audio_hidden_layers=[1, -1]).audio_layer_weights.logits.shape == (2,)
    assert build(audio_hidden_layers=[1, 2], audio_layer_aggregation="mean").audio_layer_weights is None
    assert build(audio_hidden_layers="all").config.audio_config.layerdrop == 0.0
    with pytest.raises(ValueError, match="out of range"):
        build(audio_hidden_layers=[3])
    # a single chosen layer is that hidden state, pooled over the valid frames
    torch.manual_seed(0)
    model = build(audio_hidden_layers=[1]).eval()
    batch = tiny_batch()
    with torch.no_grad():
        out = model(input_values=batch["input_values"], attention_mask=batch["attention_mask"])
        states = model.audio_encoder(
            batch["input_values"], attention_mask=batch["attention_mask"], output_hidden_states=True
        )
    frames = model._audio_frame_mask(batch["attention_mask"], states.hidden_states[1].shape[1])
    expected = (states.hidden_states[1] * frames[..., None]).sum(1) / frames.sum(1, keepdim=True)
    torch.testing.assert_close(out.audio_embeds, expected)


def test_freezing():
    model = BlemoreForBlendedEmotionRecognition(
        tiny_config(freeze_video_encoder=True, freeze_audio_feature_encoder=True)
    )
    assert not any(p.requires_grad for p in model.blemore.video_encoder.parameters())
    assert not any(p.requires_grad for p in model.blemore.audio_encoder.feature_extractor.parameters())
    assert all(p.requires_grad for p in model.blemore.audio_encoder.encoder.parameters())
    model.train()
    assert not model.blemore.video_encoder.training and model.blemore.audio_encoder.training
    frozen = BlemoreForBlendedEmotionRecognition(tiny_config(freeze_audio_encoder=True))
    assert not any(p.requires_grad for p in frozen.blemore.audio_encoder.parameters())


# ---------------------------------------------------------------------------------------------------------------
# Construction from pretrained backbones, Auto classes, saving and loading
# ---------------------------------------------------------------------------------------------------------------


def test_from_pretrained_backbones(tmp_path):
    torch.manual_seed(0)
    video_dir, audio_dir = tmp_path / "video", tmp_path / "audio"
    # a video checkpoint with a classification head, as fine-tuned backbones are published
    VideoMAEForVideoClassification(tiny_video_config(num_labels=3)).save_pretrained(video_dir)
    WavLMModel(tiny_audio_config()).save_pretrained(audio_dir)
    model = BlemoreForBlendedEmotionRecognition.from_pretrained_backbones(
        str(video_dir), str(audio_dir), freeze_audio_encoder=True, fusion="concat", fusion_hidden_size=16
    )
    video_source = VideoMAEForVideoClassification.from_pretrained(video_dir).videomae.state_dict()
    for key, value in model.blemore.video_encoder.state_dict().items():
        torch.testing.assert_close(value, video_source[key], msg=key)
    audio_source = WavLMModel.from_pretrained(audio_dir).state_dict()
    for key, value in model.blemore.audio_encoder.state_dict().items():
        torch.testing.assert_close(value, audio_source[key], msg=key)
    assert model.config.fusion == "concat" and model.config.freeze_audio_encoder
    assert not any(p.requires_grad for p in model.blemore.audio_encoder.parameters())
    assert all(p.requires_grad for p in model.blemore.video_encoder.parameters())
    with torch.no_grad():
        assert model(**tiny_batch()).logits.shape == (2, 6)


def test_auto_classes_without_remote_code():
    """AutoModel is the base model (the transformers convention); the task classes give the classifier, and the
    audio one only for a model that runs on audio alone."""
    from blemore_toolkit.modeling import BlemoreForAudioClassification

    config = tiny_config()
    assert isinstance(AutoConfig.for_model("blemore"), BlemoreConfig)
    assert type(AutoModel.from_config(config)) is BlemoreModel
    assert isinstance(AutoModelForVideoClassification.from_config(config), BlemoreForBlendedEmotionRecognition)
    with pytest.raises(ValueError, match="not audio alone: load it with AutoModelForVideoClassification"):
        AutoModelForAudioClassification.from_config(config)
    audio_only = AutoModelForAudioClassification.from_config(tiny_config(video=False))
    assert isinstance(audio_only, BlemoreForAudioClassification)
    with torch.no_grad():
        batch = tiny_batch()
        assert audio_only(input_values=batch["input_values"], attention_mask=batch["attention_mask"]).logits.shape \
            == (2, 6)


def test_saved_auto_map_follows_what_the_model_can_run_on(tmp_path):
    for name, config, audio_class in (("av", tiny_config(), False), ("audio", tiny_config(video=False), True),
                                      ("features", BlemoreConfig(feature_sizes={"clip": 4}), False)):
        BlemoreForBlendedEmotionRecognition(config).save_pretrained(tmp_path / name)
        saved = json.loads((tmp_path / name / "config.json").read_text())
        assert saved["auto_map"]["AutoModel"] == "modeling_blemore.BlemoreModel"
        assert saved["auto_map"]["AutoModelForVideoClassification"] == \
            "modeling_blemore.BlemoreForBlendedEmotionRecognition"
        assert ("AutoModelForAudioClassification" in saved["auto_map"]) is audio_class, name
        pipelines = saved.get("custom_pipelines") or {}
        if name == "features":
            assert not pipelines  # no processor, no pipeline: the inputs are feature vectors
        else:
            task = "audio-classification" if audio_class else "video-classification"
            assert pipelines[task]["impl"] == "pipeline_blemore.BlemorePipeline"
            assert (tmp_path / name / "pipeline_blemore.py").is_file()
            assert (tmp_path / name / "processing_blemore.py").is_file()


def test_outcome_labels_passed_the_tutorial_way_are_refused_at_loading(tmp_path):
    """36 labels with ignore_mismatched_sizes would load a six-logit model that fails at its first save."""
    BlemoreForBlendedEmotionRecognition(tiny_config()).save_pretrained(tmp_path)
    names = list(blemore.OUTCOME_NAMES)
    with pytest.raises(ValueError, match="objective='outcome'"):
        AutoModelForVideoClassification.from_pretrained(
            tmp_path, id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
            ignore_mismatched_sizes=True)
    with pytest.raises(ValueError, match="six emotions"):
        AutoModelForVideoClassification.from_pretrained(tmp_path, id2label={0: "positive", 1: "negative"},
                                                        label2id={"positive": 0, "negative": 1})
    outcome = AutoModelForVideoClassification.from_pretrained(tmp_path, objective="outcome",
                                                              ignore_mismatched_sizes=True)
    assert outcome.head[-1].out_features == 36
    outcome.save_pretrained(tmp_path / "outcome")  # saving works: the supported way


def test_a_padded_audio_batch_runs_without_warnings():
    model = BlemoreForBlendedEmotionRecognition(tiny_config()).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            model(**tiny_batch())  # the last clip is padded
    assert not [str(w.message) for w in caught if "key_padding_mask" in str(w.message)]


_FRESH_PROCESS_CHECK = """
import json, sys, torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification, AutoModelForVideoClassification
from transformers import AutoProcessor
folder = sys.argv[1]
saved = load_file(folder + "/expected.safetensors")
inputs = {key.removeprefix("input."): value for key, value in saved.items() if key.startswith("input.")}
model = AutoModelForVideoClassification.from_pretrained(folder, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
assert type(model).__name__ == "BlemoreForBlendedEmotionRecognition"
with torch.no_grad():
    out = model(**inputs)
base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
assert type(base).__name__ == "BlemoreModel"
with torch.no_grad():
    assert torch.equal(base(**inputs).fused_embeds, out.fused_embeds)
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
print(json.dumps({
    "logits_equal": bool(torch.equal(out.logits, saved["logits"])),
    "outcome_logits_equal": bool(torch.equal(out.outcome_logits, saved["outcome_logits"])),
    "decoded": model.decode(out),
    "decoding_rule": model.config.decoding_rule,
    "processor": type(processor).__name__,
    "num_frames": processor.num_frames,
}))
"""


def test_save_and_load_in_a_fresh_process(tmp_path):
    from transformers import VideoMAEImageProcessorPil, Wav2Vec2FeatureExtractor

    from blemore_toolkit.modeling import BlemoreProcessor

    torch.manual_seed(0)
    config = tiny_config(
        fusion="cross_attention",
        objective="outcome",
        audio_hidden_layers=[1, 2],
        decoding_rule="expected_score",
        outcome_temperature=0.5,
        feature_sizes={"extra": 5},
    )
    model = BlemoreForBlendedEmotionRecognition(config).eval()
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)
    processor = BlemoreProcessor(
        VideoMAEImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": 32, "width": 32}),
        Wav2Vec2FeatureExtractor(),
        num_frames=NUM_FRAMES,
    )
    processor.save_pretrained(folder)
    inputs = {**tiny_batch(), "features": torch.randn(2, 5)}
    with torch.no_grad():
        out = model(**inputs)
    expected = {"logits": out.logits, "outcome_logits": out.outcome_logits}
    save_file(
        {**expected, **{f"input.{key}": value for key, value in inputs.items()}}, folder / "expected.safetensors"
    )

    files = sorted(os.listdir(folder))
    for name in ("configuration_blemore.py", "modeling_blemore.py", "decoding_blemore.py", "processing_blemore.py"):
        assert name in files
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pkl", ".pth")) for f in files)
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_blemore.BlemoreConfig",
        "AutoModel": "modeling_blemore.BlemoreModel",
        "AutoModelForVideoClassification": "modeling_blemore.BlemoreForBlendedEmotionRecognition",
        "AutoProcessor": "processing_blemore.BlemoreProcessor",
    }
    processor_config = json.loads((folder / "processor_config.json").read_text())
    assert processor_config["auto_map"] == {"AutoProcessor": "processing_blemore.BlemoreProcessor"}

    # A fresh interpreter, away from the repository, offline, with an empty Hub cache: only the saved files count.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    env.pop("PYTHONPATH", None)
    script = tmp_path / "check.py"
    script.write_text(textwrap.dedent(_FRESH_PROCESS_CHECK))
    result = subprocess.run(
        [sys.executable, str(script), str(folder)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["logits_equal"] and report["outcome_logits_equal"]
    assert report["decoded"] == model.decode(out)
    assert report["decoding_rule"] == "expected_score"
    assert report["processor"] == "BlemoreProcessor" and report["num_frames"] == NUM_FRAMES


def test_trainer_sees_logits_and_an_unscaled_loss(tmp_path):
    from datasets import Dataset

    torch.manual_seed(0)
    rows = {"features": np.random.default_rng(0).normal(size=(8, 6)).astype("float32"), "labels": list(range(8))}
    dataset = Dataset.from_dict(rows).with_format("torch")
    for objective, width in (("soft_kl", None), ("outcome", 36)):
        model = BlemoreForBlendedEmotionRecognition(BlemoreConfig(feature_sizes={"clip": 6}, objective=objective))
        args = TrainingArguments(
            output_dir=str(tmp_path / objective), per_device_train_batch_size=4, max_steps=2, report_to=[],
            use_cpu=True, save_strategy="no", logging_strategy="no",
        )  # fmt: skip
        trainer = Trainer(model=model, args=args, train_dataset=dataset)
        assert trainer.model_accepts_loss_kwargs is False
        trainer.train()
        predictions = trainer.predict(dataset).predictions
        if width is None:
            assert predictions.shape == (8, 6)  # embeddings are kept out of the predictions
        else:
            logits, outcome_logits = predictions
            assert logits.shape == (8, 6) and outcome_logits.shape == (8, width)


# ---------------------------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------------------------


def probs(**by_code) -> list[float]:
    return [by_code.get(e, 0.0) for e in EMOTIONS]


def as_challenge(emotions_and_saliences) -> list[dict]:
    return [{"emotion": e, "salience": float(s)} for e, s in emotions_and_saliences]


@pytest.mark.parametrize(
    "emotion_probs, expected",
    [
        (probs(ang=0.9, hap=0.05, neu=0.05), [("ang", 100)]),  # second below alpha: single
        ([1 / 6] * 6, [("ang", 100)]),  # even the top is below alpha: the top alone (ties: EMOTIONS order)
        (probs(ang=0.4, neu=0.6), [("neu", 100)]),  # neutral never blends: the more probable alone
        (probs(sad=0.6, neu=0.4), [("sad", 100)]),
        (probs(fea=0.5, neu=0.5), [("fea", 100)]),  # a tie with neutral goes to the emotion
        (probs(ang=0.45, hap=0.4, sad=0.15), [("ang", 50), ("hap", 50)]),  # within beta: 50/50
        (probs(ang=0.6, hap=0.3, sad=0.1), [("ang", 70), ("hap", 30)]),
        (probs(ang=0.3, hap=0.6, sad=0.1), [("ang", 30), ("hap", 70)]),  # the pair keeps its order
        (probs(disg=0.35, sad=0.3, hap=0.35), [("disg", 50), ("hap", 50)]),  # top-2 only
        (probs(ang=0.75, hap=0.25), [("ang", 70), ("hap", 30)]),  # second exactly alpha: present
        (probs(ang=0.625, hap=0.375), [("ang", 50), ("hap", 50)]),  # difference exactly beta: 50/50
    ],
)
def test_threshold_decoder_rules(emotion_probs, expected):
    predicted = decode([emotion_probs], "thresholds", presence_threshold=0.25, salience_threshold=0.25)
    assert predicted == [as_challenge(expected)]


def _threshold_reference(p, alpha, beta):
    """The paper's rule written out per clip, as a cross-check of the vectorised decoder."""
    ranked = sorted(range(6), key=lambda i: (-p[i], i))[:2]
    (i, pi), (j, pj) = [(k, p[k]) for k in ranked]
    if pi < alpha or pj < alpha or pj <= 0:
        return ((EMOTIONS[i],), (100,))
    if "neu" in (EMOTIONS[i], EMOTIONS[j]):
        return ((EMOTIONS[i],), (100,))
    a, b = sorted((i, j))
    if abs(p[a] - p[b]) <= beta:
        levels = (50, 50)
    else:
        levels = (70, 30) if p[a] > p[b] else (30, 70)
    return ((EMOTIONS[a], EMOTIONS[b]), levels)


def test_threshold_decoder_matches_the_rule_on_random_probabilities():
    rng = np.random.default_rng(0)
    emotion_probs = rng.dirichlet(np.full(6, 0.5), size=500)
    emotion_probs[::7, 5] = emotion_probs[::7].max(axis=1) + 0.1  # plenty of neutral in the top two
    emotion_probs /= emotion_probs.sum(axis=1, keepdims=True)
    for alpha, beta in [(0.05, 0.05), (0.2, 0.15), (0.4, 0.5)]:
        decoded = threshold_outcomes(emotion_probs, alpha, beta)
        reference = [OUTCOMES.index(_threshold_reference(p, alpha, beta)) for p in emotion_probs]
        np.testing.assert_array_equal(decoded, reference)


def test_expected_scores_match_enumeration_over_the_truth():
    rng = np.random.default_rng(1)
    outcome_probs = rng.dirichlet(np.full(36, 0.3), size=20)
    rho = 0.4
    table = expected_scores(outcome_probs, blend_fraction=rho)
    for n, belief in enumerate(outcome_probs):
        for guess, (guess_emotions, _) in enumerate(OUTCOMES):
            expected = 0.0
            for truth, (truth_emotions, _) in enumerate(OUTCOMES):
                presence_right = set(truth_emotions) == set(guess_emotions)
                salience_right = len(truth_emotions) == 2 and truth == guess
                expected += belief[truth] * (presence_right + salience_right / rho)
            assert table[n, guess] == pytest.approx(expected)


def test_expected_score_decoder_choices():
    one_hot = np.eye(36)
    np.testing.assert_array_equal(expected_score_outcomes(one_hot), np.arange(36))
    ang = OUTCOMES.index((("ang",), (100,)))
    pair = [OUTCOMES.index((("ang", "hap"), levels)) for levels in ((50, 50), (70, 30), (30, 70))]
    belief = np.zeros((3, 36))
    belief[0, [ang, *pair]] = [0.7, 0.1, 0.1, 0.1]  # the single emotion clearly wins
    belief[1, [ang, *pair]] = [0.5, 0.1, 0.25, 0.15]  # equal presence: the salience bonus tips it to a blend
    belief[2, [ang, *pair]] = [0.4, 0.2, 0.2, 0.2]  # the pair's total wins; tied levels go to the first
    np.testing.assert_array_equal(expected_score_outcomes(belief), [ang, pair[1], pair[0]])


def test_outcome_probabilities_from_emotion_probabilities():
    targets = decoding_blemore.OUTCOME_TARGETS
    uniform = outcome_probabilities(targets, prior="uniform")
    np.testing.assert_allclose(uniform.sum(axis=1), 1.0)
    np.testing.assert_array_equal(uniform.argmax(axis=1), np.arange(36))  # each target is its own best fit
    # the released label frequencies favour single emotions on ambiguous evidence
    ambiguous = [probs(ang=0.8, hap=0.2)]
    single, blend = OUTCOMES.index((("ang",), (100,))), OUTCOMES.index((("ang", "hap"), (70, 30)))
    with_prior = outcome_probabilities(ambiguous, prior="blemore")[0]
    without = outcome_probabilities(ambiguous, prior="uniform")[0]
    assert with_prior[single] / with_prior[blend] > without[single] / without[blend]
    # a lower temperature trusts the evidence more
    sharp = outcome_probabilities(ambiguous, temperature=0.1, prior="uniform")[0]
    assert sharp.max() > without.max()


def test_decode_entry_point():
    emotion_probs = np.array([probs(ang=0.6, hap=0.3, sad=0.1), probs(neu=1.0)])
    assert decode(emotion_probs, "thresholds") == [
        as_challenge([("ang", 70), ("hap", 30)]),
        as_challenge([("neu", 100)]),
    ]
    assert decode(torch.tensor(emotion_probs), "expected_score") == decode(emotion_probs, "expected_score")
    outcome_probs = np.eye(36)[[7, 0]]  # 36-wide input: outcome probabilities
    assert decode_outcomes(outcome_probs, "expected_score").tolist() == [7, 0]
    assert decode_outcomes(outcome_probs, "thresholds").tolist() == [7, 0]
    assert outcomes_to_predictions([7]) == [as_challenge([("ang", 70), ("disg", 30)])]
    with pytest.raises(ValueError, match="decoder"):
        decode(emotion_probs, "argmax")
    with pytest.raises(ValueError, match="6 emotion or 36 outcome"):
        decode(np.ones((1, 5)) / 5)


@pytest.mark.parametrize("objective", ["soft_kl", "outcome"])
@pytest.mark.parametrize("decoder", ["thresholds", "expected_score"])
def test_model_decodes_with_its_config(objective, decoder):
    torch.manual_seed(0)
    config = BlemoreConfig(
        feature_sizes={"clip": 6}, objective=objective, decoding_rule=decoder, presence_threshold=0.1,
        salience_threshold=0.05, outcome_temperature=0.3, blend_fraction=0.6,
    )  # fmt: skip
    model = BlemoreForBlendedEmotionRecognition(config).eval()
    with torch.no_grad():
        out = model(features=torch.randn(16, 6) * 5)
    source = out.outcome_logits if objective == "outcome" else out.logits
    expected = decode_outcomes(
        source.softmax(-1).numpy(), decoder, presence_threshold=0.1, salience_threshold=0.05,
        outcome_temperature=0.3, blend_fraction=0.6, outcome_prior="blemore",
    )  # fmt: skip
    np.testing.assert_array_equal(model.decode_outcomes(out), expected)
    assert model.decode(logits=out.logits, outcome_logits=out.outcome_logits) == outcomes_to_predictions(expected)


def test_feature_inputs_keep_their_order_through_saving(tmp_path):
    """config.json sorts keys: the model must split a concatenated ``features`` tensor the same way after reloading."""
    from blemore_toolkit.modeling import BlemoreForBlendedEmotionRecognition as Model

    torch.manual_seed(0)
    model = Model(BlemoreConfig(feature_sizes={"video_clip": 3, "audio_clip": 5}, fusion="gated")).eval()
    assert list(model.config.feature_sizes) == ["audio_clip", "video_clip"]
    features = torch.randn(4, 8)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert "AutoProcessor" not in saved["auto_map"]  # nothing to process: the inputs are feature vectors
    reloaded = Model.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(features=features).logits, model(features=features).logits)

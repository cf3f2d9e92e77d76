"""HiCMAE as a BLEMORE model: Auto classes, save/load, the pipeline, the objective and decoding."""

from __future__ import annotations

import pytest
import torch

from blemore_toolkit.modeling.decoding_blemore import EMOTIONS, OUTCOME_NAMES, OUTCOME_TARGETS

TINY = dict(hidden_size=16, num_attention_heads=2, intermediate_size=32, num_hidden_layers=2,
            num_audio_hidden_layers=2, num_fusion_layers=1, image_size=16, patch_size=8, num_frames=4,
            audio_length=32, num_mel_bins=16, audio_patch_size=8)


def tiny(seed=0):
    from blemore_toolkit.modeling.configuration_hicmae import HicmaeConfig
    from blemore_toolkit.modeling.modeling_hicmae import HicmaeForBlendedEmotionRecognition

    torch.manual_seed(seed)
    return HicmaeForBlendedEmotionRecognition(HicmaeConfig(**TINY)).eval()


def inputs(batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {"pixel_values_videos": torch.randn(batch, 4, 3, 16, 16, generator=g),
            "input_features": torch.randn(batch, 32, 16, generator=g)}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from blemore_toolkit.modeling.processing_hicmae import HicmaeProcessor

    folder = tmp_path_factory.mktemp("hicmae") / "model"
    model = tiny(seed=3)
    model.save_pretrained(folder)
    processor = HicmaeProcessor.from_model_config(model.config)
    processor.save_pretrained(folder)
    return folder, model, processor


def test_auto_classes_load_the_saved_model_and_base(saved):
    from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification, AutoProcessor

    folder, model, _ = saved
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    assert config.model_type == "hicmae" and config.auto_map["AutoModel"].endswith("HicmaeModel")
    assert not list(folder.glob("*.bin")) and (folder / "model.safetensors").is_file()
    x = inputs()
    with torch.no_grad():
        expected = model(**x)
        loaded = AutoModelForVideoClassification.from_pretrained(folder, trust_remote_code=True).eval()
        got = loaded(**x)
        base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        embeds = base(**x).fused_embeds
    assert type(loaded).__name__ == "HicmaeForBlendedEmotionRecognition"
    assert type(base).__name__ == "HicmaeModel"
    assert (got.logits - expected.logits).abs().max() <= 1e-5
    assert (embeds - expected.fused_embeds).abs().max() <= 1e-5
    assert got.logits.shape == (2, 6) and list(config.id2label.values()) == list(EMOTIONS)
    assert type(AutoProcessor.from_pretrained(folder, trust_remote_code=True)).__name__ == "HicmaeProcessor"


def test_the_pipeline_predicts_what_the_model_does_on_a_clip(saved, synthetic_raw):
    from transformers import pipeline

    folder, model, processor = saved
    clips = sorted(str(p) for p in (synthetic_raw).rglob("*.mov"))[:2]
    classify = pipeline(model=str(folder), trust_remote_code=True)
    assert classify.task == "video-classification" and type(classify).__name__ == "HicmaePipeline"
    # the folder's own copy of the pipeline code runs (remote code); the model class may be this package's where an
    # earlier test in the same process registered the local classes with the Auto classes (as `blemore predict` does)
    assert type(classify).__module__.startswith("transformers_modules")
    assert type(classify.model).__name__ == "HicmaeForBlendedEmotionRecognition"
    results = classify(clips, batch_size=2, blend=True)
    with torch.no_grad():
        logits = model(**processor(videos=clips)).logits
    probabilities = logits.softmax(-1)
    for result, expected_emotions, row in zip(results, model.decode(logits=logits), probabilities):
        assert result["emotions"] == expected_emotions
        assert result["outcome"] in OUTCOME_NAMES
        assert max(abs(result["probabilities"][e] - float(p)) for e, p in zip(EMOTIONS, row)) <= 1e-5
    alone = classify(clips[0], blend=True)  # one clip, not a list: one dict, as in the batch
    assert alone["emotions"] == results[0]["emotions"]
    assert max(abs(alone["probabilities"][e] - results[0]["probabilities"][e]) for e in EMOTIONS) <= 1e-5
    # the video-classification contract: labels and scores, best first, top_k of them
    labels = classify(clips[0], top_k=3)
    order = probabilities[0].argsort(descending=True)[:3]
    assert [entry["label"] for entry in labels] == [EMOTIONS[int(i)] for i in order]
    assert max(abs(entry["score"] - float(probabilities[0][i])) for entry, i in zip(labels, order)) <= 1e-5
    streamed = list(classify((clip for clip in clips), batch_size=2))  # a generator streams
    assert [[entry["label"] for entry in answer] for answer in streamed] == [
        [entry["label"] for entry in answer] for answer in classify(clips)]


def test_the_loss_is_the_soft_label_kl_of_every_blemore_model():
    model = tiny()
    x = inputs()
    outcomes = torch.tensor([3, 20])
    targets = torch.tensor(OUTCOME_TARGETS[outcomes.numpy()], dtype=torch.float32)
    out = model(**x, labels=targets)
    expected = torch.nn.functional.kl_div(out.logits.log_softmax(-1), targets, reduction="batchmean")
    assert torch.allclose(out.loss, expected)
    assert torch.allclose(model(**x, labels=outcomes).loss, expected)  # an outcome index is its soft target
    out.loss.backward()
    assert model.hicmae.video_layer_weights.grad is not None and model.hicmae.audio_layer_weights.grad is not None


def test_decoding_uses_the_configured_rule():
    model = tiny()
    logits = torch.tensor([[4.0, 0.0, 0.0, 3.9, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 5.0]])
    first, second = model.decode(logits=logits)
    assert {p["emotion"] for p in first} == {"ang", "hap"} and [p["salience"] for p in first] == [50.0, 50.0]
    assert second == [{"emotion": "neu", "salience": 100.0}]


def test_stochastic_depth_only_in_training():
    model = tiny()
    assert model.hicmae.video_layers[-1].drop_path_rate == pytest.approx(0.1)
    assert model.hicmae.video_layers[0].drop_path_rate == 0.0
    x = inputs()
    with torch.no_grad():
        assert torch.equal(model(**x).logits, model(**x).logits)
        model.train()
        torch.manual_seed(0)
        noisy = [model(**x).logits for _ in range(4)]
    assert any(not torch.equal(noisy[0], other) for other in noisy[1:])


def test_inputs_of_the_wrong_size_are_named():
    model = tiny()
    x = inputs()
    x["input_features"] = x["input_features"][:, :20]
    expected = r"input_features has shape \(2, 20, 16\); this model takes \(batch, 32, 16\)"
    with pytest.raises(ValueError, match=expected):
        model(**x)


def test_views_are_averaged_as_the_forks_test_averages_its_segments():
    model = tiny()
    first, second = inputs(seed=1), inputs(seed=2)
    stacked = {key: torch.stack([first[key], second[key]], dim=1) for key in first}  # (batch, views, ...)
    with torch.no_grad():
        averaged = model(**stacked)
        expected = (model(**first).logits + model(**second).logits) / 2
    assert averaged.logits.shape == (2, 6)
    assert (averaged.logits - expected).abs().max() <= 1e-5

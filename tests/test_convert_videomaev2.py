"""``blemore convert videomaev2``: the converted folder computes what the reference computes.

Reference: OpenGVLab/VideoMAEv2, ``models/modeling_finetune.py`` at commit
29eab1e8a588d1b3ec0cdec7b03a86cca491b74b (its ``VisionTransformer``, run once with timm 1.0.29 and torch 2.13 by
``tests/fixtures/videomaev2/record_reference.py``). The fixtures are two tiny random checkpoints in the original
format, built by that class and saved as its fine-tuning script saves them, with the reference's
``forward_features`` output and logits on fixed uint8 frames (scaled to [0, 1]):

* ``giant_like.pth``: ``vit_giant_patch14_224``'s structure (patch 14, mlp_ratio 48/11, no layer scale, mean pooling
  + ``fc_norm``, LayerNorm eps 1e-6), width 22, 2 heads, 2 blocks, 16 frames of 28×28, tubelet 2, 7 classes;
  ``{"module": state}`` as DeepSpeed saves it;
* ``layer_scale.pth``: a base-like model with layer scale (``init_values`` > 0: ``gamma_1``/``gamma_2``), width 16,
  4 heads, patch 8, 4 frames of 16×16, 5 classes; ``{"model": state, "epoch": 34}``.

Every parameter is random (the reference's own init zeroes the biases and the head, which would hide mis-mappings).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import blemore
from blemore import BlemoreError
from blemore_toolkit.conversion import convert_checkpoint
from blemore_toolkit.conversion import videomaev2 as conversion

FIXTURES = Path(__file__).parent / "fixtures" / "videomaev2"
CASES = {
    "giant_like": {"num_heads": 2, "image_size": 28},
    "layer_scale": {"num_heads": 4, "image_size": 16, "num_frames": 4},
}
TOLERANCE = 1e-4


def _outputs(folder: Path, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """The converted model's feature, logits (reference eps) and plain ``model(...)`` logits on the fixture input."""
    from transformers import VideoMAEForVideoClassification

    recorded = torch.load(FIXTURES / f"{name}_outputs.pt", weights_only=True)
    model = VideoMAEForVideoClassification.from_pretrained(folder, local_files_only=True).eval()
    pixel_values = (recorded["frames"].float() / 255).permute(0, 2, 1, 3, 4)  # (B, C, T, H, W) → (B, T, C, H, W)
    with torch.no_grad():
        feature = conversion.reference_feature(model, pixel_values)
        plain_logits = model(pixel_values=pixel_values).logits
        logits = model.classifier(feature)
    return feature, logits, plain_logits, recorded


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


@pytest.mark.parametrize("name", list(CASES))
def test_the_converted_folder_reproduces_the_reference(tmp_path, name):
    out = convert_checkpoint("videomaev2", FIXTURES / f"{name}.pth", tmp_path / name, **CASES[name])
    feature, logits, plain_logits, recorded = _outputs(out, name)
    assert feature.shape == recorded["features"].shape and logits.shape == recorded["logits"].shape
    assert _max_diff(feature, recorded["features"]) <= TOLERANCE
    assert _max_diff(logits, recorded["logits"]) <= TOLERANCE
    # model(...) applies fc_norm with transformers' eps 1e-5 instead of 1e-6: close, not the reference's arithmetic,
    # and measurably further from it than reference_feature's eps 1e-6.
    assert _max_diff(plain_logits, recorded["logits"]) <= TOLERANCE
    assert _max_diff(logits, recorded["logits"]) < _max_diff(plain_logits, recorded["logits"]) / 3
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "preprocessor_config.json",
                                               "README.md"}


def test_the_folder_loads_offline_with_its_processor_and_card(tmp_path):
    from transformers import AutoConfig, AutoImageProcessor

    out = convert_checkpoint("videomaev2", FIXTURES / "giant_like.pth", tmp_path / "vm", **CASES["giant_like"])
    config = AutoConfig.from_pretrained(out, local_files_only=True)
    assert (config.converted_from, config.layer_norm_eps, config.num_labels) == ("videomaev2", 1e-6, 7)
    assert (config.patch_size, config.tubelet_size, config.num_frames, config.intermediate_size) == (14, 2, 16, 96)
    processor = AutoImageProcessor.from_pretrained(out, local_files_only=True)
    assert list(processor.image_mean) == list(conversion.IMAGE_MEAN)
    frames = [torch.randint(0, 256, (40, 50, 3), dtype=torch.uint8).numpy() for _ in range(16)]
    assert tuple(processor(frames, return_tensors="pt").pixel_values.shape) == (1, 16, 3, 28, 28)
    card = (out / "README.md").read_text()
    assert "license: cc-by-nc-4.0" in card and "giant_like.pth" in card and "eps" in card
    assert ".converting" not in card  # the staging folder's name never leaks into the card


@pytest.mark.parametrize("mistake", ["q_and_v_bias_swapped", "qkv_split_as_kqv", "layer_scale_not_folded"])
def test_a_mis_mapped_weight_is_caught_by_the_comparison(tmp_path, monkeypatch, mistake):
    """The comparison above would fail for a wrong mapping: each mistake moves the outputs far past the tolerance."""
    name = "layer_scale"
    if mistake == "q_and_v_bias_swapped":
        table = [(pattern, target.replace("query.bias", "TMP").replace("value.bias", "query.bias")
                  .replace("TMP", "value.bias")) for pattern, target in conversion.RENAME_TABLE]
        monkeypatch.setattr(conversion, "RENAME_TABLE", table)
    elif mistake == "qkv_split_as_kqv":
        split = conversion.split_qkv

        def wrong_split(state):
            state = split(state)
            for key in [k for k in state if k.endswith("attn.q.weight")]:
                other = key.replace("attn.q.", "attn.k.")
                state[key], state[other] = state[other], state[key]
            return state

        monkeypatch.setattr(conversion, "split_qkv", wrong_split)
    else:
        monkeypatch.setattr(conversion, "fold_layer_scale",
                            lambda state: {k: v for k, v in state.items() if "gamma" not in k})
    out = convert_checkpoint("videomaev2", FIXTURES / f"{name}.pth", tmp_path / name, **CASES[name])
    feature, logits, _, recorded = _outputs(out, name)
    assert max(_max_diff(feature, recorded["features"]), _max_diff(logits, recorded["logits"])) > 100 * TOLERANCE


def _state(name: str) -> dict:
    return torch.load(FIXTURES / f"{name}.pth", weights_only=True)["module"]


@pytest.mark.parametrize("change, message", [
    ("unknown", r"1 weights this conversion does not know: blocks\.0\.attn\.scale"),
    ("missing", r"not in the checkpoint \(e\.g\. 'videomae\.encoder\.layer\.1\.output\.dense\.bias'\)"),
    ("no_fc_norm", r"only mean-pooling checkpoints"),
    ("not_videomaev2", r"no patch_embed\.proj\.weight"),
])
def test_checkpoints_with_unknown_or_missing_weights_are_refused(tmp_path, change, message):
    state = _state("giant_like")
    if change == "unknown":  # a cosine-attention model (cos_attn=True) has a learnt scale per block
        state["blocks.0.attn.scale"] = torch.zeros(2, 1, 1)
    elif change == "missing":
        del state["blocks.1.mlp.fc2.bias"]
    elif change == "no_fc_norm":  # use_mean_pooling=False: a final norm instead of fc_norm
        state["norm.weight"], state["norm.bias"] = state.pop("fc_norm.weight"), state.pop("fc_norm.bias")
    else:
        state = {"conv.weight": torch.zeros(2, 3)}
    checkpoint = tmp_path / "bad.pth"
    torch.save({"module": state}, checkpoint)
    with pytest.raises(BlemoreError, match=message) as error:
        convert_checkpoint("videomaev2", checkpoint, tmp_path / "out", **CASES["giant_like"])
    assert str(checkpoint) in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["bad.pth"]


def test_the_head_count_comes_from_the_width_or_must_be_given(tmp_path):
    with pytest.raises(BlemoreError, match="width 22 is none of the reference's models.*--num-heads"):
        convert_checkpoint("videomaev2", FIXTURES / "giant_like.pth", tmp_path / "out", image_size=28)
    with pytest.raises(BlemoreError, match="--labels: 2 names for a head of 7 classes"):
        labels = tmp_path / "labels.txt"
        labels.write_text("a\nb\n")
        convert_checkpoint("videomaev2", FIXTURES / "giant_like.pth", tmp_path / "out", labels=labels,
                           **CASES["giant_like"])


@pytest.mark.parametrize("model_name, expected", [
    ("vit_giant_patch14_224", {"hidden_size": 1408, "num_hidden_layers": 40, "num_attention_heads": 16,
                               "intermediate_size": 6144, "patch_size": 14, "num_labels": 710}),
    ("vit_base_patch16_224", {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                              "intermediate_size": 3072, "patch_size": 16, "num_labels": 710}),
])
def test_the_papers_giant_and_the_base_size_get_the_references_configuration(model_name, expected):
    layout = {key: torch.empty(shape, device="meta") for key, shape in conversion.reference_layout(model_name).items()}
    config = conversion.config_from_state(layout, model_name)
    assert {key: getattr(config, key) for key in expected} == expected
    assert (config.image_size, config.num_frames, config.tubelet_size, config.layer_norm_eps) == (224, 16, 2, 1e-6)


@pytest.mark.parametrize("model_name", list(conversion.REFERENCE_MODELS))
def test_every_size_the_reference_builds_maps_onto_every_weight(model_name):
    """A real checkpoint's layout (shapes only, on the meta device) fills VideoMAE exactly, at every size."""
    from transformers import VideoMAEForVideoClassification

    from blemore_toolkit.conversion.checkpoints import load_into, rename_state_dict

    layout = {key: torch.empty(shape, device="meta") for key, shape in conversion.reference_layout(model_name).items()}
    patch = layout["patch_embed.proj.weight"].shape[-1]  # one patch per frame pair: a tiny position table to build
    config = conversion.config_from_state(layout, model_name, image_size=patch, num_frames=2)
    with torch.device("meta"):
        model = VideoMAEForVideoClassification(config)
    converted = rename_state_dict(conversion.split_qkv(conversion.fold_layer_scale(layout)), conversion.RENAME_TABLE)
    load_into(model, converted, source=model_name)  # strict: every weight filled, with its shape


def test_the_command_line(tmp_path, capsys):
    from transformers import AutoConfig

    out = tmp_path / "converted"
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class {i}\n" for i in range(7)))
    argv = ["convert", "videomaev2", str(FIXTURES / "giant_like.pth"), str(out), "--num-heads", "2",
            "--image-size", "28", "--labels", str(labels)]
    assert blemore.main(argv) == 0
    assert (out / "model.safetensors").is_file() and str(out) in capsys.readouterr().out
    assert AutoConfig.from_pretrained(out, local_files_only=True).id2label[6] == "class 6"
    assert blemore.main(argv) == 1  # the folder exists now: refused, one line
    assert re.search(r"already exists", capsys.readouterr().err)

"""`blemore convert hicmae`: original HiCMAE checkpoints → a BLEMORE model folder, equal to the reference code.

The fixtures in tests/fixtures/hicmae/ were recorded once with the reference implementation, TS1349/HiCMA_BlEmoRe
at commit 45f01474da80512826b4d8cecefaaa2f934e76de (its modeling_finetune_av.py and modeling_pretrain_av.py are
identical to sunlicai/HiCMAE at cdd28d481d7a03fe6cd5d27e968f51ec20d892a4), run under torch 2.13 with a shim for the
three timm 0.4.12 helpers it imports:

- ``finetuned_tiny.pth``: a tiny ``AudioVisionTransformer`` (hidden 16, 2 heads, 2 video / 2 audio / 2 fusion
  layers, 4 frames of 8 × 8, 16 × 8 log-mel, six outputs), every parameter random, saved as
  ``run_class_finetuning_regression_av.py`` saves (``model``, ``optimizer``, ``epoch``, ``scaler``, ``args``);
- ``pretrained_tiny.pth``: a tiny ``PretrainAudioVisionTransformer`` (the same encoders, with decoders), random,
  saved as ``run_mae_pretraining_av.py`` saves; its reference outputs come from the fine-tuning model after the
  fine-tuning script's non-strict ``utils.load_state_dict`` (the head is new and not compared);
- ``inputs.pt``: the fixed input; ``*_outputs.pt``: every encoder layer's normed output (B, N, L, C), the fusion
  encoder's two streams, the fused embedding (``forward_features``) and the logits.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest
import torch

from blemore import BlemoreError
from blemore_toolkit.cli import main
from blemore_toolkit.conversion import convert_checkpoint
from blemore_toolkit.conversion import hicmae as conversion

FIXTURES = Path(__file__).parent / "fixtures" / "hicmae"
TINY = dict(num_attention_heads=2, image_size=8, num_frames=4, audio_length=16, num_mel_bins=8)
TOLERANCE = 1e-4


def _outputs(folder: Path) -> dict:
    from blemore_toolkit.modeling.modeling_hicmae import HicmaeForBlendedEmotionRecognition

    model = HicmaeForBlendedEmotionRecognition.from_pretrained(folder).eval()
    inputs = torch.load(FIXTURES / "inputs.pt", weights_only=True)
    video = inputs["video"].permute(0, 2, 1, 3, 4)  # reference: (B, C, T, H, W); BLEMORE models: (B, T, C, H, W)
    audio = inputs["audio"][:, 0]  # (B, 1, time, mel) → (B, time, mel)
    with torch.no_grad():
        base = model.hicmae(pixel_values_videos=video, input_features=audio, output_hidden_states=True)
        logits = model(pixel_values_videos=video, input_features=audio).logits
    return {
        "video_layers": base.video_hidden_states.transpose(1, 2),
        "audio_layers": base.audio_hidden_states.transpose(1, 2),
        "fusion_video": base.fusion_video_states,
        "fusion_audio": base.fusion_audio_states,
        "embedding": base.fused_embeds,
        "logits": logits,
    }


def _max_differences(folder: Path, kind: str) -> dict:
    reference = torch.load(FIXTURES / f"{kind}_tiny_outputs.pt", weights_only=True)
    ours = _outputs(folder)
    return {name: (ours[name] - reference[name]).abs().max().item() for name in reference}


@pytest.mark.parametrize("kind", ["finetuned", "pretrained"])
def test_conversion_reproduces_the_reference_outputs(tmp_path, kind):
    out = convert_checkpoint("hicmae", FIXTURES / f"{kind}_tiny.pth", tmp_path / "model", **TINY)
    differences = _max_differences(out, kind)
    expected = {"video_layers", "audio_layers", "fusion_video", "fusion_audio", "embedding"}
    assert expected | ({"logits"} if kind == "finetuned" else set()) == set(differences)
    assert max(differences.values()) <= TOLERANCE, differences
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    card = (out / "README.md").read_text()
    assert "license: mit" in card and "finetuned_tiny.pth" in card or "pretrained_tiny.pth" in card
    if kind == "pretrained":
        assert "untrained head" in card


def test_one_mis_mapped_weight_is_caught(tmp_path, monkeypatch):
    """Swapping the two LayerNorms of the cross-attention (same shapes, so loading succeeds) breaks equality."""
    swapped = []
    for pattern, replacement in conversion.RENAME_TABLE:
        if replacement is not None and "cross_layernorm." in replacement:
            replacement = replacement.replace("cross_layernorm.", "cross_context_layernorm.")
        elif replacement is not None and "cross_context_layernorm." in replacement:
            replacement = replacement.replace("cross_context_layernorm.", "cross_layernorm.")
        swapped.append((pattern, replacement))
    monkeypatch.setattr(conversion, "RENAME_TABLE", swapped)
    out = convert_checkpoint("hicmae", FIXTURES / "finetuned_tiny.pth", tmp_path / "model", **TINY)
    differences = _max_differences(out, "finetuned")
    assert differences["video_layers"] <= TOLERANCE  # the unimodal encoders are untouched
    assert differences["logits"] > 100 * TOLERANCE


def test_unknown_weights_and_code_pickles_are_refused_in_one_line(tmp_path):
    checkpoint = torch.load(FIXTURES / "finetuned_tiny.pth", weights_only=False)
    checkpoint["model"]["encoder.blocks.0.gamma_1"] = torch.ones(16)  # layer scale: not in the BLEMORE models
    odd = tmp_path / "layer_scale.pth"
    torch.save(checkpoint, odd)
    with pytest.raises(BlemoreError, match=r"does not know: encoder\.blocks\.0\.gamma_1"):
        convert_checkpoint("hicmae", odd, tmp_path / "a", **TINY)
    assert not (tmp_path / "a").exists()

    code = tmp_path / "code.pth"
    torch.save({"model": checkpoint["model"], "hook": argparse.ArgumentParser}, code)
    with pytest.raises(BlemoreError) as error:
        convert_checkpoint("hicmae", code, tmp_path / "b", **TINY)
    assert "not a loadable PyTorch checkpoint" in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "b").exists()


def test_blemore_convert_hicmae_command(tmp_path, capsys):
    out = tmp_path / "converted"
    argv = ["convert", "hicmae", str(FIXTURES / "finetuned_tiny.pth"), str(out), "--num-attention-heads", "2",
            "--image-size", "8", "--num-frames", "4", "--audio-length", "16", "--num-mel-bins", "8"]
    assert main(argv) == 0
    assert max(_max_differences(out, "finetuned").values()) <= TOLERANCE
    assert main(argv) == 1  # the folder exists now: refused, not overwritten
    assert "already exists" in capsys.readouterr().err


def test_a_checkpoint_that_is_not_hicmae_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    buffer = io.BytesIO()
    torch.save({"model": {"blocks.0.weight": torch.zeros(2)}}, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(BlemoreError, match="not a HiCMAE audio-visual checkpoint"):
        convert_checkpoint("hicmae", path, tmp_path / "out")

"""HiCMAE checkpoints (sunlicai/HiCMAE pretraining, BLEMORE fine-tunes of TS1349/HiCMA_BlEmoRe) → a BLEMORE model.

Two kinds of original checkpoint, both ``torch.save``'d dicts with the weights under ``"model"`` (beside
``optimizer``, ``epoch``, ``scaler`` and the run's ``args``, an ``argparse.Namespace``):

- pretraining (``checkpoint-99.pth`` of ``run_mae_pretraining_av.py``): ``encoder.*`` (video), ``encoder_audio.*``,
  ``encoder_fusion.*`` and the masked-autoencoder parts fine-tuning drops (``decoder*``, ``encoder_to_decoder*``,
  ``mask_token*``). The head, the layer weights and the embedding LayerNorm are then new, initialised as the
  fine-tuning script finds them (equal layer weights, identity LayerNorm) except the head (random);
- fine-tuned (``run_class_finetuning_regression_av.py``): the same encoders plus ``video_layer_weights``,
  ``audio_layer_weights``, ``fc_norm`` and ``head`` (six outputs for BLEMORE).

The rename table maps each original key to ``HicmaeForBlendedEmotionRecognition``'s names; two named reshapes split
the fused ``qkv`` (self-attention) and ``kv`` (cross-attention) projections.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from blemore import BlemoreError

from .checkpoints import load_into, load_original_checkpoint, rename_state_dict, write_card

REFERENCE = "sunlicai/HiCMAE (MIT licence; BLEMORE fine-tuning in TS1349/HiCMA_BlEmoRe)"
LICENCE, LICENCE_URL = "mit", "https://github.com/sunlicai/HiCMAE/blob/main/LICENSE"

_LAYER = [  # one transformer block of the reference (timm-style names) → a VideoMAE layer
    (r"norm1\.(weight|bias)", r"layernorm_before.\1"),
    (r"attn\.qkv\.weight", r"attention.attention.qkv.weight"),
    (r"attn\.q_bias", r"attention.attention.query.bias"),
    (r"attn\.v_bias", r"attention.attention.value.bias"),
    (r"attn\.proj\.(weight|bias)", r"attention.output.dense.\1"),
    (r"norm2\.(weight|bias)", r"layernorm_after.\1"),
    (r"mlp\.fc1\.(weight|bias)", r"intermediate.dense.\1"),
    (r"mlp\.fc2\.(weight|bias)", r"output.dense.\1"),
]
_CROSS = [  # the cross-attention half of a fusion block
    (r"cross_attn\.q\.weight", r"cross_attention.query.weight"),
    (r"cross_attn\.q_bias", r"cross_attention.query.bias"),
    (r"cross_attn\.kv\.weight", r"cross_attention.kv.weight"),
    (r"cross_attn\.v_bias", r"cross_attention.value.bias"),
    (r"cross_attn\.proj\.(weight|bias)", r"cross_attention.output.\1"),
    (r"cross_norm1\.(weight|bias)", r"cross_layernorm.\1"),
    (r"cross_norm2\.(weight|bias)", r"cross_context_layernorm.\1"),
]


def _blocks(source: str, target: str, parts, inner: str = "") -> list[tuple[str, str]]:
    return [(rf"{re.escape(source)}\.(\d+)\.{pattern}", rf"{target}.\g<1>.{inner}" + replacement.replace(r"\1", r"\2"))
            for pattern, replacement in parts]


#: Original key → converted key, read top to bottom; None drops the key (pretraining-only parts).
RENAME_TABLE: list[tuple[str, str | None]] = [
    (r"encoder\.patch_embed\.proj\.(weight|bias)", r"hicmae.video_embeddings.projection.\1"),
    *_blocks("encoder.blocks", "hicmae.video_layers", _LAYER),
    (r"encoder\.norm\.(weight|bias)", r"hicmae.video_layernorm.\1"),
    (r"encoder_audio\.patch_embed\.proj\.(weight|bias)", r"hicmae.audio_embeddings.projection.\1"),
    *_blocks("encoder_audio.blocks", "hicmae.audio_layers", _LAYER),
    (r"encoder_audio\.norm\.(weight|bias)", r"hicmae.audio_layernorm.\1"),
    *_blocks("encoder_fusion.blocks", "hicmae.fusion_video_layers", _CROSS),
    *_blocks("encoder_fusion.blocks", "hicmae.fusion_video_layers", _LAYER, inner="layer."),
    *_blocks("encoder_fusion.blocks_audio", "hicmae.fusion_audio_layers", _CROSS),
    *_blocks("encoder_fusion.blocks_audio", "hicmae.fusion_audio_layers", _LAYER, inner="layer."),
    (r"encoder_fusion\.norm\.(weight|bias)", r"hicmae.fusion_video_layernorm.\1"),
    (r"encoder_fusion\.norm_audio\.(weight|bias)", r"hicmae.fusion_audio_layernorm.\1"),
    (r"video_layer_weights", r"hicmae.video_layer_weights"),
    (r"audio_layer_weights", r"hicmae.audio_layer_weights"),
    (r"fc_norm\.(weight|bias)", r"hicmae.embedding_layernorm.\1"),
    (r"head\.(weight|bias)", r"head.\1"),
    # the masked autoencoder's reconstruction parts, which fine-tuning does not use
    (r"decoder(_audio)?\..*", None),
    (r"encoder_to_decoder(_audio)?\.weight", None),
    (r"mask_token(_audio)?", None),
]

#: What a pretraining checkpoint does not hold: the fine-tuning script creates these.
NEW_AT_FINE_TUNING = ("head.", "hicmae.video_layer_weights", "hicmae.audio_layer_weights",
                      "hicmae.embedding_layernorm.")


def split_fused_projections(state: dict) -> dict:
    """``qkv.weight`` (3·C, C) → query/key/value weights; ``kv.weight`` (2·C, C) → key/value weights."""
    out = {}
    for key, value in state.items():
        if key.endswith(".attention.attention.qkv.weight"):
            stem = key.removesuffix("qkv.weight")
            for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                out[f"{stem}{name}.weight"] = part.clone()
        elif key.endswith(".cross_attention.kv.weight"):
            stem = key.removesuffix("kv.weight")
            for name, part in zip(("key", "value"), value.chunk(2, dim=0)):
                out[f"{stem}{name}.weight"] = part.clone()
        else:
            out[key] = value
    return out


def load_hicmae_checkpoint(path) -> dict:
    """The state dict of an original HiCMAE checkpoint; its ``args`` Namespace is allowed, no other code."""
    import torch

    with torch.serialization.safe_globals([argparse.Namespace]):
        return load_original_checkpoint(path)


def config_from_state(state: dict, **overrides):
    """A ``HicmaeConfig`` whose sizes are read off the original weights; what weights cannot tell (input sizes,
    heads) comes from ``overrides`` or the BLEMORE fine-tuning defaults (160 px, 16 frames, 256 × 128 log-mel,
    hidden / 64 heads)."""
    from blemore_toolkit.modeling.configuration_hicmae import HicmaeConfig

    try:
        video_patch = state["encoder.patch_embed.proj.weight"]
        audio_patch = state["encoder_audio.patch_embed.proj.weight"]
        mlp = state["encoder.blocks.0.mlp.fc1.weight"]
    except KeyError as error:
        raise BlemoreError(f"not a HiCMAE audio-visual checkpoint: it has no {error.args[0]!r}") from None

    def depth(prefix: str) -> int:
        found = [int(m.group(1)) for key in state if (m := re.match(rf"{re.escape(prefix)}\.(\d+)\.", key))]
        return max(found) + 1 if found else 0

    hidden = int(video_patch.shape[0])
    settings = dict(
        hidden_size=hidden,
        tubelet_size=int(video_patch.shape[2]),
        patch_size=int(video_patch.shape[3]),
        audio_patch_size=int(audio_patch.shape[2]),
        intermediate_size=int(mlp.shape[0]),
        num_hidden_layers=depth("encoder.blocks"),
        num_audio_hidden_layers=depth("encoder_audio.blocks"),
        num_fusion_layers=depth("encoder_fusion.blocks"),
        num_attention_heads=max(1, hidden // 64),
    )
    settings.update({key: value for key, value in overrides.items() if value is not None})
    if "head.weight" in state and int(state["head.weight"].shape[0]) != 6:
        raise BlemoreError(f"the checkpoint's head has {state['head.weight'].shape[0]} outputs; a BLEMORE model "
                           "predicts the six emotions (convert its pretraining checkpoint instead)")
    return HicmaeConfig(**settings)


def convert(checkpoint, out, *, num_attention_heads: int | None = None, image_size: int | None = None,
            num_frames: int | None = None, audio_length: int | None = None, num_mel_bins: int | None = None,
            seed: int = 0) -> Path:
    """Convert ``checkpoint`` into the folder ``out``: safetensors, config, processor, pipeline code and card."""
    import torch

    from blemore_toolkit.modeling.modeling_hicmae import HicmaeForBlendedEmotionRecognition
    from blemore_toolkit.modeling.processing_hicmae import HicmaeProcessor

    out = Path(out)
    original = load_hicmae_checkpoint(checkpoint)
    config = config_from_state(original, num_attention_heads=num_attention_heads, image_size=image_size,
                               num_frames=num_frames, audio_length=audio_length, num_mel_bins=num_mel_bins)
    state = split_fused_projections(rename_state_dict(original, RENAME_TABLE, source=checkpoint))
    pretraining = "head.weight" not in state
    torch.manual_seed(seed)
    model = HicmaeForBlendedEmotionRecognition(config)
    load_into(model, state, source=checkpoint,
              ignore_missing=(lambda key: key.startswith(NEW_AT_FINE_TUNING)) if pretraining else (lambda key: False))
    model.save_pretrained(out)
    HicmaeProcessor.from_model_config(config).save_pretrained(out)
    notes = [
        "Inputs: 16 frames of OpenFace-aligned face crops resized to 160 × 160 (ImageNet normalisation) and 256 "
        "frames of 128-bin Kaldi log-mel at 16 kHz (AudioSet normalisation), as `HicmaeProcessor` makes them.",
    ]
    if pretraining:
        notes.append("From a pretraining checkpoint: the encoders are pretrained; the six-emotion head is new "
                     f"(random, seed {seed}) and the layer weights and embedding LayerNorm start as the fine-tuning "
                     "script starts them. Fine-tune before use: `blemore train DATASET --model hicmae --init-from "
                     "THIS_FOLDER --recipe paper`.")
    write_card(
        out,
        title="HiCMAE (BLEMORE)" + (" — pretrained encoders, untrained head" if pretraining else ""),
        source=str(checkpoint),
        licence=LICENCE,
        licence_url=LICENCE_URL,
        reference=REFERENCE,
        usage=(
            "from transformers import pipeline\n"
            f"classify = pipeline(model=\"{out.name}\", trust_remote_code=True)\n"
            "classify(\"clip.mov\")"
        ),
        notes=notes,
    )
    return out


def add_arguments(parser) -> None:
    parser.add_argument("--num-attention-heads", type=int, default=None,
                        help="attention heads (default: hidden size / 64, as every released HiCMAE)")
    parser.add_argument("--image-size", type=int, default=None, help="face crop side (default 160)")
    parser.add_argument("--num-frames", type=int, default=None, help="frames per clip (default 16)")
    parser.add_argument("--audio-length", type=int, default=None, help="log-mel frames per clip (default 256)")
    parser.add_argument("--num-mel-bins", type=int, default=None, help="mel bins (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the new head of a pretraining checkpoint")

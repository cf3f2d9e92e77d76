"""``blemore convert videomaev2 CKPT.pth OUT``: an OpenGVLab/VideoMAEv2 fine-tuned checkpoint → transformers VideoMAE.

The source is the state dict of ``models/modeling_finetune.py``'s ``VisionTransformer`` (OpenGVLab/VideoMAEv2), as
its fine-tuning script saves it: ``{"model": state}`` (or ``{"module": state}`` when DeepSpeed saved it), e.g. the
paper's ``vit_g_hybrid_pt_1200e_k710_ft.pth`` (``vit_giant_patch14_224``, 710 Kinetics classes) or the distilled
``vit_b_k710_dl_from_giant.pth``. Every size the reference registers (small, base, large, huge, giant) has the same
structure, and transformers' ``VideoMAEForVideoClassification`` computes the same function:

* a Conv3d patch embedding (``tubelet × patch × patch``), the same fixed sinusoid position table (computed by both
  models from the token count, never stored), pre-norm blocks with exact GELU and LayerNorm eps 1e-6;
* attention with a fused ``qkv`` projection whose bias is ``q_bias, 0, v_bias``: transformers has separate
  ``query``/``key``/``value`` projections with biases on ``query`` and ``value`` only (``split_qkv``);
* optional layer scale (``gamma_1``, ``gamma_2`` when the model was built with ``init_values > 0``): transformers has
  none, so each gamma is folded into the linear layer before it (``fold_layer_scale``);
* mean pooling of the tokens, then ``fc_norm``, then the ``head``: ``VideoMAEForVideoClassification`` with
  ``use_mean_pooling`` (its ``fc_norm`` and ``classifier``).

One difference cannot be written into the folder: transformers builds ``fc_norm`` with LayerNorm's default eps
(1e-5), the reference with 1e-6. The written config says ``layer_norm_eps = 1e-6`` (every other LayerNorm uses it),
and ``reference_feature`` below applies ``fc_norm`` with it; ``blemore features`` does the same. The card says so.

The reference's ``forward_features`` (``fc_norm`` of the token mean) is the feature the organisers stored per
16-frame window; see ``reference_feature``.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from blemore import BlemoreError
from blemore_toolkit.conversion.checkpoints import load_into, load_original_checkpoint, rename_state_dict, write_card

#: Reference repository and the commit whose ``models/modeling_finetune.py`` the mapping follows.
REFERENCE_REPOSITORY = "OpenGVLab/VideoMAEv2"
REFERENCE_COMMIT = "29eab1e8a588d1b3ec0cdec7b03a86cca491b74b"

#: The reference's registered models: width, blocks, heads, patch, mlp ratio (models/modeling_finetune.py).
REFERENCE_MODELS = {
    "vit_small_patch16_224": (384, 12, 6, 16, 4.0),
    "vit_base_patch16_224": (768, 12, 12, 16, 4.0),
    "vit_large_patch16_224": (1024, 24, 16, 16, 4.0),
    "vit_huge_patch16_224": (1280, 32, 16, 16, 4.0),
    "vit_giant_patch14_224": (1408, 40, 16, 14, 48 / 11),
}
#: Attention heads of the reference's registered models, by embedding width.
HEADS_BY_WIDTH = {width: heads for width, _, heads, _, _ in REFERENCE_MODELS.values()}
SIZE_NAMES = {width: name.split("_")[1] for name, (width, *_) in REFERENCE_MODELS.items()}
#: LayerNorm eps of every registered model (``partial(nn.LayerNorm, eps=1e-6)``).
LAYER_NORM_EPS = 1e-6
#: The reference's fine-tuning normalisation (dataset/datasets.py: ImageNet mean and std).
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
#: Marker in the written config: ``blemore features`` takes ``fc_norm`` of the token mean for such a folder.
CONVERTED_FROM = "videomaev2"

#: Original key → transformers key, read top to bottom (after ``fold_layer_scale`` and ``split_qkv``).
RENAME_TABLE = [
    (r"patch_embed\.proj\.(weight|bias)", r"videomae.embeddings.patch_embeddings.projection.\1"),
    (r"blocks\.(\d+)\.norm1\.(weight|bias)", r"videomae.encoder.layer.\1.layernorm_before.\2"),
    (r"blocks\.(\d+)\.attn\.q\.weight", r"videomae.encoder.layer.\1.attention.attention.query.weight"),
    (r"blocks\.(\d+)\.attn\.k\.weight", r"videomae.encoder.layer.\1.attention.attention.key.weight"),
    (r"blocks\.(\d+)\.attn\.v\.weight", r"videomae.encoder.layer.\1.attention.attention.value.weight"),
    (r"blocks\.(\d+)\.attn\.q_bias", r"videomae.encoder.layer.\1.attention.attention.query.bias"),
    (r"blocks\.(\d+)\.attn\.v_bias", r"videomae.encoder.layer.\1.attention.attention.value.bias"),
    (r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"videomae.encoder.layer.\1.attention.output.dense.\2"),
    (r"blocks\.(\d+)\.norm2\.(weight|bias)", r"videomae.encoder.layer.\1.layernorm_after.\2"),
    (r"blocks\.(\d+)\.mlp\.fc1\.(weight|bias)", r"videomae.encoder.layer.\1.intermediate.dense.\2"),
    (r"blocks\.(\d+)\.mlp\.fc2\.(weight|bias)", r"videomae.encoder.layer.\1.output.dense.\2"),
    (r"fc_norm\.(weight|bias)", r"fc_norm.\1"),
    (r"head\.(weight|bias)", r"classifier.\1"),
]


# ---------------------------------------------------------------------------------------------------------------
# The two reshapes
# ---------------------------------------------------------------------------------------------------------------


def fold_layer_scale(state: dict) -> dict:
    """``x + γ ⊙ (W h + b)`` is ``x + (diag(γ) W) h + γ ⊙ b``: each gamma scales the rows of the layer before it."""
    state = dict(state)
    for key in [k for k in state if re.fullmatch(r"blocks\.\d+\.gamma_[12]", k)]:
        block, which = key.rsplit(".", 1)
        target = f"{block}.attn.proj" if which == "gamma_1" else f"{block}.mlp.fc2"
        gamma = state.pop(key)
        for part in ("weight", "bias"):
            name = f"{target}.{part}"
            if name not in state:
                raise BlemoreError(f"{key} has no {name} to fold into")
            state[name] = state[name] * (gamma[:, None] if part == "weight" else gamma)
    return state


def split_qkv(state: dict) -> dict:
    """The fused ``qkv`` projection (rows: all of q, then k, then v) → three projections of a third each."""
    state = dict(state)
    for key in [k for k in state if re.fullmatch(r"blocks\.\d+\.attn\.qkv\.weight", k)]:
        prefix = key.removesuffix("qkv.weight")
        query, key_, value = state.pop(key).chunk(3, dim=0)
        state.update({f"{prefix}q.weight": query, f"{prefix}k.weight": key_, f"{prefix}v.weight": value})
    return state


def reference_layout(model_name: str, num_classes: int = 710, tubelet: int = 2) -> dict[str, tuple[int, ...]]:
    """Key → shape of the state dict a fine-tuned ``model_name`` of the reference saves (``qkv_bias=True``, mean
    pooling, no layer scale): what a real checkpoint of that size holds, without its numbers."""
    width, depth, _, patch, mlp_ratio = REFERENCE_MODELS[model_name]
    hidden = int(width * mlp_ratio)
    layout = {"patch_embed.proj.weight": (width, 3, tubelet, patch, patch), "patch_embed.proj.bias": (width,)}
    for i in range(depth):
        block = f"blocks.{i}"
        layout.update({
            f"{block}.norm1.weight": (width,), f"{block}.norm1.bias": (width,),
            f"{block}.attn.q_bias": (width,), f"{block}.attn.v_bias": (width,),
            f"{block}.attn.qkv.weight": (3 * width, width),
            f"{block}.attn.proj.weight": (width, width), f"{block}.attn.proj.bias": (width,),
            f"{block}.norm2.weight": (width,), f"{block}.norm2.bias": (width,),
            f"{block}.mlp.fc1.weight": (hidden, width), f"{block}.mlp.fc1.bias": (hidden,),
            f"{block}.mlp.fc2.weight": (width, hidden), f"{block}.mlp.fc2.bias": (width,),
        })
    layout.update({"fc_norm.weight": (width,), "fc_norm.bias": (width,)})
    if num_classes:
        layout.update({"head.weight": (num_classes, width), "head.bias": (num_classes,)})
    return layout


# ---------------------------------------------------------------------------------------------------------------
# The configuration the weights imply
# ---------------------------------------------------------------------------------------------------------------


def config_from_state(state: dict, source, *, num_heads: int | None = None, image_size: int = 224,
                      num_frames: int = 16, labels: list[str] | None = None):
    """A ``VideoMAEConfig`` from the shapes of the original weights; what shapes cannot tell comes from options.

    The head count is the reference's for the model's width (``--num-heads`` for another width); the input size
    and frame count are not in the weights (the position table is computed, not stored): 224 and 16 by default,
    as every released checkpoint.
    """
    from transformers import VideoMAEConfig

    patch = state.get("patch_embed.proj.weight")
    if patch is None or patch.dim() != 5:
        raise BlemoreError(f"{source}: no patch_embed.proj.weight of a Conv3d; not a VideoMAEv2 fine-tuned "
                           "checkpoint (models/modeling_finetune.py)")
    width, channels, tubelet, patch_h, patch_w = patch.shape
    if patch_h != patch_w:
        raise BlemoreError(f"{source}: a {patch_h}x{patch_w} patch; only square patches are supported")
    blocks = sorted({int(m[1]) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    if not blocks or blocks != list(range(len(blocks))):
        raise BlemoreError(f"{source}: the blocks are not numbered 0..N-1 ({blocks[:5]}...)")
    qkv = state.get("blocks.0.attn.qkv.weight")
    if qkv is None or qkv.shape != (3 * width, width):
        shape = None if qkv is None else tuple(qkv.shape)
        raise BlemoreError(f"{source}: blocks.0.attn.qkv.weight has shape {shape}, expected ({3 * width}, {width}) "
                           "(an attention width other than the model's cannot be held by transformers VideoMAE)")
    heads = num_heads or HEADS_BY_WIDTH.get(int(width))
    if heads is None:
        raise BlemoreError(f"{source}: width {width} is none of the reference's models "
                           f"({', '.join(f'{w}: {h} heads' for w, h in HEADS_BY_WIDTH.items())}); pass --num-heads")
    if width % heads:
        raise BlemoreError(f"--num-heads {heads}: does not divide the width {width}")
    if "fc_norm.weight" not in state:
        raise BlemoreError(f"{source}: no fc_norm; only mean-pooling checkpoints (the reference's default, "
                           "use_mean_pooling=True) are supported")
    if image_size % patch_h or num_frames % tubelet:
        raise BlemoreError(f"--image-size {image_size} / --num-frames {num_frames}: must be multiples of the patch "
                           f"size {patch_h} / the tubelet {tubelet}")
    head = state.get("head.weight")
    num_labels = int(head.shape[0]) if head is not None else 0
    if labels is not None and len(labels) != num_labels:
        raise BlemoreError(f"--labels: {len(labels)} names for a head of {num_labels} classes")
    names = labels or [f"LABEL_{i}" for i in range(num_labels)]
    return VideoMAEConfig(
        image_size=image_size, patch_size=int(patch_h), num_channels=int(channels), num_frames=num_frames,
        tubelet_size=int(tubelet), hidden_size=int(width), num_hidden_layers=len(blocks), num_attention_heads=heads,
        intermediate_size=int(state["blocks.0.mlp.fc1.weight"].shape[0]), hidden_act="gelu",
        layer_norm_eps=LAYER_NORM_EPS, qv_bias="blocks.0.attn.q_bias" in state, use_mean_pooling=True,
        num_labels=num_labels, id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
        converted_from=CONVERTED_FROM,
    )


# ---------------------------------------------------------------------------------------------------------------
# The reference's feature on a converted model
# ---------------------------------------------------------------------------------------------------------------


def reference_feature(model, pixel_values):
    """The reference's ``forward_features``: ``fc_norm`` (eps 1e-6) of the mean of the last tokens.

    ``model`` is the converted ``VideoMAEForVideoClassification``; ``pixel_values`` (batch, frames, 3, H, W).
    """
    import torch.nn.functional as F

    tokens = model.videomae(pixel_values).last_hidden_state
    norm = model.fc_norm
    return F.layer_norm(tokens.mean(1), norm.normalized_shape, norm.weight, norm.bias, model.config.layer_norm_eps)


# ---------------------------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-heads", type=int, default=None,
                        help="attention heads (default: the reference's for the width: 6 small, 12 base, "
                             "16 large/huge/giant)")
    parser.add_argument("--image-size", type=int, default=224, help="input size the model was trained at (224)")
    parser.add_argument("--num-frames", type=int, default=16, help="frames per clip the model was trained on (16)")
    parser.add_argument("--labels", type=Path, default=None,
                        help="class names, one a line, in the head's order (e.g. the reference's "
                             "misc/label_map_k710.txt)")


def _read_labels(path) -> list[str] | None:
    if path is None:
        return None
    path = Path(path)
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise BlemoreError(f"--labels {path}: cannot be read ({error.__class__.__name__})") from None


def convert(checkpoint: str | os.PathLike, out: str | os.PathLike, *, num_heads: int | None = None,
            image_size: int = 224, num_frames: int = 16, labels=None) -> Path:
    """Convert the VideoMAEv2 ``checkpoint`` into the folder ``out`` (weights, config, video processor, card)."""
    import torch
    from transformers import VideoMAEForVideoClassification, VideoMAEImageProcessorPil

    out = Path(out)
    state = load_original_checkpoint(checkpoint)
    config = config_from_state(state, checkpoint, num_heads=num_heads, image_size=image_size,
                               num_frames=num_frames, labels=_read_labels(labels))
    converted = rename_state_dict(split_qkv(fold_layer_scale(state)), RENAME_TABLE, source=checkpoint)
    with torch.device("meta"):
        model = VideoMAEForVideoClassification(config)
    model.to_empty(device="cpu")
    load_into(model, {k: v.float().contiguous() for k, v in converted.items()}, source=checkpoint)
    model.eval()
    model.save_pretrained(out)
    # The PIL image processor needs no torchvision; AutoVideoProcessor/AutoImageProcessor load it.
    VideoMAEImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_mean=list(IMAGE_MEAN), image_std=list(IMAGE_STD),
    ).save_pretrained(out)
    size = SIZE_NAMES.get(config.hidden_size, f"width {config.hidden_size}")
    write_card(
        out, title=f"VideoMAEv2 {size} (patch {config.patch_size}, {config.num_frames} frames, "
                   f"{config.num_labels} classes) as transformers VideoMAE",
        source=checkpoint, licence="cc-by-nc-4.0",
        licence_url="https://creativecommons.org/licenses/by-nc/4.0/",
        reference=f"{REFERENCE_REPOSITORY} (models/modeling_finetune.py at {REFERENCE_COMMIT[:12]})",
        usage=_USAGE,
        notes=[
            "Licence: OpenGVLab first released the VideoMAEv2 checkpoints through a download request form "
            "(docs/MODEL_ZOO.md of the reference repository), later on the Hugging Face Hub: the repository of the "
            "original .pth files (OpenGVLab/VideoMAE2) declares Apache-2.0, OpenGVLab's transformers releases of "
            "the same models (OpenGVLab/VideoMAEv2-Base, -Large, -Huge, -giant) CC BY-NC 4.0. This card states "
            "the stricter, non-commercial one; the reference code itself is MIT. Check the terms under which you "
            "obtained your checkpoint.",
            "The feature the reference calls forward_features is fc_norm(mean of the last tokens). transformers "
            "builds fc_norm with eps 1e-5, the reference with 1e-6 (config.layer_norm_eps): apply it as in the "
            "snippet above for the reference's numbers; the logits of model(...) use eps 1e-5.",
            "Layer scale (gamma_1/gamma_2), where the checkpoint has it, is folded into the attention output and "
            "the second MLP layer; the fused qkv projection is split into query/key/value.",
            "The processor resizes the short side to the model's input size, crops the centre and "
            "normalises with ImageNet's mean and std, as the reference's validation transform does. The "
            "BLEMORE organisers fed this model differently (BGR frames in [0, 1], resized to a square, no "
            "normalisation): `blemore features --protocol paper` reproduces that.",
        ],
    )
    return out


_USAGE = """
import torch
import torch.nn.functional as F
from transformers import AutoImageProcessor, VideoMAEForVideoClassification

model_dir = "path/to/this/folder"
model = VideoMAEForVideoClassification.from_pretrained(model_dir).eval()
processor = AutoImageProcessor.from_pretrained(model_dir)
pixel_values = processor(list_of_16_rgb_frames, return_tensors="pt").pixel_values
with torch.no_grad():
    tokens = model.videomae(pixel_values).last_hidden_state
    feature = F.layer_norm(tokens.mean(1), (model.config.hidden_size,), model.fc_norm.weight,
                           model.fc_norm.bias, model.config.layer_norm_eps)   # the reference's forward_features
    logits = model.classifier(feature)
"""

"""``blemore convert imagebind CKPT OUT``: ImageBind's vision branch as a transformers CLIP vision model.

The original checkpoint (``imagebind_huge.pth`` of facebookresearch/ImageBind, loaded there by
``ImageBindModel.load_state_dict(torch.load(...))``) is one flat state dict of the whole multimodal model: keys
``modality_preprocessors.<modality>...``, ``modality_trunks.<modality>...``, ``modality_heads.<modality>...`` and
``modality_postprocessors.<modality>...`` for vision, text, audio, depth, thermal and IMU. Only the vision branch is
converted; the other modalities' weights are dropped by name.

Why a ``CLIPVisionModelWithProjection`` computes the same function as ImageBind's vision branch (each point is
checked by ``tests/test_convert_imagebind.py`` against the reference code's output):

* **Patch embedding.** ImageBind turns a (B, 3, H, W) image into a 2-frame video by repeating it
  (``PadIm2Video(pad_type="repeat", ntimes=2)``) and applies a bias-free ``Conv3d`` whose kernel and stride are
  (2, p, p). Over two identical frames that is ``sum_t W[:, :, t] * x``: a bias-free ``Conv2d`` with the kernel
  summed over its time axis (``fold_repeated_frame_kernel``). One temporal patch, so the token order (T·H·W
  flattened) is CLIP's (H·W).
* **Tokens.** A class token is prepended, then a learned position embedding (1 + N tokens) is added: CLIP's
  ``class_embedding`` and ``position_embedding``.
* **Trunk.** ``LayerNorm(eps=1e-6)`` on the tokens before the blocks (CLIP's ``pre_layrnorm``), then pre-norm blocks
  ``x + attn(norm_1(x))``, ``x + mlp(norm_2(x))`` with ``nn.MultiheadAttention`` (bias, no bias_kv, scale
  head_dim^-0.5; its fused ``in_proj`` is q, k, v stacked: ``split_in_proj``), an MLP of ratio 4 with exact
  (erf) GELU (CLIP ``hidden_act="gelu"``), every LayerNorm with eps 1e-6 (CLIP's single ``layer_norm_eps``).
* **Head.** ``LayerNorm(eps=1e-6)`` then the class token then a bias-free ``Linear``: CLIP's ``post_layernorm``
  on the class token and ``visual_projection``.
* **Postprocessor.** L2 normalisation of the projected vector. CLIP's ``image_embeds`` are not normalised, so the
  config records ``embedding_normalization: "l2"`` and ``blemore features`` normalises; with plain transformers,
  ``torch.nn.functional.normalize(model(...).image_embeds, dim=-1)`` is ImageBind's vision embedding.

The image processor is ImageBind's image transform (``imagebind/data.py`` ``load_and_transform_vision_data``):
resize the short side to 224 (bicubic), centre crop 224, CLIP mean/std. The attention head count is not stored in a
state dict; ``--num-attention-heads`` defaults to ImageBind's 16 (the vision trunk of ``imagebind_huge`` and of the
``ImageBindModel`` defaults).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

from blemore import BlemoreError
from blemore_toolkit.conversion.checkpoints import load_into, load_original_checkpoint, rename_state_dict, write_card

#: The modalities of an ImageBind checkpoint that are not converted (dropped by name, never by accident).
OTHER_MODALITIES = ("text", "audio", "depth", "thermal", "imu")
#: ImageBind's input size: ``ImageBindModel`` builds its vision preprocessor for 224 × 224 images.
IMAGE_SIZE = 224
#: ``PadIm2Video(ntimes=2)``: how many times ImageBind repeats an image along time before its Conv3d.
REPEATED_FRAMES = 2
#: Heads of ImageBind's vision trunk (``imagebind_huge`` and the ``ImageBindModel`` defaults).
DEFAULT_NUM_HEADS = 16
#: CLIP's (and ImageBind's) normalisation constants, from ``imagebind/data.py``.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: Written into the converted config; ``blemore features`` reads both.
CONVERTED_FROM = "imagebind"
NORMALIZATION = "l2"

_V = r"modality_(?:preprocessors|trunks|heads)\.vision\."
_BLOCK = r"modality_trunks\.vision\.blocks\.(\d+)\."
_LAYER = r"vision_model.encoder.layers.\1."

#: Original key → converted key, read top to bottom (the first full match wins; None drops the key).
RENAME_TABLE: list[tuple[str, str | None]] = [
    (rf"modality_(?:preprocessors|trunks|heads|postprocessors)\.(?:{'|'.join(OTHER_MODALITIES)})\..+", None),
    (r"modality_preprocessors\.vision\.cls_token", "vision_model.embeddings.class_embedding"),
    (r"modality_preprocessors\.vision\.rgbt_stem\.proj\.1\.weight", "vision_model.embeddings.patch_embedding.weight"),
    (r"modality_preprocessors\.vision\.pos_embedding_helper\.pos_embed",
     "vision_model.embeddings.position_embedding.weight"),
    (r"modality_trunks\.vision\.pre_transformer_layer\.0\.(weight|bias)", r"vision_model.pre_layrnorm.\1"),
    (_BLOCK + r"attn\.in_proj_(weight|bias)", _LAYER + r"self_attn.in_proj.\2"),  # split by split_in_proj
    (_BLOCK + r"attn\.out_proj\.(weight|bias)", _LAYER + r"self_attn.out_proj.\2"),
    (_BLOCK + r"norm_1\.(weight|bias)", _LAYER + r"layer_norm1.\2"),
    (_BLOCK + r"norm_2\.(weight|bias)", _LAYER + r"layer_norm2.\2"),
    (_BLOCK + r"mlp\.(fc1|fc2)\.(weight|bias)", _LAYER + r"mlp.\2.\3"),
    (r"modality_heads\.vision\.0\.(weight|bias)", r"vision_model.post_layernorm.\1"),
    (r"modality_heads\.vision\.2\.weight", "visual_projection.weight"),
]


def fold_repeated_frame_kernel(weight, source="checkpoint"):
    """(D, 3, T, p, p) Conv3d kernel applied to a frame repeated T times → the equal (D, 3, p, p) Conv2d kernel."""
    if weight.dim() != 5 or weight.shape[2] != REPEATED_FRAMES:
        raise BlemoreError(f"{source}: the vision patch embedding has shape {tuple(weight.shape)}; expected a Conv3d "
                           f"kernel (D, 3, {REPEATED_FRAMES}, p, p) over ImageBind's repeated frame")
    return weight.sum(dim=2)


def split_in_proj(state: dict) -> dict:
    """``nn.MultiheadAttention``'s fused ``in_proj`` (q, k, v stacked on the first axis) → CLIP's q/k/v projections."""
    out = {}
    for key, value in state.items():
        if ".self_attn.in_proj." not in key:
            out[key] = value
            continue
        base, kind = key.rsplit(".in_proj.", 1)
        for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
            out[f"{base}.{name}.{kind}"] = part.contiguous()
    return out


def vision_config(state: Mapping, num_attention_heads: int = DEFAULT_NUM_HEADS, source="checkpoint"):
    """The ``CLIPVisionConfig`` of the converted (renamed) state dict: sizes read from the weights' shapes."""
    from transformers import CLIPVisionConfig

    hidden = state["vision_model.embeddings.class_embedding"].shape[-1]
    patch = state["vision_model.embeddings.patch_embedding.weight"].shape[-1]
    positions = state["vision_model.embeddings.position_embedding.weight"].shape[0]
    layers = len({key.split(".")[3] for key in state if key.startswith("vision_model.encoder.layers.")})
    if positions != (IMAGE_SIZE // patch) ** 2 + 1:
        raise BlemoreError(f"{source}: {positions} vision position embeddings, but a {IMAGE_SIZE}-pixel image in "
                           f"{patch}-pixel patches has {(IMAGE_SIZE // patch) ** 2} patches and a class token")
    if num_attention_heads < 1 or hidden % num_attention_heads:
        raise BlemoreError(f"--num-attention-heads {num_attention_heads} does not divide the width {hidden}")
    return CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=state["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
        projection_dim=state["visual_projection.weight"].shape[0],
        num_hidden_layers=layers,
        num_attention_heads=num_attention_heads,
        num_channels=3,
        image_size=IMAGE_SIZE,
        patch_size=patch,
        hidden_act="gelu",
        layer_norm_eps=1e-6,
        attention_dropout=0.0,
        # read by blemore features: ImageBind's vision postprocessor, and which family the folder holds
        embedding_normalization=NORMALIZATION,
        converted_from=CONVERTED_FROM,
        architectures=["CLIPVisionModelWithProjection"],
    )


def convert_state_dict(original: Mapping, source="checkpoint") -> dict:
    """An ImageBind state dict → the state dict of a ``CLIPVisionModelWithProjection`` (vision branch only)."""
    if not any(key.startswith("modality_trunks.vision.") for key in original):
        raise BlemoreError(f"{source}: no ImageBind vision branch (no modality_trunks.vision.* weights); is it an "
                           "ImageBind checkpoint such as imagebind_huge.pth?")
    state = rename_state_dict(original, RENAME_TABLE, source)
    embeddings = "vision_model.embeddings."
    needed = [embeddings + "class_embedding", embeddings + "patch_embedding.weight",
              embeddings + "position_embedding.weight", "vision_model.encoder.layers.0.mlp.fc1.weight",
              "visual_projection.weight"]
    if missing := [key for key in needed if key not in state]:
        raise BlemoreError(f"{source}: the ImageBind vision branch is incomplete ({len(missing)} of its parts "
                           f"missing, e.g. what becomes {missing[0]!r})")
    state[embeddings + "patch_embedding.weight"] = fold_repeated_frame_kernel(
        state[embeddings + "patch_embedding.weight"], source)
    state[embeddings + "class_embedding"] = state[embeddings + "class_embedding"].reshape(-1)
    positions = state[embeddings + "position_embedding.weight"]
    state[embeddings + "position_embedding.weight"] = positions.reshape(positions.shape[-2], positions.shape[-1])
    return split_in_proj(state)


def image_processor():
    """ImageBind's image transform (imagebind/data.py): short side 224 bicubic, centre crop 224, CLIP mean/std."""
    from transformers.image_utils import PILImageResampling
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(
        do_resize=True, size={"shortest_edge": IMAGE_SIZE}, resample=PILImageResampling.BICUBIC,
        do_center_crop=True, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD),
        do_convert_rgb=True,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-attention-heads", type=int, default=DEFAULT_NUM_HEADS,
                        help=f"heads of the vision trunk (not stored in the checkpoint; default "
                        f"{DEFAULT_NUM_HEADS}, imagebind_huge's)")


def convert(checkpoint: str | os.PathLike, out: str | os.PathLike,
            num_attention_heads: int = DEFAULT_NUM_HEADS, **_) -> Path:
    """Write ``out``: model.safetensors + config.json (CLIPVisionModelWithProjection), the image processor, a card."""
    import torch
    from transformers import CLIPVisionModelWithProjection

    out = Path(out)
    original = load_original_checkpoint(checkpoint)
    state = convert_state_dict(original, checkpoint)
    config = vision_config(state, num_attention_heads, checkpoint)
    with torch.device("meta"):
        model = CLIPVisionModelWithProjection(config)
    model = model.to_empty(device="cpu")
    load_into(model, state, checkpoint, ignore_missing=lambda key: key.endswith("position_ids"))
    embeddings = model.vision_model.embeddings  # its one buffer, not in any checkpoint: 0..N token positions
    embeddings.position_ids.copy_(torch.arange(embeddings.num_positions).unsqueeze(0))
    model.eval().save_pretrained(out)
    image_processor().save_pretrained(out)
    size = (f"{config.num_hidden_layers} layers, width {config.hidden_size}, {config.num_attention_heads} heads, "
            f"patch {config.patch_size}, embedding {config.projection_dim}")
    write_card(
        out,
        title="ImageBind vision encoder (CLIPVisionModelWithProjection)",
        source=checkpoint,
        licence="cc-by-nc-sa-4.0",
        licence_url="https://github.com/facebookresearch/ImageBind/blob/main/LICENSE",
        reference="facebookresearch/ImageBind's `ImageBindModel`, e.g. `imagebind_huge`; its vision branch",
        usage=_USAGE,
        notes=[
            f"Size: {size}.",
            "ImageBind's README says its code and weights are released under CC-BY-NC 4.0; the LICENSE file of "
            "the repository holds the text of CC BY-NC-SA 4.0 (Attribution-NonCommercial-ShareAlike). This folder "
            "keeps the stricter of the two: non-commercial use only, adaptations under the same licence.",
            "ImageBind embeds an image as a 2-frame video of itself with a Conv3d of kernel (2, p, p); the Conv2d "
            "here holds that kernel summed over its time axis, which computes the same thing.",
            "`image_embeds` are the output of ImageBind's vision head before its postprocessor; ImageBind's vision "
            "embedding is their L2 normalisation (config `embedding_normalization: l2`, which `blemore features` "
            "applies).",
            "The image processor is ImageBind's image transform (short side 224 bicubic, centre crop 224, CLIP "
            "mean/std) with PIL (`CLIPImageProcessorPil`); AutoImageProcessor picks the torchvision version of the "
            "same steps where torchvision is installed, whose bicubic resize differs from PIL's slightly. For an "
            "odd margin the two centre crops can sit one pixel apart.",
            "Only the vision branch is converted; the text, audio, depth, thermal and IMU weights are not included.",
        ],
    )
    return out


_USAGE = """\
import torch
from PIL import Image
from transformers import CLIPVisionModelWithProjection
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

folder = "path/to/this/folder"
model = CLIPVisionModelWithProjection.from_pretrained(folder).eval()
processor = CLIPImageProcessorPil.from_pretrained(folder)
pixels = processor(Image.open("frame.png"), return_tensors="pt").pixel_values
with torch.no_grad():
    embedding = torch.nn.functional.normalize(model(pixel_values=pixels).image_embeds, dim=-1)  # ImageBind's
"""

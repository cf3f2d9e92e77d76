"""Conversions of research checkpoints into transformers folders that ``from_pretrained`` loads offline.

A toolkit stage of its own, between the download of someone else's weights and every stage that loads a model:
``blemore convert FAMILY CHECKPOINT OUT`` reads an original checkpoint (a ``.pth`` the authors publish, which users
download themselves), maps it key by key onto a transformers architecture and writes safetensors, a config, a
processor and a card that names the weights' licence. Nothing here ships to the Hub as remote code.

One module per family, named after it; each exposes ``add_arguments(parser)`` (its own options) and
``convert(checkpoint, out, **options) -> Path``. ``checkpoints`` holds what every family shares: safe loading, the
rename table that refuses unmapped keys, and the written folder's card.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from blemore import BlemoreError

#: Family name (the command's first argument) → what it converts.
FAMILIES: dict[str, str] = {
    "videomaev2": "VideoMAEv2 video encoders (OpenGVLab/VideoMAEv2 checkpoints) → transformers VideoMAE",
    "imagebind": "ImageBind's vision branch (facebookresearch/ImageBind checkpoints) → a transformers vision model",
    "hicmae": "HiCMAE audio-visual models (sunlicai/HiCMAE and BLEMORE fine-tuned checkpoints) → a BLEMORE model",
}


def family_module(family: str) -> ModuleType:
    """The module that converts ``family`` (``blemore_toolkit.conversion.<family>``)."""
    if family not in FAMILIES:
        raise BlemoreError(f"unknown conversion {family!r}; choose one of: {', '.join(FAMILIES)}")
    try:
        return importlib.import_module(f"{__name__}.{family}")
    except ModuleNotFoundError as error:
        if error.name == f"{__name__}.{family}":
            raise BlemoreError(f"the {family} conversion is not part of this installation") from None
        raise


def convert_checkpoint(family: str, checkpoint, out, **options):
    """Convert ``checkpoint`` with ``family``'s converter into the new folder ``out``, all or nothing.

    The converter writes into a staging folder beside ``out`` that is renamed to ``out`` only once it is complete; a
    failed conversion leaves nothing behind, and an existing ``out`` is never touched.
    """
    import os
    import shutil
    from pathlib import Path

    out = Path(out)
    if out.exists() or out.is_symlink():
        raise BlemoreError(f"{out}: already exists; choose a new folder for the converted model")
    if not out.parent.is_dir():
        raise BlemoreError(f"{out.parent}: no such folder to write {out.name} into")
    module = family_module(family)
    staging = out.parent / f".{out.name}.converting-{os.getpid()}"
    staging.mkdir()
    try:
        module.convert(checkpoint, staging, **options)
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out

"""What every conversion shares: reading an original checkpoint safely, mapping its keys by a rename table that
refuses anything unmapped, and the written folder's card.

A rename table is data, read top to bottom: ``(pattern, replacement)`` pairs of regular expressions, applied to each
original key; the first pattern that matches the whole key wins. A replacement of ``None`` drops the key on purpose
(a pretraining decoder, another modality). A key no pattern matches is an error, and so is a key of the target model
that nothing filled: a conversion either maps every weight or writes nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from blemore import BlemoreError

#: Entries that research training scripts wrap their state dict in, tried in this order.
WRAPPER_KEYS = ("model", "module", "state_dict", "model_state")

RenameTable = Sequence[tuple[str, str | None]]


def load_original_checkpoint(path: str | os.PathLike, wrappers: Iterable[str] = WRAPPER_KEYS) -> dict:
    """The state dict (key → tensor) inside a research checkpoint, without running any code it may carry.

    ``torch.load(weights_only=True)`` refuses a pickle that needs code; that refusal, a missing file and a file that
    is no checkpoint are each one line naming the file. A state dict wrapped in one of ``wrappers`` (``{"model":
    {...}, "optimizer": ...}``) is unwrapped.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise BlemoreError(f"{path}: no such checkpoint file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 -- pickle, zip and torch errors alike end in one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BlemoreError(f"{path}: not a loadable PyTorch checkpoint ({first})") from None
    for key in wrappers:
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
            break
    if not isinstance(loaded, Mapping) or not loaded:
        raise BlemoreError(f"{path}: holds no state dict (expected a mapping of parameter names to tensors)")
    state = {}
    for key, value in loaded.items():
        if not isinstance(value, torch.Tensor):
            raise BlemoreError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        state[str(key)] = value
    return state


def strip_prefix(state: Mapping, prefix: str) -> dict:
    """``state`` with ``prefix`` removed from the keys that carry it (``module.`` of DataParallel checkpoints)."""
    return {key.removeprefix(prefix): value for key, value in state.items()}


def rename_state_dict(state: Mapping, table: RenameTable, source: str | os.PathLike = "checkpoint") -> dict:
    """Apply the rename ``table`` to every key of ``state``; an unmatched key is an error naming it.

    Two original keys mapped to one new name is an error too (the table is wrong, not the checkpoint).
    """
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in table]
    renamed: dict = {}
    unmatched = []
    for key, value in state.items():
        for pattern, replacement in compiled:
            match = pattern.fullmatch(key)
            if match is None:
                continue
            if replacement is not None:
                new_key = match.expand(replacement)
                if new_key in renamed:
                    raise BlemoreError(f"{source}: two weights map to {new_key!r} (the second is {key!r})")
                renamed[new_key] = value
            break
        else:
            unmatched.append(key)
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else "")
        raise BlemoreError(f"{source}: {len(unmatched)} weights this conversion does not know: {shown}")
    return renamed


def load_into(model, state: Mapping, source: str | os.PathLike = "checkpoint",
              ignore_missing: Callable[[str], bool] = lambda key: False) -> None:
    """Load the converted ``state`` into ``model`` strictly: every tensor of the model filled, with its shape.

    ``ignore_missing(key)`` names model entries that are legitimately not in the checkpoint (buffers the model
    computes itself, such as a fixed sinusoid table).
    """
    expected = model.state_dict()
    missing = [key for key in expected if key not in state and not ignore_missing(key)]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} model weights not in the checkpoint (e.g. {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} converted weights the model has no place for (e.g. {unexpected[0]!r})")
        raise BlemoreError(f"{source}: " + "; ".join(parts))
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise BlemoreError(f"{source}: {key!r} has shape {tuple(value.shape)}, the model expects "
                               f"{tuple(expected[key].shape)} (a configuration that does not match the weights)")
    model.load_state_dict(dict(state), strict=False)


def write_card(out: str | os.PathLike, *, title: str, source: str, licence: str, licence_url: str,
               reference: str, usage: str, notes: Sequence[str] = ()) -> Path:
    """The converted folder's README.md: what it is, where the weights came from, their licence, how to use it."""
    lines = [
        "---",
        f"license: {licence}",
        "library_name: transformers",
        "tags:",
        "- blemore",
        "- converted",
        "---",
        "",
        f"# {title}",
        "",
        f"Converted by `blemore convert` from `{Path(source).name}` (the original checkpoint of {reference}).",
        "",
        "## Licence of the weights",
        "",
        f"The weights keep the licence of the original checkpoint: **{licence}** ({licence_url}). The conversion only",
        "renames and reshapes them; it adds no weights of its own.",
        "",
        "## Use",
        "",
        "```python",
        usage.strip(),
        "```",
    ]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    path = Path(out) / "README.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

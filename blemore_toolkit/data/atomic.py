"""Files written whole or not at all: a reader never sees half a file, an interrupted write keeps the old one."""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write a text file whole or not at all: a hidden ``.<name>.<pid>.partial`` sibling, then a rename.

    A reader never sees half a file, and an interrupted write leaves the previous version in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path

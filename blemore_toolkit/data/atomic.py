"""Files written whole or not at all, and never through a link: a reader never sees half a file, an interrupted
write keeps the old one, and a symlink planted at the name is replaced (as a link), never written through."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

#: Flags of a file this toolkit creates: a new file only (``O_EXCL`` never opens what is there, a symlink included).
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


@contextlib.contextmanager
def open_new_file(path: str | os.PathLike, mode: int = 0o666) -> Iterator:
    """A binary file object on a file created at ``path`` now: whatever is at that name (a stale file, a link) is
    unlinked first (a link itself, never its target), and the file is opened with ``O_EXCL | O_NOFOLLOW``, so what
    is written goes to this new file and nowhere else."""
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
        path.unlink()
    fd = os.open(path, _NEW_FILE, mode)
    with open(fd, "wb") as handle:
        yield handle


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator:
    """A binary file object whose content replaces ``path`` in one rename once the block ends without an error.

    The content goes to a new hidden sibling (``.<name>.<pid>.partial``, created with ``O_EXCL | O_NOFOLLOW``) that
    is renamed over ``path``: a link at ``path`` is replaced as a link, never written through. After an error the
    partial file is removed and ``path`` is as it was.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open_new_file(partial) as handle:
            yield handle
        os.replace(partial, path)
    except OSError as error:
        if error.filename is None and error.errno is not None:  # a failed write() names no file: name it
            raise OSError(error.errno, error.strerror, str(path)) from None
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> Path:
    """Write a file whole or not at all (see ``replacing``); its folder is created when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as handle:
        handle.write(data)
    return path


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write a UTF-8 text file whole or not at all: a hidden ``.<name>.<pid>.partial`` sibling, then a rename.

    A reader never sees half a file, an interrupted write leaves the previous version in place, and a symlink at
    ``path`` is replaced, not followed.
    """
    return write_bytes_atomically(path, text.encode("utf-8"))


def check_writable(folder: str | os.PathLike, why: str) -> None:
    """Create and remove a file in ``folder``: ``BlemoreError`` naming it when that fails (read-only, full, not
    ours). For commands that write only after long work, so that they fail before it rather than after."""
    import tempfile

    from blemore import BlemoreError

    try:
        fd, probe = tempfile.mkstemp(prefix=".blemore-write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise BlemoreError(f"{folder}: cannot write here ({error.strerror or error}); {why}") from None

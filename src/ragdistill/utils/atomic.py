"""Write a file so that readers see either the old content or the new, never a partial file.

The data goes to a temp file in the target's directory (same file system, so the rename is atomic),
is flushed and fsynced, then renamed over the target with :func:`os.replace`. A crash or an exception
at any point leaves the old file (or no file) in place and removes the temp file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

_DEFAULT_MODE = 0o644
"""Mode of a new file: ``mkstemp`` creates ``0o600``, too strict for a cache shared by a team."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically, creating parent directories as needed.

    Args:
        path: The file to write; an existing file keeps its permission bits.
        data: The complete new content.
    """
    atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_with(path: str | Path, write: Callable[[Path], object]) -> None:
    """Replace ``path`` with what ``write(temp_path)`` writes, atomically: for writers that take a path.

    ``faiss.write_index`` and ``save_pretrained``-style functions write to a path of their own choosing; the
    temp file is fsynced before the rename, so a manifest written last never outlives the files it lists.

    Args:
        path: The file to write; an existing file keeps its permission bits.
        write: Writes the complete new content to the path it is given.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = _DEFAULT_MODE
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with tmp.open("rb") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        # BaseException: an interrupt (Ctrl-C) mid-write must not leave temp files behind either.
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` atomically (no newline translation); see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode(encoding))


def fsync_dir(directory: Path) -> None:
    """Persist the rename itself (POSIX); best effort, since some platforms cannot open a directory."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

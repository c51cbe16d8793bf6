"""The one atomic writer: every file convzoo writes goes through here.

A file is written under a temporary name beside its target, flushed and fsynced, renamed over the target,
and the directory is fsynced so the rename itself survives a power cut. A crash at any moment leaves the
old file or the new one, never half of either; on failure the temporary file is removed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "fsync_dir", "fsync_file", "write_bytes_atomic", "write_text_atomic"]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or creation inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def temporary_name(path: Path, suffix: str = "") -> Path:
    """``.NAME.tmp-PID[SUFFIX]`` beside ``path`` (a suffix keeps the extension writers look at, e.g. ``.png``)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that takes a file name (``savefig``,
    ``safetensors.save_file``); when the block ends without error the file is fsynced and renamed over
    ``path``, and the directory fsynced. On any error the temporary file is removed and ``path`` is
    untouched."""
    target = Path(path)
    tmp = temporary_name(target, suffix)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically and durably."""
    write_bytes_atomic(path, text.encode("utf-8"))

"""One way to write a file or folder so that readers see the old version or the new one, never half.

Every writer in the package (store journal, adapters, models, run records, embeddings, exports)
goes through :func:`atomic_path`: write to a temporary sibling named ``.<stem>.<pid>.<random>.tmp<suffix>``,
flush it to disk (``fsync``), then rename it over the destination. A crash at any point leaves at
most a hidden temporary file, which the next write of the same name does not collide with.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_sibling(path: Path) -> Path:
    """A hidden, unique name next to ``path`` for writing it (same folder, so the rename is atomic).

    The suffix stays, for writers that choose a format by it (zarr, torch).
    """
    return path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")


def _sync(path: Path) -> None:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for file in files:
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike[str], keep_existing: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` at (a file or a folder); rename it into place on success.

    Parameters
    ----------
    path
        The destination. Its folder is created if missing.
    keep_existing
        For folders written by several processes (a cache): if ``path`` exists by the time the
        write is done, keep that one and drop the new copy instead of replacing it.

    Raises
    ------
    Whatever the write inside the ``with`` block raises; the temporary path is removed then.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        _sync(tmp)
        if keep_existing and path.exists():
            return
        if tmp.is_dir() and path.is_dir():  # a folder cannot be renamed over a non-empty one
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            _remove(tmp)


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)

"""Files sent to a worker by content: a manifest of hashes here, a blob store there.

A store folder is a manifest of ``{relative path: [sha256, size]}`` (:func:`folder_manifest`; the
hashes of files whose size and modification time have not changed are read from a
:class:`HashCache`, so a large store is not read again). The worker keeps each file once, under its
hash (:class:`BlobStore`); a run sends only the hashes the worker lacks (:func:`batches`), so a
second run on the same store sends only its new commits and images. Every blob is checked against
its hash when it arrives, and a run's store is put together from hard links to the blobs (read-only).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..atomic import atomic_path, write_atomic

Manifest = dict[str, list]  # relative path -> [sha256, size]

#: the most bytes sent to a worker in one message
BATCH_BYTES = 32 * 1024**2


def file_hash(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for piece in iter(lambda: file.read(1024**2), b""):
            digest.update(piece)
    return digest.hexdigest()


class HashCache:
    """File hashes by (path, size, modification time), kept in a JSON file between runs."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._entries: dict[str, list] = {}
        if self.path is not None and self.path.is_file():
            try:
                self._entries = dict(json.loads(self.path.read_text()))
            except (OSError, ValueError, TypeError):
                self._entries = {}  # a damaged cache is only slower: every file is hashed again

    def hash(self, path: Path) -> str:
        """``path``'s sha256, from the cache while its size and modification time are unchanged."""
        stat = path.stat()
        key = str(path.resolve())
        known = self._entries.get(key)
        if known is not None and known[0] == stat.st_size and known[1] == stat.st_mtime_ns:
            return str(known[2])
        digest = file_hash(path)
        self._entries[key] = [stat.st_size, stat.st_mtime_ns, digest]
        return digest

    def save(self) -> None:
        """Write the cache (atomically); a no-op without a path."""
        if self.path is not None:
            write_atomic(self.path, json.dumps(self._entries))


def folder_manifest(folder: str | os.PathLike[str], cache: HashCache | None = None) -> Manifest:
    """Every file under ``folder`` as ``{relative path: [sha256, size]}``."""
    folder = Path(folder)
    cache = cache or HashCache()
    manifest: Manifest = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        manifest[path.relative_to(folder).as_posix()] = [cache.hash(path), path.stat().st_size]
    return manifest


def batches(files: dict[str, Path], hashes: Iterable[str], limit: int = BATCH_BYTES) -> Iterator[dict[str, bytes]]:
    """The files of ``hashes`` (``files[hash]`` is where each is here) as ``{hash: bytes}`` of at most
    ``limit`` bytes each (a larger file goes alone)."""
    batch: dict[str, bytes] = {}
    size = 0
    for digest in hashes:
        data = files[digest].read_bytes()
        if batch and size + len(data) > limit:
            yield batch
            batch, size = {}, 0
        batch[digest] = data
        size += len(data)
    if batch:
        yield batch


class BlobStore:
    """A worker's files by hash (``root/ab/abcdef...``), written atomically and read-only."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        """Where the blob ``digest`` is kept."""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"{digest!r} is not a sha256 hash")
        return self.root / digest[:2] / digest

    def missing(self, hashes: Iterable[str]) -> list[str]:
        """The hashes of ``hashes`` not kept here, in order, once each."""
        return [digest for digest in dict.fromkeys(hashes) if not self.path(digest).is_file()]

    def put(self, blobs: dict[str, bytes]) -> int:
        """Keep each blob under its hash after checking it; returns the bytes written.

        Raises
        ------
        ValueError
            A blob whose bytes do not have its hash (nothing of it is kept).
        """
        written = 0
        for digest, data in blobs.items():
            if hashlib.sha256(data).hexdigest() != digest:
                raise ValueError(f"A file sent as {digest[:12]}... arrived damaged (its hash differs).")
            path = self.path(digest)
            if path.is_file():
                continue
            with atomic_path(path, keep_existing=True) as tmp:
                tmp.write_bytes(data)
                tmp.chmod(0o444)
            written += len(data)
        return written

    def materialize(self, manifest: Manifest, folder: str | os.PathLike[str]) -> Path:
        """Put the files of ``manifest`` together under ``folder`` (hard links to the blobs, or copies).

        Raises
        ------
        FileNotFoundError
            A blob of the manifest is not kept here.
        """
        folder = Path(folder)
        with atomic_path(folder) as tmp:
            for relative, (digest, _size) in manifest.items():
                if Path(relative).is_absolute() or ".." in Path(relative).parts:
                    raise ValueError(f"{relative!r} is not a path inside the store")
                target = tmp / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                source = self.path(digest)
                if not source.is_file():
                    raise FileNotFoundError(f"The file {relative} ({digest[:12]}...) was not sent to this worker.")
                try:
                    os.link(source, target)
                except OSError:  # another file system, or no hard links: a copy
                    shutil.copyfile(source, target)
        return folder

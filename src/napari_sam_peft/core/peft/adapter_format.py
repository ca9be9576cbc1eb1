"""The adapter file format on disk: a ``.safetensors`` file whose metadata is checked on reading.

Metadata (all strings in the safetensors header; JSON where structured):

``format``            ``napari-sam-peft/adapter``
``format_version``    integer; a file from a newer format is refused with "update"
``spec``              method, blocks, options, preset
``base_model``        identity (name, content_hash) of the base model it was trained on
``architecture``      the base model's architecture
``parent_adapter``    identity of the adapter training started from, or ""
``training_snapshot`` id of the annotation-store snapshot it was trained on, or ""
``metrics``           free-form JSON object (losses, validation scores, ...)
``created``           ISO 8601 time, UTC
``package_version``   napari-sam-peft version that wrote it
``instance_decoder``  ``micro_sam_unetr`` when the file also holds micro_sam's instance decoder,
                      trained with the adapter (its tensors are named ``instance_decoder.<name>``
                      with micro_sam's names); absent otherwise
``content_hash``      SHA-256 over all of the above and every tensor; it is the adapter's
                      identity and detects truncated or edited files

Files are written to a temporary name and renamed, so a crash never leaves a half file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ... import __version__
from ..atomic import atomic_path
from ..errors import SamPeftError
from ..sam.loading import state_dict_hash

ADAPTER_FORMAT = "napari-sam-peft/adapter"
ADAPTER_FORMAT_VERSION = 1


class InvalidAdapterError(SamPeftError):
    """An adapter file that is damaged, edited, from a newer version, or not an adapter."""


def content_hash(metadata: Mapping[str, str], tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the metadata (but ``content_hash``) and every tensor."""
    digest = hashlib.sha256()
    for key in sorted(metadata):
        if key != "content_hash":
            digest.update(f"{key}={metadata[key]}\n".encode())
    digest.update(state_dict_hash(tensors).encode())
    return digest.hexdigest()


def write_adapter_file(path: Path, metadata: Mapping[str, str], tensors: Mapping[str, torch.Tensor]) -> Path:
    """Write tensors and metadata (plus its ``content_hash``) atomically.

    Raises
    ------
    InvalidAdapterError
        For a path that does not end in ``.safetensors``.
    """
    if path.suffix != ".safetensors":
        raise InvalidAdapterError(f"Adapter files end in '.safetensors', not {path.suffix or 'nothing'!r}.")
    stored = {**metadata, "content_hash": content_hash(metadata, tensors)}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=stored)
    return path


def read_adapter_file(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The metadata (without ``content_hash``) and tensors of a verified adapter file.

    Raises
    ------
    InvalidAdapterError
        Missing, truncated or edited file; not an adapter; newer format version.
    """
    if not path.is_file():
        raise InvalidAdapterError(f"No adapter file at {path}.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise InvalidAdapterError(
            f"{path.name} is not a readable adapter file (truncated or damaged: {err})."
        ) from None
    if metadata.get("format") != ADAPTER_FORMAT:
        raise InvalidAdapterError(
            f"{path.name} is not a napari-sam-peft adapter (it may be a model checkpoint: load it as "
            "the model instead)."
        )
    try:
        version = int(metadata.get("format_version", "0"))
    except ValueError:
        version = -1
    if version > ADAPTER_FORMAT_VERSION:
        raise InvalidAdapterError(
            f"{path.name} uses adapter format {version}, newer than this napari-sam-peft ({__version__}) "
            f"reads (format {ADAPTER_FORMAT_VERSION}). Update napari-sam-peft."
        )
    stored_hash = metadata.pop("content_hash", "")
    if stored_hash != content_hash(metadata, tensors):
        raise InvalidAdapterError(
            f"{path.name} has been modified or damaged since it was written (its content no longer "
            "matches its checksum). Use an intact copy."
        )
    return metadata, tensors

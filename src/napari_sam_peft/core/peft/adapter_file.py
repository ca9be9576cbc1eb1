"""The adapter file: one ``.safetensors`` file with only the trained tensors, plus metadata.

Metadata (all JSON strings in the safetensors header):

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
``content_hash``      SHA-256 over all of the above and every tensor; it is the adapter's
                      identity and detects truncated or edited files

Files are written to a temporary name and renamed, so a crash never leaves a half file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ... import __version__
from ..atomic import atomic_path
from ..errors import SamPeftError
from ..sam.architecture import SamArchitecture
from ..sam.loading import LoadedModel, ModelIdentity, state_dict_hash
from .attach import AttachedPeft, attach
from .methods import get_method
from .presets import PeftSpec

ADAPTER_FORMAT = "napari-sam-peft/adapter"
ADAPTER_FORMAT_VERSION = 1


class InvalidAdapterError(SamPeftError):
    """An adapter file that is damaged, edited, from a newer version, or not an adapter."""


class AdapterMismatchError(SamPeftError):
    """An adapter trained on a different base model than the one it is attached to."""


@dataclass
class Adapter:
    """Trained PEFT tensors with everything needed to attach them to the right base model."""

    spec: PeftSpec
    tensors: dict[str, torch.Tensor]
    base_model: ModelIdentity
    architecture: SamArchitecture
    parent_adapter: str = ""
    training_snapshot: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    package_version: str = __version__
    _identity: tuple[tuple, str] | None = field(default=None, init=False, repr=False, compare=False)

    # ------------------------------------------------------------------ identity
    def _metadata(self) -> dict[str, str]:
        return {
            "format": ADAPTER_FORMAT,
            "format_version": str(ADAPTER_FORMAT_VERSION),
            "spec": self.spec.to_json(),
            "base_model": json.dumps(self.base_model.to_dict(), sort_keys=True),
            "architecture": self.architecture.to_json(),
            "parent_adapter": self.parent_adapter,
            "training_snapshot": self.training_snapshot,
            "metrics": json.dumps(self.metrics, sort_keys=True, default=float),
            "created": self.created,
            "package_version": self.package_version,
        }

    @property
    def identity(self) -> str:
        """SHA-256 of metadata and tensors: equal for equal adapters, different after any edit.

        Hashing every tensor takes tens of milliseconds on the GUI thread, so the hash is kept
        until the metadata, a tensor object or a tensor's in-place version counter changes.
        """
        metadata = self._metadata()
        fingerprint = (
            tuple(sorted(metadata.items())),
            tuple((k, id(t), t._version) for k, t in sorted(self.tensors.items())),
        )
        if self._identity is None or self._identity[0] != fingerprint:
            self._identity = (fingerprint, _content_hash(metadata, self.tensors))
        return self._identity[1]

    @property
    def num_parameters(self) -> int:
        return sum(t.numel() for t in self.tensors.values())

    # ------------------------------------------------------------------ making
    @classmethod
    def from_attached(
        cls,
        handle: AttachedPeft,
        base: LoadedModel,
        *,
        parent_adapter: str = "",
        training_snapshot: str = "",
        metrics: Mapping[str, Any] | None = None,
    ) -> Adapter:
        """Capture the current trained tensors of an attached method."""
        return cls(
            spec=handle.spec,
            tensors=handle.trained_tensors(),
            base_model=base.identity,
            architecture=base.architecture,
            parent_adapter=parent_adapter,
            training_snapshot=training_snapshot,
            metrics=dict(metrics or {}),
        )

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the adapter atomically (temporary file, then rename)."""
        path = Path(path)
        if path.suffix != ".safetensors":
            raise InvalidAdapterError(f"Adapter files end in '.safetensors', not {path.suffix or 'nothing'!r}.")
        metadata = self._metadata()
        metadata["content_hash"] = _content_hash(metadata, self.tensors)
        with atomic_path(path) as tmp:
            save_file({k: v.contiguous() for k, v in self.tensors.items()}, str(tmp), metadata=metadata)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Adapter:
        """Read and verify an adapter file.

        Raises
        ------
        InvalidAdapterError
            Missing, truncated or edited file; not an adapter; newer format version.
        UnknownMethodError
            A method this version does not know.
        """
        path = Path(path)
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
        if stored_hash != _content_hash(metadata, tensors):
            raise InvalidAdapterError(
                f"{path.name} has been modified or damaged since it was written (its content no longer "
                "matches its checksum). Use an intact copy."
            )
        try:
            spec = PeftSpec.from_json(metadata["spec"])
            get_method(spec.method)  # raises UnknownMethodError with "update" advice
            adapter = cls(
                spec=spec,
                tensors=tensors,
                base_model=ModelIdentity.from_dict(json.loads(metadata["base_model"])),
                architecture=SamArchitecture.from_json(metadata["architecture"]),
                parent_adapter=metadata.get("parent_adapter", ""),
                training_snapshot=metadata.get("training_snapshot", ""),
                metrics=json.loads(metadata.get("metrics", "{}")),
                created=metadata.get("created", ""),
                package_version=metadata.get("package_version", ""),
            )
        except (KeyError, ValueError, TypeError) as err:
            raise InvalidAdapterError(f"{path.name} has incomplete metadata ({err}).") from None
        return adapter

    # ------------------------------------------------------------------ using
    def check_base(self, model: LoadedModel) -> None:
        """Raise :class:`AdapterMismatchError` unless ``model`` is the base this was trained on."""
        if model.identity.content_hash != self.base_model.content_hash:
            raise AdapterMismatchError(
                f"This adapter was trained on base model {self.base_model.name!r} "
                f"({self.base_model.content_hash[:12]}), but the loaded model is {model.identity.name!r} "
                f"({model.identity.content_hash[:12]}). Load {self.base_model.name!r} first, then attach it."
            )

    def attach_to(self, model: LoadedModel) -> AttachedPeft:
        """Attach onto the live model in place. The model is unchanged if anything fails."""
        self.check_base(model)
        return attach(model.sam, self.spec, self.tensors)

    def merged_state_dict(self, model: LoadedModel) -> dict[str, torch.Tensor]:
        """A plain SAM state dict of base plus adapter; ``model`` itself is left unchanged."""
        handle = self.attach_to(model)
        try:
            return handle.merged_state_dict()
        finally:
            handle.detach()


def _content_hash(metadata: Mapping[str, str], tensors: Mapping[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(metadata):
        if key != "content_hash":
            digest.update(f"{key}={metadata[key]}\n".encode())
    digest.update(state_dict_hash(tensors).encode())
    return digest.hexdigest()

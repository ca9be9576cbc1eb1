"""The adapter: trained PEFT tensors with what they were trained on, saved as one file.

The file holds only the trained tensors plus metadata (``adapter_format.py`` and
docs/adapter_format.md); the :class:`Adapter` is what callers use: made from an attached
method, saved, loaded, attached to the right base model, or merged into plain SAM weights.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from ... import __version__
from ..errors import SamPeftError
from ..sam.architecture import Architecture, architecture_from_json
from ..sam.internals import tensor_version
from ..sam.loading import LoadedModel, ModelIdentity
from .adapter_format import (
    ADAPTER_FORMAT,
    ADAPTER_FORMAT_VERSION,
    InvalidAdapterError,
    content_hash,
    read_adapter_file,
    write_adapter_file,
)
from .attachment import AttachedPeft, attach
from .counting import parameter_count
from .presets import PeftSpec

__all__ = ["ADAPTER_FORMAT", "ADAPTER_FORMAT_VERSION", "Adapter", "AdapterMismatchError", "InvalidAdapterError"]


#: the file's names of the instance decoder's tensors start with this
DECODER_PREFIX = "instance_decoder."
#: what the metadata calls the decoder: micro_sam's UNETR (``core.instance`` builds it)
DECODER_KIND = "micro_sam_unetr"


class AdapterMismatchError(SamPeftError):
    """An adapter trained on a different base model than the one it is attached to."""


@dataclass
class Adapter:
    """Trained PEFT tensors with everything needed to attach them to the right base model."""

    spec: PeftSpec
    tensors: dict[str, torch.Tensor]
    base_model: ModelIdentity
    architecture: Architecture
    parent_adapter: str = ""
    training_snapshot: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    package_version: str = __version__
    #: micro_sam's instance decoder trained with the adapter (its state dict), or empty
    decoder: dict[str, torch.Tensor] = field(default_factory=dict)
    _identity: tuple[tuple, str] | None = field(default=None, init=False, repr=False, compare=False)

    def _metadata(self) -> dict[str, str]:
        decoder = {"instance_decoder": DECODER_KIND} if self.decoder else {}
        return {
            **decoder,
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
            tuple((k, id(t), tensor_version(t)) for k, t in sorted(self._file_tensors().items())),
        )
        if self._identity is None or self._identity[0] != fingerprint:
            self._identity = (fingerprint, content_hash(metadata, self._file_tensors()))
        return self._identity[1]

    def _file_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors as the file holds them: the PEFT method's, then the decoder's under its prefix."""
        return {**self.tensors, **{DECODER_PREFIX + k: v for k, v in self.decoder.items()}}

    @property
    def has_decoder(self) -> bool:
        """Whether an instance decoder was trained with the adapter (automatic instance segmentation)."""
        return bool(self.decoder)

    @property
    def num_parameters(self) -> int:
        """How many numbers the adapter's tensors hold."""
        return parameter_count(self.tensors.values())

    @classmethod
    def from_attached(
        cls,
        handle: AttachedPeft,
        base: LoadedModel,
        *,
        parent_adapter: str = "",
        training_snapshot: str = "",
        metrics: Mapping[str, Any] | None = None,
        decoder: Mapping[str, torch.Tensor] | None = None,
    ) -> Adapter:
        """Capture the current trained tensors of an attached method (and the instance decoder's state)."""
        return cls(
            spec=handle.spec,
            tensors=handle.trained_tensors(),
            base_model=base.identity,
            architecture=base.architecture,
            parent_adapter=parent_adapter,
            training_snapshot=training_snapshot,
            metrics=dict(metrics or {}),
            decoder=dict(decoder or {}),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the adapter atomically (temporary file, then rename).

        Raises
        ------
        InvalidAdapterError
            For a path that does not end in ``.safetensors``.
        """
        return write_adapter_file(Path(path), self._metadata(), self._file_tensors())

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
        metadata, stored = read_adapter_file(path)
        tensors = {k: v for k, v in stored.items() if not k.startswith(DECODER_PREFIX)}
        decoder = {k[len(DECODER_PREFIX) :]: v for k, v in stored.items() if k.startswith(DECODER_PREFIX)}
        if decoder and metadata.get("instance_decoder") != DECODER_KIND:
            raise InvalidAdapterError(
                f"{path.name} holds an instance decoder of a kind this version does not know "
                f"({metadata.get('instance_decoder')!r}). Update napari-sam-peft."
            )
        try:
            return cls(
                spec=PeftSpec.from_json(metadata["spec"]),  # an unknown method says "update"
                tensors=tensors,
                base_model=ModelIdentity.from_dict(json.loads(metadata["base_model"])),
                architecture=architecture_from_json(metadata["architecture"]),
                parent_adapter=metadata.get("parent_adapter", ""),
                training_snapshot=metadata.get("training_snapshot", ""),
                metrics=json.loads(metadata.get("metrics", "{}")),
                created=metadata.get("created", ""),
                package_version=metadata.get("package_version", ""),
                decoder=decoder,
            )
        except (KeyError, ValueError, TypeError) as err:
            raise InvalidAdapterError(f"{path.name} has incomplete metadata ({err}).") from None

    def check_base(self, model: LoadedModel) -> None:
        """Raise :class:`AdapterMismatchError` unless ``model`` is the base this was trained on."""
        if model.identity.content_hash != self.base_model.content_hash:
            raise AdapterMismatchError(
                f"This adapter was trained on base model {self.base_model.name!r} "
                f"({self.base_model.content_hash[:12]}), but the loaded model is {model.identity.name!r} "
                f"({model.identity.content_hash[:12]}). Load {self.base_model.name!r} first, then attach it."
            )

    def attach_to(self, model: LoadedModel) -> AttachedPeft:
        """Attach onto the live model in place. The model is unchanged if anything fails.

        Raises
        ------
        AdapterMismatchError
            For another base model.
        AdapterAttachError
            For tensors that do not fit the model.
        """
        self.check_base(model)
        return attach(model.sam, self.spec, self.tensors)

    def merged_state_dict(self, model: LoadedModel) -> dict[str, torch.Tensor]:
        """A plain SAM state dict of base plus adapter; ``model`` itself is left unchanged."""
        handle = self.attach_to(model)
        try:
            return handle.merged_state_dict()
        finally:
            handle.detach()

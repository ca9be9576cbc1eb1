"""What the session's signals carry, one dataclass per kind of change.

``model_changed`` carries the new :class:`~napari_sam_peft.core.sam.loading.LoadedModel` and
``store_changed`` the new :class:`~napari_sam_peft.core.data.store.AnnotationStore` (or None);
the other payloads are defined here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from napari_sam_peft.core.data.snapshot import Snapshot
from napari_sam_peft.core.data.store import AnnotationStore
from napari_sam_peft.core.peft import Adapter

#: why a store's content changed: objects recorded (commit, undo, correction), a split set, an image
#: removed, annotations imported, or an edit made outside the session
StoreCause = Literal["recorded", "split", "removed", "imported", "edited"]


@dataclass(frozen=True)
class AdapterChange:
    """The adapter on the session's model changed (``adapter_changed``).

    Attributes
    ----------
    adapter
        The adapter now attached; None: the base model alone.
    path
        The file it was read from; None when detached or handed over as an object.
    """

    adapter: Adapter | None
    path: Path | None


@dataclass(frozen=True)
class StoreUpdate:
    """The open store's content changed (``store_updated``).

    Attributes
    ----------
    store
        The store that changed.
    cause
        What changed it (see :data:`StoreCause`).
    """

    store: AnnotationStore
    cause: StoreCause

    @property
    def snapshot(self) -> Snapshot:
        """The store's content after the change: replayed once for every observer (the store keeps it until
        its journal grows)."""
        return self.store.snapshot()

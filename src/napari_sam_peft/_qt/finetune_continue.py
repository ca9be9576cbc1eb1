"""The Finetune widget's "Continue from the live adapter" switch (a warm start, see core.training.continuation).

It is on by default whenever the adapter attached in the Segment widget fits the run the settings
describe (same method, blocks and options) and was read from a file; otherwise it is off, greyed, and
its note says why. A run started with it on continues that adapter: its new adapter names it as parent.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from magicgui.widgets import CheckBox, Label

from napari_sam_peft._qt.dock_layout import steady
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.peft import PeftSpec
from napari_sam_peft.session import AnnotatorSession


class ContinueChoice:
    """The switch and its note; ``spec`` gives the PEFT spec the settings describe (or raises)."""

    def __init__(self, session: AnnotatorSession, spec: Callable[[], PeftSpec]) -> None:
        self.session, self._spec = session, spec
        self.checkbox = CheckBox(
            text="Continue from the live adapter",
            value=False,
            tooltip="Start from the adapter attached in the Segment widget (and its instance decoder) instead of "
            "the base model: images committed since it are drawn more often, fewer steps are recommended",
        )
        self.note = steady(Label(value=""), 3)  # above Start/Stop: a hot reload changes it mid-run
        self._seen: tuple[str, bool] | None = None  # (adapter identity, fits) when last looked at
        self._counted: dict[tuple[str, str], int | None] = {}  # new objects by (adapter, store snapshot)
        self.changed = self.checkbox.changed
        session.model.adapter_changed.connect(self.update)

    def _fit(self) -> tuple[bool, str]:
        """Whether the live adapter can be continued by the run the settings describe, and the note."""
        model = self.session.model
        adapter, path = model.adapter, model.adapter_path
        if adapter is None:
            return False, ""
        if path is None or not Path(path).is_file():
            return False, "The live adapter has no file to continue from: load a run's adapter."
        try:
            spec = self._spec()
        except SamPeftError:
            return False, ""
        depth = model.loaded.architecture.depth if model.loaded is not None else None
        if (adapter.spec.method, adapter.spec.blocks, adapter.spec.options) != (
            spec.method,
            spec.blocks,
            spec.options,
        ):
            return False, (
                f"The live adapter was trained as {adapter.spec.describe(depth)}: choose its preset, blocks and "
                "rank to continue from it."
            )
        return True, f"Continues {Path(path).parent.name}/{Path(path).name} ({adapter.identity[:12]})."

    def update(self, *_: Any) -> None:
        """Enable the switch when the live adapter fits, and turn it on whenever that becomes so."""
        fits, note = self._fit()
        adapter = self.session.model.adapter
        seen = (adapter.identity if adapter is not None else "", fits)
        if seen != self._seen:
            self.checkbox.value = fits  # on by default for each adapter that fits, off for one that does not
            self._seen = seen
        self.checkbox.enabled = fits
        self.note.value = note
        self.note.visible = bool(note)

    def parent(self) -> Path | None:
        """The adapter file a run continues from; None: from the base model."""
        fits, _ = self._fit()
        return self.session.model.adapter_path if fits and self.checkbox.value else None

    def new_objects(self) -> int | None:
        """How many of the store's objects were committed since the adapter a run would continue (None: no
        continuation, or its training data is not in this store)."""
        parent, store = self.parent(), self.session.annotations.store
        adapter = self.session.model.adapter
        if parent is None or store is None or adapter is None:
            return None
        now = store.snapshot()
        key = (adapter.identity, now.snapshot_id)
        if key not in self._counted:  # the journal is read once per adapter and store state
            then = store.snapshot_at(adapter.training_snapshot)
            known = {o.object_id for image in then.images for o in image.objects} if then is not None else None
            train = [i for i in now.images if i.split == "train"]
            self._counted[key] = (
                None if known is None else sum(o.object_id not in known for i in train for o in i.objects)
            )
        return self._counted[key]

"""The objects a user committed on each image, their undo history, and the store that records them.

The session owns each image's labels: a view shows the array :meth:`CommittedObjects.open_image`
returns (napari paints into it in place) and refreshes on ``labels_changed``. Every commit and
undo is written to the annotation store by a
:class:`~napari_sam_peft.core.annotation.recording.LabelRecorder`, and hand corrections once
the view says an image was edited and :meth:`CommittedObjects.record_edited` runs (a view when
the user pauses painting, a training run before it reads the store), so the store holds the
committed labels the user sees; no widget needs to be open for it. When no store is open, the
first commit creates the default one (``default_store_path``).

A recording failure (a read-only or vanished store) never loses a commit: the labels keep it,
the error is raised for the widget to show, and the next recording catches up.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import Signal

from napari_sam_peft.core.annotation.commits import (
    PROMPTED,
    Commit,
    ImageAnnotations,
    commit_prompts,
    object_ids,
)
from napari_sam_peft.core.annotation.prompting import ObjectPrompts
from napari_sam_peft.core.annotation.recording import LabelRecorder, SyncResult
from napari_sam_peft.core.data.store import DEFAULT_STORE_NAME, STORE_SUFFIX, AnnotationStore
from napari_sam_peft.core.errors import SamPeftError

from .events import StoreCause, StoreUpdate

#: what a store that cannot be read or written raises
STORE_ERRORS: tuple[type[BaseException], ...] = (SamPeftError, OSError)


@dataclass(frozen=True)
class OpenedImage:
    """An image opened for annotation (see :meth:`CommittedObjects.open_image`).

    Attributes
    ----------
    labels
        Its committed objects (H, W), the array to show and let the user edit in place.
    restored
        How many objects were read back from the store; None if none were.
    store_error
        Why the store could not be read (the image then opens without objects), or None.
    """

    labels: np.ndarray
    restored: int | None = None
    store_error: BaseException | None = None


class CommittedObjects:
    """Committed labels per image with commit and undo, recorded in the open annotation store.

    Parameters
    ----------
    default_store
        Where a store is created on the first commit when none is open (asked each time: the
        napari window answers from the image layers it has), or None: a store must be opened.

    Signals
    -------
    store_changed(AnnotationStore | None)
        Another store receives the committed objects; images opened before show what it holds once they
        are opened again (views re-open the shown one).
    store_updated(StoreUpdate)
        The store's content changed (commit, paint, import, split).
    labels_changed(str)
        The committed labels of the image of that name changed (commit, undo): views redraw them.
    """

    store_changed = Signal(object)
    store_updated = Signal(StoreUpdate)
    labels_changed = Signal(str)

    def __init__(self, default_store: Callable[[], Path | None] | None = None) -> None:
        self._store: AnnotationStore | None = None
        self._default_store = default_store
        self._recorder: LabelRecorder | None = None
        self._images: dict[str, ImageAnnotations] = {}
        self._pixels: dict[str, np.ndarray] = {}  # each opened image's pixels (they identify it in the store)
        self._edited: set[str] = set()  # images painted by hand since they were last recorded

    @property
    def store(self) -> AnnotationStore | None:
        """Where committed objects go (training reads it), or None."""
        return self._store

    @property
    def default_store_path(self) -> Path | None:
        """Where the first commit creates a store when none is open, or None."""
        return self._default_store() if self._default_store is not None else None

    def set_store(self, store: AnnotationStore | None) -> None:
        """Record committed objects in ``store`` from now on (None: stop recording); emits ``store_changed``."""
        self._store = store
        self._recorder = LabelRecorder(store) if store is not None else None
        # Images opened before (with no store open, as when a dock selects an image before the store is
        # opened, or with another store) were read from there: read them again from this store the next
        # time they are opened, unless the user changed them in this session.
        self._images = {
            name: entry for name, entry in self._images.items() if entry.history.commits or name in self._edited
        }
        self.store_changed.emit(store)

    def open_store(self, path: str | os.PathLike[str], create: bool = True) -> AnnotationStore | None:
        """Open (or create) the store at ``path`` and record into it.

        A folder that is not a store itself gets the default store name inside it.

        Returns
        -------
        AnnotationStore or None
            The store; None if it is absent and ``create`` is False.
        """
        path = Path(path)
        if not path.name.endswith(STORE_SUFFIX):
            if path.is_file():
                raise SamPeftError(
                    f"{path} is a file: choose a folder for the annotation store (or a store, *{STORE_SUFFIX})."
                )
            path = path / DEFAULT_STORE_NAME
        if path.exists():
            store = AnnotationStore(path)
        elif create:
            store = AnnotationStore.create(path)
        else:
            return None
        self.set_store(store)
        return store

    def require_store(self) -> AnnotationStore:
        """The open store, or the default one (created if needed) when none is open.

        Raises
        ------
        SamPeftError
            No store is open and there is no default path.
        """
        if self._store is None:
            path = self.default_store_path
            if path is None:
                raise SamPeftError("No annotation store is open: open one in the Dataset widget.")
            self.open_store(path)
        assert self._store is not None
        return self._store

    def store_description(self) -> tuple[str, str]:
        """Where committed objects go, in words, and the store's full path (for a tooltip)."""
        if self.store is None:
            path = self.default_store_path
            where = f" to {path}" if path is not None else ""
            return f"Commits are recorded as training data{where}.", str(path or "")
        info = self.store.info()
        objects, images = info["objects"], info["images"]
        counts = f"{objects} object{'' if objects == 1 else 's'} on {images} image{'' if images == 1 else 's'}"
        return f"Training data: {counts} in {self.store.path}", str(self.store.path)

    def store_edited(self, cause: StoreCause = "edited") -> None:
        """Tell observers the open store's content changed (after writing to it directly)."""
        if self.store is not None:
            self.store_updated.emit(StoreUpdate(self.store, cause))

    def mark_edited(self, name: str, labels: np.ndarray) -> None:
        """Image ``name`` was painted by hand; ``labels`` is what it shows (the array it was opened with,
        unless a view replaced it). :meth:`record_edited` records it."""
        self.keep_labels(name, labels)
        if name in self._images:
            self._edited.add(name)

    @property
    def edited(self) -> set[str]:
        """Images painted by hand since they were last recorded."""
        return set(self._edited)

    def record_edited(self) -> None:
        """Record every image painted by hand since it was last recorded (see :meth:`record`).

        Raises
        ------
        SamPeftError, OSError
            The store cannot be opened or written; the images not recorded stay edited.
        """
        for name in sorted(self._edited):
            self.record(self._pixels[name], self._images[name].labels, name=name)

    def set_split(self, image_id: str, split: str) -> None:
        """Move a stored image to the ``"train"`` or ``"val"`` split; emits ``store_updated``."""
        self.require_store().set_split(image_id, split)
        self.store_edited("split")

    def remove_image(self, image_id: str) -> None:
        """Remove a stored image and its objects from the training data; emits ``store_updated``."""
        self.require_store().remove_image(image_id)
        self.store_edited("removed")

    def import_labels(self, image: np.ndarray, labels: np.ndarray, name: str = "") -> list[str]:
        """Add an image with an instance label image (one object per id) to the store.

        Returns
        -------
        list[str]
            The new objects' ids in the store.

        Raises
        ------
        SamPeftError
            The labels do not fit the image or hold no object; the store is left unchanged.
        """
        _, objects = self.require_store().add_labels(image, labels, name=name)
        self.store_edited("imported")
        return objects

    def record(self, image: np.ndarray, labels: np.ndarray, name: str = "") -> SyncResult:
        """Make the store hold ``labels`` as the committed objects of ``image`` (hand corrections included).

        Emits ``store_updated`` when the store changed; see :class:`LabelRecorder`.

        Raises
        ------
        SamPeftError, OSError
            The store cannot be opened or written.
        """
        return self._record(image, labels, name, {}, {})

    def _record(
        self,
        image: np.ndarray,
        labels: np.ndarray,
        name: str,
        prompts: dict[int, dict[str, Any]],
        sources: dict[int, str],
    ) -> SyncResult:
        self.require_store()
        assert self._recorder is not None
        result = self._recorder.sync(image, labels, name=name, prompts=prompts, sources=sources)
        self._edited.discard(name)
        if result.wrote:
            self.store_edited("recorded")
        return result

    def restore_labels(self, image: np.ndarray) -> np.ndarray | None:
        """The committed objects the store holds for ``image`` (after a restart), or None."""
        if self._store is None:
            path = self.default_store_path
            if path is not None:
                self.open_store(path, create=False)
        return self._recorder.restore(image) if self._recorder is not None else None

    def open_image(self, name: str, image: np.ndarray, volume: bool = False) -> OpenedImage:
        """The committed objects of image ``name``: as left in this session, else as the store holds them.

        Parameters
        ----------
        name
            The image's name (napari's layer name).
        image
            Its pixels, as checked by :func:`~napari_sam_peft.core.annotation.images.check_image`, or a
            volume's (Z, Y, X[, 3]).
        volume
            ``image`` is a volume: its labels are (Z, Y, X) and its objects 3D.
        """
        known = self._images.get(name)
        if known is not None:
            self._pixels[name] = image
            return OpenedImage(known.labels)
        restored, error = None, None
        try:
            restored = self.restore_labels(image)
        except STORE_ERRORS as err:
            error = err
        shape = image.shape[:3] if volume else image.shape[:2]
        labels = restored if restored is not None else np.zeros(shape, dtype=np.uint32)
        self._images[name] = ImageAnnotations(labels)
        self._pixels[name] = image
        count = len(object_ids(restored)) if restored is not None else None
        return OpenedImage(labels, count, error)

    def has_objects(self, name: str, image: np.ndarray, volume: bool = False) -> bool:
        """Whether image (or ``volume``) ``name`` has committed objects (in this session or in the store)."""
        return bool(self.open_image(name, image, volume).labels.any())

    def keep_labels(self, name: str, labels: np.ndarray) -> None:
        """Remember ``labels`` as what image ``name`` shows now (a view may have replaced the array)."""
        entry = self._images.get(name)
        if entry is not None:
            entry.labels = labels

    def commit(
        self,
        name: str,
        image: np.ndarray,
        labels: np.ndarray,
        objects: np.ndarray,
        prompts: Sequence[ObjectPrompts] = (),
        sources: str | Sequence[str] = PROMPTED,
    ) -> list[int]:
        """Commit each object of ``objects`` into ``labels`` under a new id, and record it in the store.

        Parameters
        ----------
        name
            The image's name.
        image
            Its pixels (they identify it in the store).
        labels
            Its committed labels (H, W), changed in place.
        objects
            The objects to commit (H, W): each non-zero id is one object.
        prompts
            ``prompts[i]`` made object ``i + 1`` of ``objects``; they are stored with it.
        sources
            How the objects were made: one source for all, or one per object id (ascending).

        Returns
        -------
        list[int]
            The new ids in ``labels``.

        Raises
        ------
        SamPeftError, OSError
            The store could not record the commit; ``labels`` keep it all the same.
        """
        old_ids = object_ids(objects)
        entry = self._images.setdefault(name, ImageAnnotations(labels))
        self._pixels[name] = image
        new_ids = entry.history.commit(labels, objects)
        entry.labels = labels
        per_object = [sources] * len(new_ids) if isinstance(sources, str) else list(sources)
        try:
            self._record(
                image,
                labels,
                name,
                commit_prompts(old_ids, new_ids, prompts),
                dict(zip(new_ids, per_object, strict=True)),
            )
        finally:
            self.labels_changed.emit(name)  # the labels keep the commit even if the store failed
        return new_ids

    def remove_object(self, name: str, label: int) -> None:
        """Take object ``label`` out of image ``name``'s committed labels and out of the store.

        Raises
        ------
        SamPeftError
            The image was not opened; or, from the store, as :meth:`record` (the labels lose it all the same).
        """
        entry = self._images.get(name)
        if entry is None:
            raise SamPeftError(f"The image {name!r} has no committed objects in this session: open it first.")
        entry.labels[entry.labels == label] = 0
        try:
            self.record(self._pixels[name], entry.labels, name=name)
        finally:
            self.labels_changed.emit(name)

    def undo(self, name: str, image: np.ndarray, labels: np.ndarray) -> Commit | None:
        """Take the last commit on image ``name`` back out of ``labels`` (in place), and out of the store.

        Returns
        -------
        Commit or None
            The commit taken back; None if there is none.

        Raises
        ------
        SamPeftError, OSError
            The store could not record the undo; ``labels`` are undone all the same.
        """
        entry = self._images.get(name)
        undone = entry.history.undo(labels) if entry is not None else None
        if undone is not None:
            try:
                self.record(image, labels, name=name)
            finally:
                self.labels_changed.emit(name)
        return undone

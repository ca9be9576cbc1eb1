"""Recording committed label images in the store: added, corrected, removed, restored."""

from __future__ import annotations

import numpy as np

from napari_sam_peft.core.annotation.recording import CORRECTED, PAINTED, LabelRecorder, label_masks
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore


def _sources(store):
    (image,) = store.snapshot().images
    return sorted(obj.source for obj in image.objects)


def test_sync_writes_only_the_differences_and_restore_reads_them_back(tmp_path):
    store = AnnotationStore.create(tmp_path / "s.sampeft.zarr")
    image = make_sample("nuclei", seed=0, shape=(32, 32)).image
    labels = np.zeros((32, 32), dtype=np.uint32)
    labels[2:6, 2:6], labels[10:14, 10:14] = 1, 2
    recorder = LabelRecorder(store)
    result = recorder.sync(image, labels, sources={1: "prompts"})
    assert (result.added, result.changed, result.removed) == ([1, 2], [], [])
    assert _sources(store) == [PAINTED, "prompts"]
    assert not recorder.sync(image, labels).wrote  # nothing changed
    labels[2:6, 2:8] = 1
    labels[labels == 2] = 0
    result = recorder.sync(image, labels)
    assert (result.added, result.changed, result.removed) == ([], [1], [2])
    assert _sources(store) == [CORRECTED]
    restored = LabelRecorder(store).restore(image)
    np.testing.assert_array_equal(restored, labels)


def test_label_masks_gives_each_ids_box_and_crop():
    labels = np.zeros((5, 5), dtype=np.uint32)
    labels[1:3, 2:5] = 3
    masks = label_masks(labels)
    assert list(masks) == [3]
    box, crop = masks[3]
    assert box == (slice(1, 3), slice(2, 5)) and crop.all() and crop.shape == (2, 3)
    assert label_masks(np.zeros((4, 4), dtype=np.uint32)) == {}


def test_a_stores_first_annotated_image_trains_even_where_the_split_would_hold_it_out(tmp_path):
    from napari_sam_peft.core.data.snapshot import default_split
    from napari_sam_peft.core.data.store import image_id_for

    samples = [make_sample("nuclei", seed=seed) for seed in range(40)]
    held_out = [s for s in samples if default_split(image_id_for(s.image)) == "val"]
    assert len(held_out) >= 2  # the deterministic split sets these aside for validation
    store = AnnotationStore.create(tmp_path / "s.sampeft.zarr")
    recorder = LabelRecorder(store)
    recorder.sync(held_out[0].image, held_out[0].labels)  # the user's first commit
    recorder.sync(held_out[1].image, held_out[1].labels)  # a second image: the split decides again
    splits = {i.image_id: i.split for i in store.snapshot().images}
    assert splits[image_id_for(held_out[0].image)] == "train"
    assert splits[image_id_for(held_out[1].image)] == "val"
    assert store.info()["train_objects"] > 0  # Start has something to train on

"""One shape for what a user annotates: the session opens an image or a volume and returns its annotator;
a view drives both through the same calls (embed, status, segment the prompts, automatic) without asking
which it holds."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.annotation.images import InvalidImageError
from napari_sam_peft.core.annotation.prompting import ObjectPrompts
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.sample_volume import make_volume
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.volume.volumes import InvalidVolumeError
from napari_sam_peft.session import AnnotatorSession

IMAGE = make_sample("cells", seed=0, shape=(64, 64))
VOLUME = make_volume(seed=0, shape=(8, 64, 64))


@pytest.fixture
def session(tiny_model, tmp_path):
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"), default_store=lambda: None)
    session.model.set_base(tiny_model)
    return session


@pytest.mark.parametrize(
    "sample, labels_shape", [(IMAGE, (64, 64)), (VOLUME, (8, 64, 64))], ids=["image", "volume"]
)
def test_an_image_and_a_volume_are_annotated_through_the_same_calls(session, sample, labels_shape):
    events = []
    session.leaving.connect(lambda: events.append("leaving"))
    session.opened.connect(lambda annotator: events.append(annotator.name))

    annotator = session.open("cells", sample.image)

    assert events == ["leaving", "cells"] and session.shown is annotator
    assert annotator.labels_shape == labels_shape and annotator.data is not None
    assert not annotator.ready
    z = labels_shape[0] // 2 if len(labels_shape) == 3 else 0
    annotator.embed(lambda: z)
    assert annotator.ready and annotator.embedding_status(z).startswith("Embeddings ready")
    prompts = ObjectPrompts(box=np.array([8, 8, 40, 40]), slice=annotator.slice_of(z))
    (mask,) = annotator.segment([prompts], z)
    labels = np.zeros(labels_shape, dtype=np.uint32)
    labels[annotator.plane(z)] = mask  # where the view draws it: the image, or the slice on screen
    assert mask.shape == (64, 64) and labels.sum() == mask.sum()
    automatic = annotator.automatic(points_per_side=4)
    assert automatic.shape == labels_shape


def test_a_volume_takes_one_object_at_a_time_and_says_so(session):
    annotator = session.open("stack", VOLUME.image)
    annotator.embed(lambda: 1)
    boxes = [
        ObjectPrompts(box=np.array([8, 8, 30, 30]), slice=1),
        ObjectPrompts(box=np.array([30, 30, 60, 60]), slice=1),
    ]
    assert annotator.one_object_at_a_time
    with pytest.raises(SamPeftError, match="one object is segmented at a time, but slice 1 has 2 boxes"):
        annotator.segment(boxes, 1)


def test_an_image_cannot_be_prompted_before_its_embeddings_and_says_what_to_do(session):
    annotator = session.open("cells", IMAGE.image)
    assert annotator.embedding_status() == "Computing embeddings..."
    with pytest.raises(SamPeftError, match="still being computed: wait for the progress bar"):
        annotator.segment([ObjectPrompts(box=np.array([8, 8, 40, 40]))])


@pytest.mark.parametrize(
    "data, error",
    [(np.zeros((2, 3, 64, 64), np.float32), InvalidVolumeError), (np.array([["a"]]), InvalidImageError)],
    ids=["4D", "text"],
)
def test_what_cannot_be_annotated_is_refused_and_nothing_is_shown(session, data, error):
    session.open("cells", IMAGE.image)
    opened = []
    session.opened.connect(opened.append)
    with pytest.raises(error):
        session.open("bad", data)
    assert session.shown is None and opened == []


def test_showing_nothing_leaves_the_shown_image(session):
    session.open("cells", IMAGE.image)
    left = []
    session.leaving.connect(lambda: left.append(True))
    assert session.open(None) is None
    assert session.shown is None and left == [True]

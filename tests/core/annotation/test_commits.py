"""Committing objects into a label image under new ids, undo, and where committed objects came from."""

from __future__ import annotations

import numpy as np

from napari_sam_peft.core.annotation.commits import (
    AUTOMATIC,
    AUTOMATIC_EDITED,
    CommitHistory,
    automatic_sources,
    commit_prompts,
    keep_object_components,
)
from napari_sam_peft.core.annotation.prompting import ObjectPrompts


def test_commits_number_objects_after_the_last_id_and_undo_restores_what_was_there():
    labels = np.zeros((6, 6), dtype=np.uint32)
    labels[0:2, 0:2] = 4
    source = np.zeros_like(labels)
    source[1:3, 1:3] = 7  # partly over object 4
    source[5, 5] = 9
    history = CommitHistory()
    assert history.commit(labels, source) == [5, 6]
    assert labels[1, 1] == 5 and labels[5, 5] == 6 and labels[0, 0] == 4
    before = labels.copy()
    history.commit(labels, (source == 9).astype(np.uint32))
    assert history.undo(labels).object_ids == [7]
    np.testing.assert_array_equal(labels, before)
    history.undo(labels)
    assert labels[1, 1] == 4 and labels.max() == 4
    assert history.undo(labels) is None


def test_automatic_sources_tell_kept_from_edited_proposals():
    proposal = np.array([[1, 1, 0], [0, 2, 2]])
    edited = proposal.copy()
    edited[1, 1] = 0
    assert automatic_sources(edited, proposal) == [AUTOMATIC, AUTOMATIC_EDITED]
    assert automatic_sources(proposal, None) == [AUTOMATIC_EDITED, AUTOMATIC_EDITED]


def test_each_committed_object_gets_the_prompts_it_was_made_with():
    prompts = [ObjectPrompts(box=[0, 0, 4, 4]), ObjectPrompts(points=[[1, 2]], labels=[1])]
    records = commit_prompts([1, 2, 3], [10, 11, 12], prompts)
    assert records == {
        10: {"points": [], "labels": [], "box": [0.0, 0.0, 4.0, 4.0]},
        11: {"points": [[1.0, 2.0]], "labels": [1], "box": None},
    }


def test_stray_specks_are_dropped_unless_a_positive_point_is_on_them():
    mask = np.zeros((5, 9), dtype=bool)
    mask[1:4, 4:9] = True  # the object
    mask[0, 0] = mask[4, 0] = True  # two specks, one under a positive point
    kept = keep_object_components(mask, np.array([[4.0, 0.0], [0.0, 0.0]]), np.array([1, 0]))
    assert kept[1:4, 4:9].all() and kept[4, 0] and not kept[0, 0]
    assert kept.sum() == 16

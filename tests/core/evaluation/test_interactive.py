"""The interactive evaluation protocol: perfect predictions score 1, corrections fix mistakes."""

from __future__ import annotations

import numpy as np

from napari_sam_peft.core.evaluation.interactive import evaluate_interactive, farthest_interior_point


class OraclePredictor:
    """A stand-in predictor that returns the ground-truth object under the prompts, shrunk at first."""

    def __init__(self, labels, shrink_first=True):
        self.labels = labels
        self.shrink_first = shrink_first
        self.model = type("M", (), {"mask_threshold": 0.0})()

    def predict(
        self,
        point_coords=None,
        point_labels=None,
        box=None,
        mask_input=None,
        multimask_output=False,
        return_logits=False,
    ):
        if box is not None:
            x0, y0, x1, y1 = np.asarray(box, int)
            obj = np.bincount(self.labels[y0 : y1 + 1, x0 : x1 + 1].ravel(), minlength=2)[1:].argmax() + 1
        else:
            x, y = np.asarray(point_coords[0], int)
            obj = self.labels[y, x]
        mask = self.labels == obj
        n_points = 0 if point_coords is None else len(point_coords)
        if self.shrink_first and n_points <= 1:
            rows, cols = np.nonzero(mask)
            mask = mask.copy()
            mask[rows.min() : (rows.min() + rows.max()) // 2] = False  # only half the object at first
        logits = np.where(mask, 5.0, -5.0)[None]
        k = 3 if multimask_output else 1
        return np.repeat(logits, k, 0), np.ones(k), np.zeros((k, 8, 8))


def _labels():
    labels = np.zeros((64, 64), np.uint32)
    labels[5:25, 5:25] = 1
    labels[30:60, 35:55] = 2
    return labels


def _noop(*args, **kwargs):
    return {"features": None}


def test_perfect_predictions_score_one_and_corrections_fix_half_objects(monkeypatch):
    import micro_sam.util as util

    monkeypatch.setattr(util, "precompute_image_embeddings", _noop)
    monkeypatch.setattr(util, "set_precomputed", _noop)
    labels = _labels()
    image = np.random.default_rng(0).random((64, 64))

    perfect = evaluate_interactive(OraclePredictor(labels, shrink_first=False), [(image, labels)])
    assert perfect == {"point": 1.0, "box": 1.0, "i_p": 1.0, "i_b": 1.0, "n_objects": 2}

    corrected = evaluate_interactive(OraclePredictor(labels, shrink_first=True), [(image, labels)])
    assert corrected["point"] < 0.5 and corrected["box"] < 0.5
    assert corrected["i_p"] == 1.0 and corrected["i_b"] == 1.0


def test_the_first_point_is_deep_inside_the_object():
    mask = np.zeros((20, 40), bool)
    mask[5:15, 5:35] = True
    row, col = farthest_interior_point(mask)
    assert 8 <= row <= 11 and 8 <= col <= 31
    assert farthest_interior_point(np.zeros((4, 4), bool)) is None

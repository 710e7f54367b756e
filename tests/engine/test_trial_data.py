"""Per-class pixel counts of labelled and all target pixels, hand-computed."""

from __future__ import annotations

import numpy as np
import torch

from ripu.engine.trial_data import class_pixel_counts


class Tiny(list):
    """Two 2x3 label maps, 3 classes, 255 = ignore."""

    num_classes = 3


DATA = Tiny([
    {"id": "a", "label": torch.tensor([[0, 0, 1], [2, 255, 1]])},
    {"id": "b", "label": torch.tensor([[2, 2, 2], [255, 255, 0]])},
])


def test_counts_of_labelled_and_all_pixels():
    masks = {"a": np.array([[True, False, True], [True, True, False]]),  # 0, 1, 2, ignore
             "b": np.zeros((2, 3), dtype=bool)}
    labelled, total, boundary = class_pixel_counts(DATA, masks)
    assert total.tolist() == [3, 2, 4]  # ignore pixels count in neither
    assert labelled.tolist() == [1, 1, 1]
    assert boundary == 3  # no 3x3 window of a 2x3 map holds one class: every labelled pixel


def test_nothing_or_everything_labelled():
    labelled, total, boundary = class_pixel_counts(DATA, None)
    assert labelled.tolist() == [0, 0, 0] and total.tolist() == [3, 2, 4] and boundary == 0
    labelled, _, _ = class_pixel_counts(DATA, None, everything=True)
    assert labelled.tolist() == [3, 2, 4]
    labelled, _, _ = class_pixel_counts(DATA, {"b": np.ones((2, 3), dtype=bool)})
    assert labelled.tolist() == [1, 0, 3]  # images missing from the masks: none labelled

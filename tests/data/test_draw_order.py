"""Training draws in shuffled passes without replacement (``data.order: epochs``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ripu.engine.batches import IterationBatches
from ripu.errors import RipuError


class Indexed(torch.utils.data.Dataset):
    """Item i: a 1x1 image and label holding i, id "i"."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.full((3, 1, 1), float(i)), "label": torch.full((1, 1), i),
                "id": str(i), "index": i}


def _drawn(batches: IterationBatches, start: int, end: int) -> list[int]:
    return [i for it in range(start, end) for i in batches[it]["target"]["index"].tolist()]


def test_epochs_visit_every_image_once_per_pass():
    batches = IterationBatches(3, target=Indexed(5), batch_target=2, flip=False, order="epochs")
    drawn = _drawn(batches, 0, 10)  # 20 draws: 4 passes over 5 images
    for p in range(4):
        assert sorted(drawn[5 * p:5 * p + 5]) == [0, 1, 2, 3, 4]
    assert len({tuple(drawn[5 * p:5 * p + 5]) for p in range(4)}) > 1  # reshuffled
    # Independent draws (order random) with this seed repeat an image within a pass.
    random = _drawn(IterationBatches(3, target=Indexed(5), batch_target=2, flip=False), 0, 10)
    assert any(len(set(random[5 * p:5 * p + 5])) < 5 for p in range(4))


def test_epochs_start_at_first_and_batches_are_resumable():
    a = IterationBatches(1, target=Indexed(4), batch_target=1, flip=False, order="epochs",
                         first=100)
    assert sorted(_drawn(a, 100, 104)) == [0, 1, 2, 3]
    b = IterationBatches(1, target=Indexed(4), batch_target=1, flip=False, order="epochs",
                         first=100)
    assert _drawn(b, 102, 104) == _drawn(a, 102, 104)  # any access order, same batches
    np.testing.assert_array_equal(a[105]["target"]["label"], b[105]["target"]["label"])


def test_unknown_order_is_refused():
    with pytest.raises(RipuError, match="draw order 'sorted'.*random, epochs"):
        IterationBatches(0, target=Indexed(2), batch_target=1, order="sorted")

"""Selection at the labels' full resolution, as the authors do (BIT-DA/RIPU
core/active/build.py, commit 84328cf): region and point counts per round, and masks mapped
to the training size with PIL NEAREST."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ripu.acquisition import Budget, LabelState, select_round, units_for_round
from ripu.data import CITYSCAPES_TO_TRAIN, CityscapesDataset, SegTransform
from ripu.engine.batches import IterationBatches, TargetLabels
from ripu.engine.trainer import run_trial
from tests.conftest import tiny_config
from tests.data.layouts import write_cityscapes

FULL = (1024, 2048)  # (H, W) of a Cityscapes label
TRAIN = (640, 1280)  # (H, W) of the target training size


def authors_regions(height: int, width: int, ratio: float, rounds: int, radius: int) -> int:
    """build.py:93 per_region_pixels, :96 active_ratio, :119 num_pixel_cur, :129."""
    per_region_pixels = (2 * radius + 1) ** 2
    active_ratio = ratio / rounds
    num_pixel_cur = height * width
    return math.ceil(num_pixel_cur * active_ratio / per_region_pixels)


def authors_points(points: int, rounds: int) -> int:
    """build.py:17, with the authors' fixed 1280x640 training and 2048x1024 label sizes."""
    return math.ceil(points / rounds / (1280 * 640) * (2048 * 1024))


@pytest.mark.parametrize("ratio,radius,full,train", [
    (0.022, 1, 1026, 401), (0.05, 1, 2331, 911), (0.022, 9, 26, 10)])
def test_region_counts_per_round_equal_the_authors_formula(ratio, radius, full, train):
    budget = Budget("region", ratio, 40, 5, radius)
    for r in range(5):
        assert units_for_round(budget, *FULL, r) == authors_regions(*FULL, ratio, 5, radius) == full
        assert units_for_round(budget, *TRAIN, r) == authors_regions(*TRAIN, ratio, 5, radius) \
            == train
    # Counted on the full-size map, the input size does not enter.
    assert units_for_round(budget, *FULL, 0, input_area=TRAIN[0] * TRAIN[1]) == full


def test_point_counts_per_round_equal_the_authors_formula():
    budget = Budget("point", 0.022, 40, 5, 32)
    for r in range(5):
        n = units_for_round(budget, *FULL, r, input_area=TRAIN[0] * TRAIN[1])
        assert n == authors_points(40, 5) == 21  # ceil(8 x 2.56)
    # At the training size the 40 points split exactly over the rounds, as before.
    assert [units_for_round(budget, *TRAIN, r, input_area=TRAIN[0] * TRAIN[1])
            for r in range(5)] == [8] * 5


class Coded(torch.nn.Module):
    """Logits at the input size from a fixed 1x1 convolution (a deterministic model)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.arange(12.0).view(4, 3, 1, 1).sin())
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _items(n: int, image_hw: tuple[int, int], label_hw: tuple[int, int]) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.randn(3, *image_hw, generator=g),
             "label": torch.randint(0, 4, label_hw, generator=g), "id": f"im{i}", "index": i}
            for i in range(n)]


def test_runner_selects_at_label_size_with_the_scaled_counts():
    items = _items(3, (4, 8), (8, 16))  # labels twice the input size
    regions = Budget("region", 0.5, 2, 1, 1)
    state = select_round(Coded(), items, LabelState(), "ripu_region", regions, 0, seed=0,
                         progress=False)
    n = units_for_round(regions, 8, 16, 0)
    assert n == math.ceil(8 * 16 * 0.5 / 9) == 8
    assert state.round_stats[-1]["units"] == 3 * n
    assert all(state.shape(f"im{i}") == (8, 16) for i in range(3))

    points = Budget("point", 0.5, 2, 1, 1)
    state = select_round(Coded(), items, LabelState(), "ripu_point", points, 0, seed=0,
                         progress=False)
    n = units_for_round(points, 8, 16, 0, input_area=4 * 8)
    assert n == math.ceil(2 / 1 * (8 * 16) / (4 * 8)) == 8
    # One pixel per point, blocks of 3x3 around each: 8 points fit in 8x16.
    assert [state.labelled_count(f"im{i}") for i in range(3)] == [8, 8, 8]


def test_masks_map_to_the_training_size_with_pil_nearest(tmp_path: Path):
    label = (np.arange(40).reshape(4, 10) % 19 + 7).astype(np.uint8)  # ids 7..25
    write_cityscapes(tmp_path / "cs", "train", {"ulm": [label]})
    target = CityscapesDataset(tmp_path / "cs", transform=SegTransform(
        size=(4, 2), resize="pil_bicubic", resize_label=False))
    mask = np.zeros((4, 10), bool)
    mask[1, 1] = mask[3, 6] = mask[3, 8] = mask[0, 0] = True
    batches = IterationBatches(0, target=target, batch_target=1, flip=False,
                               target_labels=TargetLabels(labelled={"ulm/ulm_000000_000000": mask}))
    got = batches[0]["target"]["label"][0].numpy()

    # PIL NEAREST from 4x10 to 2x4 reads source row floor((y + 0.5) * 2) = 1, 3 and column
    # floor((x + 0.5) * 2.5) = 1, 3, 6, 8.
    mapped = np.vectorize(lambda i: CITYSCAPES_TO_TRAIN.get(int(i), 255))(label)
    rows, cols = [1, 3], [1, 3, 6, 8]
    want = np.where(mask[np.ix_(rows, cols)], mapped[np.ix_(rows, cols)], 255)
    assert want.tolist() == [[mapped[1, 1], 255, 255, 255], [255, 255, mapped[3, 6], mapped[3, 8]]]
    np.testing.assert_array_equal(got, want)

    # The authors' way: label and mask values as one two-channel PIL image resized NEAREST
    # (core/datasets/cityscapes.py:252-270 with transform.py:69).
    mask_values = np.where(mask, mapped, 255).astype(np.uint8)
    pair = Image.fromarray(np.stack([mapped.astype(np.uint8), mask_values], axis=2))
    authors = np.asarray(pair.resize((4, 2), Image.NEAREST))[..., 1]
    np.testing.assert_array_equal(got, authors)


@pytest.mark.parametrize("strategy", ["ripu_region", "ripu_point"])
def test_trial_with_the_paper_settings_selects_at_label_size(tiny_data, tmp_path, strategy):
    """A whole active trial with the paper files' fidelity settings: labels 64x32, training
    and evaluation inputs 32x16, selection on the 64x32 labels."""
    cfg = tiny_config(tiny_data, tmp_path, **{
        "train.kind": "active", "active.strategy": strategy, "active.points": 4,
        "data.target_size": [32, 16], "data.eval_size": [32, 16], "data.source_size": [32, 16],
        "active.select_size": "label", "data.resize": "pil_bicubic", "data.flip": False,
        "data.class_balance_rule": "authors", "data.order": "epochs", "train.eval_flip": True})
    res = run_trial(cfg, tmp_path / "t", progress=False, callbacks=[])
    assert 0.0 <= res["miou"] <= 1.0
    state = LabelState.load(tmp_path / "t" / "masks" / "round_1.npz")
    masks = state.masks_for(state.ids)
    assert {m.shape for m in masks.values()} == {(32, 64)}
    if strategy == "ripu_point":
        # ceil(4 / 2 rounds x (64 x 32) / (32 x 16)) = 8 points a round, one pixel each.
        assert [int(m.sum()) for m in masks.values()] == [16] * len(masks)
    else:
        # ceil(32 x 64 x 0.05 / 2 / 9) = 6 regions a round of at most 9 pixels each.
        assert all(0 < m.sum() <= 2 * 6 * 9 for m in masks.values())

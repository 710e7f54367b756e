"""Budgets and selection rounds on a tiny model and an in-memory dataset."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ripu.acquisition import (
    Budget,
    LabelState,
    pixel_cap,
    region_scores,
    select_regions,
    select_round,
    units_for_round,
)
from ripu.errors import RipuError

C, H, W = 4, 16, 24

# ---------------------------------------------------------------------------- budget


def test_region_budget_of_the_paper():
    budget = Budget("region", 0.022, 40, 5, 1)
    assert units_for_round(budget, 1024, 2048, 0) == 1026  # ceil(1024*2048*0.0044/9)


def test_region_budget_ceil_is_exact_on_decimal_fractions():
    # 30*30*0.1/9 is exactly 10 (float arithmetic would give 10.000000000000002 -> 11).
    assert units_for_round(Budget("region", 0.1, 0, 1, 1), 30, 30, 0) == 10
    assert units_for_round(Budget("region", 0.1, 0, 1, 1), 30, 31, 0) == 11


def test_point_budget_splits_remainder_to_early_rounds():
    budget = Budget("point", 0.022, 21, 5, 32)
    per_round = [units_for_round(budget, 64, 64, r) for r in range(5)]
    assert per_round == [5, 4, 4, 4, 4] and sum(per_round) == 21
    assert [units_for_round(Budget("point", 0.1, 40, 5, 32), 8, 8, r)
            for r in range(5)] == [8] * 5


def test_image_budget_is_a_cumulative_pixel_cap():
    budget = Budget("image", 0.25, 0, 3, 1)
    assert [pixel_cap(budget, 1000, r) for r in range(3)] == [83, 166, 250]
    assert sum(units_for_round(budget, 1000, 1, r) for r in range(3)) == 250


@pytest.mark.parametrize("kwargs,match", [
    ({"mode": "regions"}, "mode"), ({"fraction": 0.0}, "fraction"),
    ({"fraction": 1.5}, "fraction"), ({"rounds": 0}, "rounds"),
    ({"radius": -1}, "radius"), ({"points_per_image": 2.5}, "points_per_image"),
])
def test_bad_budgets_raise(kwargs, match):
    args = {"mode": "region", "fraction": 0.02, "points_per_image": 40, "rounds": 5,
            "radius": 1} | kwargs
    with pytest.raises(RipuError, match=match):
        Budget(**args)


def test_round_index_outside_the_budget_raises():
    with pytest.raises(RipuError, match="round_index"):
        units_for_round(Budget("region", 0.02, 0, 5, 1), 8, 8, 5)


# ---------------------------------------------------------------------------- rounds


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, C, 1))


def tiny_dataset(n=5, ignore=False):
    g = torch.Generator().manual_seed(42)
    items = []
    for i in range(n):
        label = torch.randint(0, C, (H, W), generator=g)
        if ignore:
            label[:] = 255
        items.append({"image": torch.randn(3, H, W, generator=g), "label": label,
                      "id": f"city/img_{i}", "index": i})
    return items


class ExplodingModel(torch.nn.Module):
    def forward(self, x):
        raise AssertionError("a strategy without logits must not run the model")


REGIONS = Budget("region", 0.1, 0, 3, 1)


def test_region_round_equals_direct_scoring_of_upsampled_logits():
    model, data = tiny_model(), tiny_dataset()
    state = select_round(model, data, LabelState(), "ripu_region", REGIONS, 0, seed=0,
                         batch_size=2, progress=False)
    n = units_for_round(REGIONS, H, W, 0)
    with torch.no_grad():
        for item in data:
            small = model.eval()(item["image"][None])
            logits = F.interpolate(small, size=(H, W), mode="bilinear", align_corners=True)[0]
            selected, blocked = select_regions(region_scores(logits, 1).score, n, 1)
            assert np.array_equal(state.labelled[item["id"]], selected.numpy())
            assert np.array_equal(state.blocked[item["id"]], blocked.numpy())


def test_rounds_accumulate_without_reselecting_and_keep_the_input_state():
    model, data = tiny_model(), tiny_dataset()
    model.train()
    first = select_round(model, data, LabelState(), "ripu_region", REGIONS, 0, seed=0,
                         progress=False)
    assert model.training  # mode restored
    kept = {i: first.labelled[i] for i in first.ids}
    second = select_round(model, data, first, "ripu_region", REGIONS, 1, seed=0,
                          progress=False)
    assert first.round_index == 0 and len(first.round_stats) == 1
    assert second.round_index == 1 and len(second.round_stats) == 2
    for image_id in first.ids:
        assert np.array_equal(first.labelled[image_id], kept[image_id])
        new = second.labelled[image_id] & ~kept[image_id]
        assert new.any() and (second.labelled[image_id] >= kept[image_id]).all()
        assert (second.blocked[image_id] >= second.labelled[image_id]).all()
        # No region of round 1 overlaps round 0's: each new region is a whole 3x3 window.
        assert new.sum() <= 9 * units_for_round(REGIONS, H, W, 1)
    stats = second.round_stats[1]
    assert stats["selected_pixels"] == second.labelled_pixels() - first.labelled_pixels()
    assert stats["total_pixels"] == len(data) * H * W
    assert stats["round_fraction"] == pytest.approx(stats["selected_pixels"] / (5 * H * W))


def test_eval_mode_is_restored_too():
    model = tiny_model().eval()
    select_round(model, tiny_dataset(2), LabelState(), "ripu_point",
                 Budget("point", 0.1, 4, 2, 2), 0, seed=0, progress=False)
    assert not model.training


def test_random_strategy_skips_the_model_and_ignores_batching():
    data = tiny_dataset()
    a = select_round(ExplodingModel(), data, LabelState(), "random_region", REGIONS, 0,
                     seed=3, batch_size=1, progress=False)
    b = select_round(None, data, LabelState(), "random_region", REGIONS, 0, seed=3,
                     batch_size=4, progress=False)
    c = select_round(None, data, LabelState(), "random_region", REGIONS, 0, seed=4,
                     progress=False)
    assert all(np.array_equal(a.labelled[i], b.labelled[i]) for i in a.ids)
    assert any(not np.array_equal(a.labelled[i], c.labelled[i]) for i in a.ids)


def test_ignore_pixels_count_against_the_budget():
    model = tiny_model()
    known = select_round(model, tiny_dataset(), LabelState(), "ripu_region", REGIONS, 0,
                         seed=0, progress=False)
    ignored = select_round(model, tiny_dataset(ignore=True), LabelState(), "ripu_region",
                           REGIONS, 0, seed=0, progress=False)
    assert all(np.array_equal(known.labelled[i], ignored.labelled[i]) for i in known.ids)


def test_points_reach_the_per_image_total_over_all_rounds():
    budget = Budget("point", 0.1, 7, 3, 1)
    state = LabelState()
    for r in range(3):
        state = select_round(tiny_model(), tiny_dataset(3), state, "ripu_point", budget, r,
                             seed=0, progress=False)
    assert all(int(state.labelled[i].sum()) == 7 for i in state.ids)


def test_full_image_rounds_stay_within_the_pixel_budget():
    data = tiny_dataset(10)
    budget = Budget("image", 0.35, 0, 3, 1)
    state = LabelState()
    # 10 images of 384 pixels; cumulative caps 448, 896, 1344 pixels -> 1, 2, 3 images.
    for r, images in enumerate([1, 2, 3]):
        state = select_round(ExplodingModel(), data, state, "full_image", budget, r, seed=0,
                             progress=False)
        assert state.labelled_pixels() == images * H * W <= pixel_cap(budget, 10 * H * W, r)
        assert state.round_stats[r]["units"] == 1
        for image_id in state.ids:  # whole images or nothing
            assert state.labelled[image_id].all() or not state.labelled[image_id].any()
    tight = Budget("image", 0.09, 0, 1, 1)  # 345 pixels: not one whole image fits
    state = select_round(None, data, LabelState(), "full_image", tight, 0, seed=0,
                         progress=False)
    assert state.labelled_pixels() == 0 and len(state) == 10


@pytest.mark.parametrize("change,match", [
    ({"strategy": "ripu_point"}, "mode"),
    ({"round_index": 1}, "round_index"),
    ({"batch_size": 0}, "batch_size"),
    ({"model": None}, "needs a model"),
    ({"strategy": "nope"}, "unknown acquisition strategy"),
])
def test_bad_calls_raise(change, match):
    args = {"model": tiny_model(), "dataset": tiny_dataset(2), "state": LabelState(),
            "strategy": "ripu_region", "budget": REGIONS, "round_index": 0} | change
    with pytest.raises(RipuError, match=match):
        select_round(**args, seed=0, progress=False)


def test_duplicate_ids_raise():
    data = tiny_dataset(3)
    data[2]["id"] = data[0]["id"]
    with pytest.raises(RipuError, match="twice"):
        select_round(None, data, LabelState(), "random_region", REGIONS, 0, seed=0,
                     progress=False)

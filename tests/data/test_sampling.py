"""Per-class image lists (with their JSON cache) and the class-balanced sampler."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from ripu.data import ClassBalancedSampler, GTA5Dataset, class_image_lists
from ripu.data.sampling import (
    SUB_EPOCH,
    SubEpochDraws,
    adaptive_weights,
    classes_present,
    draw_class_balanced,
)
from ripu.errors import RipuError
from tests.data.layouts import write_gta5

ROAD, SKY, CAR = 0, 10, 13  # 19-class indices of Cityscapes ids 7, 23, 26


def labels_three() -> list[np.ndarray]:
    a = np.full((8, 16), 7, np.uint8)  # road + car
    a[4:, :4] = 26
    b = np.full((8, 16), 26, np.uint8)  # car only
    c = np.full((8, 16), 23, np.uint8)  # sky + void (id 0 -> 255)
    c[0] = 0
    return [a, b, c]


@pytest.fixture
def gta(tmp_path):
    write_gta5(tmp_path / "gta", labels_three())
    return GTA5Dataset(tmp_path / "gta")


def expected_lists(num_classes: int = 19) -> dict[int, list[int]]:
    lists = {c: [] for c in range(num_classes)}
    lists[ROAD] = [0]
    lists[CAR] = [0, 1]
    lists[SKY] = [2]
    return lists


def test_classes_present_skips_ignore():
    label = np.array([[0, 3, 255], [3, 18, 19]], np.uint8)
    assert classes_present(label, 19) == [0, 3, 18]


def test_class_image_lists_by_hand(gta):
    assert class_image_lists(gta, progress=False) == expected_lists()
    assert class_image_lists(gta, progress=False, workers=2) == expected_lists()


def test_cache_written_then_reused(gta, tmp_path):
    cache = tmp_path / "cache" / "lists.json"
    assert class_image_lists(gta, cache, progress=False) == expected_lists()
    assert sorted(p.name for p in cache.parent.iterdir()) == ["lists.json"]  # no temp left
    data = json.loads(cache.read_text())
    assert data["num_classes"] == 19 and data["class_lists"][str(CAR)] == [0, 1]
    # Edit the cached lists (same key): a second call returns the cache, not a recomputation.
    data["class_lists"][str(SKY)] = [1, 2]
    cache.write_text(json.dumps(data))
    again = class_image_lists(gta, cache, progress=False)
    assert again[SKY] == [1, 2] and again[CAR] == [0, 1]


def test_cache_invalidated_by_ids_classes_or_corruption(gta, tmp_path):
    cache = tmp_path / "lists.json"
    class_image_lists(gta, cache, progress=False)
    key19 = json.loads(cache.read_text())["key"]

    # Different ids (one more image): recomputed.
    write_gta5(tmp_path / "gta4", labels_three() + [np.full((8, 16), 23, np.uint8)])
    lists4 = class_image_lists(GTA5Dataset(tmp_path / "gta4"), cache, progress=False)
    assert lists4[SKY] == [2, 3]

    # Different number of classes: recomputed in 16 classes (car is 12, sky is 9 there).
    gta16 = GTA5Dataset(gta.root, num_classes=16)
    lists16 = class_image_lists(gta16, cache, progress=False)
    assert len(lists16) == 16 and lists16[12] == [0, 1] and lists16[9] == [2]
    assert json.loads(cache.read_text())["key"] != key19

    # Corrupt file: recomputed and rewritten.
    cache.write_text("{not json")
    assert class_image_lists(gta, cache, progress=False) == expected_lists()
    assert json.loads(cache.read_text())["key"] == key19


def test_sampler_draws_only_listed_images_and_every_class():
    lists = {0: [5], 1: [1, 2], 2: [], 3: [7, 8, 9]}
    drawn = list(ClassBalancedSampler(lists, 300, seed=0))
    assert len(drawn) == 300
    assert set(drawn) == {1, 2, 5, 7, 8, 9}  # every listed image, nothing else


def test_sampler_is_uniform_over_classes_not_images():
    lists = {0: [0], 1: list(range(1, 10))}  # 1 image of class 0, 9 of class 1
    counts = Counter(ClassBalancedSampler(lists, 4000, seed=1))
    assert 0.45 < counts[0] / 4000 < 0.55  # class 0 drawn half the time (not 1/10)
    for i in range(1, 10):
        assert 0.035 < counts[i] / 4000 < 0.075  # 1/18 each


def test_sampler_with_dataset_lists(gta):
    lists = class_image_lists(gta, progress=False)
    sampler = ClassBalancedSampler(lists, 60, seed=4)
    counts = Counter(sampler)
    # Classes road, car, sky each 1/3: image 0 gets road + half of car = 1/2, image 1 1/6.
    assert set(counts) == {0, 1, 2}
    assert counts[0] > counts[2] > counts[1]
    loader = torch.utils.data.DataLoader(gta, batch_size=4, sampler=sampler)
    assert sum(len(b["id"]) for b in loader) == 60


def test_sampler_determinism_and_epochs():
    lists = {0: [0, 1, 2], 3: [3, 4], 5: [5, 6, 7, 8]}
    a = ClassBalancedSampler(lists, 50, seed=7)
    b = ClassBalancedSampler(lists, 50, seed=7)
    first_a, first_b = list(a), list(b)
    assert first_a == first_b and len(a) == 50
    second_a = list(a)
    assert second_a != first_a  # the next pass is the next epoch
    b.set_epoch(1)
    assert list(b) == second_a  # resumable at an epoch
    assert list(ClassBalancedSampler(lists, 50, seed=8)) != first_a
    g1, g2 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    assert list(ClassBalancedSampler(lists, 50, generator=g1)) == list(
        ClassBalancedSampler(lists, 50, generator=g2))


def test_sampler_bad_input():
    with pytest.raises(RipuError, match="at least one class with an image"):
        ClassBalancedSampler({0: [], 1: []}, 10)
    with pytest.raises(RipuError, match="positive integer"):
        ClassBalancedSampler({0: [1]}, 0)


# ---------------------------------------------------------- the authors' adaptive draw rule


def test_adaptive_weights_hand_computed():
    """1 / log(1.01 + f_c), normalised (BIT-DA/RIPU core/datasets/gtav.py:42-47)."""
    every = np.ones(3, bool)
    np.testing.assert_allclose(adaptive_weights(np.zeros(3), every), [1 / 3] * 3)
    # f = (0.25, 0.25, 0.5): 1/log(1.26) = 4.326912, 1/log(1.51) = 2.426539.
    w = adaptive_weights(np.array([1.0, 1.0, 2.0]), every)
    np.testing.assert_allclose(w, [0.390503, 0.390503, 0.218995], atol=2e-6)
    # A class without images gets weight 0; the others share the rest.
    w = adaptive_weights(np.array([0.0, 3.0, 1.0]), np.array([False, True, True]))
    a, b = 1 / np.log(1.01 + 0.75), 1 / np.log(1.01 + 0.25)
    np.testing.assert_allclose(w, [0.0, a / (a + b), b / (a + b)])


def test_authors_rule_balances_classes_and_cycles_lists():
    lists = {0: [0, 1, 2], 1: [3], 2: []}
    drawn = draw_class_balanced(lists, 600, torch.Generator().manual_seed(0), rule="authors")
    counts = Counter(drawn)
    # Running class shares pull the draws back to balance: class 1 (one image) about as
    # often as class 0 (three images), far from the 1:3 of uniform image draws.
    assert abs(counts[3] - (counts[0] + counts[1] + counts[2])) <= 20
    # Within a class, images come without replacement: every pass over class 0's list holds
    # each of its images once.
    zero = [i for i in drawn if i in (0, 1, 2)]
    for start in range(0, len(zero) - 2, 3):
        assert sorted(zero[start:start + 3]) == [0, 1, 2]
    assert SUB_EPOCH == 3000


def test_sub_epoch_draws_depend_on_the_sub_epoch_only():
    lists = {0: [0, 1], 1: [2, 3, 4], 2: [5]}

    def make(sub: int) -> torch.Generator:
        return torch.Generator().manual_seed(100 + sub)

    a, b = SubEpochDraws(lists, make), SubEpochDraws(lists, make)
    late = [a(SUB_EPOCH + k) for k in range(5)]
    assert [b(k) for k in range(3)] and [b(SUB_EPOCH + k) for k in range(5)] == late
    first = Counter(a(k) for k in range(SUB_EPOCH))  # a whole sub-epoch, shuffled
    assert set(first) == set(range(6))


def test_sampler_and_batches_share_the_rule():
    lists = {0: [0, 1, 2], 1: [3]}
    sampler = ClassBalancedSampler(lists, 50, generator=torch.Generator().manual_seed(5),
                                   rule="authors")
    assert list(sampler) == draw_class_balanced(lists, 50, torch.Generator().manual_seed(5),
                                                rule="authors")
    with pytest.raises(RipuError, match="class balance rule 'x'"):
        ClassBalancedSampler(lists, 5, rule="x")

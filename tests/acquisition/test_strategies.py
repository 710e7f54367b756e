"""Strategy registry, seeded random baselines, score-only baselines, full-image picking."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ripu.acquisition import STRATEGIES, get_strategy, region_scores, round_generator
from ripu.acquisition.select import greedy_centres
from ripu.acquisition.strategies import select_full_images
from ripu.errors import RipuError

EXPECTED = {  # name: (mode, needs logits)
    "ripu_region": ("region", True), "ripu_point": ("point", True),
    "random_region": ("region", False), "random_point": ("point", False),
    "entropy_region": ("region", True), "impurity_region": ("region", True),
    "full_image": ("image", False), "oracle": ("region", True),
}


def test_registry_holds_the_named_strategies_with_modes():
    assert {n: (s.mode, s.needs_logits) for n, s in STRATEGIES.items()} == EXPECTED


def test_unknown_strategy_error_lists_valid_names():
    with pytest.raises(RipuError) as err:
        get_strategy("ripu_regions")
    assert "'ripu_regions'" in str(err.value)
    assert all(name in str(err.value) for name in EXPECTED)


def logits(seed=0, shape=(5, 24, 30)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2


def free(shape=(24, 30)):
    return torch.zeros(shape, dtype=torch.bool)


@pytest.mark.parametrize("name", ["random_region", "random_point"])
def test_random_strategies_are_seeded(name):
    strategy = get_strategy(name)
    a = strategy(None, free(), 5, 2, torch.Generator().manual_seed(7))
    b = strategy(None, free(), 5, 2, torch.Generator().manual_seed(7))
    c = strategy(None, free(), 5, 2, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_random_region_follows_region_blocking_rules():
    blocked = free()
    blocked[:, :10] = True
    selected, new_blocked = get_strategy("random_region")(
        None, blocked, 8, 1, torch.Generator().manual_seed(0))
    # 8 disjoint 3x3 squares whose centres lie in the free part.
    assert int(selected.sum()) <= 8 * 9 and not selected[:, :9].any()
    assert (new_blocked >= blocked).all() and (new_blocked >= selected).all()


def test_random_point_labels_single_pixels():
    selected, _ = get_strategy("random_point")(None, free(), 6, 3,
                                               torch.Generator().manual_seed(0))
    assert int(selected.sum()) == 6


@pytest.mark.parametrize("name,field", [("entropy_region", "uncertainty"),
                                        ("impurity_region", "impurity"),
                                        ("ripu_region", "score")])
def test_score_baselines_use_their_own_score(name, field):
    x = logits(3)
    score = getattr(region_scores(x, 1), field)
    selected, _ = get_strategy(name)(x, free(), 1, 1, torch.Generator())
    y, xx = divmod(greedy_centres(score, 1, 2)[0], 30)
    expected = free()
    expected[max(0, y - 1):y + 2, max(0, xx - 1):xx + 2] = True
    assert torch.equal(selected, expected)


def test_entropy_and_impurity_baselines_choose_differently():
    # Left half: one class, uncertain (high U, P ~ 0). Right half: confident stripes
    # of two classes (low U, high P).
    x = torch.zeros(2, 12, 24)
    x[0, :, :12] = 0.2
    x[0, :, 12::2] = 6.0
    x[1, :, 13::2] = 6.0
    pick = {name: greedy_centres(getattr(region_scores(x, 1), field), 1, 2)[0] % 24
            for name, field in (("entropy", "uncertainty"), ("impurity", "impurity"))}
    assert pick["entropy"] < 11 and pick["impurity"] >= 12


def test_ripu_point_labels_centres_only():
    selected, blocked = get_strategy("ripu_point")(logits(4), free(), 3, 4, torch.Generator())
    assert int(selected.sum()) == 3 and int(blocked.sum()) > 3


def test_misuse_raises():
    with pytest.raises(RipuError, match="dataset-level"):
        get_strategy("full_image")(None, free(), 1, 1, torch.Generator())
    with pytest.raises(RipuError, match="needs logits"):
        get_strategy("ripu_region")(None, free(), 1, 1, torch.Generator())


def test_round_generator_depends_on_every_part_of_its_key():
    def draw(*key):
        return torch.rand(4, generator=round_generator(*key)).tolist()

    assert draw(1, 2, 3) == draw(1, 2, 3)
    keys = [(1, 2, 3), (0, 2, 3), (1, 1, 3), (1, 2, 4), (1, 2, None)]
    assert len({tuple(draw(*k)) for k in keys}) == len(keys)
    with pytest.raises(RipuError, match="seed"):
        round_generator(-1, 0, 0)


def test_full_images_equal_sizes_take_floor_of_allowance():
    chosen = select_full_images([100] * 10, 350, torch.Generator().manual_seed(0))
    assert len(chosen) == 3 and len(set(chosen)) == 3


def test_full_images_skip_non_candidates_and_are_seeded():
    costs = [100, None, 100, 100, None, 100]
    a = select_full_images(costs, 200, torch.Generator().manual_seed(1))
    assert a == select_full_images(costs, 200, torch.Generator().manual_seed(1))
    assert len(a) == 2 and not {1, 4} & set(a)
    picks = {tuple(select_full_images(costs, 200, torch.Generator().manual_seed(s)))
             for s in range(12)}
    assert len(picks) > 1


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=15), st.integers(0, 300),
       st.integers(0, 1000))
def test_full_images_never_exceed_the_allowance_and_take_the_most_images(costs, allowance,
                                                                         seed):
    chosen = select_full_images(costs, allowance, torch.Generator().manual_seed(seed))
    assert len(set(chosen)) == len(chosen)
    assert sum(costs[i] for i in chosen) <= allowance
    most = int(np.searchsorted(np.cumsum(sorted(costs)), allowance, side="right"))
    assert len(chosen) == most

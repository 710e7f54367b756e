"""Greedy selection: ties, blocking, non-overlap, budget invariants, equality with naive."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ripu.acquisition import region_scores, select_points, select_regions
from ripu.acquisition.naive import naive_select_points, naive_select_regions
from ripu.acquisition.select import candidate_order, greedy_centres, window_mask
from ripu.errors import RipuError


def box(shape, y, x, r):
    m = torch.zeros(shape, dtype=torch.bool)
    m[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1] = True
    return m


def test_equal_scores_pick_the_lowest_flat_index():
    selected, blocked = select_regions(torch.zeros(5, 5), 1, radius=1)
    assert torch.equal(selected, box((5, 5), 0, 0, 1))
    assert torch.equal(blocked, box((5, 5), 0, 0, 2))


def test_tie_between_two_maxima_goes_to_the_lower_index():
    score = torch.zeros(6, 6)
    score[4, 4] = score[1, 3] = 1.0  # flat 27 and 9
    assert greedy_centres(score, 1, 2) == [1 * 6 + 3]


def test_greedy_order_by_hand():
    # One row, radius 1: label +-1, block +-2.
    score = torch.tensor([[0.0, 5, 4, 9, 1, 0, 3, 8, 2, 7]])
    # 9 at x=3 (blocks 1..5), then 8 at x=7 (blocks 5..9), then the only free pixel x=0.
    assert greedy_centres(score, 3, 2) == [3, 7, 0]
    selected, blocked = select_regions(score, 3, radius=1)
    assert selected[0].tolist() == [True] * 5 + [False] + [True] * 3 + [False]
    assert blocked.all()


def test_points_label_only_centres_and_block_the_window():
    score = torch.arange(49, dtype=torch.float32).view(7, 7)
    selected, blocked = select_points(score, 2, radius=1)
    # 48 at (6, 6) blocks (5..6, 5..6); 47 at (6, 5) is blocked; 46 at (6, 4) is next.
    assert selected.nonzero().tolist() == [[6, 4], [6, 6]]
    assert torch.equal(blocked, box((7, 7), 6, 6, 1) | box((7, 7), 6, 4, 1))


def test_fewer_free_pixels_than_requested_selects_what_fits():
    score = torch.rand(3, 3, generator=torch.Generator().manual_seed(0))
    assert len(greedy_centres(score, 5, 2)) == 1  # the first region blocks the whole image
    y, x = divmod(int(score.argmax()), 3)
    selected, blocked = select_regions(score, 5, radius=1)
    assert torch.equal(selected, box((3, 3), y, x, 1)) and blocked.all()
    selected, blocked = select_points(torch.zeros(4, 4), 100, radius=0)
    assert selected.all()


def test_blocked_input_is_respected_and_not_modified():
    blocked = torch.zeros(8, 8, dtype=torch.bool)
    blocked[:, :4] = True
    before = blocked.clone()
    score = torch.zeros(8, 8)
    score[:, :4] = 10.0  # the best pixels are blocked
    selected, new_blocked = select_regions(score, 1, radius=1, blocked=blocked)
    assert torch.equal(blocked, before)
    assert greedy_centres(score, 1, 2, blocked) == [4]  # (0, 4): first free pixel
    assert torch.equal(new_blocked, before | box((8, 8), 0, 4, 2))
    assert torch.equal(selected, box((8, 8), 0, 4, 1))


def test_region_squares_never_overlap():
    score = region_scores(torch.randn(4, 40, 50, generator=torch.Generator().manual_seed(0)),
                          1).score
    centres = greedy_centres(score, 60, 2)
    assert len(centres) == 60
    coords = [divmod(c, 50) for c in centres]
    for i, (y, x) in enumerate(coords):
        for yy, xx in coords[:i]:
            assert max(abs(y - yy), abs(x - xx)) > 2
    selected, _ = select_regions(score, 60, radius=1)
    assert int(selected.sum()) == sum(int(box((40, 50), y, x, 1).sum()) for y, x in coords)


def test_multi_round_carry_over():
    g = torch.Generator().manual_seed(1)
    score1, score2 = torch.rand(20, 20, generator=g), torch.rand(20, 20, generator=g)
    sel1, blocked1 = select_regions(score1, 6, radius=1)
    kept = blocked1.clone()
    sel2, blocked2 = select_regions(score2, 6, radius=1, blocked=blocked1)
    assert torch.equal(blocked1, kept)
    assert not (sel1 & sel2).any()  # labelled pixels are never selected again
    assert (blocked2 >= blocked1).all() and (blocked2 >= sel2).all()


def test_candidate_order_is_a_prefix_of_the_stable_descending_order():
    score = torch.randint(0, 5, (9, 11), generator=torch.Generator().manual_seed(2)).float()
    blocked = torch.rand(9, 11, generator=torch.Generator().manual_seed(3)) < 0.3
    full = [i for i in torch.sort(-score.view(-1), stable=True).indices.tolist()
            if not blocked.view(-1)[i]]
    got = candidate_order(score, blocked, 17).tolist()
    assert len(got) >= 17 and got == full[:len(got)]


def test_window_mask_clips_at_borders():
    mask = window_mask(torch.tensor([0, 11]), 3, 4, 1)  # (0, 0) and (2, 3)
    assert torch.equal(mask, box((3, 4), 0, 0, 1) | box((3, 4), 2, 3, 1))


@pytest.mark.parametrize("kwargs,match", [
    ({"score": torch.zeros(3, 3, dtype=torch.int64)}, "score"),
    ({"score": torch.zeros(2, 3, 3)}, "score"),
    ({"blocked": torch.zeros(3, 3)}, "blocked"),
    ({"blocked": torch.zeros(3, 4, dtype=torch.bool)}, "blocked"),
    ({"n_regions": -1}, "n_regions"),
    ({"radius": -2}, "radius"),
    ({"score": torch.tensor([[0.0, float("nan"), 1.0]] * 3)}, "finite"),
])
def test_bad_inputs_raise(kwargs, match):
    args = {"score": torch.zeros(3, 3), "n_regions": 1, "radius": 1, "blocked": None}
    args.update(kwargs)
    with pytest.raises(RipuError, match=match):
        select_regions(**args)


maps = st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(0, 3),
                 st.integers(0, 12), st.integers(0, 2**31 - 1))


@settings(max_examples=60, deadline=None)
@given(maps)
def test_region_invariants_and_equality_with_naive(params):
    h, w, radius, n, seed = params
    g = torch.Generator().manual_seed(seed)
    score = torch.randint(0, 4, (h, w), generator=g).float()  # many ties
    blocked = torch.rand(h, w, generator=g) < 0.25
    before = blocked.clone()
    selected, new_blocked = select_regions(score, n, radius, blocked)
    assert selected.dtype == torch.bool and selected.shape == (h, w)
    assert new_blocked.dtype == torch.bool and new_blocked.shape == (h, w)
    assert torch.equal(blocked, before)
    centres = greedy_centres(score, n, 2 * radius, blocked)
    assert len(centres) <= n
    assert not any(before.view(-1)[c] for c in centres)  # never a blocked centre
    assert (new_blocked >= before).all() and (new_blocked >= selected).all()
    if len(centres) < n:
        assert new_blocked.all()  # stopped early only because nothing was free
    naive = naive_select_regions(score, n, radius, blocked)
    assert torch.equal(selected, naive[0]) and torch.equal(new_blocked, naive[1])


@settings(max_examples=60, deadline=None)
@given(maps)
def test_point_invariants_and_equality_with_naive(params):
    h, w, radius, n, seed = params
    g = torch.Generator().manual_seed(seed)
    score = torch.randint(0, 4, (h, w), generator=g).float()
    blocked = torch.rand(h, w, generator=g) < 0.25
    selected, new_blocked = select_points(score, n, radius, blocked)
    assert int(selected.sum()) <= n
    assert not (selected & blocked).any()
    assert (new_blocked >= blocked).all() and (new_blocked >= selected).all()
    naive = naive_select_points(score, n, radius, blocked)
    assert torch.equal(selected, naive[0]) and torch.equal(new_blocked, naive[1])

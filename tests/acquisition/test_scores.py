"""RIPU scores: hand-computed values, border handling, the exact contract with naive.py."""

import math

import pytest
import torch

from ripu.acquisition import point_scores, region_scores
from ripu.acquisition import scores as S
from ripu.acquisition.naive import naive_point_scores, naive_region_scores
from ripu.errors import RipuError

# Pseudo-labels of the hand-computed 5x5 map (two classes).
LABELS = torch.tensor([
    [0, 0, 1, 1, 1],
    [0, 0, 0, 1, 1],
    [0, 0, 1, 1, 1],
    [0, 1, 1, 1, 1],
    [0, 0, 1, 1, 1],
])
# Class-0 pixels predict p = (3/4, 1/4), class-1 pixels p = (1/10, 9/10).
P_CLASS0, P_CLASS1 = 0.75, 0.9


def two_class_logits() -> torch.Tensor:
    logits = torch.zeros(2, 5, 5, dtype=torch.float64)
    logits[0][LABELS == 0] = math.log(P_CLASS0 / (1 - P_CLASS0))
    logits[1][LABELS == 1] = math.log(P_CLASS1 / (1 - P_CLASS1))
    return logits.float()


def plogp(q: float) -> float:
    return q * math.log(q + 1e-6)


def entropy(p: float) -> float:
    """Natural-log two-class entropy with docs/method.md's 1e-6."""
    return -(plogp(p) + plogp(1 - p))


H0, H1 = entropy(P_CLASS0), entropy(P_CLASS1)  # raw entropies of class-0 / class-1 pixels
LOG2 = math.log(2)


def impurity(*counts: int) -> float:
    """Raw natural-log impurity from class counts of a window."""
    n = sum(counts)
    return -sum(plogp(c / n) for c in counts)


# Windows (radius 1), counted by hand from LABELS:
# corner (0, 0): rows 0-1, cols 0-1 -> 4 pixels, all class 0.
# edge (0, 2): rows 0-1, cols 1-3 -> row 0: 0 1 1, row 1: 0 0 1 -> 3 of class 0, 3 of class 1.
# centre (2, 2): rows 1-3, cols 1-3 -> 0 0 1 / 0 1 1 / 1 1 1 -> 3 of class 0, 6 of class 1.
# corner (4, 4): rows 3-4, cols 3-4 -> 4 pixels, all class 1.
EXPECTED = {  # pixel: (P_raw, mean raw entropy over the window)
    (0, 0): (impurity(4, 0), H0),
    (0, 2): (impurity(3, 3), (3 * H0 + 3 * H1) / 6),
    (2, 2): (impurity(3, 6), (3 * H0 + 6 * H1) / 9),
    (4, 4): (impurity(0, 4), H1),
}


@pytest.mark.parametrize("pixel", sorted(EXPECTED))
def test_region_scores_match_hand_computed_values(pixel):
    s = region_scores(two_class_logits(), radius=1)
    p_raw, u_raw = EXPECTED[pixel]
    assert s.impurity[pixel].item() == pytest.approx(p_raw / LOG2, rel=1e-6, abs=1e-9)
    assert s.uncertainty[pixel].item() == pytest.approx(u_raw / LOG2, rel=1e-6)
    assert s.score[pixel].item() == pytest.approx(p_raw * u_raw / LOG2**2, rel=1e-5, abs=1e-9)


def test_hand_values_are_the_ones_the_formulas_give():
    # The edge window has q = (1/2, 1/2) only because |N| counts its 6 in-image pixels;
    # zero padding over 9 would give (1/3, 1/3) and another value.
    assert impurity(3, 3) / LOG2 == pytest.approx(1.0, abs=1e-5)
    assert impurity(3, 6) / LOG2 == pytest.approx(0.9183, abs=1e-4)
    # A pure window has a tiny negative impurity: -log(1 + 1e-6) / log C.
    assert impurity(4, 0) / LOG2 == pytest.approx(-math.log(1 + 1e-6) / LOG2)


def test_point_scores_are_unnormalised_entropy_times_impurity():
    ps = point_scores(two_class_logits(), radius=1)
    # Pixel (2, 2) is class 1: raw entropy H1 (not averaged, not divided by log C).
    assert ps[2, 2].item() == pytest.approx(H1 * impurity(3, 6), rel=1e-5)
    assert ps[0, 2].item() == pytest.approx(H1 * impurity(3, 3), rel=1e-5)
    # Left edge (2, 0): rows 1-3, cols 0-1 -> 0 0 / 0 0 / 0 1 -> 5 of class 0, 1 of class 1.
    assert ps[2, 0].item() == pytest.approx(H0 * impurity(5, 1), rel=1e-5)


def test_window_sizes_count_only_in_image_pixels():
    expected = torch.tensor([[4, 6, 6, 4], [6, 9, 9, 6], [4, 6, 6, 4]])
    assert torch.equal(S.window_sizes(3, 4, 1), expected)
    assert torch.equal(S.window_sizes(2, 3, 5), torch.full((2, 3), 6))


@pytest.mark.parametrize("radius", [0, 1, 2, 5, 7])
def test_window_sum_matches_clipped_definition(radius):
    g = torch.Generator().manual_seed(radius)
    x = torch.randint(0, 3, (6, 9), generator=g)
    got = S.window_sum(x.to(torch.int32), radius)
    for y in range(6):
        for xx in range(9):
            block = x[max(0, y - radius):y + radius + 1, max(0, xx - radius):xx + radius + 1]
            assert got[y, xx].item() == block.sum().item()


def test_uniform_map_has_constant_uncertainty_at_borders():
    # Constant entropy averages to the same value at corners, edges and centre only if
    # |N_k| counts in-image pixels.
    logits = torch.zeros(3, 4, 6)
    logits[1] = 2.0
    s = region_scores(logits, radius=2)
    assert torch.allclose(s.uncertainty, s.uncertainty[2, 3].expand(4, 6), rtol=1e-6)


def random_logits(c, h, w, seed, ties=False):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(c, h, w, generator=g) * 3
    return logits.round() if ties else logits


CASES = [  # classes, height, width, radius, ties
    (2, 5, 5, 1, False), (3, 7, 11, 1, True), (4, 1, 9, 1, False), (5, 9, 1, 2, False),
    (6, 13, 17, 2, True), (19, 12, 20, 1, False), (3, 10, 12, 3, False),
    (4, 11, 9, 4, True), (5, 16, 14, 6, False), (2, 6, 7, 0, False), (7, 8, 30, 9, True),
]


@pytest.mark.parametrize("c,h,w,radius,ties", CASES)
def test_fast_scores_equal_naive_bit_for_bit(c, h, w, radius, ties):
    logits = random_logits(c, h, w, seed=c * 100 + h, ties=ties)
    fast, naive = region_scores(logits, radius), naive_region_scores(logits, radius)
    for name in ("score", "impurity", "uncertainty"):
        assert torch.equal(getattr(fast, name), getattr(naive, name)), name
    assert torch.equal(point_scores(logits, radius), naive_point_scores(logits, radius))


def test_banded_evaluation_equals_whole_image(monkeypatch):
    logits = random_logits(7, 23, 29, seed=3)
    whole = region_scores(logits, 1)
    monkeypatch.setattr(S, "BAND_ELEMENTS", 7 * 29 * 2)  # two rows per band
    banded = region_scores(logits, 1)
    assert all(torch.equal(a, b) for a, b in zip(whole, banded, strict=True))


def test_sparse_and_dense_impurity_paths_agree(monkeypatch):
    logits = random_logits(5, 14, 18, seed=5, ties=True)
    sparse = region_scores(logits, 2).impurity
    monkeypatch.setattr(S, "SPARSE_MAX_RADIUS", -1)
    assert torch.equal(sparse, region_scores(logits, 2).impurity)


def test_score_is_product_and_outputs_are_float32_on_device():
    s = region_scores(random_logits(4, 6, 8, seed=1).double(), 1)
    assert all(t.dtype == torch.float32 and t.shape == (6, 8) for t in s)
    assert torch.equal(s.score, s.impurity * s.uncertainty)
    assert point_scores(random_logits(4, 6, 8, seed=1), 2).dtype == torch.float32


def test_pseudo_label_is_first_maximum():
    probs = torch.tensor([[0.2, 0.5], [0.4, 0.1], [0.4, 0.5]]).view(3, 1, 2)
    assert S.first_argmax(probs).view(-1).tolist() == [1, 0]
    many = torch.rand(300, 2, 3, generator=torch.Generator().manual_seed(0)).round()
    assert torch.equal(S.first_argmax(many).long(), many.argmax(0))


@pytest.mark.parametrize("bad", [torch.zeros(5, 5), torch.zeros(1, 4, 4),
                                 torch.zeros(3, 4, 4, dtype=torch.int64), "logits"])
def test_bad_logits_raise(bad):
    with pytest.raises(RipuError, match="logits"):
        region_scores(bad, 1)


@pytest.mark.parametrize("radius", [-1, 1.5, True])
def test_bad_radius_raises(radius):
    with pytest.raises(RipuError, match="radius"):
        point_scores(torch.zeros(2, 4, 4), radius)

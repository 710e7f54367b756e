"""LSE building blocks (docs/method.md section 3) against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ripu.errors import RipuError
from ripu.selftrain.lse import (
    Box,
    ImageStats,
    crop_and_upsample_image,
    image_stats,
    kept_count,
    kept_union,
    normalize_entropy_per_class,
    pixel_maps,
    pseudo_label,
    round_fraction,
    scale_invariant_patches,
    select_confident,
    stats_from_maps,
)

# --- normalize_entropy_per_class -------------------------------------------------------


def test_normalize_entropy_hand_values():
    entropy = torch.tensor([[0.1, 0.5, 0.2], [0.6, 0.3, 1.0], [0.3, 0.3, 0.3]])
    pred = torch.tensor([[0, 0, 1], [1, 2, 1], [0, 2, 2]])
    # class 0: 0.1, 0.5, 0.3 -> (x - 0.1) / 0.4; class 1: 0.2, 0.6, 1.0 -> (x - 0.2) / 0.8;
    # class 2: constant 0.3 -> 0.
    expected = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 1.0], [0.5, 0.0, 0.0]])
    out = normalize_entropy_per_class(entropy, pred, num_classes=4)
    assert torch.allclose(out, expected, atol=1e-6)


def test_normalize_entropy_single_class_constant_is_zero():
    out = normalize_entropy_per_class(torch.full((2, 3), 0.7), torch.ones(2, 3, dtype=torch.long), 2)
    assert torch.equal(out, torch.zeros(2, 3))


def test_normalize_entropy_rejects_out_of_range_pred():
    with pytest.raises(RipuError, match=r"\[0, 2\)"):
        normalize_entropy_per_class(torch.rand(2, 2), torch.full((2, 2), 2), 2)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 5), w=st.integers(1, 5), num_classes=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1), levels=st.integers(1, 4),
)
def test_normalize_entropy_properties(h, w, num_classes, seed, levels):
    gen = torch.Generator().manual_seed(seed)
    # Few distinct entropy levels so that constant classes and ties occur often.
    entropy = torch.randint(0, levels, (h, w), generator=gen).float() / levels
    pred = torch.randint(0, num_classes, (h, w), generator=gen)
    out = normalize_entropy_per_class(entropy, pred, num_classes)
    assert torch.isfinite(out).all() and (out >= 0).all() and (out <= 1).all()
    for c in pred.unique().tolist():
        vals, ent = out[pred == c], entropy[pred == c]
        if ent.max() == ent.min():
            assert torch.equal(vals, torch.zeros_like(vals))
        else:
            assert vals.min() == 0 and vals.max() == 1
            # Order within the class is preserved.
            assert torch.equal(torch.argsort(vals, stable=True), torch.argsort(ent, stable=True))
    # Invariant to a positive affine change of the entropy.
    assert torch.allclose(normalize_entropy_per_class(3 * entropy + 1, pred, num_classes), out,
                          atol=1e-5)


# --- round_fraction --------------------------------------------------------------------


def test_round_fraction_schedule():
    assert [round_fraction(r) for r in range(7)] == [0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4]
    assert round_fraction(2, base=0.2, step=0.1) == 0.4
    with pytest.raises(RipuError, match="round"):
        round_fraction(-1)


# --- image statistics and confident images ---------------------------------------------


def row_probs(q: list[float]) -> torch.Tensor:
    """(2, 1, W) probabilities of a one-row image: class 0 = q, class 1 = 1 - q."""
    p = torch.tensor(q, dtype=torch.float64)
    return torch.stack([p, 1 - p])[:, None, :]


# Five 1x4 images, two classes. With two classes the entropy falls as the max-probability
# rises, so within a class the normalised entropies are 0 for the most confident pixels and 1
# for the least confident ones. Per image, class -> (mean max-prob, mean normalised entropy):
IMAGES = [
    [0.9, 0.9, 0.7, 0.15],  # 0: c0 (.9,.9,.7) -> (2.5/3, 1/3);  c1 (.85) -> (.85, 0)
    [0.95, 0.6, 0.3, 0.1],  # 1: c0 (.95,.6) -> (.775, 1/2);     c1 (.7,.9) -> (.8, 1/2)
    [0.8, 0.8, 0.8, 0.8],   # 2: c0 constant -> (.8, 0);          c1 absent
    [0.1, 0.1, 0.4, 0.4],   # 3: c0 absent;                       c1 (.9,.9,.6,.6) -> (.75, 1/2)
    [0.99, 0.2, 0.2, 0.45],  # 4: c0 (.99) -> (.99, 0);           c1 (.8,.8,.55) -> (2.15/3, 1/3)
]
# Ranking by mean max-prob. c0: images 4, 0, 2, 1.  c1: images 0, 1, 3, 4.


@pytest.fixture(scope="module")
def stats() -> list[ImageStats]:
    return [image_stats(row_probs(q)) for q in IMAGES]


def test_image_stats_hand_values(stats):
    s0 = stats[0]
    assert s0.present.tolist() == [True, True]
    assert s0.pixel_count.tolist() == [3, 1]
    assert torch.allclose(s0.mean_confidence, torch.tensor([2.5 / 3, 0.85]))
    assert torch.allclose(s0.mean_norm_entropy, torch.tensor([1 / 3, 0.0]))
    s3 = stats[3]
    assert s3.present.tolist() == [False, True]
    assert s3.pixel_count.tolist() == [0, 4]
    assert torch.allclose(s3.mean_confidence, torch.tensor([0.0, 0.75]))
    assert torch.allclose(s3.mean_norm_entropy, torch.tensor([0.0, 0.5]))


def test_select_confident_authors_rule(stats):
    # N_0 = N_1 = 4, C = 2, p = 0.5: keep floor(4 * 0.5 / 2) = 1 image per class.
    kept, tau = select_confident(stats, 0.5, num_classes=2)
    assert kept == {0: [4], 1: [0]}
    # tau_0: image 0 (rank 1 for c0) -> 1/3; tau_1: image 1 (rank 1 for c1) -> 1/2.
    assert torch.allclose(tau, torch.tensor([1 / 3, 0.5]))
    assert kept_union(kept) == [0, 4]


def test_select_confident_per_class_rule(stats):
    # floor(4 * 0.5) = 2 per class.
    kept, tau = select_confident(stats, 0.5, num_classes=2, rule="per_class")
    assert kept == {0: [4, 0], 1: [0, 1]}
    # tau_0: image 2, whose class 0 is constant -> inf (the authors' NaN: every class-0 pixel
    # keeps its label); tau_1: image 3 -> 1/2.
    assert torch.equal(tau, torch.tensor([math.inf, 0.5]))
    assert kept_union(kept) == [0, 1, 4]


def test_select_confident_nothing_kept_uses_most_confident_image(stats):
    # Round 6 (p = 0.4): floor(4 * 0.4 / 2) = 0. tau = entropy of the top-ranked image: image
    # 4 for class 0 and image 0 for class 1, each with one pixel of the class (constant) -> inf.
    kept, tau = select_confident(stats, round_fraction(6), num_classes=2)
    assert kept == {0: [], 1: []} and kept_union(kept) == []
    assert torch.equal(tau, torch.tensor([math.inf, math.inf]))


def test_select_confident_all_kept_gives_tau_one(stats):
    kept, tau = select_confident(stats, 1.0, num_classes=2, rule="per_class")
    assert kept == {0: [4, 0, 2, 1], 1: [0, 1, 3, 4]}
    assert torch.equal(tau, torch.ones(2))


def stat(conf: list[float], ent: list[float], present: list[bool],
         constant: list[bool] | None = None) -> ImageStats:
    return ImageStats(
        present=torch.tensor(present), pixel_count=torch.tensor([int(x) for x in present]),
        mean_confidence=torch.tensor(conf), mean_norm_entropy=torch.tensor(ent),
        constant_entropy=torch.tensor(constant or [False] * len(present)),
    )


def test_a_constant_entropy_threshold_image_keeps_every_pixel_of_the_class():
    # Hand-made 2x3 softmax, 3 classes. Class 1 is predicted at two pixels with the same
    # probabilities (constant entropy); class 0 at four pixels of two entropies.
    hi, lo = [0.8, 0.1, 0.1], [0.5, 0.25, 0.25]
    c1 = [0.2, 0.7, 0.1]
    pixels = [hi, lo, c1, hi, lo, c1]
    probs = torch.tensor(pixels).T.reshape(3, 2, 3)
    maps = pixel_maps(probs)
    assert maps.pred.tolist() == [[0, 0, 1], [0, 0, 1]]
    # Class 0: min-max over its pixels -> 0 (hi) and 1 (lo); class 1: 0 / 0 -> 0.
    assert maps.norm_entropy.tolist() == [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
    s = stats_from_maps(maps, 3)
    assert s.constant_entropy.tolist() == [False, True, False]  # class 2 is absent
    # Image 0 (more confident class 1) is kept for class 1 at p = 1/2 (per_class: floor(2 *
    # 0.5) = 1); image 1 sets tau_1. Its class-1 entropy is constant -> tau_1 = inf, as the
    # authors' NaN: every class-1 pixel keeps its label, whatever its normalised entropy.
    other = stat([0.9, 0.5, 0.0], [0.5, 0.0, 0.0], [True, True, False], [False, True, False])
    kept, tau = select_confident([stat([0.9, 0.8, 0.0], [0.5, 0.0, 0.0], [True, True, False]),
                                  other], 0.5, 3, rule="per_class")
    assert kept[1] == [0] and tau[1] == math.inf
    assert tau[0].item() == 0.5  # image 1's mean for class 0: not constant, not inf
    label, keep = pseudo_label(torch.tensor([[1, 1]]), torch.tensor([[0.0, 1.0]]), tau)
    assert keep.tolist() == [[True, True]] and label.tolist() == [[1, 1]]
    # A non-constant threshold image of the same mean would have ignored the pixel at 1.0.
    kept, tau = select_confident([stat([0.9, 0.8, 0.0], [0.5, 0.0, 0.0], [True, True, False]),
                                  stat([0.9, 0.5, 0.0], [0.5, 0.0, 0.0], [True, True, False])],
                                 0.5, 3, rule="per_class")
    assert tau[1] == 0.0
    assert pseudo_label(torch.tensor([[1, 1]]), torch.tensor([[0.0, 1.0]]), tau)[1].tolist() \
        == [[False, False]]


@pytest.mark.parametrize(("n_c", "p", "rule", "expected"), [
    (160, 0.10, "authors", 0),        # floor(160 * 0.1 / 19) = floor(0.84)
    (160, 0.10, "authors_ceil", 1),   # ceil(0.84)
    (160, 0.40, "authors", 3),        # floor(3.37)
    (160, 0.40, "authors_ceil", 4),
    (95, 0.20, "authors_ceil", 1),    # 95 * 0.2 / 19 = 1 exactly: no round-up of round-off
    (160, 0.40, "per_class", 64),
    (3, 1.0, "per_class", 3),         # capped at N_c
    (0, 0.4, "authors_ceil", 0),
])
def test_kept_count_per_rule(n_c, p, rule, expected):
    assert kept_count(n_c, p, 19, rule) == expected


def test_select_confident_ties_and_absent_class():
    stats = [
        stat([0.7, 0.0, 0.0], [0.2, 0.0, 0.0], [True, False, False]),
        stat([0.9, 0.5, 0.0], [0.6, 0.3, 0.0], [True, True, False]),
        stat([0.7, 0.5, 0.0], [0.4, 0.8, 0.0], [True, True, False]),
    ]
    kept, tau = select_confident(stats, 1.0, num_classes=3, rule="per_class")
    # class 0 ranks 1, then the tie 0.7 / 0.7 by lower position: 0 before 2.
    assert kept[0] == [1, 0, 2] and kept[1] == [1, 2] and kept[2] == []
    kept, tau = select_confident(stats, 0.5, num_classes=3, rule="per_class")
    # floor(3 * .5) = 1 -> class 0 keeps image 1, tau_0 = image 0's 0.2; floor(2 * .5) = 1 ->
    # class 1 keeps image 1 (tie broken by position), tau_1 = image 2's 0.8; class 2 never
    # predicted -> tau 1.
    assert kept == {0: [1], 1: [1], 2: []}
    assert torch.allclose(tau, torch.tensor([0.2, 0.8, 1.0]))


def test_select_confident_validates_inputs(stats):
    with pytest.raises(RipuError, match="authors"):
        select_confident(stats, 0.5, 2, rule="top")
    with pytest.raises(RipuError, match="classes"):
        select_confident(stats, 0.5, 3)
    kept, tau = select_confident([], 0.5, 2)
    assert kept == {0: [], 1: []} and torch.equal(tau, torch.ones(2))


def test_pseudo_label_thresholds_by_predicted_class():
    pred = torch.tensor([[0, 0, 1], [1, 2, 2]])
    ent = torch.tensor([[0.1, 0.5, 0.3], [0.7, 0.0, 0.9]])
    tau = torch.tensor([0.5, 0.8, 1.0])
    label, keep = pseudo_label(pred, ent, tau)
    # 0.5 < 0.5 is false; 0.9 < 1.0 true.
    assert keep.tolist() == [[True, False, True], [True, True, True]]
    assert label.tolist() == [[0, 255, 1], [1, 2, 2]]
    assert keep.dtype == torch.bool


# --- scale-invariant examples ----------------------------------------------------------


def test_crop_and_upsample_image_is_exact_on_a_ramp():
    ramp = torch.arange(4, dtype=torch.float32).expand(3, 4, 4)  # value = column index
    out = crop_and_upsample_image(ramp, Box(1, 2, 2, 2), scale=2)
    # Columns 2..3 upsampled x2 with align_corners=True: 2, 2 + 1/3, 2 + 2/3, 3.
    assert out.shape == (3, 4, 4)
    assert torch.allclose(out[0, 0], torch.tensor([2, 2 + 1 / 3, 2 + 2 / 3, 3]))
    assert torch.equal(out[:, 0], out[:, 3])
    with pytest.raises(RipuError, match="does not fit"):
        crop_and_upsample_image(ramp, Box(3, 0, 2, 2), scale=2)


# 4x4 image: class 1 (p = 0.9) only at pixel (1, 1), class 0 (p = 0.9) elsewhere; only (1, 1)
# is kept. A 2x2 crop upsampled to 4x4 (align_corners=True) samples the crop at 0, 1/3,
# 2/3, 1. With the special pixel at local (0, 0), the upsampled keep mask is
# (1 - i/3)(1 - j/3): zero on the last row and column; class 1's probability is
# 0.1 + 0.8 (1 - i/3)(1 - j/3) > 0.5 only at (0,0), (0,1), (1,0).
X = 255  # ignored
AT_00 = torch.tensor([[1, 1, 0, X], [1, 0, 0, X], [0, 0, 0, X], [X, X, X, X]], dtype=torch.uint8)


def expected_patch(top: int, left: int) -> torch.Tensor:
    local = (1 - top, 1 - left)
    if not (0 <= local[0] <= 1 and 0 <= local[1] <= 1):
        return torch.full((4, 4), X, dtype=torch.uint8)
    dims = [d for d, x in enumerate(local) if x == 1]
    return AT_00.flip(dims) if dims else AT_00


def special_pixel_image() -> tuple[torch.Tensor, torch.Tensor]:
    p1 = torch.full((4, 4), 0.1)
    p1[1, 1] = 0.9
    keep = torch.zeros(4, 4, dtype=torch.bool)
    keep[1, 1] = True
    return torch.stack([1 - p1, p1]), keep


def test_patch_labels_and_ignore_pixels():
    probs, keep = special_pixel_image()
    patches = scale_invariant_patches(probs, keep, n_patches=40,
                                      generator=torch.Generator().manual_seed(0))
    assert len(patches) == 40
    boxes = {(p.box.top, p.box.left) for p in patches}
    # The draws cover the crops with the special pixel at each local corner, and crops
    # that miss it.
    assert {(1, 1), (0, 0), (0, 1), (1, 0), (2, 2)} <= boxes
    for patch in patches:
        top, left, height, width = patch.box
        assert (height, width) == (2, 2) and 0 <= top <= 2 and 0 <= left <= 2
        assert patch.label.dtype == torch.uint8 and patch.label.shape == (4, 4)
        assert torch.equal(patch.label, expected_patch(top, left)), patch.box


def test_patches_deterministic_for_a_seed_and_inside_the_image():
    gen = torch.Generator().manual_seed(3)
    probs = torch.rand(3, 10, 7, generator=gen).softmax(0)
    keep = torch.rand(10, 7, generator=gen) > 0.5

    def draw(seed: int):
        return scale_invariant_patches(probs, keep, n_patches=6,
                                       generator=torch.Generator().manual_seed(seed))

    a, b, c = draw(5), draw(5), draw(6)
    assert [p.box for p in a] == [p.box for p in b]
    assert all(torch.equal(x.label, y.label) for x, y in zip(a, b, strict=True))
    assert [p.box for p in a] != [p.box for p in c]
    for p in a:
        assert p.box.height == 5 and p.box.width == 3
        assert p.box.top + 5 <= 10 and p.box.left + 3 <= 7
        # Odd width: the patch is (H // 2 * 2, W // 2 * 2).
        assert p.label.shape == (10, 6)
        assert set(p.label.unique().tolist()) <= {0, 1, 2, 255}


def test_patches_full_keep_has_no_ignore_and_empty_keep_is_all_ignored():
    probs, _ = special_pixel_image()
    gen = torch.Generator().manual_seed(0)
    full = scale_invariant_patches(probs, torch.ones(4, 4, dtype=torch.bool), generator=gen)
    assert all((p.label != 255).all() for p in full)
    empty = scale_invariant_patches(probs, torch.zeros(4, 4, dtype=torch.bool), generator=gen)
    assert all((p.label == 255).all() for p in empty)


def test_patches_validate_inputs():
    probs, keep = special_pixel_image()
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(RipuError, match="keep"):
        scale_invariant_patches(probs, keep[:2], generator=gen)
    with pytest.raises(RipuError, match="scale"):
        scale_invariant_patches(probs, keep, scale=5, generator=gen)
    with pytest.raises(RipuError, match="ignore_index"):
        scale_invariant_patches(probs, keep, generator=gen, ignore_index=300)

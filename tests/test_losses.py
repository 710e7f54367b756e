"""Losses (docs/method.md sections 2 and 3) against hand-computed values on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ripu.errors import RipuError
from ripu.losses import (
    cross_entropy,
    focal_loss,
    local_consistency,
    negative_learning,
    semantic_boundary,
)


def two_class_probs(p0: list[list[float]]) -> torch.Tensor:
    """(1, 2, H, W) probabilities with class 0 = p0 and class 1 = 1 - p0."""
    p = torch.tensor(p0, dtype=torch.float64)
    return torch.stack([p, 1 - p])[None]


# Class-0 probability 1 at two opposite corners. With replicate padding the 3x3 box mean
# of class 0 is 4/9 at a corner holding the 1, 2/9 beside it (1 counted twice), 1/9
# diagonally inside, 0 elsewhere; class 1 mirrors it, so d = 2 * |p0 - m0|:
# d = (1/9) * [[10, 4, 0], [4, 4, 4], [0, 4, 10]] (the centre sees both corners: 2 * 2/9).
CORNERS = [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]


def test_local_consistency_mean_over_boundary_pixels():
    labels = torch.tensor([[[1, 0, 0], [0, 0, 0], [0, 0, 0]]])
    # 8-neighbour Laplacian (zero padding): -8 at (0,0), 1 at its neighbours (0,1), (1,0),
    # (1,1); 0 elsewhere. Boundary = {(0,0), (0,1), (1,0), (1,1)}: d = 10, 4, 4, 4 ninths.
    expected_boundary = torch.tensor([[[1, 1, 0], [1, 1, 0], [0, 0, 0]]], dtype=torch.bool)
    assert torch.equal(semantic_boundary(labels), expected_boundary)
    loss = local_consistency(two_class_probs(CORNERS), labels)
    assert loss.item() == pytest.approx(22 / 36)


def test_local_consistency_image_border_counts_with_zero_padding():
    labels = torch.ones(1, 3, 3, dtype=torch.long)
    # Constant non-zero labels: only the centre has a zero Laplacian (8 - 8); every border
    # pixel sees zero padding. d on the border: 10, 4, 0, 4, 4, 0, 4, 10 ninths -> mean 1/2.
    boundary = semantic_boundary(labels)
    assert boundary.sum() == 8 and not boundary[0, 1, 1]
    assert local_consistency(two_class_probs(CORNERS), labels).item() == pytest.approx(0.5)


def test_local_consistency_excludes_ignore_pixels():
    labels = torch.tensor([[[255, 0, 0], [0, 0, 0], [0, 0, 0]]])
    # The 255 makes its neighbours boundary pixels but is itself excluded: {(0,1), (1,0), (1,1)}.
    loss = local_consistency(two_class_probs(CORNERS), labels)
    assert loss.item() == pytest.approx(4 / 9)


def test_local_consistency_no_boundary_is_zero_with_gradient():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = local_consistency(logits.softmax(1), torch.zeros(2, 4, 4, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.equal(logits.grad, torch.zeros_like(logits))


def test_local_consistency_gradient_flows():
    logits = torch.randn(1, 3, 5, 5, generator=torch.Generator().manual_seed(0),
                         requires_grad=True)
    labels = torch.zeros(1, 5, 5, dtype=torch.long)
    labels[0, :, 2:] = 2
    loss = local_consistency(logits.softmax(1), labels)
    assert loss.item() > 0
    loss.backward()
    assert logits.grad.abs().sum() > 0


def test_local_consistency_rejects_mismatched_labels():
    with pytest.raises(RipuError, match="nearest"):
        local_consistency(torch.rand(1, 2, 4, 4), torch.zeros(1, 8, 8, dtype=torch.long))


def test_negative_learning_hand_value():
    # Three 2-class pixels: (0.01, 0.99), (0.5, 0.5), (0.97, 0.03). Below 0.05: 0.01 and 0.03.
    p0 = torch.tensor([[0.01, 0.5, 0.97]], dtype=torch.float64)
    probs = torch.stack([p0, 1 - p0])[None]
    expected = -(math.log(0.99 + 1e-6) + math.log(0.97 + 1e-6)) / 2
    assert negative_learning(probs).item() == pytest.approx(expected)
    # threshold 0.6 also masks the two 0.5 entries.
    expected_06 = -(math.log(0.99 + 1e-6) + math.log(0.97 + 1e-6)
                    + 2 * math.log(0.5 + 1e-6)) / 4
    assert negative_learning(probs, threshold=0.6).item() == pytest.approx(expected_06)


def test_negative_learning_empty_mask_is_zero_with_gradient():
    logits = torch.zeros(1, 2, 2, 2, requires_grad=True)  # every p = 0.5
    loss = negative_learning(logits.softmax(1))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_negative_learning_gradient_lowers_small_probabilities():
    logits = torch.tensor([[[[4.0]], [[0.0]], [[-1.0]]]], requires_grad=True)
    negative_learning(logits.softmax(1)).backward()
    # Pushing the masked (small) probabilities down raises the dominant logit.
    assert logits.grad[0, 0, 0, 0] < 0


def test_focal_gamma_zero_equals_cross_entropy():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 3, 3, generator=gen)
    target = torch.randint(0, 4, (2, 3, 3), generator=gen)
    target[0, 0, :] = 255
    expected = F.cross_entropy(logits, target, ignore_index=255)
    assert focal_loss(logits, target, gamma=0.0).item() == pytest.approx(expected.item())
    assert cross_entropy(logits, target).item() == pytest.approx(expected.item())


def test_focal_gamma_three_on_known_pt():
    # Pixel 1: p = (0.8, 0.2), target 0 -> p_t = 0.8. Pixel 2: same p, target 1 -> p_t = 0.2.
    # Pixel 3 is ignored.
    col = torch.tensor([math.log(0.8), math.log(0.2)], dtype=torch.float64)
    logits = col[None, :, None, None].expand(1, 2, 1, 3).clone()
    target = torch.tensor([[[0, 1, 255]]])
    expected = (0.2**3 * -math.log(0.8) + 0.8**3 * -math.log(0.2)) / 2
    assert focal_loss(logits, target).item() == pytest.approx(expected)


def test_focal_and_ce_zero_without_labelled_pixels():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    target = torch.full((1, 2, 2), 255)
    for fn in (focal_loss, cross_entropy):
        loss = fn(logits, target)
        assert loss.item() == 0.0 and not torch.isnan(loss)
        loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_focal_gradient_flows_to_every_parameter():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 1)
    x = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 4, (2, 4, 4))
    focal_loss(conv(x), target).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in conv.parameters())


def test_focal_rejects_negative_gamma_and_bad_shapes():
    with pytest.raises(RipuError, match="gamma"):
        focal_loss(torch.randn(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), gamma=-1)
    with pytest.raises(RipuError, match="target"):
        focal_loss(torch.randn(1, 2, 2, 2), torch.zeros(1, 3, 2, dtype=torch.long))
    with pytest.raises(RipuError, match="logits"):
        cross_entropy(torch.randn(2, 2, 2), torch.zeros(2, 2, dtype=torch.long))

"""Straightforward reference implementation of RIPU acquisition, for tests and the benchmark.

It spells docs/method.md section 1 out directly: one-hot box convolutions (``F.conv2d``) for the
class counts and the entropy sums, and a greedy loop that takes one full-image argmax per
selected region and writes ``-inf`` over the blocked window. It follows the numerical
contract stated in ``scores.py`` (sums over classes in class order, window sums in float64),
so its scores equal the fast ones bit for bit and its masks must be identical. Not for
production use: it is slow and memory-hungry by design.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ripu.acquisition.scores import RegionScores


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Zero-padded (2k+1)^2 box sum of each channel by convolution. (N, H, W) float64."""
    size = 2 * radius + 1
    kernel = torch.ones((1, 1, size, size), dtype=x.dtype, device=x.device)
    return F.conv2d(x[:, None], kernel, padding=radius)[:, 0]


def _maps(logits: torch.Tensor, radius: int):
    """Entropy (float32), sum_c q_c log(q_c + 1e-6) (float64) and |N_k| (float64) maps."""
    num_classes, height, width = logits.shape
    x = logits.float()
    exp = torch.exp(x - x.max(dim=0).values)
    probs = exp / sum(exp[c] for c in range(num_classes))
    labels = probs.argmax(dim=0)
    terms = probs * torch.log(probs + 1e-6)
    entropy = -sum(terms[c] for c in range(num_classes))
    ones = torch.ones((1, height, width), dtype=torch.float64, device=logits.device)
    sizes = _box(ones, radius)[0]
    one_hot = F.one_hot(labels, num_classes).permute(2, 0, 1).double()
    q = _box(one_hot, radius) / sizes
    plogp = q * torch.log(q + 1e-6)
    return entropy, sum(plogp[c] for c in range(num_classes)), sizes


def naive_region_scores(logits: torch.Tensor, radius: int = 1) -> RegionScores:
    """RA scores by convolution. Shape: logits (C, H, W); returns (H, W) float32 maps."""
    log_c = math.log(logits.shape[0])
    entropy, plogp, sizes = _maps(logits, radius)
    pixel_entropy = entropy / log_c
    uncertainty = (_box(pixel_entropy.double()[None], radius)[0] / sizes).float()
    impurity = (-plogp / log_c).float()
    return RegionScores(impurity * uncertainty, impurity, uncertainty)


def naive_point_scores(logits: torch.Tensor, radius: int = 32) -> torch.Tensor:
    """PA score by convolution. Shape: logits (C, H, W); returns (H, W) float32."""
    entropy, plogp, _ = _maps(logits, radius)
    return entropy * (-plogp).float()


def _naive_greedy(score: torch.Tensor, n: int, label_radius: int, block_radius: int,
                  blocked: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    height, width = score.shape
    blocked = (torch.zeros_like(score, dtype=torch.bool) if blocked is None
               else blocked.to(score.device).clone())
    selected = torch.zeros_like(blocked)
    work = score.float().masked_fill(blocked, -math.inf)
    for _ in range(n):
        index = int(torch.argmax(work))
        if blocked.view(-1)[index]:
            break  # every pixel is blocked
        y, x = divmod(index, width)
        selected[max(0, y - label_radius):y + label_radius + 1,
                 max(0, x - label_radius):x + label_radius + 1] = True
        window = (slice(max(0, y - block_radius), y + block_radius + 1),
                  slice(max(0, x - block_radius), x + block_radius + 1))
        blocked[window] = True
        work[window] = -math.inf
    return selected, blocked


def naive_select_regions(score: torch.Tensor, n_regions: int, radius: int = 1,
                         blocked: torch.Tensor | None = None):
    """Greedy RA selection, one argmax per region. Shape: score (H, W); masks bool (H, W)."""
    return _naive_greedy(score, n_regions, radius, 2 * radius, blocked)


def naive_select_points(score: torch.Tensor, n_points: int, radius: int = 32,
                        blocked: torch.Tensor | None = None):
    """Greedy PA selection, one argmax per point. Shape: score (H, W); masks bool (H, W)."""
    return _naive_greedy(score, n_points, 0, radius, blocked)

"""Acquisition strategies: pure functions over tensors, registered in a plain dict.

A per-image strategy has the signature
``fn(logits (C, H, W) | None, blocked (H, W) bool, n, radius, generator) -> (selected, blocked)``
and runs the shared greedy machinery of ``select.py`` on its own score map, so blocking and
non-overlap rules are the same for every strategy (docs/method.md section 1, baselines). Random
strategies draw their score from ``generator`` and need no logits (the runner then skips
inference). ``full_image`` is dataset-level: see :func:`select_full_images`. A strategy that
uses the ground truth (``oracle``: an upper bound, not a method) also takes the image's label
``(H, W)`` as a last argument.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ripu.acquisition.oracle import oracle_score
from ripu.acquisition.scores import point_scores, region_scores
from ripu.acquisition.select import select_points, select_regions
from ripu.errors import RipuError
from ripu.registry import Registry
from ripu.seeding import seeded_generator

Masks = tuple[torch.Tensor, torch.Tensor]
PerImage = Callable[[torch.Tensor | None, torch.Tensor, int, int, torch.Generator], Masks]

# Seed-sequence tags that keep per-image and dataset-level streams independent.
_IMAGE_STREAM, _DATASET_STREAM = 0, 1


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: its mode, whether it needs logits, and its function.

    ``fn`` is the per-image function (None for the dataset-level ``full_image``).
    ``uses_ground_truth``: it reads the image's label (an upper bound, not a method).
    """

    name: str
    mode: str  # "region" | "point" | "image"
    needs_logits: bool
    fn: PerImage | None
    description: str
    uses_ground_truth: bool = False

    def __call__(self, logits: torch.Tensor | None, blocked: torch.Tensor, n: int, radius: int,
                 generator: torch.Generator, label: torch.Tensor | None = None) -> Masks:
        if self.fn is None:
            raise RipuError(f"strategy {self.name!r} is dataset-level, not per image: "
                            f"use select_full_images")
        if self.needs_logits and logits is None:
            raise RipuError(f"strategy {self.name!r} needs logits, got None")
        if not self.uses_ground_truth:
            return self.fn(logits, blocked, n, radius, generator)
        if label is None:
            raise RipuError(f"strategy {self.name!r} uses the ground truth, got no label")
        return self.fn(logits, blocked, n, radius, generator, label)


def random_score(blocked: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Uniform scores from ``generator`` (drawn on the CPU, so any device gives the same).

    Shape:
        blocked: (H, W) bool; returns (H, W) float32 on blocked's device
    """
    if not isinstance(blocked, torch.Tensor) or blocked.dim() != 2:
        raise RipuError(f"blocked: expected an (H, W) bool tensor, got "
                        f"{tuple(getattr(blocked, 'shape', ())) or type(blocked).__name__}")
    return torch.rand(tuple(blocked.shape), generator=generator).to(blocked.device)


def ripu_region(logits, blocked, n, radius, generator) -> Masks:
    """RIPU-RA: regions by ``A = P * U`` (docs/method.md section 1)."""
    return select_regions(region_scores(logits, radius).score, n, radius, blocked)


def ripu_point(logits, blocked, n, radius, generator) -> Masks:
    """RIPU-PA: points by ``H_raw * P_raw`` (docs/method.md section 1)."""
    return select_points(point_scores(logits, radius), n, radius, blocked)


def entropy_region(logits, blocked, n, radius, generator) -> Masks:
    """Regions by prediction uncertainty ``U`` alone."""
    return select_regions(region_scores(logits, radius).uncertainty, n, radius, blocked)


def impurity_region(logits, blocked, n, radius, generator) -> Masks:
    """Regions by region impurity ``P`` alone."""
    return select_regions(region_scores(logits, radius).impurity, n, radius, blocked)


def random_region(logits, blocked, n, radius, generator) -> Masks:
    """Regions at random (seeded), with RA's blocking rules."""
    return select_regions(random_score(blocked, generator), n, radius, blocked)


def random_point(logits, blocked, n, radius, generator) -> Masks:
    """Points at random (seeded), with PA's blocking rules."""
    return select_points(random_score(blocked, generator), n, radius, blocked)


def oracle(logits, blocked, n, radius, generator, label) -> Masks:
    """Uses the ground truth: an upper bound, not a method. Regions inside one ground-truth
    class, most wrongly predicted pixels first (ties at random), RA's rules and budget."""
    return select_regions(oracle_score(logits, label, radius, generator), n, radius, blocked)


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("ripu_region", "region", True, ripu_region, ripu_region.__doc__),
    Strategy("ripu_point", "point", True, ripu_point, ripu_point.__doc__),
    Strategy("random_region", "region", False, random_region, random_region.__doc__),
    Strategy("random_point", "point", False, random_point, random_point.__doc__),
    Strategy("entropy_region", "region", True, entropy_region, entropy_region.__doc__),
    Strategy("impurity_region", "region", True, impurity_region, impurity_region.__doc__),
    Strategy("full_image", "image", False, None,
             "Whole images at random (seeded) up to the same pixel budget."),
    Strategy("oracle", "region", True, oracle, oracle.__doc__, uses_ground_truth=True),
)}


def get_strategy(name: str) -> Strategy:
    """The registered strategy ``name``; RipuError listing the valid names otherwise."""
    return Registry("acquisition strategy", STRATEGIES, error=RipuError)[name]


def round_generator(seed: int, round_index: int, index: int | None = None) -> torch.Generator:
    """CPU generator for image ``index`` (or the dataset when None) in round ``round_index``.

    Derived from ``(seed, round_index, index)`` alone, so draws do not depend on batching or
    on the order images are visited.
    """
    for value, name in ((seed, "seed"), (round_index, "round_index"), (index, "index")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 0):
            raise RipuError(f"{name}: expected a non-negative integer, got {value!r}")
    words = ([_IMAGE_STREAM, seed, round_index, index] if index is not None
             else [_DATASET_STREAM, seed, round_index])
    return seeded_generator(*words, bits=64)


def select_full_images(costs: Sequence[int], allowance: int,
                       generator: torch.Generator) -> list[int]:
    """Whole images for one ``full_image`` round: indices into ``costs``, in pick order.

    ``costs[i]`` is the number of pixels labelling image ``i`` would add (None or negative:
    not a candidate, e.g. already fully labelled). The round takes the largest number ``m``
    of whole images whose pixels fit in ``allowance`` (never exceeding it), chosen at random:
    images are visited in a seeded random order and one is taken only if ``m`` images can
    still be completed within the allowance (it and the smallest unvisited ones fit). With
    equal-sized images this is simply the first ``floor(allowance / size)`` of the order.
    """
    if isinstance(allowance, bool) or not isinstance(allowance, int):
        raise RipuError(f"allowance: expected an integer pixel count, got {allowance!r}")
    candidates = [i for i, c in enumerate(costs) if c is not None and c >= 0]
    if not candidates or allowance <= 0:
        return []
    cost = np.array([costs[i] for i in candidates], dtype=np.int64)
    by_size = np.argsort(cost, kind="stable")
    prefix = np.cumsum(cost[by_size])
    target = int(np.searchsorted(prefix, allowance, side="right"))  # largest m that fits
    rank = np.empty_like(by_size)
    rank[by_size] = np.arange(len(by_size))
    alive = np.ones(len(cost), dtype=bool)  # unvisited, by size rank
    order = torch.randperm(len(candidates), generator=generator).tolist()
    chosen: list[int] = []
    used = 0
    for k in order:
        if len(chosen) == target:
            break
        alive[rank[k]] = False
        rest = cost[by_size][alive][:target - len(chosen) - 1].sum()
        if used + cost[k] + rest <= allowance:
            chosen.append(candidates[k])
            used += int(cost[k])
    return chosen

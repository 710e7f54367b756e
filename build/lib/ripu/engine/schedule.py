"""Learning-rate schedule and selection-round iterations."""

from __future__ import annotations

import torch


def poly_lr(base_lr: float, iteration: int, max_iters: int, power: float = 0.9) -> float:
    """``base_lr * (1 - iteration / max_iters) ** power`` (docs/method.md section 2), floored at 0."""
    return base_lr * max(0.0, 1.0 - iteration / max_iters) ** power


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's lr to ``lr`` times its ``lr_mult`` (the head's 10x)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)


def round_iterations(round_at: list[float], iters: int) -> list[int]:
    """Iterations before which selection rounds happen, e.g. ([0.25, 0.3], 40000) -> [10000, 12000]."""
    return [int(round(f * iters)) for f in round_at]

"""A trial's selection rounds from its config: the budget and one round of its strategy."""

from __future__ import annotations

import torch

from ripu.acquisition import Budget, LabelState, get_strategy, select_round
from ripu.config import Config
from ripu.data import SegmentationDataset


def budget_of(cfg: Config) -> Budget:
    """The labelling budget of the ``active`` section, in the strategy's mode."""
    a = cfg.active
    return Budget(mode=get_strategy(a.strategy).mode, fraction=a.budget,
                  points_per_image=a.points, rounds=a.rounds, radius=a.radius)


def run_round(cfg: Config, model: torch.nn.Module, target: SegmentationDataset,
              state: LabelState, round_index: int, *, device: torch.device,
              progress: bool = True) -> LabelState:
    """Selection round ``round_index`` of ``cfg``'s strategy and budget (docs/method.md section 1); the
    new label state (``state`` is not modified)."""
    a = cfg.active
    return select_round(model, target, state, a.strategy, budget_of(cfg), round_index,
                        seed=cfg.seed, device=device, batch_size=a.batch_size,
                        progress=progress, upsample=a.upsample)

"""RIPU acquisition (docs/method.md section 1): scores, greedy selection, strategies, budgets,
label state, selection rounds. ``ripu.acquisition.export`` (PNG masks, previews) and
``ripu.acquisition.naive`` (the reference implementation) are imported on their own."""

from ripu.acquisition.budget import Budget, pixel_cap, units_for_round
from ripu.acquisition.runner import select_round
from ripu.acquisition.scores import RegionScores, point_scores, region_scores
from ripu.acquisition.select import select_points, select_regions
from ripu.acquisition.state import LabelState, latest_round
from ripu.acquisition.strategies import STRATEGIES, Strategy, get_strategy, round_generator

__all__ = [
    "STRATEGIES", "Budget", "LabelState", "RegionScores", "Strategy", "get_strategy",
    "latest_round", "pixel_cap", "point_scores", "region_scores", "round_generator",
    "select_points", "select_regions", "select_round", "units_for_round",
]

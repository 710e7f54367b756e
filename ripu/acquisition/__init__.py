"""RIPU acquisition: scores, greedy selection, strategies, label state, rounds, export."""

from ripu.acquisition.scores import RegionScores, point_scores, region_scores
from ripu.acquisition.select import select_points, select_regions

__all__ = ["RegionScores", "point_scores", "region_scores", "select_points", "select_regions"]

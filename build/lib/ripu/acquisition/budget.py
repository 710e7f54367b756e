"""Labelling budgets: how many regions, points or pixels one round may take (docs/method.md section 1).

Arithmetic is exact: the fraction is read as the decimal it was written as
(``Fraction(repr(0.022)) == 22/1000``), so ``ceil`` never rounds a float error up.

- region: ``n = ceil(H * W * (fraction / rounds) / (2k+1)^2)`` regions per image and round.
- point, selecting at the network's input size: ``points_per_image`` split over the rounds,
  the remainder to the earliest rounds, so the rounds add up to exactly ``points_per_image``.
- point, selecting at a larger label size (``active.select_size: label``): the authors'
  ``ceil(points / rounds * label_area / input_area)`` per round (BIT-DA/RIPU
  core/active/build.py:17, with their fixed 2048x1024 and 1280x640: ceil(8 x 2.56) = 21 for
  40 points over 5 rounds). Regions need no scaling: their count already follows the area
  of the map they are selected on (build.py:119 and :129).
- image: pixels. The cumulative cap after round ``r`` is
  ``floor(total * fraction * (r + 1) / rounds)``; a round may add what the cap allows beyond
  what earlier rounds labelled (``units_for_round`` gives a round's share of the cap for an
  area of ``height * width`` pixels; the runner uses :func:`pixel_cap` with the labelled count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from ripu.errors import RipuError

MODES = ("region", "point", "image")


def _int(value: int, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise RipuError(f"{name}: expected an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class Budget:
    """A labelling budget for one run of ``rounds`` selection rounds."""

    mode: str
    fraction: float
    points_per_image: int
    rounds: int
    radius: int

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise RipuError(f"budget.mode: expected one of {', '.join(MODES)}, got {self.mode!r}")
        if (isinstance(self.fraction, bool) or not isinstance(self.fraction, (int, float))
                or not 0 < self.fraction <= 1):
            raise RipuError(f"budget.fraction: expected a number in (0, 1], got {self.fraction!r}")
        _int(self.points_per_image, "budget.points_per_image", 0)
        _int(self.rounds, "budget.rounds", 1)
        _int(self.radius, "budget.radius", 0)

    @property
    def exact_fraction(self) -> Fraction:
        """The fraction as the decimal it was written as."""
        return Fraction(repr(float(self.fraction)))

    def check_round(self, round_index: int) -> None:
        """Raise RipuError unless ``0 <= round_index < rounds``."""
        if (isinstance(round_index, bool) or not isinstance(round_index, int)
                or not 0 <= round_index < self.rounds):
            raise RipuError(f"round_index: expected an integer in [0, {self.rounds}), "
                            f"got {round_index!r}")


def pixel_cap(budget: Budget, total_pixels: int, round_index: int) -> int:
    """Cumulative labelled-pixel cap after round ``round_index`` (image mode accounting)."""
    budget.check_round(round_index)
    return math.floor(total_pixels * budget.exact_fraction * (round_index + 1) / budget.rounds)


def units_for_round(budget: Budget, height: int, width: int, round_index: int,
                    input_area: int | None = None) -> int:
    """Regions, points or pixels (by ``budget.mode``) that round ``round_index`` may select
    in an ``height x width`` score map (image mode: area). ``input_area``: pixels of the
    network's input when the map is larger (selection at label size; points scale by the
    ratio, see the module docstring)."""
    budget.check_round(round_index)
    _int(height, "height", 1)
    _int(width, "width", 1)
    if budget.mode == "region":
        per_round = height * width * budget.exact_fraction / budget.rounds
        return math.ceil(per_round / (2 * budget.radius + 1) ** 2)
    if budget.mode == "point":
        if input_area is not None and input_area != height * width:
            _int(input_area, "input_area", 1)
            return math.ceil(Fraction(budget.points_per_image * height * width,
                                      budget.rounds * input_area))
        base, extra = divmod(budget.points_per_image, budget.rounds)
        return base + (1 if round_index < extra else 0)
    area = height * width
    previous = pixel_cap(budget, area, round_index - 1) if round_index else 0
    return pixel_cap(budget, area, round_index) - previous

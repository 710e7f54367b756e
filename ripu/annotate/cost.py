"""What a round costs annotators: regions and pixels per image against whole images.

``python -m ripu.annotate.cost`` prints docs/annotating.md's table: per image and round, the
regions (3x3 squares at ``radius`` 1) a region budget asks for and the pixels they cover,
from :func:`ripu.acquisition.budget.units_for_round`, beside the image's own pixel count.
"""

from __future__ import annotations

from typing import NamedTuple

from ripu.acquisition.budget import Budget, units_for_round

# (setting, selection map (H, W)): the embedded benchmark and the paper's Cityscapes labels.
SETTINGS = (("synthetic (selection at 64x128)", (64, 128)),
            ("Cityscapes (selection at the 1024x2048 labels)", (1024, 2048)))
BUDGETS = (0.01, 0.022, 0.05)
ROUNDS = 5  # the paper's selection rounds


class RoundCost(NamedTuple):
    regions: int  # regions per image and round
    pixels: int  # pixels those regions cover (at most)
    image_pixels: int  # pixels of the whole image


def round_cost(fraction: float, shape: tuple[int, int], *, rounds: int = ROUNDS,
               radius: int = 1) -> RoundCost:
    """Per image and round, at a region budget of ``fraction`` over ``rounds`` rounds."""
    budget = Budget(mode="region", fraction=fraction, points_per_image=0, rounds=rounds,
                    radius=radius)
    n = units_for_round(budget, shape[0], shape[1], 0)
    return RoundCost(n, n * (2 * radius + 1) ** 2, shape[0] * shape[1])


def table(rounds: int = ROUNDS) -> str:
    """The markdown table of :func:`round_cost` for ``SETTINGS`` x ``BUDGETS``."""
    rows = ["| setting | budget | regions per image and round | pixels per image and round "
            f"| whole image | share of the image, all {rounds} rounds |",
            "|---|---|---|---|---|---|"]
    for name, shape in SETTINGS:
        for fraction in BUDGETS:
            c = round_cost(fraction, shape, rounds=rounds)
            rows.append(f"| {name} | {100 * fraction:g}% | {c.regions:,} | {c.pixels:,} | "
                        f"{c.image_pixels:,} | "
                        f"{100 * rounds * c.pixels / c.image_pixels:.2f}% |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())

"""Selection at Cityscapes' full size: peak memory of one RA round, and round-file sizes.

    python -m benchmarks.selection_memory [--quick] [--json FILE]

1. Peak memory one RIPU region round (scores + greedy selection, 2.2% over 5 rounds,
   3 x 3 regions) adds on a 19 x 1024 x 2048 frame of realistic logits (--quick: 256 x 512),
   ours (ripu.acquisition) vs the straightforward implementation
   (ripu.acquisition.naive), measured as in benchmarks/acquisition.py (resident-set growth
   above the logits already in memory, sampled every 2 ms).
2. Round files of the paper's target set, 2,975 images at the training and selection size
   1280 x 640: real 5-round RA selections on ``K`` frames of realistic logits (distinct
   seeds; K = 8, --quick 2), cycled over 2,975 ids, saved as the trainer saves them
   (``LabelState.save``: packed bits, compressed .npz) after round 0 and round 4; --quick
   saves 300 ids and scales to 2,975. Masks are 102,400 bytes packed per image each, so
   compression never matches one image against another (zlib looks back 32 KiB).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import conditions, main_of, scratch, setup
from benchmarks.acquisition import fast_round, naive_round, peak_memory_mb, realistic_logits
from ripu.acquisition import LabelState, region_scores, select_regions
from ripu.acquisition.budget import Budget, units_for_round

CITYSCAPES_TRAIN = 2975
SIZE = (640, 1280)  # (H, W): data.target_size [1280, 640] of the paper's experiment files
ROUNDS = 5


def selection_peak(height: int, width: int) -> dict[str, float]:
    """Peak MiB one RA round adds (ours and naive) on (19, height, width) logits."""
    device = torch.device("cpu")
    logits = realistic_logits(19, height, width, seed=0, device=device)
    budget = Budget("region", 0.022, 0, ROUNDS, 1)
    n = units_for_round(budget, height, width, 0)
    fast_round(logits, n, 1)  # warm-up: one-time allocations are not the round's
    ours = peak_memory_mb(lambda: fast_round(logits, n, 1), device)
    naive = peak_memory_mb(lambda: naive_round(logits, n, 1), device)
    return {"ours_mb": round(ours, 1), "naive_mb": round(naive, 1),
            "logits_mb": round(logits.numel() * 4 / 2**20, 1), "regions": n}


def rounds_of_frame(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(labelled, blocked) bool (H, W) masks after each of 5 RA rounds on one frame."""
    logits = realistic_logits(19, *SIZE, seed=seed, device=torch.device("cpu"))
    score = region_scores(logits, 1).score  # the scores do not change between rounds here
    budget = Budget("region", 0.022, 0, ROUNDS, 1)
    labelled = torch.zeros(SIZE, dtype=torch.bool)
    blocked = None
    out = []
    for r in range(ROUNDS):
        selected, blocked = select_regions(score, units_for_round(budget, *SIZE, r), 1,
                                           blocked=blocked)
        labelled |= selected
        out.append((labelled.numpy().copy(), blocked.numpy().copy()))
    return out


def round_files(frames: int, images: int, folder: Path) -> dict[str, Any]:
    """Bytes of round_0.npz and round_4.npz for ``images`` ids cycling ``frames`` frames."""
    per_frame = [rounds_of_frame(seed) for seed in range(frames)]
    out: dict[str, Any] = {}
    for r in (0, ROUNDS - 1):
        state = LabelState()
        for i in range(images):
            labelled, blocked = per_frame[i % frames][r]
            state.set_masks(f"image_{i:05d}", labelled, blocked)
        state.round_index = r
        path = state.save(folder / f"round_{r}.npz")
        scale = CITYSCAPES_TRAIN / images
        out[f"round_{r}"] = {"bytes": path.stat().st_size,
                             "bytes_at_2975": round(path.stat().st_size * scale),
                             "labelled_fraction": round(state.labelled_fraction(), 7)}
        path.unlink()
    h, w = SIZE
    out["packed_bytes_at_2975"] = 2 * CITYSCAPES_TRAIN * math.ceil(h * w / 8)
    out["bool_bytes_at_2975"] = 2 * CITYSCAPES_TRAIN * h * w
    return out


def run(quick: bool = False) -> dict[str, Any]:
    setup()
    height, width = (256, 512) if quick else (1024, 2048)
    frames, images = (2, 300) if quick else (8, CITYSCAPES_TRAIN)
    peak = selection_peak(height, width)
    with scratch("rounds") as tmp:
        files = round_files(frames, images, Path(tmp))
    final_mb = files[f"round_{ROUNDS - 1}"]["bytes_at_2975"] / 2**20
    return {
        "figures": {"selection_peak_memory_mb": peak["ours_mb"],
                    "selection_memory_ratio": round(peak["naive_mb"] / max(peak["ours_mb"],
                                                                          1e-3), 2),
                    "round_file_mb_2975": round(final_mb, 1)},
        "ours": "ripu.acquisition RA round; LabelState round file",
        "baseline": "ripu.acquisition.naive RA round; unpacked bool masks",
        "measurements": {"frame": [19, height, width], **peak, "round_files": files,
                         "frames": frames, "images_saved": images, "size": list(SIZE)},
        "conditions": conditions(),
    }


if __name__ == "__main__":
    main_of(run, __doc__)

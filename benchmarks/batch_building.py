"""Source batches of a trial: kept transformed items against a transform on every draw.

    python -m benchmarks.batch_building [--quick] [--json FILE]

A trial draws 2 source images per iteration (``IterationBatches``). Its source dataset keeps
decoded images in memory (``data.keep_decoded``); with a deterministic transform (no crop, no
flip: every trial's) it also keeps each image's transformed tensors, so an image is resized
and normalised once per trial (``SegmentationDataset.sample``). The baseline is the same
dataset resizing and normalising on every draw, as before that change (decoded arrays kept
all the same, so reading PNGs is in neither). Both build the same iterations' source batches
from params.yaml's data settings on a small synthetic set, rounds alternating their order.

Figures: ``batch_building_speedup`` = median baseline time / median our time,
``batch_source_ms`` and ``batch_source_ms_before`` per iteration, and ``batch_same_result``:
every batch equal bit for bit.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import bench_config, conditions, main_of, scratch, setup, synthetic_data


class TransformEveryDraw:
    """A source dataset that resizes and normalises on every draw, its decoded images kept
    all the same (the baseline): what ``IterationBatches`` reads of a source."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def sample(self, index: int, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset._transformed(index, generator)


def run(quick: bool = False) -> dict[str, Any]:
    from ripu.data.build import build_datasets
    from ripu.engine.batches import IterationBatches

    setup()
    iters, rounds = (100, 3) if quick else (650, 5)
    with scratch("batches") as tmp_name:
        tmp = Path(tmp_name)
        data = synthetic_data(tmp / "data", source=8 if quick else 48, target=2, val=1)
        cfg = bench_config(data, tmp)
        datasets = {"ours": build_datasets(cfg, only=("source",))["source"],
                    "before": TransformEveryDraw(build_datasets(cfg, only=("source",))["source"])}

        def timed(name: str) -> tuple[float, list[torch.Tensor]]:
            built = IterationBatches(cfg.seed, source=datasets[name],
                                     batch_source=cfg.optim.batch_source)
            start = time.perf_counter()
            images = [built[it]["source"]["image"] for it in range(iters)]
            return (time.perf_counter() - start) / iters, images

        timed("ours"), timed("before")  # every image decoded once, into memory, in both
        times: dict[str, list[float]] = {"ours": [], "before": []}
        same = True
        for r in range(rounds):
            images = {}
            for name in ("ours", "before") if r % 2 == 0 else ("before", "ours"):
                seconds, images[name] = timed(name)
                times[name].append(seconds)
            same = same and all(torch.equal(a, b) for a, b in zip(
                images["ours"], images["before"], strict=True))
    ours, base = times["ours"], times["before"]
    ours_s, base_s = statistics.median(ours), statistics.median(base)
    return {
        "figures": {"batch_building_speedup": round(base_s / ours_s, 3),
                    "batch_source_ms": round(1e3 * ours_s, 3),
                    "batch_source_ms_before": round(1e3 * base_s, 3),
                    "batch_same_result": same},
        "ours": "source items transformed once and kept (SegmentationDataset.sample)",
        "baseline": "the same dataset resizing and normalising on every draw",
        "measurements": {"iterations": iters, "rounds": rounds, "ours_s": ours, "before_s": base,
                         "batch_source": cfg.optim.batch_source,
                         "source_size": list(cfg.data.source_size)},
        "conditions": conditions(),
    }


if __name__ == "__main__":
    main_of(run, __doc__)

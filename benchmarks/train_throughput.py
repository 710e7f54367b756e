"""Training throughput: `ripu train`'s loop (Trainer.train_until) over a bare PyTorch loop.

    python -m benchmarks.train_throughput [--quick] [--json FILE]

Same model (params.yaml's small network, same initial weights), same batches (params.yaml's
batch sizes and image size, drawn once from a small synthetic set and kept in memory, so
reading PNGs is in neither loop), same objective: trial kind ``supervised``,
whose loss terms are the full RIPU objective ``CE(src) + 0.1 L_LC(src) + CE(tgt) +
L_NL(tgt)`` (METHOD.md section 2) with every target pixel labelled, and the same poly lr.
Ours: ``Trainer.train_until`` with no callbacks (lr setting, per-term loss dispatch,
``.item()`` of every term, running means and a log call every ``train.log_every``
iterations, checkpoints off). Baseline: a bare loop (forward, the same ``ripu.losses``
terms, backward, SGD step). Both run from the same weights first, and their weights must
then agree (``same_result``); then rounds alternate which loop goes first.
Figure: images per second of ours / baseline = median baseline time / median our time.
"""

from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks import bench_config, conditions, main_of, scratch, setup, synthetic_data


class Prebuilt(torch.utils.data.Dataset):
    """Batches built once; item ``it`` is batch ``it % len``."""

    def __init__(self, batches: list[dict[str, Any]]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, it: int) -> dict[str, Any]:
        return self.batches[it % len(self.batches)]


def bare_loop(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: Prebuilt,
              iters: int, cfg) -> None:
    """Forward, the RIPU loss terms, backward, SGD step, with the poly lr; nothing else."""
    from ripu import losses
    from ripu.engine.schedule import poly_lr, set_lr

    w, o = cfg.loss, cfg.optim
    model.train()
    for it in range(iters):
        batch = batches[it]
        set_lr(optimizer, poly_lr(o.lr, it, o.poly_iters, o.poly_power))
        src, tgt = batch["source"], batch["target"]
        logits = F.interpolate(model(src["image"]), size=src["label"].shape[-2:],
                               mode="bilinear", align_corners=True)
        loss = w.source_ce * losses.cross_entropy(logits, src["label"])
        loss = loss + w.lc * losses.local_consistency(logits.softmax(1), src["label"])
        logits = F.interpolate(model(tgt["image"]), size=tgt["label"].shape[-2:],
                               mode="bilinear", align_corners=True)
        loss = loss + w.target_ce * losses.cross_entropy(logits, tgt["label"])
        loss = loss + w.nl * losses.negative_learning(logits.softmax(1), cfg.loss.nl_threshold)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def run(quick: bool = False) -> dict[str, Any]:
    from ripu.engine.trainer import Trainer

    setup()
    iters, rounds = (12, 2) if quick else (60, 5)
    with scratch("throughput") as tmp:
        tmp = Path(tmp)
        data = synthetic_data(tmp / "data", source=8, target=8, val=2)
        cfg = bench_config(data, tmp, **{
            "train.kind": "supervised", "optim.iters": iters, "optim.poly_iters": iters,
            "train.checkpoint_every": 10**9, "train.eval_every": 0})
        trainer = Trainer(cfg, tmp / "trial", progress=False, callbacks=())
        batches = Prebuilt([trainer.batches()[i] for i in range(iters)])
        model = copy.deepcopy(trainer.model)
        optimizer = torch.optim.SGD(
            model.param_groups(cfg.optim.lr, cfg.optim.head_lr_mult), lr=cfg.optim.lr,
            momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)

        def ours() -> float:
            trainer.iteration = 0
            start = time.perf_counter()
            trainer.train_until(iters, batches)
            return time.perf_counter() - start

        def bare() -> float:
            start = time.perf_counter()
            bare_loop(model, optimizer, batches, iters, cfg)
            return time.perf_counter() - start

        times: dict[str, list[float]] = {"ours": [], "bare": []}
        for r in range(rounds):
            order = (("ours", ours), ("bare", bare)) if r % 2 == 0 else (("bare", bare),
                                                                       ("ours", ours))
            for name, fn in order:
                times[name].append(fn())
            if r == 0:  # from the same weights through the same steps
                a, b = trainer.model.state_dict(), model.state_dict()
                same = all(torch.allclose(a[k].float(), b[k].float(), rtol=1e-4, atol=1e-6)
                           for k in a)
        images = iters * (cfg.optim.batch_source + cfg.optim.batch_target)
        t_ours, t_bare = statistics.median(times["ours"]), statistics.median(times["bare"])
    return {
        "figures": {"train_throughput_ratio": round(t_bare / t_ours, 4),
                    "train_same_result": same},
        "ours": "Trainer.train_until, no callbacks",
        "baseline": "bare loop: forward, same loss terms, backward, SGD step",
        "measurements": {
            "iterations": iters, "rounds": rounds, "images_per_iteration": images // iters,
            "kind": cfg.train.kind, "log_every": cfg.train.log_every,
            "input_size": list(cfg.data.source_size),
            "ours_images_per_second": round(images / t_ours, 2),
            "baseline_images_per_second": round(images / t_bare, 2),
            "ours_seconds": [round(t, 4) for t in times["ours"]],
            "baseline_seconds": [round(t, 4) for t in times["bare"]]},
        "conditions": conditions(),
    }


if __name__ == "__main__":
    main_of(run, __doc__)

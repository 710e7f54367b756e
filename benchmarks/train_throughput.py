"""Training step: `ripu train`'s loop (Trainer.train_until) against a bare PyTorch loop.

    python -m benchmarks.train_throughput [--quick] [--json FILE]

Same model (params.yaml's small network with its frozen BatchNorm, same initial weights), same
batches (params.yaml's batch sizes and image size, drawn once from a small synthetic set and
kept in memory, so reading PNGs is in neither loop), same objective: trial kind
``supervised``, whose loss terms are the full RIPU objective ``CE(src) + 0.1 L_LC(src) +
CE(tgt) + L_NL(tgt)`` (docs/method.md section 2) with every target pixel labelled, and the same
poly lr. Three loops, side by side, rounds alternating their order:

- ours: ``Trainer.train_until`` with no callbacks (lr setting, per-term loss dispatch,
  ``.item()`` of every term, running means, a log call every ``train.log_every`` iterations,
  checkpoints off), source and target in one forward pass (frozen BatchNorm makes each
  image's logits its own);
- before: the same trainer with the joint pass off (a forward pass per batch, as the step
  was before);
- bare: forward per batch, the same ``ripu.losses`` terms, backward, SGD step; nothing else.

Figures: ``train_throughput_ratio`` = median bare time / median our time (above 1: ours is
faster than the bare loop), the step times in ms, and ``train_same_result``: from the same
weights, three steps of ours and of the bare loop give the same weights (float tolerance:
the joint pass sums in another order).
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


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.allclose(sa[k].float(), sb[k].float(), rtol=1e-4, atol=1e-5) for k in sa)


def run(quick: bool = False) -> dict[str, Any]:
    from ripu.engine.optim import build_optimizer
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
        joint = trainer.objective.joint
        batches = Prebuilt([trainer.batches()[i] for i in range(iters)])
        model = copy.deepcopy(trainer.model)
        initial = copy.deepcopy(trainer.model.state_dict()), copy.deepcopy(
            trainer.optimizer.state_dict())

        optimizer = build_optimizer(model, cfg.optim)
        # Three steps from the same weights: the same result.
        trainer.train_until(3, batches)
        bare_loop(model, optimizer, batches, 3, cfg)
        same = _same_weights(trainer.model, model)
        trainer.model.load_state_dict(initial[0])
        trainer.optimizer.load_state_dict(initial[1])

        def ours(joint_pass: bool) -> float:
            trainer.objective.joint = joint_pass
            trainer.iteration = 0
            start = time.perf_counter()
            trainer.train_until(iters, batches)
            return time.perf_counter() - start

        def bare() -> float:
            start = time.perf_counter()
            bare_loop(model, optimizer, batches, iters, cfg)
            return time.perf_counter() - start

        loops = {"ours": lambda: ours(joint), "before": lambda: ours(False), "bare": bare}
        times: dict[str, list[float]] = {name: [] for name in loops}
        for r in range(rounds):
            order = list(loops) if r % 2 == 0 else list(reversed(loops))
            for name in order:
                times[name].append(loops[name]())
        images = iters * (cfg.optim.batch_source + cfg.optim.batch_target)
        median = {name: statistics.median(t) for name, t in times.items()}
    step_ms = {name: round(1000 * t / iters, 2) for name, t in median.items()}
    return {
        "figures": {"train_throughput_ratio": round(median["bare"] / median["ours"], 4),
                    "train_step_ms": step_ms["ours"],
                    "train_step_ms_before": step_ms["before"],
                    "train_step_ms_bare": step_ms["bare"],
                    "train_step_speedup": round(median["before"] / median["ours"], 4),
                    "train_same_result": same},
        "ours": "Trainer.train_until, no callbacks, source and target in one forward pass",
        "baseline": "bare loop: a forward pass per batch, same loss terms, backward, SGD step",
        "measurements": {
            "iterations": iters, "rounds": rounds, "images_per_iteration": images // iters,
            "kind": cfg.train.kind, "log_every": cfg.train.log_every, "joint_pass": joint,
            "input_size": list(cfg.data.source_size),
            **{f"{name}_images_per_second": round(images / t, 2) for name, t in median.items()},
            **{f"{name}_seconds": [round(t, 4) for t in ts] for name, ts in times.items()}},
        "conditions": conditions(),
    }


if __name__ == "__main__":
    main_of(run, __doc__)

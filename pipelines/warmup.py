"""DVC stage `warmup`: source-only training that every sweep trial starts from.

Trains ``train.kind=source_only`` with the warmup section's lr and schedule as an MLflow run
(experiment "warmup", tag ripu.kind=warmup), then writes models/warmup.pt (``{"model":
state_dict, ...}``) and metrics/warmup.json (val mIoU of the warm-up model). An interrupted
warm-up resumes from its checkpoint in models/warmup_trial/. ``warmup.iters: 0`` saves the
initial (pretrained) model, evaluated, without training.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from pipelines.common import WARMUP_METRICS, WARMUP_MODEL, WARMUP_TRIAL, main, show_progress
from ripu.config import Config, apply_overrides, flatten
from ripu.engine.build import build_datasets, build_model_from, select_device
from ripu.engine.callbacks import TrackingCallback
from ripu.engine.checkpoint import read_checkpoint
from ripu.engine.evaluate import evaluate
from ripu.engine.trainer import run_trial
from ripu.engine.trial_dir import TrialDir
from ripu.errors import ConfigError
from ripu.io import atomic_path, write_json
from ripu.tracking import Tracker
from ripu.trial import trial_tags

EXPERIMENT = "warmup"
TAGS = {"ripu.kind": "warmup", "ripu.trial": "warmup"}


def warmup_config(cfg: Config) -> Config:
    """The trial config of the warm-up: source-only, with the warmup section's schedule."""
    w = cfg.warmup
    if w.iters > w.poly_iters:
        raise ConfigError(f"warmup.iters: {w.iters} exceeds warmup.poly_iters ({w.poly_iters}), "
                          f"expected iters <= poly_iters")
    return apply_overrides(cfg, {"train.kind": "source_only", "optim.lr": w.lr,
                                 "optim.iters": max(w.iters, 1), "optim.poly_iters": w.poly_iters,
                                 "tracking.experiment": EXPERIMENT})


def train(cfg: Config, trial_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Run (or resume) the warm-up trial; its final weights and results."""
    trial = TrialDir(trial_dir)
    resume = trial.can_resume(cfg)
    tracking = TrackingCallback.for_trial(cfg, trial.root, resume=resume, run_name="warmup",
                                          extra_tags=TAGS)
    results = run_trial(cfg, trial.root, resume=resume, progress=show_progress(),
                        callbacks=[tracking])
    return read_checkpoint(trial.checkpoint)["model"], results


def untrained(cfg: Config) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The initial (pretrained) model, evaluated and logged as the warm-up run."""
    device = select_device(cfg.train.device)
    model = build_model_from(cfg, device)
    val = build_datasets(cfg, only=("val",))["val"]
    result = evaluate(model, val, cfg.data.num_classes, input_size=cfg.data.eval_size,
                      flip=cfg.train.eval_flip, device=device, progress=show_progress())
    results = {"iterations": 0, "seconds": 0.0, "miou": float(result.miou),
               **{k: float(v) for k, v in result.summary.items()
                  if k.startswith("miou") and isinstance(v, float)}}
    tracker = Tracker(cfg.tracking.uri, EXPERIMENT, run_name="warmup",
                      tags={**trial_tags(cfg), **TAGS})
    tracker.log_params(flatten(cfg))
    tracker.log_metrics({f"val/{k}": v for k, v in results.items() if k.startswith("miou")}, 0)
    tracker.log_metrics({f"final/{k}": v for k, v in results.items() if k.startswith("miou")}, 0)
    tracker.finish("FINISHED")
    return {k: v.cpu() for k, v in model.state_dict().items()}, results


def run(root: Path, cfg: Config) -> None:
    wcfg = warmup_config(cfg)
    trial_dir = root / WARMUP_TRIAL
    state, results = train(wcfg, trial_dir) if cfg.warmup.iters else untrained(wcfg)
    with atomic_path(root / WARMUP_MODEL) as tmp:
        torch.save({"model": state, "arch": wcfg.model.arch, "num_classes": wcfg.data.num_classes,
                    "iterations": results["iterations"]}, tmp)
    metrics = {k: v for k, v in results.items() if k.startswith("miou")}
    metrics.update(iterations=results["iterations"], seconds=results["seconds"])
    write_json(root / WARMUP_METRICS, metrics)
    shutil.rmtree(trial_dir, ignore_errors=True)
    print(f"warmup: {results['iterations']} iterations, val mIoU {100 * results['miou']:.2f} "
          f"-> {WARMUP_MODEL}")


if __name__ == "__main__":
    main(run)

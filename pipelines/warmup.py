"""DVC stage `warmup`: the warm-ups that the rows of sweep.experiment start from.

Each warm-up the experiment file declares and some row names (:mod:`ripu.warmups`) is
trained once, from the experiment's own data, model and optim settings plus the warm-up's
overrides (the authors' stage 1: source-only training from ImageNet weights), as an MLflow
run (experiment "warmup", tags ripu.kind=warmup, ripu.trial=<name>, ripu.experiment=<exp>).
It is written to models/<exp>/<name>.pt (``{"model": state_dict, "arch", "backbone",
"num_classes", "iterations"}``); metrics/<exp>/warmups.json holds each one's val mIoU. An
interrupted warm-up resumes from its checkpoint in models/warmup_trials/<exp>/<name>/.
A warm-up named in ``sweep.warmup_files`` is imported from that file instead (written with
``"iterations": 0`` and ``"imported": <file>``, evaluated on val, no training).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from pipelines.common import (
    WARMUP_METRICS,
    WARMUP_TRIALS,
    WARMUPS,
    load_experiment_of,
    main,
    show_progress,
)
from ripu.anatomy import model_anatomy
from ripu.config import Config, apply_overrides
from ripu.data.build import build_datasets
from ripu.engine.build import build_model_from, select_device
from ripu.engine.callbacks import TrackingCallback
from ripu.engine.checkpoint import read_checkpoint
from ripu.engine.evaluate import evaluate
from ripu.engine.trainer import run_trial
from ripu.engine.trial_dir import TrialDir
from ripu.errors import ConfigError
from ripu.experiments import Experiment
from ripu.io import atomic_path, write_json
from ripu.kinds import get_kind
from ripu.record_names import EXPERIMENT_TAG, KIND_TAG, MIOU, TRIAL_TAG
from ripu.starts import start_of
from ripu.trial import miou_metrics
from ripu.warmups import Warmup, model_signature, warmup_path

TAGS = {KIND_TAG: "warmup"}


def needed(exp: Experiment) -> list[Warmup]:
    """The declared warm-ups that at least one trial starts from, in declaration order."""
    used = {t.init for t in exp.trials}
    return [w for name, w in exp.warmups.items() if name in used]


def train(cfg: Config, trial_dir: Path, run_name: str, tags: dict[str, str]
          ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Run (or resume) one warm-up in ``trial_dir``; its final weights and results."""
    trial = TrialDir(trial_dir)
    resume = trial.can_resume(cfg, start_of(cfg).sha256)
    tracking = TrackingCallback.for_trial(cfg, trial.root, resume=resume, run_name=run_name,
                                          extra_tags=tags)
    results = run_trial(cfg, trial.root, resume=resume, progress=show_progress(),
                        callbacks=[tracking])
    return read_checkpoint(trial.checkpoint)["model"], results


def build(root: Path, experiment: str, warmup: Warmup
          ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Train ``warmup`` and write its checkpoint; its metrics (val mIoU, iterations, seconds)
    and its weights."""
    trial_dir = root / WARMUP_TRIALS / experiment / warmup.name
    tags = {**TAGS, TRIAL_TAG: warmup.name, EXPERIMENT_TAG: experiment}
    state, results = train(warmup.cfg, trial_dir, f"{experiment}/{warmup.name}", tags)
    with atomic_path(warmup_path(root / WARMUPS, experiment, warmup.name)) as tmp:
        torch.save({"model": state, **model_signature(warmup.cfg),
                    "iterations": results["iterations"]}, tmp)
    shutil.rmtree(trial_dir, ignore_errors=True)
    metrics = miou_metrics(results)
    return {**metrics, "iterations": results["iterations"], "seconds": results["seconds"]}, state


def load_file(warmup: Warmup, path: str) -> torch.nn.Module:
    """The warm-up's model with the weights of ``path`` (any layout that model reads, e.g. the
    LSE authors' ``*_vggfcn_init.pth``); RipuError naming the file when they do not fit."""
    return build_model_from(apply_overrides(warmup.cfg, {"model.pretrained": path}),
                            torch.device("cpu"))


def imported(root: Path, experiment: str, warmup: Warmup, model: torch.nn.Module,
             path: str) -> dict[str, Any]:
    """Write ``model`` (loaded from ``path``) as the warm-up instead of training it; its val
    metrics."""
    cfg = warmup.cfg
    device = select_device(cfg.train.device)
    result = evaluate(model.to(device), build_datasets(cfg, only=("val",))["val"],
                      cfg.data.num_classes, input_size=cfg.data.eval_size,
                      flip=cfg.train.eval_flip, device=device, progress=show_progress())
    with atomic_path(warmup_path(root / WARMUPS, experiment, warmup.name)) as tmp:
        torch.save({"model": model.state_dict(), **model_signature(cfg), "iterations": 0,
                    "imported": path}, tmp)
    return {**miou_metrics(result.summary), "iterations": 0, "imported": path}


def report(experiment: str, name: str, metrics: dict[str, Any]) -> None:
    print(f"warmup {experiment}/{name}: {metrics['iterations']} iterations, val mIoU "
          f"{100 * metrics[MIOU]:.2f} -> {warmup_path(WARMUPS, experiment, name)}")


def anatomy(exp: Experiment, warmup: Warmup, state: dict[str, torch.Tensor]
            ) -> dict[str, Any] | None:
    """The error anatomy (:mod:`ripu.anatomy`) of the warm-up on the target training set, at
    the size and with the upsampling of the first selecting row that starts from it (None
    when no selecting row does)."""
    rows = [t.cfg for t in exp.trials
            if t.init == warmup.name and get_kind(t.cfg.train.kind).selects]
    if not rows:
        return None
    cfg = rows[0]
    device = select_device(cfg.train.device)
    model = build_model_from(cfg, device)
    model.load_state_dict(state)
    target = build_datasets(cfg, augment=False, only=("target",))["target"]
    return model_anatomy(model, target, device=device, batch_size=cfg.train.infer_batch,
                         two_step=cfg.active.upsample == "two_step")


def check_files(exp: Experiment, files: dict[str, str]) -> None:
    """``sweep.warmup_files`` names declared warm-ups of existing files; ConfigError else."""
    for name, path in files.items():
        where = f"sweep.warmup_files.{name}"
        if name not in exp.warmups:
            raise ConfigError(f"{where}: {name} is not a warm-up of {exp.path}, expected one "
                              f"of {', '.join(exp.warmups) or '(none declared)'}")
        if not Path(path).is_file():
            raise ConfigError(f"{where}: {path} does not exist, expected a model file")


def run(root: Path, cfg: Config) -> None:
    exp = load_experiment_of(root, cfg)
    files = cfg.sweep.warmup_files
    check_files(exp, files)
    # Files that do not fit their warm-up's model are refused before anything is written.
    loaded = {w.name: load_file(w, files[w.name]) for w in needed(exp) if w.name in files}
    (root / WARMUPS / exp.name).mkdir(parents=True, exist_ok=True)  # a DVC output, even empty
    metrics = {}
    for warmup in needed(exp):
        if warmup.name in loaded:
            path = files[warmup.name]
            model = loaded.pop(warmup.name)
            metrics[warmup.name] = imported(root, exp.name, warmup, model, path)
            found = anatomy(exp, warmup, model.state_dict())
            print(f"warmup {exp.name}/{warmup.name}: imported {path}, val mIoU "
                  f"{100 * metrics[warmup.name][MIOU]:.2f}")
        else:
            metrics[warmup.name], state = build(root, exp.name, warmup)
            report(exp.name, warmup.name, metrics[warmup.name])
            found = anatomy(exp, warmup, state)
        if found is not None:
            metrics[warmup.name]["anatomy"] = found
            print(f"warmup {exp.name}/{warmup.name}: {100 * found['wrong_share']:.1f}% of the "
                  f"target pixels wrong, {100 * found['pred_pure_share']:.1f}% of them in "
                  f"prediction-pure 3x3 windows, {100 * found['gt_interior_share']:.1f}% in "
                  f"ground-truth interiors")
    write_json(root / WARMUP_METRICS / exp.name / "warmups.json", metrics)


if __name__ == "__main__":
    main(run)

"""`run_sweep`: every trial of an experiment file on Ray Tune, resumable, tracked in MLflow.

The driver plans each trial from its folder and its MLflow run (:mod:`ripu.sweep.state`),
opens the parent run (:mod:`ripu.sweep.parent_run`), runs what is not done in a Ray session
(:mod:`ripu.sweep.session`), then collects the results and closes the runs of trials that
failed or were stopped by the search scheduler. Interrupted (Ctrl-C), it stops at once and
marks the parent run KILLED; SIGTERM (preemption) does the same
(:mod:`ripu.sweep.preempt`). The next sweep finishes every trial left behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ripu.config import Config, check_label_source
from ripu.credentials import Credentials, use_credentials
from ripu.data.build import build_datasets
from ripu.engine.build import device_name
from ripu.engine.callbacks import Callback
from ripu.engine.distributed import trial_resources
from ripu.engine.trial_data import splits
from ripu.engine.trial_dir import TrialDir
from ripu.errors import RipuError
from ripu.experiments import Experiment, Trial, load_experiment
from ripu.models.common import check_weights_file
from ripu.record_names import ERROR_TAG, ITERATION, STOPPED_EARLY_TAG, TRAIN, VAL
from ripu.starts import Start, start_of
from ripu.sweep.parent_run import (
    abandon_parent_run,
    close_trial_run,
    finish_parent_run,
    open_parent_run,
    read_id,
    runs_by_id,
)
from ripu.sweep.preempt import sigterm_as_interrupt
from ripu.sweep.progress import start_line
from ripu.sweep.session import fit, services
from ripu.sweep.state import Plan, plan
from ripu.tracking import absolute_uri, check_uri, retry_for
from ripu.warmups import check_inits, trial_inits

STATUSES = ("finished", "skipped", "stopped", "failed")


def validate_inputs(trials: Sequence[Trial], inits: dict[str, str | None]) -> None:
    """Fail before Ray starts (RipuError naming the key or trial) when a trial could never
    run, from configs and file headers only: its init checkpoint's architecture, backbone and
    classes; its device's name (a CUDA device may exist on the cluster's nodes though not
    on the driver's); who labels its rounds; its weights file; its datasets' layout and
    complete files. Builds no trainer, decodes no data and calls no server: the trials check
    labels, weights' shapes and a people server themselves, before training."""
    check_inits(trials, inits)  # architecture, backbone, classes: one line naming the trial
    checked = set()
    for trial in trials:
        cfg = trial.cfg
        check_label_source(cfg)  # people cannot label the oracle's rounds
        device_name(cfg.train.device)  # whether it exists is the node's business, not the driver's
        if cfg.model.pretrained:
            check_weights_file(cfg.model.pretrained)
        for split in splits(cfg):
            if (split, cfg.data) not in checked:
                checked.add((split, cfg.data))
                build_datasets(cfg, only=[split], augment=False)


def _plans(exp: Experiment, out_root: Path, known: dict[str, Any],
           starts: dict[str, Start]) -> dict[str, Plan]:
    """Each trial's plan; a run id whose run is gone (store deleted) is forgotten, so that
    the trial starts a new run."""
    plans = {}
    for t in exp.trials:
        out = out_root / t.name
        id_file = TrialDir(out).run_id_file
        run_id = read_id(id_file, known)
        if run_id is None:
            id_file.unlink(missing_ok=True)
        plans[t.name] = plan(out, t.cfg, starts[t.name].sha256,
                             known.get(run_id) if run_id else None)
    return plans


@sigterm_as_interrupt()  # preemption stops a sweep as Ctrl-C does
def run_sweep(cfg: Config, experiment_file: str | Path, *, init: str | Path | None = None,
              warmups: str | Path | None = None, out_dir: str | Path = Path("runs"),
              progress: bool = True,
              ray_address: str | None = None, storage: str | Path | None = None,
              callbacks: Sequence[Callback] = ()) -> list[dict[str, Any]]:
    """Run every trial of ``experiment_file`` with Ray Tune; per-trial results in file order.

    Trials start from the checkpoints their rows declare: ImageNet weights, or a warm-up
    ``<warmups>/<experiment>/<name>.pt``; ``init`` replaces them all.
    Each result is the trial's results.json plus ``trial``, ``status`` (``finished``,
    ``skipped``: finished earlier, or ``stopped``: by the search scheduler) and ``dir``.
    ``storage`` is Ray Tune's own folder (default: a temporary folder, removed afterwards);
    ``callbacks`` are extra trainer callbacks (picklable) given to every trial, called before
    its tracking callback. Prints a line per finished trial. Raises ConfigError for a bad
    experiment file before anything starts, RipuError naming the trials that still failed
    after ``sweep.max_failures`` retries once the others are done; KeyboardInterrupt (Ctrl-C,
    or SIGTERM as :class:`ripu.sweep.preempt.Terminated`) stops Ray and the tracking server
    at once.
    """
    exp = load_experiment(experiment_file, cfg, root=Path.cwd())
    trial_resources(cfg.sweep)  # an impossible data-parallel split fails before anything
    init_path = str(Path(init).resolve()) if init else None
    if init_path and not Path(init_path).is_file():
        raise RipuError(f"--init: {init} not found, expected a checkpoint (.pt) such as the "
                        f"warm-up model")
    uri = absolute_uri(cfg.tracking.uri, Path.cwd())
    credentials = use_credentials(cfg.tracking, uri)  # the trials get them from the driver
    check_uri(uri)  # a refused user stops here, before anything is written
    retry_for(cfg.tracking.retry_seconds)
    out_root = (Path(out_dir) / exp.name).resolve()
    inits = trial_inits(exp.trials, exp.name, init=init_path, folder=warmups)
    validate_inputs(exp.trials, inits)
    starts = {t.name: start_of(t.cfg, inits[t.name]) for t in exp.trials}
    started = time.perf_counter()

    known = runs_by_id(uri, exp.name)
    plans = _plans(exp, out_root, known, starts)
    todo = [t for t in exp.trials if plans[t.name] is not Plan.DONE]
    info = {"experiment_file": str(exp.path), "trials": len(exp.trials),
            "init": init_path or ", ".join(sorted({t.init for t in exp.trials})),
            "ray_address": ray_address or os.environ.get("RAY_ADDRESS") or "local",
            "max_concurrent": cfg.sweep.max_concurrent, "max_failures": cfg.sweep.max_failures,
            "cpus_per_trial": cfg.sweep.cpus_per_trial, "gpus_per_trial": cfg.sweep.gpus_per_trial}
    parent = open_parent_run(uri, exp, out_root, known, info)
    print(start_line(exp.name, {p.value: sum(v is p for v in plans.values()) for p in Plan}),
          flush=True)
    try:
        results, failed = _run(cfg, exp, todo, out_root=out_root, inits=inits, starts=starts,
                               uri=uri, credentials=credentials,
                               parent_id=parent.run_id, address=ray_address, storage=storage,
                               progress=progress, callbacks=callbacks)
        counts = {s: sum(r["status"] == s for r in results) for s in STATUSES}
        finish_parent_run(parent, counts, time.perf_counter() - started, bool(failed))
    except KeyboardInterrupt:
        abandon_parent_run(parent, "KILLED")
        raise
    except BaseException:
        abandon_parent_run(parent, "FAILED")
        raise
    if failed:
        reasons = {r["trial"]: r["error"] for r in results if r["status"] == "failed"}
        raise RipuError(f"{len(failed)} of {len(exp.trials)} trials failed after "
                        f"{cfg.sweep.max_failures} retries: {', '.join(failed)} (first error: "
                        f"{reasons[failed[0]]}); trial folders in {out_root}")
    return results


def _run(cfg: Config, exp: Experiment, todo: list[Trial], *, out_root: Path,
         inits: dict[str, str | None], starts: dict[str, Start], uri: str,
         credentials: Credentials | None, parent_id: str, address: str | None, storage: str | Path | None,
         progress: bool, callbacks: Sequence[Callback]
         ) -> tuple[list[dict[str, Any]], list[str]]:
    """Run ``todo`` in a Ray session (none when empty); the collected results."""
    if not todo:
        return _collect(exp, [], None, out_root, uri, starts)
    own_storage = storage is None
    store = Path(tempfile.mkdtemp(prefix="ripu-ray-") if own_storage else storage).resolve()
    store.mkdir(parents=True, exist_ok=True)
    try:
        with services(cfg, uri, address, len(todo)) as server_uri:
            grid = fit(cfg, exp, todo, out_root=out_root, inits=inits, starts=starts,
                       tracking_uri=server_uri, credentials=credentials,
                       parent_id=parent_id, storage=store,
                       done_before=len(exp.trials) - len(todo), progress=progress,
                       callbacks=callbacks)
            return _collect(exp, todo, grid, out_root, server_uri, starts)
    finally:
        if own_storage:
            shutil.rmtree(store, ignore_errors=True)


def _collect(exp: Experiment, todo: list[Trial], grid, out_root: Path, uri: str,
             starts: dict[str, Start]) -> tuple[list[dict[str, Any]], list[str]]:
    """Per-trial results in experiment order; close the MLflow runs of failed/stopped trials."""
    errors: dict[str, str] = {}
    last: dict[str, dict[str, Any]] = {}
    for res in grid if grid is not None else []:
        if not res.config:
            continue
        last[res.config["trial"]] = dict(res.metrics or {})
        if res.error is not None:
            lines = str(res.error).strip().splitlines() or [type(res.error).__name__]
            errors[res.config["trial"]] = lines[-1][:300]
    ran = {t.name for t in todo}
    known = runs_by_id(uri, exp.name) if todo else {}
    results, failed = [], []
    for t in exp.trials:
        out = out_root / t.name
        folder = TrialDir(out)
        stored = folder.finished_results(t.cfg, starts[t.name].sha256)
        row: dict[str, Any] = {"trial": t.name, "dir": str(out)}
        if stored is not None:
            row.update(stored, status="finished" if t.name in ran else "skipped")
        elif t.name in errors:
            row.update(status="failed", error=errors[t.name])
            failed.append(t.name)
            close_trial_run(uri, read_id(folder.run_id_file, known), "FAILED",
                            {ERROR_TAG: errors[t.name]})
        elif exp.search is not None and exp.search.scheduler["name"] != "fifo":
            metrics = last.get(t.name, {})
            row.update({k: v for k, v in metrics.items() if k.startswith((VAL, TRAIN))},
                       status="stopped", iterations=metrics.get(ITERATION, 0))
            close_trial_run(uri, read_id(folder.run_id_file, known), "KILLED",
                            {STOPPED_EARLY_TAG: "1"})
        else:  # neither finished nor failed: the sweep was interrupted
            row.update(status="failed", error="did not finish (interrupted?)")
            failed.append(t.name)
        results.append(row)
    return results, failed

"""Ray Tune sweeps: one trial per grid point (or search sample), resumable, tracked in MLflow.

Each trial runs :func:`ripu.engine.trainer.run_trial` in its own folder
``<out_dir>/<experiment>/<trial>/`` (config.yaml, masks/round_<r>.npz, checkpoints/last.pt,
results.json, mlflow_run_id.txt), starting from the checkpoint its row declares
(:mod:`ripu.warmups`; ``init`` overrides every row):

- a finished trial (its results.json carries the trial's ``resume_hash``) is not run again;
- an interrupted or retried trial continues from its checkpoint when that checkpoint was
  written with the same config, else starts afresh;
- Ray retries a failed trial up to ``sweep.max_failures`` times; trials that still fail are
  named in the RipuError raised once the other trials are done.

MLflow: one experiment per experiment file, one parent run per trial-folder root (kept across
resumed sweeps; tags ``ripu.sweep``, ``ripu.experiment``, ``ripu.git_revision``; artifact
``trials.json`` = {trial: ripu.params_hash}) and one child run per trial. A SQLite store is put
behind a local MLflow server while trials run, so concurrent trials log over HTTP and never
share the SQLite file; an http(s) URI (a shared server for a Ray cluster) is used directly.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ripu.config import Config, apply_overrides
from ripu.engine.callbacks import RUN_ID_FILE, Callback
from ripu.errors import RipuError
from ripu.experiments import Experiment, Trial, load_experiment
from ripu.io import write_text
from ripu.warmups import check_inits, trial_inits

PARENT_ID_FILE = "sweep_run_id.txt"
# Quiet Ray: classic (terse) output engine, no usage stats, no dashboard; ASHA reads metrics
# that only some reports carry (evaluation steps), so missing ones must not be an error.
RAY_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # idle OpenMP threads sleep instead of spinning: concurrent trials share few cores
    "OMP_WAIT_POLICY": "PASSIVE",
}


# ----------------------------------------------------------------------------- trial side


class RayReport(Callback):
    """Forward the trainer's logged and evaluation metrics to Ray Tune (schedulers read them).

    Every report carries ``iteration`` (the trainer's step), the time attribute of ASHA.
    """

    def on_log(self, trainer, metrics: dict[str, float], step: int) -> None:
        from ray import tune

        tune.report({**metrics, "iteration": step})

    def on_eval(self, trainer, result, step: int) -> None:
        from ray import tune

        tune.report({**{f"val/{k}": float(v) for k, v in result.summary.items()
                        if k.startswith("miou") and isinstance(v, float)}, "iteration": step})


def finished_results(out: Path, cfg: Config) -> dict[str, Any] | None:
    """The stored results of a trial folder when they were produced by this exact config."""
    from ripu.trial import trial_config_hash as resume_hash

    path = Path(out) / "results.json"
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(results, dict) or results.get("resume_hash") != resume_hash(cfg):
        return None
    return results


def can_resume(out: Path, cfg: Config) -> bool:
    """True when ``out`` holds a checkpoint written with this config (resume from it)."""
    import torch

    from ripu.trial import trial_config_hash as resume_hash

    path = Path(out) / "checkpoints" / "last.pt"
    if not path.is_file():
        return False
    try:  # mmap: only the small header entries are actually read
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - a truncated or foreign file: start afresh
        return False
    return isinstance(ckpt, dict) and ckpt.get("config_hash") == resume_hash(cfg)


def same_config(out: Path, cfg: Config) -> bool:
    """True when ``out``/config.yaml (written as each attempt starts) is this config's."""
    from ripu.config import load_config
    from ripu.trial import trial_config_hash as resume_hash

    try:
        return resume_hash(load_config(Path(out) / "config.yaml")) == resume_hash(cfg)
    except RipuError:
        return False


def _final_metrics(results: dict[str, Any]) -> dict[str, Any]:
    out = {f"final/{k}": v for k, v in results.items()
           if k.startswith("miou") or k in ("labelled_fraction", "seconds")}
    out.update({f"val/{k}": v for k, v in results.items() if k.startswith("miou")})
    out["iteration"] = results.get("iterations", 0)
    return out


def _trial_main(config: dict[str, Any], *, trials: dict[str, Trial], out_root: str,
                inits: dict[str, str | None], tracking_uri: str, parent_run_id: str,
                experiment: str, callbacks: Sequence[Callback] = ()) -> None:
    """The Ray Tune function trainable: run (or resume, or skip) one trial."""
    from ray import tune

    from ripu.engine.callbacks import TrackingCallback
    from ripu.engine.trainer import run_trial

    trial = trials[config["trial"]]
    out, init = Path(out_root) / trial.name, inits[trial.name]
    stored = finished_results(out, trial.cfg)
    if stored is not None:
        tune.report({**_final_metrics(stored), "ripu/skipped": 1})
        return
    resume = can_resume(out, trial.cfg)
    # An earlier attempt of this config continues its MLflow run, also one that died before
    # its first checkpoint or before training started (no config.yaml yet); a folder that
    # another config trained in gets a new run.
    same_run = resume or same_config(out, trial.cfg) or not (out / "config.yaml").is_file()
    tracking = TrackingCallback.for_trial(
        apply_overrides(trial.cfg, {"tracking.uri": tracking_uri}), out, resume=same_run,
        parent_run_id=parent_run_id, run_name=trial.name,
        extra_tags={"ripu.trial": trial.name, "ripu.experiment": experiment,
                    "ripu.init": init or "imagenet"})
    if trial.cfg.sweep.workers_per_trial > 1:  # data-parallel over Ray Train workers
        from ripu.engine.distributed import run_trial_distributed, sweep_scaling

        results = run_trial_distributed(trial.cfg, out, init=init, resume=resume,
                                        progress=False, callbacks=[tracking, *callbacks],
                                        report_to_tune=True, **sweep_scaling(trial.cfg.sweep))
    else:
        results = run_trial(trial.cfg, out, init=init, resume=resume, progress=False,
                            callbacks=[tracking, RayReport(), *callbacks])
    tune.report({**_final_metrics(results), "ripu/skipped": 0})


# ----------------------------------------------------------------------------- driver side


@contextlib.contextmanager
def tracking_server(uri: str) -> Iterator[str]:
    """An MLflow server over a SQLite store for the block's duration; other URIs as they are.

    Artifacts of experiments created through the server go to ``mlartifacts/`` beside the
    database file.
    """
    if not uri.startswith("sqlite:///"):
        yield uri
        return
    from ripu.tracking import serve

    db = Path(uri[len("sqlite:///"):]).resolve()
    with serve(uri, db.parent / "mlartifacts") as url:
        yield url


def _run_ids(uri: str, experiment: str) -> set[str]:
    from ripu.tracking import list_runs

    return {r.info.run_id for r in list_runs(uri, experiment)}


def _read_id(path: Path, known: set[str]) -> str | None:
    """A run id stored in ``path`` if that run still exists in the store."""
    if not path.is_file():
        return None
    run_id = path.read_text().strip()
    return run_id if run_id in known else None


def _revision() -> str:
    from ripu.tracking import git_revision

    return os.environ.get("RIPU_GIT_REVISION") or git_revision(Path(__file__).resolve().parents[1])


def _parent_run(uri: str, exp: Experiment, out_root: Path, known: set[str], info: dict):
    """Create, or continue, the sweep's parent run; record its id in the trial-folder root."""
    from ripu.tracking import Tracker, experiment_id
    from ripu.trial import trial_config_hash as resume_hash

    experiment_id(uri, exp.name)
    tags = {"ripu.sweep": "1", "ripu.experiment": exp.name, "ripu.git_revision": _revision()}
    parent = Tracker(uri, exp.name, run_id=_read_id(out_root / PARENT_ID_FILE, known),
                     run_name=f"sweep-{exp.name}", tags=tags)
    out_root.mkdir(parents=True, exist_ok=True)
    write_text(out_root / PARENT_ID_FILE, parent.run_id + "\n")
    parent.log_params(info)
    hashes = {t.name: resume_hash(t.cfg) for t in exp.trials}
    parent.log_text(json.dumps(hashes, indent=2, sort_keys=True) + "\n", "trials.json")
    parent.log_artifact(exp.path)
    return parent


def _token_auth_if_available() -> None:
    """Use token authentication to join a cluster when a Ray token exists, as `ray start`
    does (Ray's drivers only do so with RAY_AUTH_MODE=token)."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # another Ray version: RAY_AUTH_MODE decides
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _connect(cfg: Config, address: str | None, n_trials: int) -> bool:
    """Connect to a Ray cluster (``address`` or RAY_ADDRESS) or start a local one.

    Returns True when this call started Ray (so the caller shuts it down).
    """
    import ray

    if ray.is_initialized():
        return False
    s = cfg.sweep
    address = address or os.environ.get("RAY_ADDRESS")
    env = {"RIPU_GIT_REVISION": _revision(), **RAY_ENV}
    common = {"runtime_env": {"env_vars": env}, "logging_level": "WARNING",
              "configure_logging": True}
    if address:
        _token_auth_if_available()
        ray.init(address=address, **common)
    else:
        cpus = max(1, math.ceil(min(s.max_concurrent, n_trials) * s.cpus_per_trial))
        ray.init(address="local", num_cpus=cpus, include_dashboard=False,
                 dashboard_host="127.0.0.1", **common)
    have = ray.cluster_resources()
    for key, need in (("CPU", s.cpus_per_trial), ("GPU", s.gpus_per_trial)):
        if need > have.get(key, 0.0):
            ray.shutdown()
            raise RipuError(f"sweep.{key.lower()}s_per_trial: a trial needs {need:g} {key}, the "
                            f"Ray cluster has {have.get(key, 0.0):g}; expected a cluster that "
                            f"fits one trial")
    return True


@contextlib.contextmanager
def services(cfg: Config, uri: str, address: str | None, n_trials: int) -> Iterator[str]:
    """Ray (see :func:`_connect`) and the tracking server (see :func:`tracking_server`) for
    the block; yields the URI trials log to. The server boots in a thread while Ray starts
    (each takes seconds to tens of seconds); whatever this started is stopped afterwards."""
    import ray

    server = tracking_server(uri)
    pool = ThreadPoolExecutor(max_workers=1)
    booting = pool.submit(server.__enter__)
    pool.shutdown(wait=False)
    try:
        started = _connect(cfg, address, n_trials)
    except BaseException:
        with contextlib.suppress(Exception):
            booting.result()
            server.__exit__(None, None, None)
        raise
    try:
        url = booting.result()
    except BaseException:
        if started:
            ray.shutdown()
        raise
    try:
        yield url
    finally:
        try:
            if started:
                ray.shutdown()
        finally:
            server.__exit__(None, None, None)


def _progress_callback(total: int, enabled: bool):
    """A Ray Tune callback that advances a tqdm bar as trials end (driver side)."""
    from ray.tune import Callback as TuneCallback
    from tqdm.auto import tqdm

    class TrialBar(TuneCallback):
        def __init__(self) -> None:
            self.bar = tqdm(total=total, desc="trials", disable=not enabled, dynamic_ncols=True)
            self.failed = 0

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            miou = (trial.last_result or {}).get("final/miou")
            if miou is not None:
                self.bar.set_postfix({"last": trial.config["trial"], "miou": f"{miou:.3f}"},
                                     refresh=False)
            self.bar.update(1)

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self.failed += 1
            self.bar.set_postfix({"failed": self.failed}, refresh=False)
            self.bar.update(1)

        def on_experiment_end(self, trials, **info) -> None:
            self.bar.close()

    return TrialBar()


def _scheduler(exp: Experiment, max_t: int):
    """The search section's scheduler (ASHA on ``iteration``), or None (FIFO)."""
    if exp.search is None or exp.search.scheduler["name"] == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler

    opts = {k: v for k, v in exp.search.scheduler.items() if k != "name"}
    # stop_last_trials=False: a trial that reaches max_t finishes (final evaluation, results).
    return ASHAScheduler(time_attr="iteration", metric=exp.search.metric, mode=exp.search.mode,
                         max_t=int(opts.pop("max_t", max_t)), stop_last_trials=False, **opts)


def _fit(cfg: Config, exp: Experiment, todo: list[Trial], *, out_root: Path,
         inits: dict[str, str | None],
         tracking_uri: str, parent_id: str, storage: Path, progress: bool,
         callbacks: Sequence[Callback]):
    """Run ``todo`` with Ray Tune; returns the ResultGrid."""
    from ray import tune

    from ripu.engine.distributed import trial_resources

    s = cfg.sweep
    trainable = tune.with_parameters(
        _trial_main, trials={t.name: t for t in todo}, out_root=str(out_root), inits=inits,
        tracking_uri=tracking_uri, parent_run_id=parent_id, experiment=exp.name,
        callbacks=list(callbacks))
    trainable = tune.with_resources(trainable, trial_resources(s))
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search([t.name for t in todo])},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=s.max_concurrent, reuse_actors=True,
            scheduler=_scheduler(exp, max(t.cfg.optim.iters for t in todo)),
            trial_name_creator=lambda trial: trial.config["trial"],
            trial_dirname_creator=lambda trial: f"{trial.config['trial']}_{trial.trial_id}"),
        run_config=tune.RunConfig(
            name=exp.name, storage_path=str(storage), verbose=0,
            failure_config=tune.FailureConfig(max_failures=s.max_failures),
            callbacks=[_progress_callback(len(todo), progress)]),
    )
    return tuner.fit()


def _close_run(uri: str, out: Path, known: set[str], status: str, tags: dict[str, str]) -> None:
    """Set the final status of a trial's MLflow run that its process could not close."""
    from ripu.tracking import Tracker

    run_id = _read_id(out / RUN_ID_FILE, known)
    if run_id is not None:
        tracker = Tracker(uri, "", run_id=run_id, tags=tags)
        tracker.finish(status)


def validate_inputs(trials: Sequence[Trial], inits: dict[str, str | None]) -> None:
    """Fail before Ray starts (RipuError) when a trial's datasets, model or init
    checkpoint are bad: checked once per distinct data and model section and init."""
    from ripu.engine.trainer import Trainer

    check_inits(trials, inits)  # architecture, backbone, classes: one line naming the trial
    seen = set()
    for trial in trials:
        init = inits[trial.name]
        key = (trial.cfg.data, trial.cfg.model, trial.cfg.train.kind == "source_free", init)
        if key not in seen:
            seen.add(key)
            Trainer(trial.cfg, Path(tempfile.gettempdir()), init=init, progress=False)


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
    ``callbacks`` are extra trainer callbacks (picklable) given to every trial. Raises
    ConfigError for a bad experiment file before anything starts, RipuError naming the trials
    that still failed after ``sweep.max_failures`` retries once the others are done.
    """
    from ripu.tracking import absolute_uri, check_uri

    exp = load_experiment(experiment_file, cfg, root=Path.cwd())
    from ripu.engine.distributed import trial_resources

    trial_resources(cfg.sweep)  # an impossible data-parallel split fails before anything
    init_path = str(Path(init).resolve()) if init else None
    if init_path and not Path(init_path).is_file():
        raise RipuError(f"--init: {init} not found, expected a checkpoint (.pt) such as the "
                        f"warm-up model")
    uri = absolute_uri(cfg.tracking.uri, Path.cwd())
    check_uri(uri)
    out_root = (Path(out_dir) / exp.name).resolve()
    inits = trial_inits(exp.trials, exp.name, init=init_path, folder=warmups)
    validate_inputs(exp.trials, inits)
    started = time.perf_counter()

    todo = [t for t in exp.trials if finished_results(out_root / t.name, t.cfg) is None]
    known = _run_ids(uri, exp.name)
    for t in todo:  # a run id whose run is gone (store deleted): the trial starts a new run
        id_file = out_root / t.name / RUN_ID_FILE
        if id_file.is_file() and _read_id(id_file, known) is None:
            id_file.unlink()
    info = {"experiment_file": str(exp.path), "trials": len(exp.trials),
            "init": init_path or ", ".join(sorted({t.init for t in exp.trials})),
            "ray_address": ray_address or os.environ.get("RAY_ADDRESS") or "local",
            "max_concurrent": cfg.sweep.max_concurrent, "max_failures": cfg.sweep.max_failures,
            "cpus_per_trial": cfg.sweep.cpus_per_trial, "gpus_per_trial": cfg.sweep.gpus_per_trial}
    parent = _parent_run(uri, exp, out_root, known, info)
    failed: list[str] = []
    try:
        if todo:
            for key, value in RAY_ENV.items():
                os.environ.setdefault(key, value)
            own_storage = storage is None
            store = Path(tempfile.mkdtemp(prefix="ripu-ray-") if own_storage else storage)
            store = store.resolve()
            store.mkdir(parents=True, exist_ok=True)
            try:
                with services(cfg, uri, ray_address, len(todo)) as server_uri:
                    grid = _fit(cfg, exp, todo, out_root=out_root, inits=inits,
                                tracking_uri=server_uri, parent_id=parent.run_id,
                                storage=store, progress=progress, callbacks=callbacks)
                    results, failed = _collect(exp, todo, grid, out_root, server_uri)
            finally:
                if own_storage:
                    shutil.rmtree(store, ignore_errors=True)
        else:
            results = _collect(exp, [], None, out_root, uri)[0]
        counts = {s: sum(r["status"] == s for r in results)
                  for s in ("finished", "skipped", "stopped", "failed")}
        parent.log_metrics({f"sweep/{k}": v for k, v in counts.items()}
                           | {"sweep/seconds": time.perf_counter() - started})
        parent.finish("FAILED" if failed else "FINISHED")
    except BaseException:
        with contextlib.suppress(Exception):
            parent.finish("FAILED")
        raise
    if failed:
        reasons = {r["trial"]: r["error"] for r in results if r["status"] == "failed"}
        raise RipuError(f"{len(failed)} of {len(exp.trials)} trials failed after "
                        f"{cfg.sweep.max_failures} retries: {', '.join(failed)} (first error: "
                        f"{reasons[failed[0]]}); trial folders in {out_root}")
    return results


def _collect(exp: Experiment, todo: list[Trial], grid, out_root: Path,
             uri: str) -> tuple[list[dict[str, Any]], list[str]]:
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
    known = _run_ids(uri, exp.name) if todo else set()
    results, failed = [], []
    for t in exp.trials:
        out = out_root / t.name
        stored = finished_results(out, t.cfg)
        row: dict[str, Any] = {"trial": t.name, "dir": str(out)}
        if stored is not None:
            row.update(stored, status="finished" if t.name in ran else "skipped")
        elif t.name in errors:
            row.update(status="failed", error=errors[t.name])
            failed.append(t.name)
            _close_run(uri, out, known, "FAILED", {"ripu.error": errors[t.name]})
        elif exp.search is not None and exp.search.scheduler["name"] != "fifo":
            metrics = last.get(t.name, {})
            row.update({k: v for k, v in metrics.items() if k.startswith(("val/", "train/"))},
                       status="stopped", iterations=metrics.get("iteration", 0))
            _close_run(uri, out, known, "KILLED", {"ripu.stopped_early": "1"})
        else:  # neither finished nor failed: the sweep was interrupted
            row.update(status="failed", error="did not finish (interrupted?)")
            failed.append(t.name)
        results.append(row)
    return results, failed

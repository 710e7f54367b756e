"""The Ray session of a sweep: Ray and the tracking server for its duration, and the Tuner.

A SQLite store is put behind a local MLflow server while trials run, so concurrent trials
log over HTTP and never share the SQLite file; an http(s) URI (a shared server for a Ray
cluster) is used directly.

Ctrl-C: Ray Tune's own SIGINT handler is off (``TUNE_DISABLE_SIGINT_HANDLER``). Its
graceful stop snapshots the experiment for ``Tuner.restore`` (which sweeps do not use: they
resume from the trial folders, see :mod:`ripu.sweep.state`) and waits for the trials to
stop, about 10 s. Instead the KeyboardInterrupt leaves ``Tuner.fit`` at once and
``ray.shutdown()`` ends the trials. The tracking server runs in its own session, so the
terminal's SIGINT does not stop it before the driver does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ripu.config import Config
from ripu.credentials import Credentials
from ripu.engine.callbacks import Callback
from ripu.engine.distributed import trial_resources
from ripu.errors import RipuError
from ripu.experiments import Experiment, Trial
from ripu.ray_cluster import start_ray
from ripu.record_names import ITERATION
from ripu.starts import Start
from ripu.sweep.progress import trial_log
from ripu.sweep.trial import trial_main
from ripu.tracking import serve


@contextlib.contextmanager
def tracking_server(uri: str) -> Iterator[str]:
    """An MLflow server over a SQLite store for the block's duration; other URIs as they are.

    Artifacts of experiments created through the server go to ``mlartifacts/`` beside the
    database file.
    """
    if not uri.startswith("sqlite:///"):
        yield uri
        return
    db = Path(uri[len("sqlite:///"):]).resolve()
    with serve(uri, db.parent / "mlartifacts") as url:
        yield url


def connect(cfg: Config, address: str | None, n_trials: int) -> bool:
    """Ray for ``n_trials`` trials (:func:`ripu.ray_cluster.start_ray`); RipuError when the
    cluster cannot fit one trial. True when this call started Ray (the caller shuts it
    down)."""
    import ray

    s = cfg.sweep
    started = start_ray(min(s.max_concurrent, n_trials) * s.cpus_per_trial, address)
    have = ray.cluster_resources()
    for key, need in (("CPU", s.cpus_per_trial), ("GPU", s.gpus_per_trial)):
        if need > have.get(key, 0.0):
            if started:
                ray.shutdown()
            raise RipuError(f"sweep.{key.lower()}s_per_trial: a trial needs {need:g} {key}, the "
                            f"Ray cluster has {have.get(key, 0.0):g}; expected a cluster that "
                            f"fits one trial")
    return started


@contextlib.contextmanager
def services(cfg: Config, uri: str, address: str | None, n_trials: int) -> Iterator[str]:
    """Ray (see :func:`connect`) and the tracking server (see :func:`tracking_server`) for
    the block; yields the URI trials log to. The server boots in a thread while Ray starts
    (each takes seconds to tens of seconds); whatever this started is stopped afterwards."""
    import ray

    server = tracking_server(uri)
    pool = ThreadPoolExecutor(max_workers=1)
    booting = pool.submit(server.__enter__)
    pool.shutdown(wait=False)
    try:
        started = connect(cfg, address, n_trials)
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


def _scheduler(exp: Experiment, max_t: int):
    """The search section's scheduler (ASHA on ``iteration``), or None (FIFO)."""
    if exp.search is None or exp.search.scheduler["name"] == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler

    opts = {k: v for k, v in exp.search.scheduler.items() if k != "name"}
    # stop_last_trials=False: a trial that reaches max_t finishes (final evaluation, results).
    return ASHAScheduler(time_attr=ITERATION, metric=exp.search.metric, mode=exp.search.mode,
                         max_t=int(opts.pop("max_t", max_t)), stop_last_trials=False, **opts)


def fit(cfg: Config, exp: Experiment, todo: list[Trial], *, out_root: Path,
        inits: dict[str, str | None], starts: dict[str, Start], tracking_uri: str,
        credentials: Credentials | None, parent_id: str, storage: Path, done_before: int, progress: bool,
        callbacks: Sequence[Callback]) -> Any:
    """Run ``todo`` with Ray Tune (a line per finished trial, see :mod:`ripu.sweep.progress`);
    returns the ResultGrid. A KeyboardInterrupt propagates at once. ``credentials`` reach
    the trials through Ray's object store (``tune.with_parameters``), never their config."""
    from ray import tune

    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    s = cfg.sweep
    trainable = tune.with_parameters(
        trial_main, trials={t.name: t for t in todo}, out_root=str(out_root), inits=inits,
        starts=starts,
        tracking_uri=tracking_uri, credentials=credentials, parent_run_id=parent_id, experiment=exp.name,
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
            callbacks=[trial_log(len(exp.trials), done_before, progress)]),
    )
    return tuner.fit()

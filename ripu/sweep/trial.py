"""The trial side of a sweep: the Ray Tune function trainable that runs one trial.

It runs :func:`ripu.engine.trainer.run_trial` (or its data-parallel variant) in
``<out_root>/<trial>/``, starting from the checkpoint its row declares, and follows
:mod:`ripu.sweep.state`: a committed trial is reported and skipped, a checkpoint of the same
config is resumed (a trial whose completion was cut in two only evaluates again), anything
else starts afresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ripu.config import Config, apply_overrides
from ripu.credentials import Credentials
from ripu.engine.callbacks import Callback, TrackingCallback
from ripu.engine.distributed import RayReport, run_trial_distributed, sweep_scaling
from ripu.engine.trainer import run_trial
from ripu.engine.trial_dir import TrialDir
from ripu.errors import RipuError
from ripu.experiments import Trial
from ripu.record_names import EXPERIMENT_TAG, INIT_TAG, SKIPPED, TRIAL_TAG
from ripu.starts import Start, start_of
from ripu.sweep.state import Plan, final_metrics, plan, same_start
from ripu.tracking import get_run, retry_for


def check_start(name: str, planned: Start, init: str | None, cfg: Config) -> None:
    """Refuse (RipuError, one line) a trial whose start's file changed after the sweep
    hashed it: its files and the sweep's record would name another start than it ran from."""
    now = start_of(cfg, init)
    if now.sha256 != planned.sha256:
        raise RipuError(f"trial {name}: its start {planned.name} changed while the sweep ran "
                        f"(it was {planned.describe()} when the sweep began, {now.describe()} "
                        f"now); expected it unchanged until the sweep ends: run the sweep again")


def trial_main(config: dict[str, Any], *, trials: dict[str, Trial], out_root: str,
               inits: dict[str, str | None], starts: dict[str, Start], tracking_uri: str,
               parent_run_id: str, experiment: str, credentials: Credentials | None = None,
               callbacks: Sequence[Callback] = ()) -> None:
    """The Ray Tune function trainable: run, resume, commit or skip one trial.

    ``starts`` are the trials' starts as the driver hashed them (:mod:`ripu.starts`);
    ``credentials``, the driver's user of the tracking server (this process takes them on).
    ``callbacks`` run before the tracking callback, so they see each event before the
    trial's MLflow run is closed.
    """
    from ray import tune

    if credentials is not None:  # on another node the environment has none
        credentials.apply()
    trial = trials[config["trial"]]
    out, init, start = Path(out_root) / trial.name, inits[trial.name], starts[trial.name]
    folder = TrialDir(out)
    retry_for(trial.cfg.tracking.retry_seconds)
    run_id = folder.run_id()
    run = get_run(tracking_uri, run_id) if run_id else None
    if plan(out, trial.cfg, start.sha256, run) is Plan.DONE:
        # e.g. Ray retries an attempt that died after its commit
        tune.report({**final_metrics(folder.finished_results(trial.cfg, start.sha256)),
                     SKIPPED: 1})
        return
    check_start(trial.name, start, init, trial.cfg)
    # a cut completion resumes at its last iteration
    resume = folder.can_resume(trial.cfg, start.sha256)
    # An earlier attempt of this config and start continues its MLflow run, also one that
    # died before its first checkpoint or before training started (no config.yaml yet); a
    # folder that another config or start trained in gets a new run.
    same_run = (resume or folder.same_config(trial.cfg) or not folder.config_file.is_file()) \
        and same_start(run, start.sha256)
    # the driver's server and user: a trial never reads a credentials file itself
    where = {"tracking.uri": tracking_uri, "tracking.credentials": None}
    tracking = TrackingCallback.for_trial(
        apply_overrides(trial.cfg, where), out, resume=same_run,
        parent_run_id=parent_run_id, run_name=trial.name,
        extra_tags={TRIAL_TAG: trial.name, EXPERIMENT_TAG: experiment,
                    INIT_TAG: init or "imagenet", **start.tags()})
    if trial.cfg.sweep.workers_per_trial > 1:  # data-parallel over Ray Train workers
        results = run_trial_distributed(trial.cfg, out, init=init, resume=resume,
                                        progress=False, callbacks=[*callbacks, tracking],
                                        report_to_tune=True, **sweep_scaling(trial.cfg.sweep))
    else:
        results = run_trial(trial.cfg, out, init=init, resume=resume, progress=False,
                            callbacks=[*callbacks, tracking, RayReport()])
    tune.report({**final_metrics(results), SKIPPED: 0})

"""DVC stage `<experiment>_annotate`: trials whose selection rounds people label in Label Studio.

Every trial of sweep.experiment runs in this process, one after the other, in
runs/<experiment>/<trial>/ (a persistent DVC output), each tracked as an MLflow run. A trial
trains to its next selection round, selects, pushes the round's tasks and stops at its
checkpoint until people have answered them (:mod:`ripu.annotate`); the next run pulls the
answers and goes on. A finished trial is skipped.

Exit status: 0 when every trial finished; 75 (EX_TEMPFAIL, "try again later") after one line
per trial that waits for people (how many tasks, which project, which URL): ``dvc repro``
then reports "exited with 75" and records nothing, so the next ``dvc repro`` runs the stage
again. 2 after one line for bad input (no annotate.url, server down, token refused, labels
refused).
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipelines.common import RUNS, WARMUPS, load_experiment_of, main, show_progress
from ripu.annotate import WAITING_STATUS, AwaitingLabels
from ripu.config import Config
from ripu.engine.trainer import run_trial
from ripu.engine.trial_dir import TrialDir
from ripu.errors import ConfigError
from ripu.record_names import MIOU
from ripu.starts import start_of
from ripu.warmups import trial_inits


def run(root: Path, cfg: Config) -> None:
    if cfg.annotate.url is None:
        raise ConfigError("annotate.url: null, expected the URL of the Label Studio server "
                          "whose people label this experiment's rounds")
    exp = load_experiment_of(root, cfg)
    inits = trial_inits(exp.trials, exp.name, folder=root / WARMUPS)
    waiting: list[AwaitingLabels] = []
    for trial in exp.trials:
        folder = TrialDir(root / RUNS / exp.name / trial.name)
        start = start_of(trial.cfg, inits[trial.name]).sha256
        done = folder.finished_results(trial.cfg, start)
        if done is None:
            try:
                done = run_trial(trial.cfg, folder.root, init=inits[trial.name],
                                 resume=folder.can_resume(trial.cfg, start),
                                 progress=show_progress())
            except AwaitingLabels as wait:
                waiting.append(wait)
                continue
        print(f"{trial.name}: finished, val mIoU {100 * done[MIOU]:.2f}", flush=True)
    for wait in waiting:
        print(wait, flush=True)
    if waiting:
        sys.exit(WAITING_STATUS)


if __name__ == "__main__":
    main(run)

"""Ctrl-C or SIGTERM on a sweep, at chosen moments, then `dvc repro`: every trial reported
exactly once, with the metrics of an uninterrupted run. Real DVC, Ray and MLflow (a server
over SQLite).

A tiny copy of the repository runs `dvc repro warmup`, then the sweep stage three times,
each time signalled from inside one trial (a test callback sends SIGINT to the driver's
process group, as a terminal's Ctrl-C does, or SIGTERM to the driver alone, as a cluster's
scheduler preempting the job does, and blocks the trial at that point until Ray ends it):

1. mid-trial: after a checkpoint, before the next one;
2. in a selection round: its round file written, its checkpoint not yet;
3. while a trial finishes: its results.json written, its MLflow run not yet committed.

Each driver must stop within 15 s, with exit status 130 (SIGINT) or 143 (SIGTERM) and no
traceback. A last `dvc repro` then finishes the sweep and the report; it is compared with an
uninterrupted `dvc repro`.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ripu.tracking import get_run, list_runs
from tests.test_pipeline import _run, _tiny_repo

pytestmark = pytest.mark.integration  # real Ray clusters, DVC, servers or subprocesses

ITERS = 10
STOP_SECONDS = 15.0
# Grid order: Ray Tune starts the first two, the last one only once a slot is free.
GRID = [{"train.kind": ["active"], "active.strategy": ["ripu_region"], "seed": [0, 1]},
        {"train.kind": ["source_only"], "seed": [0]},
        {"train.kind": ["active"], "active.strategy": ["random_region"], "seed": [0]}]
FIRST, LAST = "active-ripu_region-b0.022-s0", "active-random_region-b0.022-s0"
TRIALS = {FIRST, "active-ripu_region-b0.022-s1", "source_only-s0", LAST}

STATUS = {"SIGINT": 130, "SIGTERM": 143}  # the conventional exit status: 128 + the signal
DRIVER = """
import os, signal, sys, time
from pathlib import Path
from pipelines.common import RAY_RESULTS, RUNS, WARMUPS, load_params
from pipelines.sweep import exit_now
from ripu.engine.callbacks import Callback
from ripu.errors import exit_status
from ripu.sweep import run_sweep

class InterruptAt(Callback):
    '''Signal the sweep when `trial` reaches `point`, then hold the trial: SIGINT to its
    process group (a terminal's Ctrl-C), SIGTERM to the driver alone (preemption).'''

    def __init__(self, trial, point, arg, pgid, marker, sig):
        self.trial, self.point, self.arg, self.pgid, self.marker = trial, point, arg, pgid, marker
        self.sig = sig

    def _fire(self, trainer, where):
        if trainer.out_dir.name == self.trial and not os.path.exists(self.marker):
            Path(self.marker).write_text(f"{time.time()!r} {where}")
            if self.sig == "SIGINT":
                os.killpg(self.pgid, signal.SIGINT)
            else:  # the driver leads its own session: its pid is the group's id
                os.kill(self.pgid, signal.SIGTERM)
            time.sleep(300)  # until Ray ends this process

    def on_log(self, trainer, metrics, step):
        if self.point == "log" and step >= self.arg:
            self._fire(trainer, f"step {step}")

    def on_round(self, trainer, round_index, path):
        if self.point == "round" and round_index == self.arg:
            self._fire(trainer, f"round {round_index}")

    def on_end(self, trainer, results, result):
        if self.point == "end":
            self._fire(trainer, "end")

# A terminal's foreground job: SIGINT raises KeyboardInterrupt, and Ray's processes started
# from here get the default action. (A job started with `&` from a script inherits SIGINT
# ignored, and Python keeps ignoring it.)
signal.signal(signal.SIGINT, signal.default_int_handler)
root = Path.cwd()
cfg = load_params(root)
hook = InterruptAt(sys.argv[1], sys.argv[2], int(sys.argv[3]), os.getpgrp(), sys.argv[4],
                   sys.argv[5])
exit_now(exit_status(  # as the sweep stage does
    run_sweep, cfg, cfg.sweep.experiment, warmups=root / WARMUPS, out_dir=root / RUNS,
    progress=False, storage=root / RAY_RESULTS, callbacks=[hook]))
"""


def _repo(dest: Path, env: dict, grid: list[dict] = GRID, **experiment_keys) -> Path:
    """A tiny copy of the repository (git and DVC initialised) whose experiment runs ``grid``
    (and ``experiment_keys``) for ITERS iterations."""
    repo = _tiny_repo(dest)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["optim"].update(iters=ITERS, poly_iters=ITERS)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    experiment = yaml.safe_load((repo / "experiments" / "tiny.yaml").read_text())
    (repo / "experiments" / "tiny.yaml").write_text(yaml.safe_dump(
        {**experiment, **experiment_keys, "grid": grid}))
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"],
                ["dvc", "config", "core.analytics", "false"]):
        _run(cmd, repo, env)
    return repo


def _interrupted_sweep(repo: Path, env: dict, sig: str, trial: str, point: str, arg: int) -> str:
    """The sweep stage's driver, sent ``sig`` from ``trial`` at ``point``; returns where."""
    marker = repo / f"interrupted-{point}.txt"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, trial, point, str(arg), str(marker),
                             sig],
                            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    out, _ = proc.communicate(timeout=900)
    ended = time.time()
    assert marker.is_file(), f"{trial} never reached {point} {arg}:\n{out[-4000:]}"
    signalled, where = marker.read_text().split(" ", 1)
    print(f"\n{sig} at {trial} {where}: the driver stopped in {ended - float(signalled):.1f} s")
    assert proc.returncode == STATUS[sig], out[-4000:]
    assert ended - float(signalled) < STOP_SECONDS, out[-4000:]
    assert "Traceback" not in out and "Exception ignored" not in out, out[-4000:]
    return where


def _report(repo: Path) -> dict[str, dict[str, str]]:
    """reports/results.csv by trial; fails if a trial appears twice."""
    with (repo / "reports" / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    names = [r["trial"] for r in rows]
    assert len(names) == len(set(names)), names
    return {r["trial"]: r for r in rows}


def _metrics(row: dict[str, str]) -> dict[str, float]:
    """What an interruption must not change: mIoU, per-class IoU, labelled fraction."""
    return {k: float(v) if v else float("nan") for k, v in row.items()
            if k in ("miou", "labelled_fraction") or k.startswith("iou_")}


def _env() -> dict:
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "TQDM_DISABLE": "1"}
    env.pop("RAY_ADDRESS", None)
    env.pop("PYTHONPATH", None)  # each repository runs its own copy of the package
    return env


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, dict[str, str]]:
    """The report of an uninterrupted `dvc repro`, by trial."""
    env = _env()
    reference = _repo(tmp_path_factory.mktemp("reference") / "repo", env)
    _run(["dvc", "repro"], reference, env)
    return _report(reference)


def _three_interruptions_then_repro(tmp_path: Path, sig: str,
                                    expected: dict[str, dict[str, str]]) -> None:
    """Interrupt the sweep stage with ``sig`` at three moments, then `dvc repro`: every
    trial reported once, with the uninterrupted metrics."""
    env = _env()
    repo = _repo(tmp_path / "cut", env)
    _run(["dvc", "repro", "warmup"], repo, env)
    trials = repo / "runs" / "synthetic"

    # 1. Mid-trial: step 6, two iterations after the checkpoint of step 4.
    assert _interrupted_sweep(repo, env, sig, FIRST, "log", 6) == "step 6"
    assert not (trials / FIRST / "results.json").exists()
    # 2. In selection round 1 of the last trial: round file written, checkpoint not yet.
    assert _interrupted_sweep(repo, env, sig, LAST, "round", 1) == "round 1"
    assert (trials / LAST / "masks" / "round_1.npz").is_file()
    # 3. While the last trial finishes: results.json written, its MLflow run not committed.
    assert _interrupted_sweep(repo, env, sig, LAST, "end", 0) == "end"
    uri = f"sqlite:///{repo / 'mlflow.db'}"
    run_id = (trials / LAST / "mlflow_run_id.txt").read_text().strip()
    assert (trials / LAST / "results.json").is_file()
    assert get_run(uri, run_id).info.status != "FINISHED"

    out, _ = _run(["dvc", "repro"], repo, env)
    assert "Running stage 'report'" in out
    got = _report(repo)
    assert set(got) == TRIALS == set(expected)
    for name in TRIALS:
        assert _metrics(got[name]) == pytest.approx(_metrics(expected[name]), abs=1e-9,
                                                     nan_ok=True), name

    # MLflow: one FINISHED parent (continued by every sweep) and one FINISHED run per trial.
    runs = list_runs(uri, "synthetic")
    parents = [r for r in runs if r.data.tags.get("ripu.sweep") == "1"]
    assert [p.info.status for p in parents] == ["FINISHED"]
    finished = [r.data.tags["ripu.trial"] for r in runs
                if "ripu.trial" in r.data.tags and r.info.status == "FINISHED"]
    assert sorted(finished) == sorted(TRIALS)
    assert got[LAST]["run_id"] == run_id  # the cut completion was finished in its own run


@pytest.mark.slow
def test_interrupted_sweeps_report_every_trial_once_with_uninterrupted_metrics(
        tmp_path, uninterrupted):
    _three_interruptions_then_repro(tmp_path, "SIGINT", uninterrupted)


@pytest.mark.slow
def test_sigterm_stops_a_sweep_like_ctrl_c_and_resumes_exactly(tmp_path, uninterrupted):
    """Preemption: SIGTERM to the driver alone at the same three moments."""
    _three_interruptions_then_repro(tmp_path, "SIGTERM", uninterrupted)

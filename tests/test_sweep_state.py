"""Where a trial stands (ripu.sweep.state) and the sweep's log lines (ripu.sweep.progress).

Trial folders are written by hand; the runs live in a real SQLite MLflow store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ripu.engine.trial_dir import TrialDir
from ripu.sweep.progress import start_line, trial_line
from ripu.sweep.state import Plan, committed, final_metrics, plan, same_start
from ripu.tracking import Tracker, get_run
from ripu.trial import trial_config_hash
from tests.conftest import tiny_config

MIOU = 0.1875


@pytest.fixture()
def cfg(tmp_path):
    return tiny_config(tmp_path / "data", tmp_path)


def write_results(out: Path, cfg, miou: float = MIOU) -> dict:
    results = {"resume_hash": trial_config_hash(cfg), "miou": miou, "iterations": 8,
               "labelled_fraction": 0.05, "seconds": 12.5, "miou16": 0.2, "kind": "active"}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results))
    return results


def write_checkpoint(out: Path, config_hash: str) -> None:
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save({"config_hash": config_hash, "iteration": 4}, out / "checkpoints" / "last.pt")


def trial_run(cfg, out: Path, *, miou: float | None, status: str | None):
    """A trial's MLflow run (its id in the folder), with final/miou and a status if given."""
    tracker = Tracker(cfg.tracking.uri, "state", run_name=out.name)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mlflow_run_id.txt").write_text(tracker.run_id + "\n")
    if miou is not None:
        tracker.log_metrics({"final/miou": miou}, step=8)
    if status is not None:
        tracker.finish(status)
    return get_run(cfg.tracking.uri, tracker.run_id)


@pytest.mark.integration  # real MLflow runs
def test_plan_of_each_trial_state(cfg, tmp_path):
    other = tiny_config(tmp_path / "data", tmp_path, seed=7)
    start = tmp_path / "start"
    assert plan(start, cfg, None, None) is Plan.START  # no folder at all

    resume = tmp_path / "resume"
    write_checkpoint(resume, trial_config_hash(cfg))
    assert plan(resume, cfg, None, None) is Plan.RESUME
    assert plan(resume, other, None, None) is Plan.START  # a checkpoint of another config
    assert plan(resume, cfg, "a" * 64, None) is Plan.RERUN  # its start is another file now

    # results.json written, the run not committed: cut before, during or after its metrics
    cut = tmp_path / "cut"
    results = write_results(cut, cfg)
    assert TrialDir(cut).finished_results(cfg, None) == results
    assert TrialDir(cut).finished_results(other, None) is None
    assert plan(cut, cfg, None, None) is Plan.COMMIT
    for miou, status in ((None, None), (MIOU, None), (MIOU, "FAILED"), (MIOU, "KILLED"),
                         (None, "FINISHED"), (0.25, "FINISHED")):
        run = trial_run(cfg, tmp_path / f"run-{miou}-{status}", miou=miou, status=status)
        assert not committed(results, run), (miou, status)
        assert plan(cut, cfg, None, run) is Plan.COMMIT

    done = trial_run(cfg, tmp_path / "done", miou=MIOU, status="FINISHED")
    assert committed(results, done) and plan(cut, cfg, None, done) is Plan.DONE
    assert plan(cut, other, None, done) is Plan.START  # results of another config count for nothing
    assert plan(cut, cfg, "a" * 64, done) is Plan.RERUN  # results of another start: run again
    assert not same_start(done, "a" * 64) and same_start(done, None) and same_start(None, "b")
    assert TrialDir(tmp_path / "done").run_id() == done.info.run_id
    assert TrialDir(start).run_id() is None
    assert get_run(cfg.tracking.uri, "0" * 32) is None


def test_final_metrics_reported_to_tune(cfg, tmp_path):
    results = write_results(tmp_path / "t", cfg)
    assert final_metrics(results) == {
        "final/miou": MIOU, "final/miou16": 0.2, "final/labelled_fraction": 0.05,
        "final/seconds": 12.5, "val/miou": MIOU, "val/miou16": 0.2, "iteration": 8}


def test_log_lines():
    assert start_line("synthetic", {"finished earlier": 10, "to commit": 1, "to resume": 0,
                                    "to start": 25}) == (
        "sweep synthetic: 36 trials, 10 finished earlier, 1 to commit, 25 to start")
    assert start_line("e", {"to start": 0}) == "sweep e: 0 trials"
    done = {"final/miou": 0.18874, "final/seconds": 54.24, "ripu/skipped": 0}
    assert trial_line(12, 36, "active-ripu_region-b0.022-s0", done) == (
        "[12/36] active-ripu_region-b0.022-s0: mIoU 18.87%, 54.2 s")
    assert trial_line(3, 4, "lse-s1", {**done, "ripu/skipped": 1}) == (
        "[3/4] lse-s1: mIoU 18.87%, 54.2 s (finished earlier)")
    assert trial_line(4, 4, "t", {"iteration": 4}) == "[4/4] t: stopped"
    assert trial_line(1, 2, "t", {}, error="RipuError: boom") == "[1/2] t: failed (RipuError: boom)"

"""Background MLflow tracking against a real SQLite store: every value arrives at its step,
errors surface, and a trial killed with SIGKILL keeps what it logged before its checkpoint."""

from __future__ import annotations

import json
import signal
import time

import pytest
from mlflow.tracking import MlflowClient

from benchmarks.mlflow_overhead import (
    JOURNAL,
    killed_trial,
    missing_values,
    read_journal,
    values_before_checkpoint,
)
from ripu.engine.callbacks import TrackingCallback
from ripu.engine.trainer import run_trial
from ripu.errors import RipuError
from ripu.tracking import Tracker, list_runs, metric_history, retry_for
from tests.conftest import tiny_config

pytestmark = pytest.mark.integration  # a real MLflow store (and, some, subprocesses)


def _uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_background_writes_arrive_in_order_at_their_steps(tmp_path):
    uri = _uri(tmp_path)
    tracker = Tracker(uri, "bg", run_name="r", background=True)
    for step in range(0, 60, 2):
        tracker.log_metrics({"a": step / 4, "b": -step, "nan": float("nan")}, step)
    tracker.log_metrics({"a": 99.0}, step=30)  # a second value at one step is kept too
    tracker.log_params({"lr": 0.01, "name": "x" * 7000})
    tracker.set_tags({"ripu.kind": "active"})
    tracker.log_text("hello\n", "notes/hello.txt")
    tracker.log_file(lambda path: path.write_text("late\n"), "notes/late.txt")
    tracker.finish()
    client = MlflowClient(uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert metric_history(uri, tracker.run_id, "b") == [(s, float(-s)) for s in range(0, 60, 2)]
    assert sorted(metric_history(uri, tracker.run_id, "a")) == sorted(
        [(s, s / 4) for s in range(0, 60, 2)] + [(30, 99.0)])
    assert "nan" not in run.data.metrics
    assert run.data.params["lr"] == "0.01" and len(run.data.params["name"]) == 6000
    assert run.data.tags["ripu.kind"] == "active"
    assert {a.path for a in client.list_artifacts(tracker.run_id, "notes")} == {
        "notes/hello.txt", "notes/late.txt"}
    assert tracker.background_seconds > 0


def test_background_write_error_is_raised_by_flush_and_later_writes_still_run(tmp_path):
    uri = _uri(tmp_path)
    tracker = Tracker(uri, "bg", background=True)
    tracker.log_artifact(tmp_path / "missing.txt")  # fails on the background thread
    tracker.log_metrics({"x": 1.0}, step=3)
    with pytest.raises(Exception, match="missing.txt"):
        tracker.flush()
    tracker.flush()  # the error is raised once
    tracker.finish("FAILED")
    assert metric_history(uri, tracker.run_id, "x") == [(3, 1.0)]
    assert MlflowClient(uri).get_run(tracker.run_id).info.status == "FAILED"


def test_values_before_checkpoint_takes_the_last_marker_of_the_checkpoint():
    entries = [{"step": 2, "metrics": {"a": 1.0}}, {"checkpoint": [4, 0]},
               {"step": 4, "metrics": {"a": 2.0}}, {"checkpoint": [4, 1]},
               {"step": 6, "metrics": {"a": 3.0}}]
    assert values_before_checkpoint(entries, (4, 0)) == entries[:1]
    assert values_before_checkpoint(entries, (4, 1)) == [entries[0], entries[2]]
    assert len(values_before_checkpoint(entries, None)) == 3
    with pytest.raises(AssertionError, match="no journal marker"):
        values_before_checkpoint(entries, (8, 2))


def test_missing_values_names_what_the_store_lacks(tmp_path):
    uri = _uri(tmp_path)
    tracker = Tracker(uri, "m")
    tracker.log_metrics({"a": 1.5}, step=2)
    entries = [{"step": 2, "metrics": {"a": 1.5, "nan": float("nan")}},
               {"step": 4, "metrics": {"a": 2.5}}]
    assert missing_values(uri, tracker.run_id, entries) == ["a@4=2.5"]


@pytest.mark.parametrize("background", [True, False])
def test_tracked_trial_has_every_value_at_its_step(tiny_data, tmp_path, background):
    from benchmarks.mlflow_overhead import Journal

    cfg = tiny_config(tiny_data, tmp_path)
    out = tmp_path / "t"
    tracking = TrackingCallback.for_trial(cfg, out, background=background)
    run_trial(cfg, out, progress=False,
              callbacks=[tracking, Journal(tracking.tracker, out / JOURNAL)])
    entries = values_before_checkpoint(read_journal(out / JOURNAL), None)
    keys = {k for e in entries for k in e["metrics"]}
    assert {"train/loss", "acq/labelled_fraction", "final/miou"} <= keys
    assert missing_values(cfg.tracking.uri, tracking.tracker.run_id, entries) == []
    client = MlflowClient(cfg.tracking.uri)
    assert client.get_run(tracking.tracker.run_id).info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(tracking.tracker.run_id, "selection")}
    assert artifacts == {"selection/round_0.png", "selection/round_1.png"}
    names = {a.path for a in client.list_artifacts(tracking.tracker.run_id)}
    assert {"config.yaml", "confusion_matrix.png", "results.json"} <= names


def test_sigkilled_trial_keeps_values_logged_before_its_last_checkpoint(tiny_data, tmp_path):
    # 60 iterations, logs every 2; checkpoints after round 0 (iteration 0), at 4 and 8:
    # killed after the third, with most of the trial (and round 1 at 30) still to run; the
    # run resumes and completes.
    cfg = tiny_config(tiny_data, tmp_path, **{"optim.iters": 60, "optim.poly_iters": 60})
    out = tmp_path / "killed"
    report = killed_trial(cfg, out, kill_after=3, timeout=300)
    assert report["returncode"] == -signal.SIGKILL
    assert report["run_status"] == "RUNNING"  # killed: nobody closed the run
    assert report["values_before_checkpoint"] >= 2 * 2  # train/* at steps 2 and 4, acq/*
    assert report["missing"] == []
    run_id = (out / "mlflow_run_id.txt").read_text().strip()
    tracking = TrackingCallback.for_trial(cfg, out, resume=True)
    assert tracking.tracker.run_id == run_id
    res = run_trial(cfg, out, resume=True, progress=False, callbacks=[tracking])
    client = MlflowClient(cfg.tracking.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and res["iterations"] == 60
    masks = {a.path for a in client.list_artifacts(run_id, "masks")}
    assert masks == {"masks/round_0.npz", "masks/round_1.npz"}
    sheets = {a.path for a in client.list_artifacts(run_id, "selection")}
    assert sheets == {"selection/round_0.png", "selection/round_1.png"}
    assert json.loads((out / "results.json").read_text())["iterations"] == 60


def test_resumed_run_logs_the_round_files_it_lacks(tiny_data, tmp_path):
    # trained untracked to the end (2 rounds), then resumed with tracking: the new run gets
    # both round files and their contact sheets from the trial folder
    cfg = tiny_config(tiny_data, tmp_path)
    out = tmp_path / "t"
    run_trial(cfg, out, progress=False, callbacks=[])
    tracking = TrackingCallback.for_trial(cfg, out, resume=True)
    run_trial(cfg, out, resume=True, progress=False, callbacks=[tracking])
    client = MlflowClient(cfg.tracking.uri)
    run_id = tracking.tracker.run_id
    assert {a.path for a in client.list_artifacts(run_id, "masks")} == {
        "masks/round_0.npz", "masks/round_1.npz"}
    assert {a.path for a in client.list_artifacts(run_id, "selection")} == {
        "selection/round_0.png", "selection/round_1.png"}
    assert client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.integration  # a real MLflow client against a closed port
def test_an_unreachable_server_is_waited_for_up_to_the_bound_then_fails_in_one_line(capsys):
    from ripu.tracking import free_port

    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    retry_for(3)
    with pytest.raises(RipuError) as info:
        Tracker(uri, "gone")
    waited = time.monotonic() - started
    message = str(info.value)
    assert 3 <= waited < 15, waited
    assert "\n" not in message and message.startswith(f"tracking.uri: {uri} unreachable for 3 s")
    assert "expected the MLflow server back within tracking.retry_seconds" in message
    err = capsys.readouterr().err
    assert f"ripu: tracking: {uri} unreachable" in err and "retrying for up to 3 s" in err
    started = time.monotonic()
    with pytest.raises(RipuError, match="unreachable for 3 s"):  # gone: no second wait
        list_runs(uri, "gone")
    assert time.monotonic() - started < 1

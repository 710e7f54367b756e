"""Faults are survived and nothing is lost (issue "Reliability", part 2).

Injected here: a crash (exception, Ctrl-C, SIGKILL) while a round file or a checkpoint is
written; a trial interrupted by Ctrl-C and by SIGKILL of `ripu train`, then resumed; 8
processes logging to one MLflow store at once, directly to SQLite and through
``ripu.tracking.serve``. Ray's retry of a SIGKILLed trial and the resumed sweep stage are
tested in tests/test_sweep.py and tests/test_pipeline.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ripu.acquisition import LabelState, latest_round
from ripu.config import dump_yaml
from ripu.engine.callbacks import Callback
from ripu.engine.checkpoint import read_checkpoint
from ripu.engine.trainer import run_trial
from tests.conftest import REPO, tiny_config

pytestmark = pytest.mark.integration  # real Ray clusters, DVC, servers or subprocesses

FAST = {"optim.iters": 12, "optim.poly_iters": 12, "train.checkpoint_every": 3}


def without_seconds(results: dict) -> dict:
    return {k: v for k, v in results.items() if k != "seconds"}


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def state(seed: int, round_index: int) -> LabelState:
    rng = np.random.default_rng(seed)
    s = LabelState()
    for image_id in ("a/0", "a/1", "b/0"):
        labelled = rng.random((24, 40)) < 0.1
        s.set_masks(image_id, labelled, labelled | (rng.random((24, 40)) < 0.1))
    s.round_index = round_index
    s.round_stats = [{"round_fraction": 0.1}] * (round_index + 1)
    return s


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory) -> dict:
    """Results of an uninterrupted 12-iteration active trial (round files in ``dir``)."""
    tmp = tmp_path_factory.mktemp("reference")
    results = run_trial(tiny_config(tiny_data, tmp, **FAST), tmp / "trial", progress=False,
                        callbacks=[])
    return {"results": results, "dir": tmp / "trial"}


# ----------------------------------------------------------------------------- round files


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk-full", "ctrl-c"])
@pytest.mark.parametrize("existing", [False, True], ids=["new-file", "overwrite"])
def test_crash_while_a_round_file_is_written(tmp_path, monkeypatch, error, existing):
    """The writer fails after its first array: earlier files keep their bytes and mtimes, the
    half-written file is removed, and the last complete round is still found."""
    masks = tmp_path / "masks"
    first = state(0, 0).save(masks / "round_0.npz")
    if existing:
        state(1, 1).save(masks / "round_1.npz")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in masks.iterdir()}

    real = np.lib.format.write_array
    calls = []

    def failing(fp, array, *args, **kwargs):
        calls.append(array.shape)
        if len(calls) == 2:
            raise error
        return real(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(type(error)):
        state(2, 1).save(masks / "round_1.npz")
    monkeypatch.undo()
    assert len(calls) == 2  # the crash happened mid-file
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in masks.iterdir()} == before
    assert latest_round(masks) == ((1, masks / "round_1.npz") if existing else (0, first))


KILL_WRITER = """
import sys, time
import numpy as np
from tests.reliability.test_faults import state
real, calls = np.lib.format.write_array, []
def slow(fp, array, *args, **kwargs):
    real(fp, array, *args, **kwargs)
    calls.append(1)
    if len(calls) == 3:
        fp.flush()
        print("mid-write", flush=True)
        time.sleep(120)
np.lib.format.write_array = slow
state(2, 1).save(sys.argv[1])
"""


def kill_when_printed(script_and_args: list[str], line: str) -> None:
    """Run ``python -c SCRIPT ARGS...``; SIGKILL it as soon as it prints ``line``."""
    proc = subprocess.Popen([sys.executable, "-c", *script_and_args], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == line
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_while_a_round_file_is_written(tmp_path):
    """A process killed with SIGKILL mid-write leaves only a temporary file, which the next
    run ignores: the previous round is the last complete one and reads back bit-exactly."""
    masks = tmp_path / "masks"
    first = state(0, 0).save(masks / "round_0.npz")
    saved = first.read_bytes()
    kill_when_printed([KILL_WRITER, str(masks / "round_1.npz")], "mid-write")
    leftovers = [p.name for p in masks.iterdir() if p.name != "round_0.npz"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".round_1.npz.")  # the temp file
    assert first.read_bytes() == saved and latest_round(masks) == (0, first)
    loaded = LabelState.load(first)
    expected = state(0, 0)
    for image_id in expected.ids:
        assert np.array_equal(loaded.labelled[image_id], expected.labelled[image_id])
        assert np.array_equal(loaded.blocked[image_id], expected.blocked[image_id])


# ----------------------------------------------------------------------------- trials


class StopAt(Callback):
    """Ctrl-C (KeyboardInterrupt) once the trainer logs step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_log(self, trainer, metrics, step):
        if step >= self.step:
            raise KeyboardInterrupt("simulated Ctrl-C")


@pytest.mark.parametrize("stop", [4, 10], ids=["before-round-1", "after-round-1"])
def test_interrupted_trial_resumes_to_the_same_results(tiny_data, tmp_path, reference, stop):
    cfg = tiny_config(tiny_data, tmp_path, **FAST)
    with pytest.raises(KeyboardInterrupt):
        run_trial(cfg, tmp_path / "cut", progress=False, callbacks=[StopAt(stop)])
    assert not (tmp_path / "cut" / "results.json").exists()
    resumed = run_trial(cfg, tmp_path / "cut", resume=True, progress=False, callbacks=[])
    assert without_seconds(resumed) == without_seconds(reference["results"])
    assert files(tmp_path / "cut" / "masks") == files(reference["dir"] / "masks")


def test_crash_while_a_checkpoint_is_written(tiny_data, tmp_path, reference, monkeypatch):
    """torch.save fails half-way through the second checkpoint: the first stays loadable,
    no temporary file is left, and resuming gives the uninterrupted results."""
    cfg = tiny_config(tiny_data, tmp_path, **FAST)
    real, calls = torch.save, []

    def failing(obj, f, *args, **kwargs):
        calls.append(obj["iteration"])
        if len(calls) == 2:
            Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
            raise OSError(28, "No space left on device")
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing)
    with pytest.raises(OSError, match="No space"):
        run_trial(cfg, tmp_path / "t", progress=False, callbacks=[])
    monkeypatch.undo()
    checkpoints = tmp_path / "t" / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["last.pt"]
    assert read_checkpoint(checkpoints / "last.pt")["iteration"] == calls[0]
    resumed = run_trial(cfg, tmp_path / "t", resume=True, progress=False, callbacks=[])
    assert without_seconds(resumed) == without_seconds(reference["results"])


TRIAL_SCRIPT = """
import sys, time
from pathlib import Path
from ripu.config import load_config
from ripu.engine.callbacks import Callback
from ripu.engine.trainer import run_trial

class Hold(Callback):  # announce step 8 (last checkpoint: 6), then wait to be killed
    def on_log(self, trainer, metrics, step):
        if step == 8:
            print("step 8", flush=True)
            time.sleep(120)

run_trial(load_config(sys.argv[1]), Path(sys.argv[2]), progress=False, callbacks=[Hold()])
"""


def test_sigkilled_trial_resumes_to_the_same_results(tiny_data, tmp_path, reference):
    """A trial process is SIGKILLed at step 8 (2 iterations after its last checkpoint and
    after round 1); resuming redoes the lost iterations and ends with the uninterrupted
    results and round files."""
    cfg = tiny_config(tiny_data, tmp_path, **FAST)
    params = tmp_path / "params.yaml"
    params.write_text(dump_yaml(cfg))
    kill_when_printed([TRIAL_SCRIPT, str(params), str(tmp_path / "cut")], "step 8")
    assert read_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["iteration"] == 6
    resumed = run_trial(cfg, tmp_path / "cut", resume=True, progress=False, callbacks=[])
    assert without_seconds(resumed) == without_seconds(reference["results"])
    assert files(tmp_path / "cut" / "masks") == files(reference["dir"] / "masks")


def _ripu(*args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ripu", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.slow
def test_sigkilled_train_resumes_to_the_same_results_and_metrics(tiny_data, tmp_path):
    """`ripu train` is SIGKILLed once its first checkpoint exists; `ripu train --resume`
    then finishes with the results of an uninterrupted run, in the same MLflow run, with a
    train/loss value at every logged step."""
    from mlflow.tracking import MlflowClient

    iters = 60
    cfg = tiny_config(tiny_data, tmp_path, **{"optim.iters": iters, "optim.poly_iters": iters,
                                              "train.checkpoint_every": 3})
    params = tmp_path / "params.yaml"
    params.write_text(dump_yaml(cfg))
    cut = tmp_path / "cut"
    proc = _ripu("train", "-q", "--params", str(params), "--out", str(cut), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while not (cut / "checkpoints" / "last.pt").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = read_checkpoint(cut / "checkpoints" / "last.pt")["iteration"]
    assert killed_at < iters and not (cut / "results.json").exists()

    out, err = _ripu("train", "-q", "--params", str(params), "--out", str(cut), "--resume",
                     cwd=tmp_path).communicate(timeout=300)
    assert "final mIoU" in out, err
    reference = run_trial(cfg, tmp_path / "full", progress=False, callbacks=[])
    resumed = json.loads((cut / "results.json").read_text())
    assert without_seconds(resumed) == without_seconds(reference)
    assert files(cut / "masks") == files(tmp_path / "full" / "masks")

    client = MlflowClient(cfg.tracking.uri)
    (run,) = client.search_runs([client.get_experiment_by_name("test").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_id == (cut / "mlflow_run_id.txt").read_text().strip()
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert {m.step for m in history} == set(range(2, iters + 1, 2))  # log_every 2: none lost
    by_step: dict[int, set[float]] = {}
    for m in history:  # steps logged both before the kill and after the resume agree
        by_step.setdefault(m.step, set()).add(m.value)
    assert all(len(values) == 1 for values in by_step.values())
    assert run.data.metrics["final/miou"] == pytest.approx(resumed["miou"])


# ----------------------------------------------------------------------------- MLflow


WORKERS, STEPS, KEYS = 8, 50, 3


def expected_value(worker: int, step: int, key: int) -> float:
    return worker * 1000 + step + key / 10


def log_as_worker(uri: str, worker: int, ready, go) -> None:
    """One process: create a run, wait for the others, log STEPS x KEYS metrics, finish."""
    from ripu.tracking import Tracker

    tracker = Tracker(uri, "concurrency", run_name=f"worker-{worker}",
                      tags={"worker": str(worker)})
    ready(tracker.run_id)
    go()
    for step in range(STEPS):
        tracker.log_metrics({f"m{k}": expected_value(worker, step, k) for k in range(KEYS)}, step)
    tracker.finish()


SCRIPT = """
import sys, time
from pathlib import Path
from tests.reliability.test_faults import log_as_worker
go = Path(sys.argv[3])
def wait():
    while not go.exists():
        time.sleep(0.01)
log_as_worker(sys.argv[1], int(sys.argv[2]), lambda run_id: print(run_id, flush=True), wait)
"""


def fork_workers(uri: str, tmp_path: Path) -> list[str]:
    """WORKERS forked processes (no interpreter start-up), released together."""
    import multiprocessing as mp

    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - imported once, before the fork
    import mlflow.tracking  # noqa: F401

    ctx = mp.get_context("fork")
    queue, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=log_as_worker, args=(uri, w, queue.put, lambda: go.wait(120)))
             for w in range(WORKERS)]
    for p in procs:
        p.start()
    try:
        run_ids = [queue.get(timeout=120) for _ in procs]
        go.set()
        for p in procs:
            p.join(timeout=300)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    return run_ids


def spawn_workers(uri: str, tmp_path: Path) -> list[str]:
    """WORKERS fresh interpreters, released together once all have created their runs."""
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, uri, str(w), str(go)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(WORKERS)]
    try:
        run_ids = [p.stdout.readline().strip() for p in procs]
        go.touch()
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return run_ids


def check_every_metric(uri: str, run_ids: list[str]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("concurrency").experiment_id])
    assert sorted(r.info.run_id for r in runs) == sorted(run_ids) and len(runs) == WORKERS
    for run in runs:
        worker = int(run.data.tags["worker"])
        assert run.info.status == "FINISHED"
        for k in range(KEYS):
            history = client.get_metric_history(run.info.run_id, f"m{k}")
            assert sorted((m.step, m.value) for m in history) == [
                (step, expected_value(worker, step, k)) for step in range(STEPS)]


def test_eight_processes_log_to_one_new_sqlite_store(tmp_path):
    """Forked processes open a new store at once (schema creation races) and log together."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    check_every_metric(uri, fork_workers(uri, tmp_path))


@pytest.mark.slow
def test_eight_interpreters_log_to_one_new_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    check_every_metric(uri, spawn_workers(uri, tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("start", [fork_workers, spawn_workers], ids=["fork", "spawn"])
def test_eight_processes_log_through_the_tracking_server(tmp_path, start):
    from ripu.tracking import serve

    with serve(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts") as url:
        run_ids = start(url, tmp_path)
        check_every_metric(url, run_ids)

"""What a shared cluster does to a sweep: a lost worker node, a restarting tracking server,
one that stays gone. Real Ray (`ray start` nodes), real MLflow servers.

Run `pytest -m slow -k "sigterm or lost_node or tracking_restart or start_changed"` to check
a new cluster set-up (SIGTERM: tests/test_interrupt.py; a changed start:
tests/test_start_changed.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ripu.config import apply_overrides
from ripu.engine.callbacks import Callback
from ripu.engine.checkpoint import checkpoint_identity
from ripu.engine.trainer import run_trial
from ripu.errors import RipuError
from ripu.sweep import run_sweep
from ripu.tracking import check_uri, free_port, list_runs, serve
from tests.test_sweep import (
    ITERS,
    RecordLogs,
    RecordNode,
    _pickle_this_module_by_value,
    assert_every_metric_once,
    children_of,
    logging_steps,
    ray_cluster,
    tiny_setup,
    write_experiment,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRIALS = ["active-ripu_region-b0.022-s0", "active-ripu_region-b0.022-s1"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_setup(tmp_path_factory.mktemp("faults"))


class HoldOnNode(Callback):
    """Test-only: the first trial to reach ``at`` on node ``node`` writes its name to
    ``marker`` and waits there (until the test kills that node)."""

    def __init__(self, node: str, marker: str, at: int) -> None:
        self.node, self.marker, self.at = node, marker, at

    def on_log(self, trainer, metrics, step) -> None:
        import ray

        if step >= self.at and not os.path.exists(self.marker) \
                and ray.get_runtime_context().get_node_id() == self.node:
            Path(self.marker).write_text(trainer.out_dir.name)
            time.sleep(300)  # the node dies meanwhile, and this process with it
            os._exit(1)  # never go on writing the trial folder


class WaitForOutage(Callback):
    """Test-only: the first trial to reach ``at`` writes ``marker`` (the test then stops the
    tracking server) and goes on once ``url`` no longer answers."""

    def __init__(self, url: str, marker: str, at: int) -> None:
        self.url, self.marker, self.at = url, marker, at

    def on_log(self, trainer, metrics, step) -> None:
        if step >= self.at and not os.path.exists(self.marker):
            Path(self.marker).write_text(f"{trainer.out_dir.name} {step}")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    check_uri(self.url, timeout=1)
                except RipuError:
                    return
                time.sleep(0.2)


def _pickle_by_value() -> None:
    """Ship this module's and tests.test_sweep's callbacks to Ray workers by value."""
    _pickle_this_module_by_value()
    _pickle_this_module_by_value(__name__)


def _wait_for(path: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def _children(pid: int) -> list[tuple[int, str]]:
    """``(pid, command name)`` of the processes whose parent is ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            name, fields = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:]
            if int(fields.split()[1]) == pid:
                out.append((int(stat.parent.name), name))
    return out


def _worker_node_id(address: str) -> str:
    """The id of the cluster's one node that is not the head."""
    code = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
            "print(*[n['NodeID'] for n in ray.nodes() if n['Alive'] "
            "and 'node:__internal_head__' not in n['Resources']])")
    out = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "RAY_AUTH_MODE": "token"}, check=True)
    (node,) = out.stdout.split()
    return node


def _reference(cfg, init: Path, out: Path, seed: int) -> dict:
    trial_cfg = apply_overrides(cfg, {"train.kind": "active", "active.strategy": "ripu_region",
                                      "seed": seed})
    return run_trial(trial_cfg, out, init=init, progress=False, callbacks=[])


def test_lost_node_trial_continues_elsewhere_from_its_checkpoint(tiny, tmp_path, monkeypatch):
    """A worker node dies mid-trial (its raylet SIGKILLed, by pid): the sweep finishes on the
    head, every trial reported once, with an uninterrupted run's metrics and masks."""
    _, cfg, init = tiny
    monkeypatch.chdir(tmp_path)
    _pickle_by_value()
    cfg = apply_overrides(cfg, {"tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                                "sweep.max_failures": 1})
    exp_file = write_experiment(tmp_path / "lost.yaml", "lost", [
        {"train.kind": ["active"], "active.strategy": ["ripu_region"], "seed": [0, 1]}])
    marker = tmp_path / "held.txt"
    with ray_cluster(workers=1) as (address, _, (worker,)):
        node = _worker_node_id(address)
        monkeypatch.setenv("RAY_ADDRESS", address)
        monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
        killed: list[tuple[float, str]] = []

        def kill_the_node() -> None:
            _wait_for(marker)
            (raylet,) = [p for p, name in _children(worker.pid) if name == "raylet"]
            os.kill(raylet, signal.SIGKILL)  # the node's raylet, and with it its workers
            killed.append((time.monotonic(), marker.read_text()))

        killer = threading.Thread(target=kill_the_node, daemon=True)
        killer.start()
        started = time.monotonic()
        results = run_sweep(cfg, exp_file, init=init, out_dir=tmp_path / "runs",
                            progress=False,
                            callbacks=[HoldOnNode(node, str(marker), at=6), RecordNode(),
                                       RecordLogs()])
        print(f"\nsweep with a lost node: {time.monotonic() - started:.1f} s, trial "
              f"{killed[0][1]} lost its node {killed[0][0] - started:.1f} s in")
    (lost,) = [name for _, name in killed]
    assert [r["trial"] for r in results] == TRIALS
    assert all(r["status"] == "finished" and r["iterations"] == ITERS for r in results)
    out = tmp_path / "runs" / "lost"
    assert (out / lost / "node.txt").read_text() != node  # finished on the head node
    # ... from its checkpoint of step 4: the steps before it were not trained again
    logged = [json.loads(line)["step"] for line in (out / lost / "logged.jsonl").open()]
    assert logged == logging_steps(cfg, "active"), logged

    uri = cfg.tracking.uri
    parents, children = children_of(uri, "lost")
    assert [p.info.status for p in parents] == ["FINISHED"]
    runs = {c.data.tags["ripu.trial"]: c for c in children}
    assert sorted(runs) == TRIALS and all(c.info.status == "FINISHED" for c in children)
    for seed, r in enumerate(results):
        reference = _reference(cfg, init, tmp_path / f"reference-{seed}", seed)
        assert r["miou"] == pytest.approx(reference["miou"], abs=1e-9)
        assert r["iou"] == pytest.approx(reference["iou"], abs=1e-9)
        for path in sorted((tmp_path / f"reference-{seed}" / "masks").glob("*.npz")):
            with np.load(path) as a, np.load(out / r["trial"] / "masks" / path.name) as b:
                assert all(np.array_equal(a[k], b[k]) for k in a.files)
        assert_every_metric_once(uri, runs[r["trial"]].info.run_id, out / r["trial"],
                                 logging_steps(cfg, "active"))


@contextlib.contextmanager
def _server_with_outage(store: Path, marker: Path, down: float | None,
                        port: int | None = None):
    """An MLflow server over ``store`` on ``port`` (default: a free one; the store records
    the server's address in its artifact locations, so a server of the same store keeps the
    port), stopped once ``marker`` exists and, unless ``down`` is None (gone for good),
    started again ``down`` seconds later on the same store and port. Yields
    ``(url, outages)``: ``outages`` receives ``(stopped, restarted)`` monotonic times."""
    port, ready, done = port or free_port(), threading.Event(), threading.Event()
    outages: list[tuple[float, float | None]] = []
    backend, artifacts = f"sqlite:///{store}", store.parent / "mlartifacts"

    def run() -> None:
        with serve(backend, artifacts, port=port, timeout=400):
            ready.set()
            _wait_for(marker)
        stopped = time.monotonic()
        if down is None:
            outages.append((stopped, None))
            return
        time.sleep(down)
        with serve(backend, artifacts, port=port, timeout=400):
            outages.append((stopped, time.monotonic()))
            done.wait()

    list_runs(backend, "none")  # create the store here: the server then only opens it
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(420), "the MLflow server did not start"
    try:
        yield f"http://127.0.0.1:{port}", outages
    finally:
        marker.touch()
        done.set()
        thread.join(120)


def _one_trial(tmp_path: Path, url: str, name: str, **extra):
    exp_file = write_experiment(tmp_path / f"{name}.yaml", name, [
        {"train.kind": ["active"], "active.strategy": ["ripu_region"], "seed": [0]}])
    return exp_file, {"tracking.uri": url, **extra}


def test_tracking_restart_loses_no_metric_and_fails_no_trial(tiny, tmp_path, monkeypatch,
                                                             capfd):
    """The tracking server stops for 20 s mid-trial, then restarts on the same store: the
    trial waits, says so, and every metric reaches the store once, at its step."""
    _, cfg, init = tiny
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    _pickle_by_value()
    marker = tmp_path / "stop.txt"
    with _server_with_outage(tmp_path / "store.db", marker, down=20.0) as (url, outages):
        exp_file, overrides = _one_trial(tmp_path, url, "restart")
        cfg = apply_overrides(cfg, overrides)
        (result,) = run_sweep(cfg, exp_file, init=init, out_dir=tmp_path / "runs",
                              progress=False,
                              callbacks=[WaitForOutage(url, str(marker), at=6), RecordLogs()])
        (stopped, restarted), = outages
        with capfd.disabled():
            print(f"\ntracking server down {restarted - stopped:.1f} s (stopped, waited 20 s, "
                  f"restarted)")
        assert result["status"] == "finished" and result["iterations"] == ITERS
        parents, (child,) = children_of(url, "restart")
        assert [p.info.status for p in parents] == ["FINISHED"]
        assert child.info.status == "FINISHED"
        assert_every_metric_once(url, child.info.run_id, Path(result["dir"]),
                                 logging_steps(cfg, "active"))
    log = capfd.readouterr()
    text = log.out + log.err
    assert f"ripu: tracking: {url} unreachable" in text, text[-3000:]
    assert "retrying for up to 300 s (tracking.retry_seconds)" in text
    assert f"ripu: tracking: {url} answers again after" in text


def test_tracking_restart_never_comes_fails_the_trial_in_one_line(tiny, tmp_path,
                                                                  monkeypatch, capfd):
    """The server stays gone: after tracking.retry_seconds the trial fails with one line,
    its checkpoint stays, and a sweep against the restarted server resumes from it."""
    _, cfg, init = tiny
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    _pickle_by_value()
    marker = tmp_path / "stop.txt"
    store = tmp_path / "store.db"
    with _server_with_outage(store, marker, down=None) as (url, outages):
        exp_file, overrides = _one_trial(tmp_path, url, "gone",
                                         **{"tracking.retry_seconds": 10,
                                            "sweep.max_failures": 0})
        cfg = apply_overrides(cfg, overrides)
        started = time.monotonic()
        with pytest.raises(RipuError) as info:
            run_sweep(cfg, exp_file, init=init, out_dir=tmp_path / "runs", progress=False,
                      callbacks=[WaitForOutage(url, str(marker), at=6)])
        with capfd.disabled():
            print(f"\nsweep against a server gone for good ended after "
                  f"{time.monotonic() - started:.1f} s")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"tracking.uri: {url} unreachable for 10 s"), message
    text = capfd.readouterr().out
    (line,) = [x for x in text.splitlines() if x.startswith("[1/1] ")]
    assert "failed (" in line and f"{url} unreachable for 10 s" in line, line
    folder = tmp_path / "runs" / "gone" / "active-ripu_region-b0.022-s0"
    assert not (folder / "results.json").exists()
    assert checkpoint_identity(folder / "checkpoints" / "last.pt") is not None

    # The server back on the same store: the next sweep resumes the trial and finishes it.
    marker.unlink()
    port = int(url.rsplit(":", 1)[1])
    with _server_with_outage(store, tmp_path / "never.txt", down=None, port=port):
        (result,) = run_sweep(cfg, exp_file, init=init, out_dir=tmp_path / "runs",
                              progress=False)
    assert result["status"] == "finished" and result["iterations"] == ITERS
    assert "sweep gone: 1 trials, 1 to resume" in capfd.readouterr().out

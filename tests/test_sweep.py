"""Ray Tune sweeps end to end: a real local Ray cluster, a real MLflow server over SQLite.

The default suite runs one sweep of four tiny trials and checks every logged metric, the
round files, the parent/child runs and that a second sweep reruns nothing. Slow tests: a
`ray start` cluster of two nodes, a trial killed mid-run and retried, a trial that keeps
failing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from ripu.config import Config, apply_overrides, load_config
from ripu.engine.callbacks import RUN_ID_FILE, Callback
from ripu.engine.schedule import round_iterations
from ripu.engine.trainer import run_trial
from ripu.errors import RipuError
from ripu.sweep import PARENT_ID_FILE, run_sweep
from ripu.tracking import free_port, list_runs, metric_history
from ripu.trial import trial_config_hash as resume_hash

pytestmark = pytest.mark.integration  # real Ray clusters, DVC, servers or subprocesses

REPO = Path(__file__).resolve().parents[1]
ITERS, LOG_EVERY = 10, 2


# ----------------------------------------------------------------------------- helpers


def make_tiny_data(root: Path) -> Path:
    """The synthetic benchmark at 32x64: 8 source, 8 target train, 4 target val images."""
    from ripu.data.synthetic import generate

    generate(root, seed=0, source_images=8, target_train=8, target_val=4, height=32, width=64,
             progress=False)
    return root


def tiny_config(data: Path, tmp: Path, **extra) -> Config:
    """params.yaml shrunk to a few iterations on the tiny data, tracked in ``tmp``/mlflow.db."""
    cfg = load_config(REPO / "params.yaml")
    return apply_overrides(cfg, {
        "data.source_root": str(data / "source"), "data.target_root": str(data / "target"),
        "data.source_size": [64, 32], "data.target_size": [64, 32], "data.eval_size": [64, 32],
        "optim.iters": ITERS, "optim.poly_iters": ITERS, "optim.batch_source": 2,
        "optim.batch_target": 2, "train.log_every": LOG_EVERY, "train.checkpoint_every": 4,
        "train.eval_every": 0, "train.threads": 1, "active.batch_size": 4,
        "tracking.uri": f"sqlite:///{tmp / 'mlflow.db'}", "sweep.max_concurrent": 2,
        "sweep.cpus_per_trial": 1, "sweep.max_failures": 1, **extra})


def init_checkpoint(cfg: Config, path: Path) -> Path:
    """An untrained model saved as a warm-up checkpoint."""
    from ripu.engine.build import build_model_from

    model = build_model_from(cfg, torch.device("cpu"))
    torch.save({"model": model.state_dict()}, path)
    return path


def write_experiment(path: Path, name: str, grid: list[dict], base: dict | None = None) -> Path:
    path.write_text(yaml.safe_dump({"name": name, "base": base or {}, "grid": grid}))
    return path


def children_of(uri: str, experiment: str) -> tuple[list, list]:
    runs = list_runs(uri, experiment)
    parents = [r for r in runs if r.data.tags.get("ripu.sweep") == "1"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def tiny_setup(root: Path) -> tuple[Path, Config, Path]:
    """The tiny data, its config and an untrained warm-up checkpoint, under ``root``."""
    data = make_tiny_data(root / "data")
    cfg = tiny_config(data, root)
    return root, cfg, init_checkpoint(cfg, root / "warmup.pt")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_setup(tmp_path_factory.mktemp("sweep"))


# ----------------------------------------------------------------------------- default suite


class RecordLogs(Callback):
    """Test-only: write every metric the trainer hands to its callbacks into the trial folder."""

    def on_log(self, trainer, metrics, step) -> None:
        with open(trainer.out_dir / "logged.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "metrics": metrics}) + "\n")


def _pickle_this_module_by_value(module: str = __name__) -> None:
    """Ray workers need not import the tests package: ship test callbacks by value."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[module])


def assert_every_metric_once(uri: str, run_id: str, folder: Path, steps: list[int]) -> None:
    """No metric lost: every metric of every logging step (``RecordLogs``) reached the
    store, once, at its step."""
    logged = [json.loads(line) for line in (folder / "logged.jsonl").open()]
    assert sorted({e["step"] for e in logged}) == steps
    for key in {k for e in logged for k in e["metrics"]}:
        expected = dict(sorted((e["step"], e["metrics"][key]) for e in logged
                               if key in e["metrics"]))  # a replayed step logs equal values
        history = metric_history(uri, run_id, key)
        assert [h[0] for h in history] == list(expected), key
        assert [h[1] for h in history] == pytest.approx(list(expected.values())), key


def logging_steps(cfg: Config, kind: str) -> list[int]:
    """Where the trainer logs: every log_every steps, and at the end of each training segment
    (a selection round ends one)."""
    ends = {ITERS}
    if kind == "active":
        ends |= {i for i in round_iterations(cfg.active.round_at, ITERS) if i > 0}
    return sorted(set(range(LOG_EVERY, ITERS + 1, LOG_EVERY)) | ends)


def test_sweep_on_local_ray_with_mlflow_server(tiny, monkeypatch):
    root, cfg, init = tiny
    monkeypatch.chdir(root)  # MLflow's default artifact folder (mlruns/) goes here
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    _pickle_this_module_by_value()
    exp_file = write_experiment(root / "four.yaml", "four", [
        {"train.kind": ["source_only", "supervised"], "seed": [0]},
        {"train.kind": ["active"], "active.strategy": ["ripu_region", "ripu_point"],
         "seed": [0]}])
    names = ["source_only-s0", "supervised-s0", "active-ripu_region-b0.022-s0",
             "active-ripu_point-p40-s0"]
    started = time.perf_counter()
    results = run_sweep(cfg, exp_file, init=init, out_dir=root / "runs", progress=False,
                        callbacks=[RecordLogs()])
    first_seconds = time.perf_counter() - started
    print(f"\ntiny sweep of 4 trials: {first_seconds:.1f} s")

    assert [r["trial"] for r in results] == names
    assert all(r["status"] == "finished" for r in results)
    uri = cfg.tracking.uri
    parents, children = children_of(uri, "four")
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.tags["ripu.experiment"] == "four"
    assert parent.data.metrics["sweep/finished"] == 4
    out_root = root / "runs" / "four"
    assert (out_root / PARENT_ID_FILE).read_text().strip() == parent.info.run_id
    trials_json = MlflowClient(uri).download_artifacts(parent.info.run_id, "trials.json",
                                                       str(root))
    hashes = json.loads(Path(trials_json).read_text())
    by_name = {c.data.tags["ripu.trial"]: c for c in children}
    assert set(by_name) == set(names) == set(hashes)

    for r in results:
        name, folder = r["trial"], out_root / r["trial"]
        run = by_name[name]
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["ripu.params_hash"] == hashes[name] == r["resume_hash"]
        assert run.data.tags["ripu.experiment"] == "four" and run.info.run_name == name
        assert (folder / RUN_ID_FILE).read_text().strip() == run.info.run_id
        assert (folder / "config.yaml").is_file() and (folder / "checkpoints/last.pt").is_file()
        stored = json.loads((folder / "results.json").read_text())
        assert stored["miou"] == r["miou"] and 0.0 <= r["miou"] <= 1.0
        assert stored["iterations"] == ITERS
        assert_every_metric_once(uri, run.info.run_id, folder, logging_steps(cfg, r["kind"]))
        assert metric_history(uri, run.info.run_id, "val/miou") == [(ITERS, r["miou"])]
        assert run.data.metrics["final/miou"] == pytest.approx(r["miou"])
        rounds = sorted(p.name for p in (folder / "masks").glob("round_*.npz"))
        acq = metric_history(uri, run.info.run_id, "acq/labelled_fraction")
        if r["kind"] == "active":
            assert rounds == [f"round_{i}.npz" for i in range(cfg.active.rounds)]
            assert [s for s, _ in acq] == list(range(cfg.active.rounds))
            assert 0 < r["labelled_fraction"] == pytest.approx(acq[-1][1])
        else:
            assert rounds == [] and acq == []

    # A second sweep reruns nothing: same results, no new runs, files untouched.
    mtimes = {p: p.stat().st_mtime_ns for p in out_root.rglob("*") if p.is_file()}
    started = time.perf_counter()
    again = run_sweep(cfg, exp_file, init=init, out_dir=root / "runs", progress=False)
    print(f"second sweep (all finished): {time.perf_counter() - started:.1f} s")
    assert [r["status"] for r in again] == ["skipped"] * 4
    assert [r["miou"] for r in again] == [r["miou"] for r in results]
    parents2, children2 = children_of(uri, "four")
    assert [p.info.run_id for p in parents2] == [parent.info.run_id]
    assert sorted(c.info.run_id for c in children2) == sorted(c.info.run_id for c in children)
    changed = [p for p, t in mtimes.items() if p.stat().st_mtime_ns != t]
    assert changed == [out_root / PARENT_ID_FILE]  # rewritten with the same id


def test_missing_init_fails_before_anything_starts(tiny, tmp_path, monkeypatch):
    root, cfg, _ = tiny
    monkeypatch.chdir(tmp_path)
    exp_file = write_experiment(tmp_path / "e.yaml", "e", [{"seed": [0]}])
    with pytest.raises(RipuError, match="--init: .*not found"):
        run_sweep(cfg, exp_file, init=tmp_path / "none.pt", out_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- slow


class KillOnce(Callback):
    """Test-only: SIGKILL the trial's own process at iteration ``at``, on the first attempt."""

    def __init__(self, marker: str, at: int) -> None:
        self.marker, self.at = marker, at

    def on_log(self, trainer, metrics, step) -> None:
        if step >= self.at and trainer.cfg.train.kind == "active" \
                and not os.path.exists(self.marker):
            Path(self.marker).write_text(f"killed at {step}\n")
            os.kill(os.getpid(), signal.SIGKILL)


class RecordNode(Callback):
    """Test-only: write the Ray node a trial ran on into its folder."""

    def on_start(self, trainer) -> None:
        import ray

        (trainer.out_dir / "node.txt").write_text(ray.get_runtime_context().get_node_id())


@pytest.mark.slow
def test_killed_trial_is_retried_and_matches_an_uninterrupted_run(tiny, tmp_path, monkeypatch):
    root, cfg, init = tiny
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    _pickle_this_module_by_value()
    cfg = apply_overrides(cfg, {"tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    exp_file = write_experiment(tmp_path / "kill.yaml", "kill", [
        {"train.kind": ["active"], "active.strategy": ["ripu_region"], "seed": [0]}])
    marker = tmp_path / "killed.txt"
    results = run_sweep(cfg, exp_file, init=init, out_dir=tmp_path / "runs", progress=False,
                        callbacks=[KillOnce(str(marker), at=6)])
    assert marker.read_text() == "killed at 6\n"  # the first attempt really died mid-run
    (result,) = results
    assert result["status"] == "finished" and result["iterations"] == ITERS

    trial_cfg = apply_overrides(cfg, {"train.kind": "active", "active.strategy": "ripu_region",
                                      "tracking.experiment": "kill"})
    reference = run_trial(trial_cfg, tmp_path / "reference", init=init, progress=False,
                          callbacks=[])
    assert result["resume_hash"] == resume_hash(trial_cfg)
    assert result["miou"] == pytest.approx(reference["miou"], abs=1e-9)
    assert result["iou"] == pytest.approx(reference["iou"], abs=1e-9)
    ref_masks = sorted((tmp_path / "reference" / "masks").glob("*.npz"))
    got_masks = sorted((tmp_path / "runs" / "kill" / result["trial"] / "masks").glob("*.npz"))
    assert [p.name for p in got_masks] == [p.name for p in ref_masks]
    for got, ref in zip(got_masks, ref_masks, strict=True):
        with np.load(got) as a, np.load(ref) as b:
            assert sorted(a.files) == sorted(b.files)
            assert all(np.array_equal(a[k], b[k]) for k in a.files)

    uri = cfg.tracking.uri
    _, children = children_of(uri, "kill")
    (child,) = children  # the retry continued the same MLflow run
    assert child.info.status == "FINISHED"
    steps = {s for s, _ in metric_history(uri, child.info.run_id, "train/loss")}
    assert steps == set(logging_steps(cfg, "active"))


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


@contextlib.contextmanager
def ray_cluster(workers: int = 1):
    """A Ray cluster of ``ray start`` nodes of one CPU each on this machine: a head and
    ``workers`` worker nodes, in its own temp folder (Ray records "the current cluster"
    there), with token authentication; yields ``(address, head, [worker, ...])`` (the
    ``ray start --block`` processes). Stopped (SIGTERM to each node) afterwards."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ripu-rt-", dir="/tmp")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    start = [_ray_cli(), "start", "--block", "--num-cpus", "1", "--disable-usage-stats",
             "--temp-dir", temp]
    nodes = [subprocess.Popen([*start, "--head", "--port", str(port), "--include-dashboard",
                               "false"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        address = f"127.0.0.1:{port}"
        time.sleep(8)
        nodes += [subprocess.Popen([*start, "--address", address], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for _ in range(workers)]
        _wait_for_nodes(address, 1 + workers, env)
        yield address, nodes[0], nodes[1:]
    finally:
        for proc in reversed(nodes):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_sweep_on_a_two_node_ray_cluster_with_a_failing_trial(tiny, tmp_path, monkeypatch):
    root, cfg, init = tiny
    monkeypatch.chdir(tmp_path)
    _pickle_this_module_by_value()
    with ray_cluster(workers=1) as (address, _, _):
        monkeypatch.setenv("RAY_ADDRESS", address)
        monkeypatch.delenv("RAY_AUTH_MODE", raising=False)  # run_sweep finds the token
        cfg = apply_overrides(cfg, {"tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
        exp_file = write_experiment(tmp_path / "cluster.yaml", "cluster", [
            {"train.kind": ["source_only", "supervised"], "seed": [0]},
            {"train.kind": ["active"], "active.strategy": ["ripu_region"],
             "train.device": ["cuda:7"], "seed": [0]}])
        with pytest.raises(RipuError) as info:
            run_sweep(cfg, exp_file, init=init, out_dir=tmp_path / "runs", progress=False,
                      callbacks=[RecordNode()])
        failed = "active-ripu_region-b0.022-devicecuda_7-s0"
        assert f"1 of 3 trials failed after 1 retries: {failed}" in str(info.value)
        out = tmp_path / "runs" / "cluster"
        nodes = {(out / n / "node.txt").read_text() for n in ("source_only-s0", "supervised-s0")}
        assert len(nodes) == 2  # one CPU per node: the two trials ran on different nodes
        assert all((out / n / "results.json").is_file() for n in ("source_only-s0",
                                                                   "supervised-s0"))
        parents, children = children_of(cfg.tracking.uri, "cluster")
        assert parents[0].info.status == "FAILED" and parents[0].data.metrics[
            "sweep/failed"] == 1
        status = {c.data.tags["ripu.trial"]: c.info.status for c in children}
        assert status == {"source_only-s0": "FINISHED", "supervised-s0": "FINISHED",
                          failed: "FAILED"}


def _wait_for_nodes(address: str, count: int, env: dict, timeout: float = 120.0) -> None:
    code = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
            "print(sum(n['Alive'] for n in ray.nodes()))")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run([sys.executable, "-c", code, address], capture_output=True,
                             text=True, timeout=120, env=env)
        if out.stdout.strip() == str(count):
            return
        time.sleep(2)
    raise AssertionError(f"the Ray cluster at {address} did not reach {count} nodes")


@pytest.mark.slow
def test_asha_search_stops_weak_trials_and_finishes_the_best(tiny, tmp_path, monkeypatch):
    root, cfg, init = tiny
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = apply_overrides(cfg, {"tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                                "optim.iters": 12, "optim.poly_iters": 12,
                                "sweep.max_concurrent": 1})  # a fixed order of rung arrivals
    exp_file = tmp_path / "asha.yaml"
    exp_file.write_text(yaml.safe_dump({
        "name": "asha", "base": {"train.kind": "active", "train.eval_every": 2},
        "search": {"num_samples": 4, "metric": "val/miou", "mode": "max", "seed": 0,
                   "scheduler": {"name": "asha", "grace_period": 4, "reduction_factor": 2},
                   "space": {"optim.lr": {"loguniform": [0.0001, 0.1]}}}}))
    results = run_sweep(cfg, exp_file, init=init, out_dir=tmp_path / "runs", progress=False)
    status = {r["trial"]: r["status"] for r in results}
    assert len(status) == 4 and set(status.values()) <= {"finished", "stopped"}
    finished = [r for r in results if r["status"] == "finished"]
    stopped = [r for r in results if r["status"] == "stopped"]
    assert finished and stopped  # ASHA keeps the top 1/2 at each rung: it must stop some
    for r in finished:  # reaching max_t is not a stop: the trial evaluates and writes results
        assert r["iterations"] == 12 and (Path(r["dir"]) / "results.json").is_file()
    for r in stopped:
        assert r["iterations"] < 12 and "val/miou" in r
        assert not (Path(r["dir"]) / "results.json").exists()
    runs = {r.data.tags.get("ripu.trial"): r for r in list_runs(cfg.tracking.uri, "asha")}
    for r in stopped:
        assert runs[r["trial"]].info.status == "KILLED"
        assert runs[r["trial"]].data.tags["ripu.stopped_early"] == "1"
    for r in finished:
        assert runs[r["trial"]].info.status == "FINISHED"

"""Cluster scaling: one sweep of CPU trials on a local Ray cluster of one node, then two.

    python -m benchmarks.cluster [--quick] [--json FILE]

A head node (``ray start --head --num-cpus 1`` on 127.0.0.1, its own temp folder) runs a
sweep of 4 identical short CPU trials (``source_only``, seeds 0-3, 1000 iterations; --quick
60) with ``sweep.cpus_per_trial: 1`` through ``ripu.sweep.run_sweep(ray_address=...)``;
then a second 1-CPU node joins (``ray start --address ...``) and the same sweep runs again
into fresh trial folders. Each node has one CPU, so one node runs the trials one at a time
and two nodes two at a time. Figure: t(1 node) / t(2 nodes), each the whole ``run_sweep``
call (Ray Tune start, the MLflow server, trials). The nodes this module started are
stopped by their process ids (never ``ray stop``, which would stop every Ray on the
machine). Trials are long enough (1000 iterations, about 30 s each on an idle core) to
outweigh the sweep's fixed start-up (about 30 s here): with that, two free cores give about
1.65. Also reported: how much slower each trial trained while two ran at once
(``trial_slowdown_two_nodes``; 1.0 when the machine has a free core for each node).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from benchmarks import bench_config, conditions, main_of, scratch, setup, synthetic_data
from ripu.tracking import free_port

TRIALS = 4


class LocalCluster:
    """Ray nodes on this machine started with ``ray start --block`` (stopped by pid)."""

    def __init__(self, cpus_per_node: int = 1) -> None:
        self.cpus = cpus_per_node
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp = tempfile.mkdtemp(prefix="ripu-rt-", dir="/tmp")
        # Token authentication, as `ray start` clusters use; run_sweep finds the token.
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
        self.env.pop("RAY_ADDRESS", None)
        self.nodes: list[subprocess.Popen] = []

    def _start(self, *args: str) -> None:
        cmd = [str(Path(sys.executable).with_name("ray")), "start", "--block", "--num-cpus",
               str(self.cpus), "--disable-usage-stats", "--temp-dir", self.temp, *args]
        self.nodes.append(subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))

    def add_node(self) -> None:
        """The head first (on 127.0.0.1), then worker nodes; returns when all are up."""
        if not self.nodes:
            self._start("--head", "--port", str(self.port), "--node-ip-address", "127.0.0.1",
                        "--include-dashboard", "false")
        else:
            self._start("--address", self.address, "--node-ip-address", "127.0.0.1")
        from tests.test_sweep import _wait_for_nodes

        _wait_for_nodes(self.address, len(self.nodes), self.env, timeout=240)

    def stop(self) -> None:
        for proc in reversed(self.nodes):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.nodes.clear()
        shutil.rmtree(self.temp, ignore_errors=True)


@contextmanager
def local_cluster(cpus_per_node: int = 1) -> Iterator[LocalCluster]:
    cluster = LocalCluster(cpus_per_node)
    try:
        yield cluster
    finally:
        cluster.stop()


def _sweep(cfg, exp_file: Path, out: Path, address: str) -> tuple[float, list[dict]]:
    from ripu.sweep import run_sweep

    start = time.perf_counter()
    results = run_sweep(cfg, exp_file, out_dir=out, progress=False, ray_address=address)
    return time.perf_counter() - start, results


def run(quick: bool = False) -> dict[str, Any]:
    setup()
    iters = 60 if quick else 1000
    with scratch("cluster") as tmp, local_cluster(1) as cluster:
        tmp = Path(tmp)
        data = synthetic_data(tmp / "data", source=16, target=8, val=4)
        cfg = bench_config(data, tmp, **{
            "train.kind": "source_only", "optim.iters": iters, "optim.poly_iters": iters,
            "train.checkpoint_every": iters, "sweep.cpus_per_trial": 1,
            "sweep.max_concurrent": TRIALS, "sweep.max_failures": 0,
            "tracking.experiment": "cluster"})
        exp_file = tmp / "cluster.yaml"
        exp_file.write_text(yaml.safe_dump({"name": "cluster", "base": {},
                                            "grid": [{"seed": list(range(TRIALS))}]}))
        cwd = Path.cwd()
        os.chdir(tmp)  # MLflow's default artifact folder lands in the scratch folder
        try:
            cluster.add_node()
            t_one, one = _sweep(cfg, exp_file, tmp / "one", cluster.address)
            cluster.add_node()
            t_two, two = _sweep(cfg, exp_file, tmp / "two", cluster.address)
        finally:
            os.chdir(cwd)
    trial_seconds = [r["seconds"] for r in one + two]
    alone = sum(r["seconds"] for r in one) / len(one)
    paired = sum(r["seconds"] for r in two) / len(two)
    return {
        "figures": {"cluster_two_node_speedup": round(t_one / t_two, 3)},
        "ours": "sweep on two 1-CPU Ray nodes",
        "baseline": "the same sweep on one 1-CPU Ray node",
        "measurements": {
            "trials": TRIALS, "iterations": iters, "one_node_seconds": round(t_one, 2),
            "two_node_seconds": round(t_two, 2),
            "trial_train_seconds": [round(s, 2) for s in trial_seconds],
            # > 1: two trials at once ran slower each (cores shared with other processes)
            "trial_slowdown_two_nodes": round(paired / alone, 3),
            "statuses": sorted({r["status"] for r in one + two})},
        "conditions": conditions(),
    }


if __name__ == "__main__":
    main_of(run, __doc__)

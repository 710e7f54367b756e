"""`make ui` serves the MLflow store on 127.0.0.1: a sweep's parent and child runs come back
through the REST API, as the dashboard reads them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from ripu.tracking import Tracker, free_port

pytestmark = pytest.mark.integration  # real Ray clusters, DVC, servers or subprocesses

REPO = Path(__file__).resolve().parents[1]


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


@pytest.fixture
def sweep_store(tmp_path) -> tuple[str, str, list[str]]:
    """A store holding a sweep as ripu logs one: a parent and two tagged child runs."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = Tracker(uri, "synthetic", run_name="sweep", tags={"ripu.sweep": "1"})
    children = []
    for seed in (0, 1):
        child = Tracker(uri, "synthetic", run_name=f"active-ripu_region-b0.022-s{seed}",
                        parent_run_id=parent.run_id,
                        tags={"ripu.kind": "active", "ripu.strategy": "ripu_region",
                              "ripu.seed": str(seed)})
        child.log_metrics({"final/miou": 0.4 + seed / 100}, step=10)
        child.finish()
        children.append(child.run_id)
    parent.finish()
    return uri, parent.run_id, children


def test_make_ui_serves_the_sweep_runs_on_loopback(sweep_store, tmp_path):
    uri, parent_id, children = sweep_store
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "UI_PORT": str(port)}
    proc = subprocess.Popen(["make", "-s", "ui"], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "ui.log", "wb"))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                assert proc.poll() is None, (tmp_path / "ui.log").read_text()
                assert time.monotonic() < deadline, "the MLflow UI did not come up"
                time.sleep(0.5)
        with urllib.request.urlopen(
                base + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=synthetic",
                timeout=10) as resp:
            exp = json.load(resp)["experiment"]
        runs = post(base + "/api/2.0/mlflow/runs/search",
                    {"experiment_ids": [exp["experiment_id"]], "max_results": 100})["runs"]
        by_id = {r["info"]["run_id"]: r for r in runs}
        assert set(by_id) == {parent_id, *children}
        for run_id in children:
            tags = {t["key"]: t["value"] for t in by_id[run_id]["data"]["tags"]}
            assert tags["mlflow.parentRunId"] == parent_id and tags["ripu.kind"] == "active"
            metrics = {m["key"]: m["value"] for m in by_id[run_id]["data"]["metrics"]}
            assert metrics["final/miou"] == pytest.approx(0.4 + int(tags["ripu.seed"]) / 100)
        # loopback only: the server is not reachable on another local address
        listening = Path("/proc/net/tcp").read_text()
        assert f"0100007F:{port:04X}" in listening and f"00000000:{port:04X}" not in listening
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

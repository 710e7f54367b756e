"""A changed start: the warm-up rebuilt with another setting, then `dvc repro`. Real DVC, Ray
and MLflow.

The trials that start from the warm-up run again, in new MLflow runs; the one that starts
from ImageNet weights (the small network: no weights file) is not touched; the report shows
each trial's start; resuming a trial from the rebuilt warm-up is refused in one line.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ripu.starts import file_sha256
from tests.test_interrupt import _env, _repo
from tests.test_pipeline import _run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FROM_WARMUP, FROM_IMAGENET = "active-ripu_region-b0.022-s0", "source_only-s0"
GRID = [{"init": "imagenet", "train.kind": ["source_only"], "seed": [0]},
        {"train.kind": ["active"], "active.strategy": ["ripu_region"], "seed": [0]}]


def _starts(repo: Path) -> dict[str, tuple[str, str, str]]:
    """reports/results.csv: trial -> (start, start_sha256, run_id)."""
    with (repo / "reports" / "results.csv").open() as f:
        return {r["trial"]: (r["start"], r["start_sha256"], r["run_id"]) for r in csv.DictReader(f)}


def test_start_changed_reruns_exactly_the_trials_that_start_from_it(tmp_path):
    env = _env()
    repo = _repo(tmp_path / "repo", env, GRID, init="source_only")
    trials = repo / "runs" / "synthetic"
    warmup = repo / "models" / "synthetic" / "source_only.pt"
    _run(["dvc", "repro"], repo, env)
    first = _starts(repo)
    old = file_sha256(warmup)
    assert first[FROM_WARMUP][:2] == ("source_only", old)
    assert first[FROM_IMAGENET][:2] == ("imagenet", "")
    untouched = {p: (p.read_bytes(), p.stat().st_mtime_ns)
                 for p in (trials / FROM_IMAGENET).rglob("*") if p.is_file()}
    old_warmup = warmup.read_bytes()

    # The warm-up rebuilt with another learning rate: a new file, another hash.
    exp_file = repo / "experiments" / "tiny.yaml"
    experiment = yaml.safe_load(exp_file.read_text())
    experiment["warmups"]["source_only"]["optim.lr"] = 0.05
    exp_file.write_text(yaml.safe_dump(experiment))
    out, _ = _run(["dvc", "repro"], repo, env)
    assert "Running stage 'warmup'" in out
    assert "sweep synthetic: 2 trials, 1 finished earlier, 1 to rerun from a changed start" in out
    new = file_sha256(warmup)
    assert new != old
    results = json.loads((trials / FROM_WARMUP / "results.json").read_text())
    assert results["start"] == "source_only" and results["start_sha256"] == new
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in untouched} == untouched
    second = _starts(repo)
    assert second[FROM_WARMUP][:2] == ("source_only", new)
    assert second[FROM_WARMUP][2] != first[FROM_WARMUP][2]  # a new run for the new start
    assert second[FROM_IMAGENET] == first[FROM_IMAGENET]

    # Resuming it from a warm-up that changed underneath it: refused in one line, nothing
    # written. (The folder's config.yaml is the trial's resolved config.)
    warmup.write_bytes(old_warmup)
    folder = trials / FROM_WARMUP
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    proc = subprocess.run(
        [sys.executable, "-m", "ripu", "train", "--params", str(folder / "config.yaml"),
         "--out", str(folder), "--init", str(warmup), "--resume", "-q"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"ripu: error: resume: {folder} started from weights with sha256 "
                           f"{new[:12]}, its start is now source_only (sha256 {old[:12]})"), line
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == before

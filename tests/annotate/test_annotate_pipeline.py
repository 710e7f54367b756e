"""The documented command, ``dvc repro experiments/people/dvc.yaml``, on tiny synthetic data
against a real Label Studio server: it waits (exit 75) after each round's push, goes on
once the simulated annotator has answered, and finishes; the token is nowhere on disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from ripu.annotate.client import Studio
from ripu.annotate.report import round_metrics
from ripu.annotate.round_labels import load_round_labels
from ripu.engine.build import build_datasets
from ripu.tracking import list_runs
from tests.annotate.conftest import annotate
from tests.test_pipeline import _tiny_repo

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PIPELINE = "experiments/people/dvc.yaml"
PARAMS = "experiments/people/params.yaml"
TRIAL = "active-ripu_region-b0.05-s0"


def tiny_repo(repo: Path, url: str) -> None:
    """The tiny repository of tests/test_pipeline.py with the people pipeline shrunk."""
    _tiny_repo(repo)
    params = yaml.safe_load((repo / PARAMS).read_text())
    assert params["base"] == "../../params.yaml"  # the tiny params.yaml's protocol
    params["active"] = {"rounds": 2, "round_at": [0.0, 0.5]}
    params["annotate"]["url"] = url
    (repo / PARAMS).write_text(yaml.safe_dump(params, sort_keys=False))
    exp = yaml.safe_load((repo / "experiments/people.yaml").read_text())
    exp["warmups"]["source_only"].update({"optim.iters": 3, "optim.poly_iters": 3,
                                          "train.threads": 1})
    exp["grid"][0]["active.budget"] = [0.05]
    (repo / "experiments/people.yaml").write_text(yaml.safe_dump(exp, sort_keys=False))


def dvc_repro(repo: Path, env: dict) -> tuple[int, str]:
    proc = subprocess.run([str(Path(sys.executable).parent / "dvc"), "repro", PIPELINE],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    print(f"$ dvc repro {PIPELINE}  (exit {proc.returncode})\n{proc.stdout}{proc.stderr}")
    return proc.returncode, proc.stdout + proc.stderr


def test_annotate_people_pipeline_waits_then_goes_on_with_dvc_repro(label_studio, tmp_path):
    repo = tmp_path / "repo"
    tiny_repo(repo, label_studio.url)
    venv_bin = str(Path(sys.executable).parent)
    env = {**label_studio.env(), "PATH": f"{venv_bin}:{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1"}
    env.pop("RAY_ADDRESS", None)
    for cmd in (["git", "init", "-q"], [f"{venv_bin}/dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True)

    from pipelines.common import load_params

    masks = repo / "runs" / "people" / TRIAL / "masks"
    for r in (0, 1):
        code, out = dvc_repro(repo, env)
        if r == 0:  # the data stage has written the data: the trainer's ground truth
            target = build_datasets(load_params(repo, PARAMS), only=["target"])["target"]
            names = target.class_names
            truth = {target[i]["id"]: target[i]["label"].numpy().astype(np.uint8)
                     for i in range(len(target))}
        assert code != 0 and "exited with 75" in out, out[-3000:]
        assert f"waiting for people: {len(truth)} of {len(truth)} tasks of round {r} in " \
               f"Label Studio project 'ripu/{TRIAL}' at {label_studio.url}" in out, out[-3000:]
        if r == 1:
            assert "round 0 labels: " in out and (masks / "labels_0.npz").is_file()
        (run,) = list_runs(f"sqlite:///{repo / 'mlflow.db'}", "people")
        assert run.info.status == "SCHEDULED"  # waiting, not failed
        project = next(p["id"] for p in Studio(label_studio.url, label_studio.token)
                       .pages("/api/projects") if p["title"] == f"ripu/{TRIAL}")
        annotate(label_studio, project, r, truth, names, tmp_path)
    code, out = dvc_repro(repo, env)
    assert code == 0, out[-3000:]
    assert "round 1 labels: " in out and f"{TRIAL}: finished, val mIoU" in out
    (run,) = list_runs(f"sqlite:///{repo / 'mlflow.db'}", "people")
    assert run.info.status == "FINISHED"
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    for key in ("pixels_labelled", "regions_unlabelled", "skipped", "deleted", "empty",
                "pixels_outside"):  # each round's pull counts, one value per round
        history = client.get_metric_history(run.info.run_id, f"people/{key}")
        headers = [load_round_labels(masks / f"labels_{r}.npz")[1] for r in (0, 1)]
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == \
            [(r, round_metrics(h)[f"people/{key}"]) for r, h in enumerate(headers)]
    assert headers[0]["pixels_labelled"] > 0
    assert "is empty" not in out  # DVC's warning about an empty ripu/__init__.py
    assert "annotate.url" in run.data.params and \
        all(label_studio.token not in str(v) for v in run.data.params.values())
    code, out = dvc_repro(repo, env)
    assert code == 0 and "Running stage" not in out, out[-2000:]
    lock = yaml.safe_load((repo / "experiments/people/dvc.lock").read_text())
    assert [o["path"] for o in lock["stages"]["people_annotate"]["outs"]] == ["runs/people"]
    for path in repo.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            assert label_studio.token.encode() not in path.read_bytes(), path

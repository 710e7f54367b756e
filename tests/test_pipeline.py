"""The DVC pipeline: stage modules on tiny data, dvc.yaml's declarations, `dvc repro` end to end."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
import torch
import yaml

from pipelines import common
from pipelines import data as data_stage
from pipelines import warmup as warmup_stage
from ripu.config import apply_overrides, load_config
from ripu.engine.checkpoint import load_weights
from ripu.environment import LOCK, environment_tags
from ripu.errors import RipuError
from ripu.sweep.parent_run import FREEZE_ARTIFACT
from ripu.tracking import list_runs, metric_history, read_artifact_text
from tests.test_sweep import make_tiny_data, tiny_config

pytestmark = pytest.mark.integration  # real Ray clusters, DVC, servers or subprocesses

REPO = Path(__file__).resolve().parents[1]
STAGES = ("data", "warmup", "sweep", "report")


# ----------------------------------------------------------------------------- common


def test_repo_root_and_params_resolution(tmp_path, monkeypatch):
    assert common.repo_root(REPO / "ripu" / "engine") == REPO
    with pytest.raises(RipuError, match="no params.yaml with a dvc.yaml"):
        common.repo_root(tmp_path)
    monkeypatch.delenv("RIPU_GIT_REVISION", raising=False)
    raw, cfg = load_config(REPO / "params.yaml"), common.load_params(REPO)
    assert cfg.data.source_root == str(REPO / raw.data.source_root)
    assert cfg.data.target_root == str(REPO / raw.data.target_root)
    assert cfg.synth.out == str(REPO / raw.synth.out)
    assert cfg.sweep.experiment == str(REPO / raw.sweep.experiment)
    assert cfg.tracking.uri == f"sqlite:///{REPO / 'mlflow.db'}"
    assert (cfg.optim, cfg.active, cfg.loss, cfg.seed) == (raw.optim, raw.active, raw.loss,
                                                            raw.seed)
    assert os.environ["RIPU_GIT_REVISION"]


def test_main_turns_ripu_errors_into_exit_2(monkeypatch, capsys):
    monkeypatch.chdir(REPO / "ripu")

    def stage(root, cfg):
        assert Path.cwd() == root == REPO and cfg.synth.out == str(REPO / "data/synthetic")
        raise RipuError("data.source_root: missing, expected a folder")

    with pytest.raises(SystemExit) as info:
        common.main(stage, [])
    assert info.value.code == 2
    assert capsys.readouterr().err == ("ripu: error: data.source_root: missing, expected a "
                                       "folder\n")


# ----------------------------------------------------------------------------- stages


def test_data_stage_generates_or_indexes(tmp_path):
    cfg = load_config(REPO / "params.yaml")
    out = tmp_path / "synthetic"
    tiny = apply_overrides(cfg, {
        "synth.out": str(out), "synth.source_images": 3, "synth.target_train": 2,
        "synth.target_val": 2, "synth.height": 32, "synth.width": 64,
        "data.source_root": str(out / "source"), "data.target_root": str(out / "target")})
    data_stage.run(tmp_path, tiny)
    index = json.loads((out / "index.json").read_text())
    assert index["counts"] == {"source": 3, "target_train": 2, "target_val": 2}
    assert (out / "samples.png").is_file()
    # Real layouts elsewhere: the datasets the experiment reads, checked and indexed into
    # synth.out.
    real = apply_overrides(tiny, {"synth.out": str(tmp_path / "index"),
                                  "sweep.experiment": str(REPO / "experiments/synthetic.yaml")})
    data_stage.run(tmp_path, real)
    index = json.loads((tmp_path / "index" / "index.json").read_text())
    assert index["counts"] == {"source": 3, "target": 2, "val": 2}
    assert index["source"]["layout"] == "gta5" and index["num_classes"] == 19
    broken = apply_overrides(real, {"data.target_root": str(tmp_path / "none")})
    with pytest.raises(RipuError):
        data_stage.run(tmp_path, broken)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    make_tiny_data(root / "data")
    return root


def test_warmup_stage_builds_the_declared_warmups(tiny_root, tmp_path, monkeypatch):
    """Each warm-up a row names is trained once from the experiment's settings plus its
    overrides and written as models/<experiment>/<name>.pt; an unused one is not built."""
    monkeypatch.chdir(tmp_path)
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "tiny", "base": {"optim.batch_source": 1},
        "warmups": {"stage1": {"optim.lr": 0.01, "optim.iters": 4, "optim.poly_iters": 8},
                    "unused": {"optim.iters": 2}},
        "init": "stage1",
        "grid": [{"train.kind": ["source_free", "lse"], "seed": [0]}]}))
    cfg = tiny_config(tiny_root / "data", tmp_path, **{
        "sweep.experiment": str(exp), "tracking.experiment": "tiny"})
    warmup_stage.run(tmp_path, cfg)
    assert sorted(p.name for p in (tmp_path / "models" / "tiny").iterdir()) == ["stage1.pt"]
    ckpt = torch.load(tmp_path / "models/tiny/stage1.pt", weights_only=True)
    assert ckpt["iterations"] == 4
    assert (ckpt["arch"], ckpt["backbone"], ckpt["num_classes"]) == ("small", None, 19)
    metrics = json.loads((tmp_path / "metrics/tiny/warmups.json").read_text())
    assert list(metrics) == ["stage1"] and metrics["stage1"]["iterations"] == 4
    assert 0.0 <= metrics["stage1"]["miou"] <= 1.0
    assert not (tmp_path / common.WARMUP_TRIALS / "tiny" / "stage1").exists()

    from ripu.engine.build import build_model_from

    fresh = build_model_from(cfg, torch.device("cpu"))
    load_weights(fresh, tmp_path / "models/tiny/stage1.pt")  # loadable as a trial's init
    initial = build_model_from(cfg, torch.device("cpu")).state_dict()
    assert not all(torch.equal(v, initial[k]) for k, v in ckpt["model"].items())  # trained

    (run,) = list_runs(cfg.tracking.uri, "warmup")
    assert run.info.status == "FINISHED" and run.data.tags["ripu.kind"] == "warmup"
    assert (run.data.tags["ripu.trial"], run.data.tags["ripu.experiment"]) == ("stage1", "tiny")
    assert run.data.metrics["final/miou"] == pytest.approx(metrics["stage1"]["miou"])
    steps = [s for s, _ in metric_history(cfg.tracking.uri, run.info.run_id, "train/loss")]
    assert steps == [2, 4]  # log_every 2
    # The experiment's base and the warm-up's overrides, on top of the params.
    p = run.data.params
    assert (p["train.kind"], p["optim.lr"], p["optim.iters"], p["optim.poly_iters"],
            p["optim.batch_source"]) == ("source_only", "0.01", "4", "8", "1")


def test_warmup_stage_refuses_an_experiment_of_another_name(tiny_root, tmp_path):
    cfg = tiny_config(tiny_root / "data", tmp_path, **{
        "sweep.experiment": str(REPO / "experiments/synthetic.yaml"),
        "tracking.experiment": "other"})
    with pytest.raises(RipuError, match="name 'synthetic' differs from tracking.experiment"):
        warmup_stage.run(tmp_path, cfg)
    assert not (tmp_path / "models").exists()


# ----------------------------------------------------------------------------- dvc.yaml


def _resolve(text: str, params: dict) -> str:
    def value(match: re.Match) -> str:
        node = params
        for part in match.group(1).split("."):
            node = node[part]
        return str(node)
    return re.sub(r"\$\{([^}]+)\}", value, text)


def _has_param(params: dict, key: str) -> bool:
    node = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_dvc_yaml_declares_stages_deps_params_outs():
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert list(spec["stages"]) == list(STAGES)
    for name, stage in spec["stages"].items():
        assert stage["cmd"] == f"python -m pipelines.{name}"
        deps = [_resolve(d, params) for d in stage["deps"]]
        assert f"pipelines/{name}.py" in deps and "pipelines/common.py" in deps
        for dep in deps:
            assert (REPO / dep).exists() or dep in _all_outs(spec, params), dep
        for key in stage["params"]:
            assert _has_param(params, key), f"{name}: params.yaml has no {key}"
    sweep = spec["stages"]["sweep"]
    (out,) = sweep["outs"]
    assert out == {"runs/${tracking.experiment}": {"persist": True}}
    assert {"models/${tracking.experiment}", "${sweep.experiment}"} <= set(sweep["deps"])
    assert spec["stages"]["warmup"]["outs"] == ["models/${tracking.experiment}"]
    assert "${sweep.experiment}" in spec["stages"]["warmup"]["deps"]
    # Each stage reads only its own sections: the data stage does not depend on training.
    assert set(spec["stages"]["data"]["params"]) == {"synth", "data.source_root",
                                                     "data.target_root"}
    assert "optim.iters" not in spec["stages"]["warmup"]["params"]
    assert "optim" not in spec["stages"]["warmup"]["params"]
    assert spec["metrics"] == ["reports/metrics.json"]
    (plot,) = spec["plots"]
    curve = plot["reports/budget_curve.csv"]
    assert (curve["x"], curve["y"]) == ("labelled_percent", "miou")
    assert "checkpoints/" in (REPO / ".dvcignore").read_text().splitlines()


def _all_outs(spec: dict, params: dict) -> set[str]:
    outs = set()
    for stage in spec["stages"].values():
        for out in stage.get("outs", []) + stage.get("metrics", []):
            outs.add(_resolve(next(iter(out)) if isinstance(out, dict) else out, params))
    return outs


# ----------------------------------------------------------------------------- dvc repro


def _tiny_repo(dest: Path) -> Path:
    """A copy of the repository with tiny params and a two-trial experiment."""
    for item in ("ripu", "pipelines", "experiments", "requirements"):
        shutil.copytree(REPO / item, dest / item,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for item in ("dvc.yaml", ".dvcignore", ".gitignore", "params.yaml"):
        shutil.copy2(REPO / item, dest / item)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["synth"].update(source_images=8, target_train=8, target_val=4, height=32, width=64)
    params["data"].update(source_size=[64, 32], target_size=[64, 32], eval_size=[64, 32])
    params["optim"].update(iters=6, poly_iters=6, batch_source=2, batch_target=2)
    params["train"].update(log_every=2, checkpoint_every=4, threads=1)
    params["active"].update(batch_size=4)
    params["sweep"].update(experiment="experiments/tiny.yaml", max_concurrent=2, max_failures=0)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dest / "experiments" / "tiny.yaml").write_text(yaml.safe_dump({
        "name": params["tracking"]["experiment"],
        "warmups": {"source_only": {"optim.lr": 0.02, "optim.iters": 4, "optim.poly_iters": 4}},
        "init": "source_only",
        "grid": [{"train.kind": ["source_only"], "seed": [0]},
                 {"train.kind": ["active"], "active.strategy": ["ripu_region"], "seed": [0]}]}))
    return dest


def _run(cmd: list[str], cwd: Path, env: dict) -> tuple[str, float]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-4000:]}"
    return out, seconds


@pytest.mark.slow
def test_dvc_repro_end_to_end(tmp_path):
    repo = _tiny_repo(tmp_path / "repo")
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    env.pop("RAY_ADDRESS", None)
    dvc = [str(Path(venv_bin) / "dvc")]
    _run(["git", "init", "-q"], repo, env)
    _run([*dvc, "init", "-q"], repo, env)
    _run([*dvc, "config", "core.analytics", "false"], repo, env)

    out, first = _run([*dvc, "repro"], repo, env)
    print(f"\ntiny dvc repro: {first:.1f} s")
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out
    assert json.loads((repo / "data/synthetic/index.json").read_text())["counts"]["source"] == 8
    assert (repo / "models/synthetic/source_only.pt").is_file()
    warm = json.loads((repo / "metrics/synthetic/warmups.json").read_text())
    assert warm["source_only"]["iterations"] == 4
    trials = repo / "runs" / "synthetic"
    active = trials / "active-ripu_region-b0.022-s0"
    assert sorted(p.name for p in (active / "masks").glob("*.npz")) == [
        f"round_{i}.npz" for i in range(5)]
    for trial in ("source_only-s0", "active-ripu_region-b0.022-s0"):
        assert json.loads((trials / trial / "results.json").read_text())["iterations"] == 6
    for name in ("results.csv", "summary.md", "budget_curve.png", "budget_curve.csv",
                 "per_class.png", "metrics.json"):
        assert (repo / "reports" / name).is_file(), name
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    (out_entry,) = lock["stages"]["sweep"]["outs"]
    assert out_entry["path"] == "runs/synthetic"
    # The checkpoints are not part of the versioned output.
    listing, _ = _run([*dvc, "ls", "--dvc-only", "-R", "runs/synthetic"], repo, env)
    assert "masks/round_0.npz" in listing and "checkpoints" not in listing

    uri = f"sqlite:///{repo / 'mlflow.db'}"
    (warm,) = list_runs(uri, "warmup")
    assert warm.data.tags["ripu.kind"] == "warmup" and warm.info.status == "FINISHED"
    runs = list_runs(uri, "synthetic")
    parents = [r for r in runs if r.data.tags.get("ripu.sweep") == "1"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    # Every run names its environment; the sweep keeps the whole pip freeze.
    environment = environment_tags()
    assert environment["ripu.lock_sha256"] == hashlib.sha256(LOCK.read_bytes()).hexdigest()
    for run in parents + children:
        assert environment.items() <= run.data.tags.items()
    freeze = read_artifact_text(uri, parents[0].info.run_id, FREEZE_ARTIFACT)
    assert f"torch=={metadata.version('torch')}" in freeze.splitlines()
    with open(repo / "reports" / "results.csv") as f:
        assert {r["lock_sha256"] for r in csv.DictReader(f)} == {
            environment["ripu.lock_sha256"]}

    out, second = _run([*dvc, "repro"], repo, env)
    print(f"second dvc repro: {second:.1f} s")
    assert "Data and pipelines are up to date." in out and "Running stage" not in out
    assert second < 60

    # An experiment that changes a sweep setting re-runs only the sweep, whose trials are
    # all finished already.
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "tiny pipeline"], repo, env)
    out, third = _run([*dvc, "exp", "run", "-S", "sweep.max_concurrent=1"], repo, env)
    print(f"dvc exp run -S sweep.max_concurrent=1: {third:.1f} s")
    assert "Running stage 'sweep'" in out
    for stage in ("data", "warmup"):
        assert f"Running stage '{stage}'" not in out
    runs = list_runs(uri, "synthetic")
    assert len([r for r in runs if "mlflow.parentRunId" in r.data.tags]) == 2

"""Security (issue "Reliability", part 4): checkpoints never run code, servers bind to
127.0.0.1 unless told otherwise, no shell strings, outputs stay where they are asked to go.

The source checks parse the code (``ast``) of ripu/, pipelines/ and benchmarks/, so a
comment or a docstring never satisfies them, and each asserts that it found the calls it
checks. The behaviour checks feed a checkpoint whose unpickling would create a folder to
every loader, and run commands from an empty project folder.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ripu.errors import RipuError
from tests.conftest import REPO, tiny_config

SOURCES = sorted(p for folder in ("ripu", "pipelines", "benchmarks")
                 for p in (REPO / folder).rglob("*.py"))
LOCAL = "127.0.0.1"


def calls(tree: ast.AST):
    """Every call in ``tree`` with its dotted name ("torch.load", "subprocess.run", ...)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts, f = [], node.func
            while isinstance(f, ast.Attribute):
                parts.append(f.attr)
                f = f.value
            if isinstance(f, ast.Name):
                parts.append(f.id)
            yield ".".join(reversed(parts)), node


def all_calls() -> list[tuple[str, str, ast.Call]]:
    out = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        for parent in ast.walk(tree):  # parent links, for `connects_to_a_cluster`
            for child in ast.iter_child_nodes(parent):
                child.parent = parent  # type: ignore[attr-defined]
        out += [(str(path.relative_to(REPO)), name, node) for name, node in calls(tree)]
    return out


def connects_to_a_cluster(node: ast.Call) -> bool:
    """True for a ray.init that joins a running cluster: an address other than "local", or
    a call inside the body of an ``if`` on an address (``if address: ray.init(...)``)."""
    address = keyword(node, "address")
    if address not in ("missing", "local", None):
        return True
    child, parent = node, getattr(node, "parent", None)
    while parent is not None:
        if isinstance(parent, ast.If) and child in parent.body and \
                "address" in ast.unparse(parent.test).lower():
            return True
        child, parent = parent, getattr(parent, "parent", None)
    return False


def keyword(node: ast.Call, name: str):
    """The constant value of keyword ``name`` (``missing`` when absent, ``...`` when not a
    constant)."""
    for kw in node.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else ...
    return "missing"


CALLS = all_calls()


# ----------------------------------------------------------------------------- source


def test_every_torch_load_passes_weights_only_true():
    loads = [(f, n.lineno, keyword(n, "weights_only")) for f, name, n in CALLS
             if name == "torch.load"]
    # ripu.engine.checkpoint.read_checkpoint (trainer, LSE caches, warm-up, sweep), models
    assert len(loads) >= 2
    assert [x for x in loads if x[2] is not True] == []


@pytest.mark.integration
def test_ruff_security_rules_find_nothing():
    """ruff's flake8-bandit rules (``S`` in pyproject.toml: shell strings, os.system and
    exec*, eval/exec, pickle, unsafe YAML, binding to every interface, ...) pass on the
    package, the stage modules and the benchmarks."""
    ruff = Path(sys.executable).with_name("ruff")
    done = subprocess.run([str(ruff), "check", "--output-format", "concise", "ripu",
                           "pipelines", "benchmarks"], cwd=REPO, capture_output=True,
                          text=True, check=False)
    assert re.findall(r".* S\d{3} .*", done.stdout) == []


@pytest.mark.integration
def test_ruff_security_rules_are_enforced_and_catch_a_shell_string(tmp_path):
    """The lint config selects S, and the rules flag what they are trusted to flag."""
    assert '"S"' in (REPO / "pyproject.toml").read_text().split("[tool.ruff.lint]")[1]
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nimport subprocess\n\nos.system('ls')\n"
                   "subprocess.run('ls', shell=True)\neval('1')\n")
    ruff = Path(sys.executable).with_name("ruff")
    done = subprocess.run([str(ruff), "check", "--isolated", "--select", "S",
                           "--output-format", "concise", str(bad)],
                          capture_output=True, text=True, check=False)
    assert {"S605", "S602", "S307"} <= set(re.findall(r"S\d{3}", done.stdout)), done.stdout


def test_arrays_are_never_unpickled():
    loads = [(f, n.lineno, keyword(n, "allow_pickle")) for f, name, n in CALLS
             if name == "np.load"]
    assert loads and [x for x in loads if x[2] not in (False, "missing")] == []


def test_ray_starts_no_public_dashboard():
    """Every ray.init that starts a local cluster disables the dashboard or binds it to
    127.0.0.1; no dashboard_host anywhere is another address."""
    inits = [(f, n) for f, name, n in CALLS if name == "ray.init"]
    starts = [(f, n) for f, n in inits if not connects_to_a_cluster(n)]
    assert any(f == "ripu/ray_cluster.py" for f, _ in starts)
    for f, n in inits:
        assert keyword(n, "dashboard_host") in ("missing", LOCAL), (f, n.lineno)
    for f, n in starts:
        assert keyword(n, "include_dashboard") is False or \
            keyword(n, "dashboard_host") == LOCAL, (f, n.lineno)


def test_no_wildcard_address_in_code_or_build_files():
    for path in [*SOURCES, REPO / "Makefile", REPO / "dvc.yaml"]:
        assert "0.0.0.0" not in path.read_text(), path


def test_make_ui_binds_to_localhost():
    lines = (REPO / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ui:"))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line)
    mlflow = [line for line in recipe if "mlflow " in line]
    assert mlflow and all(f"--host {LOCAL}" in line for line in mlflow)


def test_tracking_server_defaults_to_localhost():
    from ripu.tracking import serve

    assert inspect.signature(serve).parameters["host"].default == LOCAL


@pytest.mark.integration
@pytest.mark.slow
def test_tracking_server_listens_on_localhost_only(tmp_path):
    """The running server's listening socket (from /proc/net/tcp) is 127.0.0.1:port."""
    from ripu.tracking import serve

    with serve(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts") as url:
        port = int(url.rsplit(":", 1)[1])
        listening = []
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                listening.append(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
        assert url == f"http://{LOCAL}:{port}" and listening and set(listening) == {LOCAL}


# ----------------------------------------------------------------------------- checkpoints


class MakeFolder:
    """Unpickling this calls ``os.mkdir(path)``: the marker of code run from a file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def hostile(path: Path, marker: Path, **extra) -> Path:
    """A checkpoint-shaped file whose unpickling would create ``marker``."""
    from ripu.models import build_model

    model = build_model("small", 19)
    torch.save({"model": model.state_dict(), "hook": MakeFolder(marker), **extra}, path)
    return path


def test_weights_only_unpickling_is_real(tmp_path):
    """The control: the hostile file does run code when loaded without weights_only."""
    path = hostile(tmp_path / "evil.pt", tmp_path / "ran")
    torch.load(path, weights_only=False)
    assert (tmp_path / "ran").is_dir()


def test_no_loader_runs_code_from_a_checkpoint(tiny_data, tmp_path):
    from ripu.engine.checkpoint import load_weights
    from ripu.engine.trainer import run_trial
    from ripu.engine.trial_dir import TrialDir
    from ripu.models import build_model
    from ripu.models.common import load_pretrained
    from ripu.selftrain.train import load_round

    marker = tmp_path / "ran"
    evil = hostile(tmp_path / "evil.pt", marker)
    model = build_model("small", 19)
    for load in (load_weights, load_pretrained):
        with pytest.raises(RipuError, match="evil.pt"):
            load(model, evil)
    with pytest.raises(RipuError, match="evil.pt"):
        load_round(evil)

    cfg = tiny_config(tiny_data, tmp_path, **{"optim.iters": 2, "optim.poly_iters": 2,
                                              "active.round_at": [0.0], "active.rounds": 1})
    trial = tmp_path / "trial"
    (trial / "checkpoints").mkdir(parents=True)
    shutil.copy(evil, trial / "checkpoints" / "last.pt")
    assert TrialDir(trial).can_resume(cfg, None) is False
    with pytest.raises(RipuError, match="unreadable checkpoint"):
        run_trial(cfg, trial, resume=True, progress=False, callbacks=[])
    assert not marker.exists()


# ----------------------------------------------------------------------------- output paths


def new_files(root: Path, before: set[Path]) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} - before


def test_commands_write_only_inside_the_project(tiny_data, tmp_path, monkeypatch, capfd):
    """`ripu data synth`, `select` and `export` with relative paths, run from a project
    folder: every file they write lies inside it; nothing appears beside it."""
    from ripu.cli import main
    from ripu.config import dump_yaml
    from ripu.engine.trainer import run_trial

    outside = tmp_path / "outside"
    cfg = tiny_config(tiny_data, outside, **{"optim.iters": 2, "optim.poly_iters": 2,
                                             "active.round_at": [0.0], "active.rounds": 1})
    run_trial(cfg, outside / "trial", progress=False, callbacks=[])
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(dump_yaml(cfg))
    shutil.copy(outside / "trial" / "checkpoints" / "last.pt", project / "model.pt")
    everywhere = {p for p in tmp_path.rglob("*") if p.is_file()}
    data_files = {p for p in tiny_data.rglob("*") if p.is_file()}

    monkeypatch.chdir(project)
    for argv in (["data", "synth", "-q", "-S", "synth.source_images=1", "-S",
                  "synth.target_train=1", "-S", "synth.target_val=1", "-S", "synth.height=32",
                  "-S", "synth.width=64"],
                 ["select", "-q", "--checkpoint", "model.pt", "--masks", "masks"],
                 ["export", "-q", "masks/round_0.npz", "--out", "export"]):
        assert main(argv) == 0, capfd.readouterr().err
    written = new_files(tmp_path, everywhere)
    assert written and all(project in p.parents for p in written)
    assert {p.relative_to(project).parts[0] for p in written} == {"data", "masks", "export"}
    assert new_files(tiny_data, data_files) <= {tiny_data / "source" / ".class_lists.json"}


@pytest.mark.slow
def test_train_with_default_store_writes_only_inside_the_project(tiny_data, tmp_path,
                                                                 monkeypatch):
    """`ripu train --out runs/t` with the default tracking URI (sqlite:///mlflow.db): the
    trial folder, the store and MLflow's artifacts all land in the project folder."""
    from ripu.cli import main
    from ripu.config import dump_yaml

    cfg = tiny_config(tiny_data, tmp_path, **{"optim.iters": 2, "optim.poly_iters": 2,
                                              "active.round_at": [0.0], "active.rounds": 1,
                                              "tracking.uri": "sqlite:///mlflow.db"})
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(dump_yaml(cfg))
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    monkeypatch.chdir(project)
    assert main(["train", "-q", "--out", "runs/t"]) == 0
    written = new_files(tmp_path, before)
    assert all(project in p.parents for p in written)
    tops = {p.relative_to(project).parts[0] for p in written}
    assert {"runs", "mlflow.db"} <= tops <= {"runs", "mlflow.db", "mlruns", "mlartifacts"}

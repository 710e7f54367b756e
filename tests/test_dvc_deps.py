"""Every DVC stage declares the code it runs: each module in the import closure of a stage's
``python -m pipelines.<stage>`` lies in one of its ``deps`` (the file, or a folder above it),
so editing any of them makes ``dvc repro`` run the stage again. Covers the root dvc.yaml and
every paper pipeline (experiments/<name>/dvc.yaml, whose paths are relative to its wdir)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.test_imports import REPO, import_graph, lazy_edges, module_files

PIPELINES = sorted([REPO / "dvc.yaml", *(REPO / "experiments").glob("*/dvc.yaml")])


def code_graph(root: Path) -> dict[str, set[str]]:
    """Imports plus registry locations (modules a registry imports when looked up)."""
    edges, _ = import_graph(root)
    lazy = lazy_edges(root)
    return {name: edges[name] | lazy.get(name, set()) for name in edges}


def closure(edges: dict[str, set[str]], start: str) -> set[str]:
    """``start`` and every module it imports, directly or not."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += edges.get(name, ())
    return seen


def undeclared(stage: dict, base: Path, files: dict[str, Path],
               edges: dict[str, set[str]]) -> list[str]:
    """The files of the stage's import closure that none of its deps covers."""
    match = re.search(r"python -m (pipelines\.\w+)", stage["cmd"])
    assert match, stage["cmd"]
    deps = [(base / d).resolve() for d in stage.get("deps", []) if "${" not in str(d)]
    missing = []
    for module in sorted(closure(edges, match.group(1))):
        path = files[module].resolve()
        if not any(path == d or d in path.parents for d in deps):
            missing.append(str(path.relative_to(base)))
    return missing


def stages():
    for pipeline in PIPELINES:
        for name, stage in yaml.safe_load(pipeline.read_text())["stages"].items():
            base = (pipeline.parent / stage.get("wdir", ".")).resolve()
            yield pytest.param(stage, base, id=f"{pipeline.relative_to(REPO)}:{name}")


@pytest.mark.parametrize(("stage", "base"), stages())
def test_stage_declares_its_import_closure(stage, base):
    assert undeclared(stage, base, module_files(REPO), code_graph(REPO)) == []


def test_an_undeclared_import_is_found(tmp_path):
    """The check sees a module the stage reaches only through another one."""
    for package, body in {"pipelines": {"__init__": "", "stage": "import ripu.a\n"},
                          "ripu": {"__init__": "", "a": "from ripu import b\n", "b": ""}}.items():
        (tmp_path / package).mkdir()
        for module, text in body.items():
            (tmp_path / package / f"{module}.py").write_text(text)
    edges, _ = import_graph(tmp_path)
    stage = {"cmd": "python -m pipelines.stage", "deps": ["pipelines", "ripu/a.py",
                                                          "ripu/__init__.py"]}
    files = module_files(tmp_path)
    missing = undeclared(stage, tmp_path, files, edges)
    assert [Path(m).name for m in missing] == ["b.py"]


def unused(stage: dict, base: Path, files: dict[str, Path],
           edges: dict[str, set[str]]) -> list[str]:
    """The code deps (under ripu/ or pipelines/) that hold no module of the stage's import
    closure: editing them would re-run the stage for nothing."""
    module = re.search(r"python -m (pipelines\.\w+)", stage["cmd"]).group(1)
    used = [files[m].resolve() for m in closure(edges, module)]
    code = [d for d in stage.get("deps", []) if str(d).split("/")[0] in ("ripu", "pipelines")]
    return [d for d in code if not any(p == (base / d).resolve() or (base / d).resolve()
                                       in p.parents for p in used)]


@pytest.mark.parametrize(("stage", "base"), stages())
def test_stage_declares_no_code_it_does_not_import(stage, base):
    assert unused(stage, base, module_files(REPO), code_graph(REPO)) == []


def test_the_data_stage_does_not_depend_on_models_or_training():
    """Editing a model or the trainer leaves the data alone (build_datasets is ripu.data's)."""
    for pipeline in PIPELINES:
        for name, stage in yaml.safe_load(pipeline.read_text())["stages"].items():
            if stage["cmd"].startswith("python -m pipelines.data"):
                deps = set(stage["deps"])
                assert not deps & {"ripu/models", "ripu/engine", "ripu/engine/trainer.py"}, name

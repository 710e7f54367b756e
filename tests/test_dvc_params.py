"""Every DVC stage's params are derived from what it reads (pipelines/dvc_params.py), and with
them real DVC marks exactly the stages whose resolved configs changed: each leaf of each
params file is perturbed (and each config key a file leaves at its default is added) in a
copy of the repository whose stages are committed as run, and ``dvc status`` must name the
stages whose view (:func:`pipelines.dvc_params.view`) changed, no more and no fewer."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines import dvc_params
from pipelines.common import load_params
from ripu.config import BASE_KEY, Config, config_from_dict, leaf_keys, merge, read_params
from ripu.errors import ConfigError
from ripu.kinds import kind_names

REPO = Path(__file__).resolve().parents[1]
COPIED = ("ripu", "pipelines", "experiments", "dvc.yaml", "params.yaml", ".dvcignore")


@contextlib.contextmanager
def chdir(path: Path):
    """Run the block in ``path`` (DVC's Python API resolves stage paths against the cwd)."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _set(raw: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        raw = raw.setdefault(part, {})
    raw[leaf] = value


def _choices(key: str) -> tuple:
    """The allowed values of a Literal-typed config key (empty for other types)."""
    cls, *path = key.split(".")
    tp = typing.get_type_hints(Config, include_extras=True)[cls]
    for part in path:
        tp = typing.get_type_hints(tp, include_extras=True)[part]
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return typing.get_args(tp) if typing.get_origin(tp) is typing.Literal else ()


NONE_VALUES = {"data.crop": [64, 32], "model.pretrained": "models/other.pth",
               "annotate.url": "http://127.0.0.1:9", "annotate.token_file": "token.txt",
               "tracking.credentials": "mlflow-credentials.ini"}
# Keys no single valid value changes: one reader (cityscapes); a width only vgg16_fcn8s takes.
FIXED = {"data.target", "model.width"}


def candidates(key: str, value: Any) -> list[Any]:
    """Other values for ``key`` (currently ``value``), to try in order until one is valid."""
    if key in NONE_VALUES and value is None:
        return [NONE_VALUES[key]]
    if key == "active.strategy":
        return ["random_region" if value != "random_region" else "ripu_region"]
    if key == "train.kind":
        return [k for k in kind_names() if k != value]
    if choices := _choices(key):
        return [c for c in choices if c != value]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1]
    if isinstance(value, float):
        return [value * 2, value / 2, 0.5]
    if isinstance(value, str):
        return [value + "2"]
    if isinstance(value, list | tuple):
        if all(isinstance(v, float) for v in value):
            return [[round(v * 0.9, 6) for v in value]]
        return [[v + 2 for v in value]]
    if isinstance(value, dict):
        return [{**value, "source_only": "models/other.pt"}]
    return []


def perturbations(root: Path, params: str) -> list[tuple[str, dict]]:
    """(key, perturbed params mapping) for each leaf of ``params`` and each config key it
    leaves at its default; a key no single valid value can change is left out. A file that
    derives from another (``base``) gets new keys only in the sections it holds: it may hold
    nothing but its own sections (tests/test_config_drift.py), and the rest is its base's."""
    raw = yaml.safe_load((root / params).read_text())
    resolved = load_params(root, params)
    under = {}
    if BASE_KEY in raw:
        under = read_params((root / params).parent / raw[BASE_KEY])
    out = []
    for key in leaf_keys():
        present = dvc_params.has_key(raw, key)
        if under and not present and not dvc_params.has_key(raw, key.split(".")[0]):
            continue
        current = dvc_params.get_key(raw, key) if present else dvc_params.get_key(_plain(resolved), key)
        for value in candidates(key, current):
            new = copy.deepcopy(raw)
            _set(new, key, value)
            if key == "active.rounds":
                _set(new, "active.round_at", dvc_params.get_key(_plain(resolved), "active.round_at")[:value])
            if key in ("sweep.experiment", "tracking.experiment"):
                _set(new, "sweep.experiment", renamed(root, resolved, new))
            try:
                config_from_dict(merge(under, {k: v for k, v in new.items() if k != BASE_KEY}))
            except ConfigError:
                continue
            out.append((key if present else f"+{key}", new))
            break
    return out


def renamed(root: Path, cfg: Config, raw: dict) -> str:
    """A copy of ``cfg``'s experiment file named as ``raw``'s tracking.experiment, beside it:
    moving or renaming the experiment changes its file and its name together."""
    src = Path(cfg.sweep.experiment)
    name = dvc_params.get_key(raw, "tracking.experiment")
    spec = yaml.safe_load(src.read_text())
    dest = src.with_name(f"{src.stem}_{name}.yaml")
    dest.write_text(yaml.safe_dump({**spec, "name": name}, sort_keys=False))
    return str(dest.relative_to(root))


def _plain(cfg: Config) -> dict:
    from ripu.config import to_dict
    return to_dict(cfg)


# ----------------------------------------------------------------------------- a repository copy


def committed_copy(dest: Path) -> Path:
    """A copy of the repository's pipelines whose every stage is committed as run (its
    outputs stand-ins), so that ``dvc status`` reports only what changes afterwards."""
    from dvc.repo import Repo

    for item in COPIED:
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / item)
    Repo.init(str(dest), no_scm=True)
    for pipeline in dvc_params.pipelines(dest):
        spec = yaml.safe_load(pipeline.read_text())
        for stage in spec["stages"].values():
            base = (pipeline.parent / stage.get("wdir", ".")).resolve()
            params = yaml.safe_load((dest / "params.yaml").read_text())
            for out in stage.get("outs", []) + stage.get("metrics", []):
                path = base / _interpolate(next(iter(out)) if isinstance(out, dict) else out,
                                           params)
                if path.suffix:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text("{}\n")
                else:
                    path.mkdir(parents=True, exist_ok=True)
                    (path / "stand-in").write_text("")
    commit(dest)
    return dest


def commit(root: Path) -> None:
    """Record every stage of ``root`` as run (``dvc commit --force``)."""
    from dvc.repo import Repo

    with chdir(root), Repo(str(root)) as repo:
        repo.commit(None, force=True)


def _interpolate(text: str, params: dict) -> str:
    import re
    return re.sub(r"\$\{([^}]+)\}", lambda m: str(dvc_params.get_key(params, m.group(1))), text)


def reads_file(root: Path, file: str, params: str) -> bool:
    """Whether a stage with params file ``file`` reads ``params`` (it, or its base)."""
    return any(name == params for name, _ in dvc_params.sources(root, file))


def stale(root: Path, params: str | None = None) -> set[str]:
    """The stages that ``dvc status`` reports changed (of the pipelines reading ``params``)."""
    from dvc.repo import Repo

    targets = None if params is None else [
        str(p) for p in dvc_params.pipelines(root)
        if any(reads_file(root, file, params) for *_, file in dvc_params.stages(p))]
    with chdir(root), Repo(str(root)) as repo:
        report = repo.status(targets=targets)
    return {name.split(":")[-1] for name in report}


def views(root: Path, params: str) -> dict[str, Any]:
    """Each stage that reads ``params`` (its params file is ``params`` or derives from it):
    its view."""
    return {name: dvc_params.view(module, root, load_params(root, file))
            for pipeline in dvc_params.pipelines(root)
            for name, module, file in dvc_params.stages(pipeline)
            if reads_file(root, file, params)}


def shadowed(root: Path, params: str, key: str) -> set[str]:
    """Stages whose params file derives from ``params`` and itself holds ``key``: their base's
    section is tracked whole (DVC cannot list a section less a key), so a change of ``key``
    in the base re-runs them although their config keeps the nearer file's value."""
    out = set()
    for pipeline in dvc_params.pipelines(root):
        for name, _, file in dvc_params.stages(pipeline):
            files = [n for n, _ in dvc_params.sources(root, file)]
            if params in files[1:] and any(dvc_params.has_key(raw, key) for n, raw in
                                           dvc_params.sources(root, file)[:files.index(params)]):
                out.add(name)
    return out


def check_perturbations(root: Path, params: str, only: set[str] | None = None) -> list[str]:
    """Perturb ``params`` key by key (``only``: these keys); the keys for which the stages
    ``dvc status`` reports differ from those whose view changed."""
    original = (root / params).read_text()
    before = views(root, params)
    wrong = []
    try:
        for key, raw in perturbations(root, params):
            if only is not None and key not in only:
                continue
            (root / params).write_text(yaml.safe_dump(raw, sort_keys=False))
            after = views(root, params)
            expected = {s for s in before if before[s] != after[s]}
            got = stale(root, params)
            if (got - shadowed(root, params, key.lstrip("+"))) != expected:
                wrong.append(f"{params} {key}: dvc status {sorted(got)}, changed views "
                             f"{sorted(expected)}")
            (root / params).write_text(original)
    finally:
        (root / params).write_text(original)
    return wrong


# ----------------------------------------------------------------------------- tests


def test_every_dvc_yaml_holds_the_derived_params():
    assert dvc_params.main(["--check"]) == 0


def test_a_hand_edited_params_list_is_found(tmp_path, capsys):
    for item in COPIED:
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / item)
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text().replace("      - optim.name\n", "", 1))
    with chdir(tmp_path):
        assert dvc_params.main(["--check"]) == 1
        assert "params out of date in dvc.yaml" in capsys.readouterr().err
        assert dvc_params.main([]) == 0
        assert dvc_yaml.read_text() == (REPO / "dvc.yaml").read_text()


def test_the_warmup_reads_what_its_overrides_leave():
    """experiments/synthetic.yaml's warm-up sets optim.lr, optim.iters and optim.poly_iters:
    it reads every other optim key from params.yaml, and the trials read them all."""
    cfg = load_params(REPO, "params.yaml")
    warmup = dvc_params.reads("warmup", REPO, cfg)
    optim = {k for k in leaf_keys() if k.startswith("optim.")}
    assert optim - warmup == {"optim.lr", "optim.iters", "optim.poly_iters"}
    assert optim <= dvc_params.reads("sweep", REPO, cfg)
    assert "seed" in warmup and "seed" not in dvc_params.reads("sweep", REPO, cfg)  # rows set it
    assert dvc_params.reads("report", REPO, cfg) == {"tracking.uri", "tracking.experiment",
                                                     "tracking.retry_seconds",
                                                     "tracking.credentials", "report.out"}


def test_a_read_key_missing_from_the_params_file_is_refused():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    del raw["optim"]["name"], raw["annotate"]
    read = dvc_params.reads("warmup", REPO, load_params(REPO, "params.yaml"))
    with pytest.raises(ConfigError, match=r"^params.yaml: optim.name, annotate missing; a stage "
                                          r"reads them, expected them spelled out"):
        dvc_params.cover(read, raw, "params.yaml")


@pytest.fixture(scope="module")
def committed(tmp_path_factory) -> Path:
    return committed_copy(tmp_path_factory.mktemp("repo"))


@pytest.mark.integration
def test_dvc_status_marks_exactly_the_stages_whose_configs_changed(committed):
    """The issue's cases: optim.name and optim.bias_lr_mult make the warm-up stale, optim.lr
    (which the warm-up's overrides set) does not; and one key of each other kind."""
    assert stale(committed) == set()
    keys = {"optim.name", "optim.bias_lr_mult", "optim.lr", "seed", "report.out",
            "+tracking.retry_seconds", "synth.seed", "annotate.url"}
    assert check_perturbations(committed, "params.yaml", keys) == []
    assert check_perturbations(committed, "experiments/gta5_to_cityscapes/params.yaml",
                               {"data.source_root", "model.pretrained", "+optim.lr"}) == []
    (committed / "params.yaml").write_text(
        (committed / "params.yaml").read_text().replace("name: sgd", "name: adam"))
    # the people and version-4 pipelines derive from params.yaml: they train differently too
    assert {"warmup", "sweep", "people_warmup", "people_annotate", "synthetic_v4_warmup",
            "synthetic_v4_sweep"} == stale(committed)


@pytest.mark.integration
def test_a_hand_picked_list_misses_a_key(committed):
    """The check finds the defect the derived lists fix: the warm-up without optim.name."""
    dvc_yaml = committed / "dvc.yaml"
    original = dvc_yaml.read_text()
    dvc_yaml.write_text(original.replace("      - optim.name\n", "", 1))  # the warm-up's
    commit(committed)
    try:
        assert check_perturbations(committed, "params.yaml", {"optim.name"}) == [
            "params.yaml optim.name: dvc status ['people_annotate', 'people_warmup', 'sweep', "
            "'synthetic_v4_sweep', 'synthetic_v4_warmup'], changed views ['people_annotate', "
            "'people_warmup', 'sweep', 'synthetic_v4_sweep', 'synthetic_v4_warmup', 'warmup']"]
    finally:
        dvc_yaml.write_text(original)
        commit(committed)


def test_every_key_but_the_fixed_ones_is_perturbed(tmp_path):
    for item in ("experiments", "params.yaml"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / item)
    for params in ("params.yaml", "experiments/gta5_to_cityscapes/params.yaml"):
        keys = {key.lstrip("+") for key, _ in perturbations(tmp_path, params)}
        assert set(leaf_keys()) - keys == FIXED


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("params", ["params.yaml", "experiments/gta5_to_cityscapes/params.yaml",
                                    "experiments/synthia_to_cityscapes/params.yaml",
                                    "experiments/people/params.yaml"])
def test_every_key_of_every_params_file(committed, params):
    assert check_perturbations(committed, params) == []

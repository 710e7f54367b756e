"""Each DVC stage's ``params``, derived from what the stage reads, never listed by hand.

A stage reads some keys of its params file itself (:data:`OWN`: the report reads
``tracking`` and ``report``) and, for stages that train, the resolved config of each run
it trains (the warm-ups, the trials): every key that decides a run's result
(:func:`ripu.trial.trial_identity`) and that the run's overrides in the experiment file do
not set. So the warm-up of ``experiments/synthetic.yaml``, which sets ``optim.lr``, reads
``optim.name`` from params.yaml but not ``optim.lr``.

:func:`stage_params` turns that set into DVC's ``params`` list: a whole section where the
stage reads all of it (new keys in it count too), its keys one by one where it reads part.
DVC requires every listed key to exist in the file, so a key read from a section read in
part must be spelled out there (a one-line error names it). A params file that derives from
another (``base``, :func:`ripu.config.read_params`) lists its keys under both files: a
section read whole in the nearest file that holds it and in each further one that provides
some of its keys, a key read alone in the nearest file that holds it, and ``base`` itself. A
base's section is then tracked whole, so changing one of its keys that the nearer file
overrides re-runs the stage needlessly: DVC cannot list a section less a key, and the other
way round a key added to the base's section would go unseen. ``python -m pipelines.dvc_params``
rewrites the ``params`` of every stage of dvc.yaml and experiments/*/dvc.yaml; ``--check``
exits 1 when one is out of date (the tests run it).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipelines.common import PARAMS, load_experiment_of, load_params, repo_root
from pipelines.data import synthetic
from pipelines.warmup import needed
from ripu.config import BASE_KEY, Config, leaf_keys, to_dict
from ripu.errors import ConfigError, exit_status
from ripu.trial import is_identity_key

# What each stage's own code reads of its params file (a section stands for all its keys).
OWN = {
    "data": ("synth.out", "sweep.experiment", "tracking.experiment"),  # real datasets
    "warmup": ("tracking", "sweep.experiment", "sweep.warmup_files"),
    "sweep": ("tracking", "sweep"),
    "annotate": ("tracking", "sweep.experiment"),
    "report": ("tracking", "report"),
}
# The embedded benchmark's data stage reads only the generator's settings and the roots.
SYNTH_OWN = ("synth", "data.source_root", "data.target_root")
# What the data stage reads of each run: the datasets it checks.
DATA_KEYS = ("data.source", "data.source_root", "data.target", "data.target_root",
             "data.num_classes")
CMD = re.compile(r"python -m pipelines\.(\w+)(?:\s+--params\s+(\S+))?")


@dataclass(frozen=True)
class Run:
    """One run a stage trains: the keys its overrides set, and its resolved config."""

    overrides: frozenset[str]
    cfg: Config


def _runs(stage: str, root: Path, cfg: Config) -> tuple[list[Run], tuple[str, ...]]:
    """The runs ``stage`` resolves from ``cfg`` and which of their keys it reads."""
    if stage not in ("data", "warmup", "sweep", "annotate") or (
            stage == "data" and synthetic(cfg)):
        return [], ()
    exp = load_experiment_of(root, cfg)
    fixed = {"tracking.experiment"}
    warmups = [Run(frozenset({*exp.base, *w.overrides, *fixed}), w.cfg)
               for w in (exp.warmups.values() if stage == "data" else needed(exp))]
    trials = [Run(frozenset({*t.overrides, *fixed}), t.cfg) for t in exp.trials]
    keys = tuple(k for k in leaf_keys() if is_identity_key(k))
    return {"data": (warmups + trials, DATA_KEYS), "warmup": (warmups, keys)}.get(
        stage, (trials, keys))


def _own(stage: str, cfg: Config) -> tuple[str, ...]:
    return SYNTH_OWN if stage == "data" and synthetic(cfg) else OWN[stage]


def get_key(node: Any, key: str) -> Any:
    for part in key.split("."):
        node = node[part]
    return node


def _overrides(run: Run, key: str) -> bool:
    return any(key == o or key.startswith(o + ".") for o in run.overrides)


def reads(stage: str, root: Path, cfg: Config) -> set[str]:
    """The leaves of the params file that ``stage`` reads (see the module docstring)."""
    runs, keys = _runs(stage, root, cfg)
    own = {leaf for key in _own(stage, cfg) for leaf in leaf_keys() if
           leaf == key or leaf.startswith(key + ".")}
    return own | {k for k in keys if any(not _overrides(r, k) for r in runs)}


def view(stage: str, root: Path, cfg: Config) -> list:
    """What ``stage`` computes from: its own keys' values and each run's read keys.

    Two params files give the same view exactly when the stage would do the same work.
    """
    plain = to_dict(cfg)
    runs, keys = _runs(stage, root, cfg)
    return [{k: get_key(plain, k) for k in _own(stage, cfg)},
            *({k: get_key(run, k) for k in keys} for run in map(to_dict, (r.cfg for r in runs)))]


def cover(read: set[str], raw: dict, params: str) -> list[str]:
    """The DVC params list for the leaves ``read`` of the file ``params`` (parsed ``raw``):
    a section read whole as its name, otherwise its keys. ConfigError for a listed key that
    the file lacks."""
    return cover_files(read, [(params, raw)])[0][1]


def cover_files(read: set[str], files: list[tuple[str, dict]]) -> list[tuple[str, list[str]]]:
    """The DVC params lists for the leaves ``read`` of a params file made of ``files``
    (nearest first: the file, then the file it derives from): a section read whole by name
    in the nearest file that holds it and in each further one that holds a key of it the
    nearer ones do not; a key read alone in the nearest file that holds it. ConfigError for
    a listed key that no file holds."""
    listed: dict[str, list[str]] = {name: [] for name, _ in files}
    missing = []
    for top in dict.fromkeys(k.split(".")[0] for k in leaf_keys()):
        leaves = [k for k in leaf_keys() if k == top or k.startswith(top + ".")]
        if leaves != [top] and set(leaves) <= read:  # a section read whole
            holders = [name for name, raw in files if has_key(raw, top)]
            nearer: set[str] = set()
            for name, raw in files:
                held = {k for k in leaves if has_key(raw, k)}
                if has_key(raw, top) and (name == holders[0] or held - nearer):
                    listed[name].append(top)
                nearer |= held
            missing += [] if holders else [top]
            continue
        for key in [top] if set(leaves) <= read else [k for k in leaves if k in read]:
            holders = [name for name, raw in files if has_key(raw, key)]
            if not holders:
                missing.append(key)
            else:
                listed[holders[0]].append(key)
    if missing:
        raise ConfigError(f"{files[0][0]}: {', '.join(missing)} missing; a stage reads them, "
                          f"expected them spelled out (DVC tracks only keys the file has)")
    return list(listed.items())


def sources(root: Path, params: str) -> list[tuple[str, dict]]:
    """The files a params file is made of, nearest first: (its path from ``root``, its
    mapping without ``base``) for the file, then the file it derives from, and so on."""
    out, path = [], root / params
    while True:
        raw = dict(yaml.safe_load(path.read_text()) or {})
        base = raw.pop(BASE_KEY, None)
        out.append((path.resolve().relative_to(root.resolve()).as_posix(), raw))
        if base is None:
            return out
        path = path.parent / base


def has_key(raw: Any, key: str) -> bool:
    try:
        get_key(raw, key)
    except (KeyError, TypeError):
        return False
    return True


def stage_params(root: Path, stage: str, params: str = PARAMS,
                 loaded: dict[str, tuple[Config, list[tuple[str, dict]]]] | None = None
                 ) -> list[tuple[str, list[str]]]:
    """The derived DVC params of ``python -m pipelines.<stage> --params <params>``: per file
    of the params file (:func:`sources`), its list (``loaded``: params files read already,
    by name, reused and added to)."""
    loaded = {} if loaded is None else loaded
    if params not in loaded:
        loaded[params] = (load_params(root, params), sources(root, params))
    cfg, files = loaded[params]
    listed = cover_files(reads(stage, root, cfg), files)
    if len(files) > 1:  # the file names its base: a new base changes everything
        listed[0] = (listed[0][0], [BASE_KEY, *listed[0][1]])
    return listed


# ----------------------------------------------------------------------------- dvc.yaml files


def pipelines(root: Path) -> list[Path]:
    """The root dvc.yaml and every paper pipeline's."""
    return [root / "dvc.yaml", *sorted((root / "experiments").glob("*/dvc.yaml"))]


def stages(dvc_yaml: Path) -> Iterator[tuple[str, str, str]]:
    """(stage name, stage module, params file) of every ``python -m pipelines.*`` stage."""
    for name, stage in yaml.safe_load(dvc_yaml.read_text())["stages"].items():
        match = CMD.search(stage["cmd"])
        if match:
            yield name, match.group(1), match.group(2) or PARAMS


def render(files: list[tuple[str, list[str]]]) -> list[str]:
    """The ``params:`` block of a stage: plain keys for params.yaml alone, else the keys
    under each file."""
    if [name for name, _ in files] == [PARAMS]:
        return ["    params:", *(f"      - {k}" for k in files[0][1])]
    return ["    params:", *(line for name, listed in files if listed
                              for line in (f"      - {name}:",
                                           *(f"          - {k}" for k in listed)))]


def rewrite(text: str, blocks: dict[str, list[str]]) -> str:
    """``text`` (a dvc.yaml) with the ``params:`` block of each stage in ``blocks`` replaced."""
    lines, out, stage, skipping = text.split("\n"), [], None, False
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if skipping and (not line.strip() or indent > 4):
            continue
        skipping = False
        if indent == 2 and line.rstrip().endswith(":"):
            stage = line.strip()[:-1]
        if stage in blocks and line.rstrip() == "    params:":
            out += blocks[stage]
            skipping = True
            continue
        out.append(line)
    return "\n".join(out)


def derived(root: Path, dvc_yaml: Path,
            loaded: dict[str, tuple[Config, dict]] | None = None) -> str:
    """``dvc_yaml``'s text with every stage's params derived."""
    loaded = {} if loaded is None else loaded
    blocks = {name: render(stage_params(root, module, params, loaded))
              for name, module, params in stages(dvc_yaml)}
    return rewrite(dvc_yaml.read_text(), blocks)


def _main(root: Path, check: bool) -> int:
    stale, loaded = [], {}
    for path in pipelines(root):
        text = derived(root, path, loaded)
        if text != path.read_text():
            stale.append(str(path.relative_to(root)))
            if not check:
                path.write_text(text)
    if stale:
        verb = "out of date" if check else "rewritten"
        print(f"params {verb} in {', '.join(stale)}"
              f"{'; run python -m pipelines.dvc_params' if check else ''}", file=sys.stderr)
    return 1 if stale and check else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="derive every DVC stage's params")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when a dvc.yaml is out of date")
    args = parser.parse_args(argv)
    return exit_status(lambda: _main(repo_root(), args.check))


if __name__ == "__main__":
    sys.exit(main())

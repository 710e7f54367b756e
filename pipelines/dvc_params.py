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
part must be spelled out there (a one-line error names it). ``python -m pipelines.dvc_params``
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
from ripu.config import Config, leaf_keys, to_dict
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


def _get(node: Any, key: str) -> Any:
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
    return [{k: _get(plain, k) for k in _own(stage, cfg)},
            *({k: _get(run, k) for k in keys} for run in map(to_dict, (r.cfg for r in runs)))]


def cover(read: set[str], raw: dict, params: str) -> list[str]:
    """The DVC params list for the leaves ``read`` of the file ``params`` (parsed ``raw``):
    a section read whole as its name, otherwise its keys. ConfigError for a listed key that
    the file lacks."""
    listed = []
    for top in dict.fromkeys(k.split(".")[0] for k in leaf_keys()):
        leaves = [k for k in leaf_keys() if k == top or k.startswith(top + ".")]
        if set(leaves) <= read:
            listed.append(top)
        else:
            listed += [k for k in leaves if k in read]
    missing = [key for key in listed if not _has(raw, key)]
    if missing:
        raise ConfigError(f"{params}: {', '.join(missing)} missing; a stage reads them, "
                          f"expected them spelled out (DVC tracks only keys the file has)")
    return listed


def _has(raw: Any, key: str) -> bool:
    try:
        _get(raw, key)
    except (KeyError, TypeError):
        return False
    return True


def stage_params(root: Path, stage: str, params: str = PARAMS,
                 loaded: dict[str, tuple[Config, dict]] | None = None) -> list[str]:
    """The derived DVC params of ``python -m pipelines.<stage> --params <params>``
    (``loaded``: params files read already, by name, reused and added to)."""
    loaded = {} if loaded is None else loaded
    if params not in loaded:
        loaded[params] = (load_params(root, params),
                          yaml.safe_load((root / params).read_text()))
    cfg, raw = loaded[params]
    return cover(reads(stage, root, cfg), raw, params)


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


def render(listed: list[str], params: str) -> list[str]:
    """The ``params:`` block of a stage: plain keys for params.yaml, else under the file."""
    if params == PARAMS:
        return ["    params:", *(f"      - {k}" for k in listed)]
    return ["    params:", f"      - {params}:", *(f"          - {k}" for k in listed)]


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
    blocks = {name: render(stage_params(root, module, params, loaded), params)
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

"""Experiment files: which trials a sweep runs (a grid, or a Ray Tune search space).

```yaml
name: synthetic                  # MLflow experiment and runs/<name>/ folder
base: {optim.iters: 600}         # dotted overrides applied to every trial
warmups:                         # stage-1 runs trials may start from (see ripu.warmups)
  source_only: {optim.lr: 0.02, optim.iters: 1500, optim.poly_iters: 1500}
init: source_only                # where trials start: imagenet (default) or a warm-up name
grid:                            # blocks; each block is the cartesian product of its lists
  - {train.kind: [source_only, supervised], seed: [0, 1, 2]}
  - {init: imagenet, train.kind: [active], seed: [0]}   # a block's own init
search:                          # instead of grid: sampled points + an early-stopping scheduler
  num_samples: 8
  metric: val/miou
  mode: max
  seed: 0                        # sampling seed (default 0)
  scheduler: {name: asha, grace_period: 100, reduction_factor: 2}
  space: {active.radius: {choice: [1, 2]}, loss.nl: {loguniform: [0.1, 2.0]}}
```

Every trial's config is built and validated before anything runs. Search samples are drawn up
front from Ray Tune's sampling domains with a seeded generator, so trial names and configs are
deterministic and a resumed sweep finds the same trials.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from ripu.config import Config, Int, Invalid, Str, apply_overrides, read_yaml, section, validated
from ripu.errors import ConfigError
from ripu.kinds import get_kind
from ripu.names import STRATEGY_MODES
from ripu.record_names import MIOU, VAL
from ripu.warmups import IMAGENET, INIT_KEY, Warmup, check_init, parse_warmups

TOP_KEYS = ("name", "description", "base", "warmups", "init", "grid", "search")
SCHEDULERS = {"asha": ("grace_period", "reduction_factor", "max_t", "brackets"), "fifo": ()}
SAMPLERS = ("choice", "uniform", "quniform", "loguniform", "qloguniform", "randint",
            "qrandint", "lograndint", "qlograndint", "randn", "qrandn")
# Sections that describe where and how trials run, not what they compute: set in params.yaml.
RESERVED = ("tracking", "sweep", "report", "synth")
# Path-valued keys made absolute by `load_experiment(..., root=)`: Ray trials change folder.
PATH_KEYS = ("data.source_root", "data.target_root", "model.pretrained")
MAX_NAME = 240  # characters of a trial name (a folder name: the filesystem allows 255 bytes)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Keys that trial names show in a fixed form (see `trial_name`).
NAMED_KEYS = ("train.kind", "active.strategy", "active.budget", "active.points", "seed")


@dataclass(frozen=True)
class Trial:
    """One point of a sweep: its folder/run name, its overrides, the validated config and
    where it starts (``imagenet`` or a warm-up name, see :mod:`ripu.warmups`)."""

    name: str
    overrides: dict[str, Any]
    cfg: Config
    init: str = IMAGENET


@dataclass(frozen=True)
class Experiment:
    """A parsed experiment file: its trials in file order (grid) or sample order (search)."""

    name: str
    path: Path
    trials: list[Trial]
    base: dict[str, Any] = field(default_factory=dict)
    search: Search | None = None
    warmups: dict[str, Warmup] = field(default_factory=dict)

    def trial(self, name: str) -> Trial:
        for t in self.trials:
            if t.name == name:
                return t
        raise KeyError(name)


# ----------------------------------------------------------------------------- helpers


def _err(path: Path, msg: str) -> ConfigError:
    return ConfigError(f"{path}: {msg}")


def _mapping(value: Any, path: Path, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _err(path, f"{where}: expected a mapping, got {value!r}")
    return value


def _check_keys(overrides: Mapping[str, Any], path: Path, where: str) -> None:
    for key in overrides:
        if not isinstance(key, str) or not key:
            raise _err(path, f"{where}: expected dotted section.key names, got {key!r}")
        if key.split(".")[0] in RESERVED:
            raise _err(path, f"{where}.{key}: {key.split('.')[0]}.* is set in params.yaml, "
                             f"not in experiment files")


def _plain(value: Any) -> Any:
    """numpy scalars (Ray samples) -> Python scalars."""
    return value.item() if hasattr(value, "item") and not isinstance(value, list) else value


def _token(value: Any) -> str:
    """A value as a short, filesystem-safe name fragment."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, list | tuple):
        text = "_".join(_token(v) for v in value)
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)


def trial_name(cfg: Config, shown: Mapping[str, Any], varied: set[str]) -> str:
    """A readable, deterministic name: ``active-ripu_region-b0.022-s0``, ``source_only-s1``.

    Kind first; for selection kinds the strategy and its budget (``p<points>`` for point
    strategies, ``b<fraction>`` otherwise); then every other key of ``shown`` (the trial's grid
    point or sample) as ``<leaf><value>`` (the full key when two keys share a leaf); seed last;
    cut to :data:`MAX_NAME` characters with a hash of the full name when longer.
    """
    parts = [cfg.train.kind]
    used = {"train.kind", "seed"}
    if get_kind(cfg.train.kind).selects:
        a = cfg.active
        mode = STRATEGY_MODES[a.strategy]
        parts += [a.strategy, f"p{a.points}" if mode == "point" else f"b{_token(a.budget)}"]
        used |= {"active.strategy", "active.points" if mode == "point" else "active.budget"}
    leaves = [k.split(".")[-1] for k in varied]
    for key in sorted(shown):
        if key in used:
            continue
        leaf = key.split(".")[-1]
        label = leaf if leaves.count(leaf) <= 1 else key.replace(".", "_")
        parts.append(f"{label}{_token(shown[key])}")
    parts.append(f"s{cfg.seed}")
    return _fit("-".join(parts))


def _fit(name: str) -> str:
    """``name``, or when longer than :data:`MAX_NAME` its start and a hash of the whole, so
    a trial folder's name stays within the filesystem's 255 bytes (deterministic)."""
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{name[:MAX_NAME - len(digest) - 1]}-{digest}"


def _build_trial(base_cfg: Config, name: str, base: dict, point: dict, path: Path,
                 varied: set[str], init: str = IMAGENET) -> Trial:
    overrides = {**base, **point}
    try:
        cfg = apply_overrides(base_cfg, {**overrides, "tracking.experiment": name})
    except ConfigError as exc:
        raise _err(path, str(exc).removeprefix("overrides: ")) from None
    return Trial(trial_name(cfg, point, varied), overrides, cfg, init)


# ----------------------------------------------------------------------------- grid


def expand_grid(blocks: Any, path: Path) -> list[dict[str, Any]]:
    """Grid blocks -> points (dicts of overrides), block by block, last key varying fastest.

    A scalar value is a one-element list; an empty list is an error.
    """
    if not isinstance(blocks, list) or not blocks:
        raise _err(path, f"grid: expected a non-empty list of mappings, got {blocks!r}")
    points = []
    for i, block in enumerate(blocks):
        block = _mapping(block, path, f"grid[{i}]")
        _check_keys(block, path, f"grid[{i}]")
        keys, lists = list(block), []
        for key in keys:
            values = block[key] if isinstance(block[key], list) else [block[key]]
            if not values:
                raise _err(path, f"grid[{i}].{key}: empty list, expected at least one value")
            lists.append(values)
        points += [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*lists)]
    return points


# ----------------------------------------------------------------------------- search


def _scheduler(raw: dict) -> dict[str, Any]:
    """``{name: asha, grace_period: 100}``: a known scheduler (default fifo), positive options."""
    options = dict(raw)
    name = options.pop("name", "fifo")
    if name not in SCHEDULERS:
        raise Invalid("name", f"unknown scheduler {name!r}, expected one of "
                              f"{', '.join(SCHEDULERS)}")
    for key, value in options.items():
        if key not in SCHEDULERS[name]:
            raise Invalid(key, f"unknown option of {name}, expected "
                               f"{', '.join(SCHEDULERS[name]) or 'no options'}")
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise Invalid(key, f"expected a positive number, got {value!r}")
    return {"name": name, **options}


def _space(space: dict) -> dict[str, dict[str, Any]]:
    """``{key: {sampler: [args]}}`` with known samplers (keys are checked with the trials)."""
    if not space:
        raise ValueError("expected at least one key to search")
    for key, spec in space.items():
        if not isinstance(spec, dict) or len(spec) != 1:
            raise Invalid(key, f"expected one sampler such as {{choice: [1, 2]}} or "
                               f"{{loguniform: [0.1, 2.0]}}, got {spec!r}")
        (sampler, args), = spec.items()
        if sampler not in SAMPLERS:
            raise Invalid(key, f"unknown sampler {sampler!r}, expected one of "
                               f"{', '.join(SAMPLERS)}")
        if not isinstance(args, list) or not args:
            raise Invalid(f"{key}.{sampler}", "expected a list of arguments")
    return space


@section
class Search:
    """A search section: metric to optimise and the scheduler that stops trials early."""

    num_samples: Annotated[Int, Field(ge=1, description="a positive integer")] = 1
    metric: Annotated[Str, Field(min_length=1, description="a metric name such as val/miou")] = (
        VAL + MIOU)
    mode: Annotated[Literal["min", "max"], Field(description="min or max")] = "max"
    seed: Annotated[Int, Field(ge=0, description="a non-negative integer")] = 0  # sampling
    scheduler: Annotated[dict, AfterValidator(_scheduler)] = Field(
        default_factory=lambda: {"name": "fifo"})
    space: Annotated[dict, AfterValidator(_space)] = Field(default_factory=dict,
                                                           validate_default=True)


def parse_search(raw: Any, path: Path) -> Search:
    """Check a search section (sampler names, scheduler options, mode)."""
    try:
        search = validated(Search, _mapping(raw, path, "search"), "search")
    except ConfigError as exc:
        raise _err(path, str(exc)) from None
    _check_keys(search.space, path, "search.space")
    return search


def sample_points(search: Search, path: Path) -> list[dict[str, Any]]:
    """Draw ``num_samples`` points from the space with Ray Tune's samplers (seeded)."""
    import numpy as np
    from ray import tune

    domains = {}
    for key, spec in search.space.items():
        (sampler, args), = spec.items()
        try:
            domains[key] = (getattr(tune, sampler)(args) if sampler == "choice"
                            else getattr(tune, sampler)(*args))
        except (TypeError, ValueError, AssertionError) as exc:
            raise _err(path, f"search.space.{key}.{sampler}: bad arguments {args!r} "
                             f"({exc})") from None
    rng = np.random.default_rng(search.seed)
    return [{key: _plain(d.sample(random_state=rng)) for key, d in domains.items()}
            for _ in range(search.num_samples)]


# ----------------------------------------------------------------------------- loading


def _resolve_paths(overrides: dict[str, Any], root: Path | None) -> dict[str, Any]:
    if root is None:
        return overrides
    return {k: str((root / v).resolve()) if k in PATH_KEYS and isinstance(v, str)
            and not Path(v).is_absolute() else v for k, v in overrides.items()}


def load_experiment(path: str | Path, base_cfg: Config, *, root: Path | None = None
                    ) -> Experiment:
    """Parse and validate an experiment file against ``base_cfg``; raises ConfigError.

    With ``root``, relative data roots and weight files in the file are resolved against it.
    """
    path = Path(path)
    raw = read_yaml(path, "experiment file", "an experiment mapping")
    if not isinstance(raw, dict):
        raise _err(path, "expected a mapping with name, base and grid (or search)")
    for key in raw:
        if key not in TOP_KEYS:
            raise _err(path, f"{key}: unknown key, expected one of {', '.join(TOP_KEYS)}")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _err(path, f"name: expected a folder-safe name (letters, digits, _ . -), got "
                         f"{name!r}")
    base = _mapping(raw.get("base"), path, "base")
    _check_keys(base, path, "base")
    base = _resolve_paths(base, root)
    if ("grid" in raw) == ("search" in raw):
        raise _err(path, "expected exactly one of grid (a list of blocks) or search")
    declared = raw.get("warmups")
    if isinstance(declared, dict):
        for wname, over in declared.items():
            _check_keys(_mapping(over, path, f"warmups.{wname}"), path, f"warmups.{wname}")
        declared = {w: _resolve_paths(o, root) for w, o in declared.items()}
    warmups = parse_warmups(declared, base_cfg, base, path)
    default_init = check_init(raw.get(INIT_KEY, IMAGENET), warmups, f"{path}: init")

    search = None
    if "grid" in raw:
        points = expand_grid(raw["grid"], path)
    else:
        search = parse_search(raw["search"], path)
        points = sample_points(search, path)
    inits = [check_init(p.pop(INIT_KEY, default_init), warmups, f"{path}: grid.init")
             for p in points]
    varied = {k for p in points for k in p if len({repr(q.get(k)) for q in points}) > 1}
    trials = [_build_trial(base_cfg, name, base, _resolve_paths(p, root), path, varied, init)
              for p, init in zip(points, inits, strict=True)]
    if search is not None:  # samples may repeat a value: number them
        trials = [Trial(f"{i:03d}-{t.name}", t.overrides, t.cfg, t.init)
                  for i, t in enumerate(trials)]
    seen: dict[str, int] = {}
    for i, t in enumerate(trials):
        if t.name in seen:
            raise _err(path, f"trials {seen[t.name]} and {i} are both named {t.name!r} (the same "
                             f"point twice?), expected distinct grid points")
        seen[t.name] = i
    if search is not None and search.scheduler["name"] == "asha":
        if not all(t.cfg.train.eval_every for t in trials):
            raise _err(path, "search: the asha scheduler needs train.eval_every > 0 (set it "
                             f"in base) so trials report {search.metric} while training")
    return Experiment(name=name, path=path.resolve(), trials=trials, base=dict(base),
                      search=search, warmups=warmups)

"""Where each trial starts: ImageNet weights, or a warm-up the experiment file declares.

```yaml
warmups:                          # name -> overrides of the stage-1 run (on top of base)
  source_only: {train.kind: source_only, optim.lr: 0.0005, optim.iters: 20000,
                optim.poly_iters: 31250}
init: imagenet                    # default of every block (optional; default imagenet)
grid:
  - {train.kind: [active], ...}                 # the default: ImageNet weights
  - {init: source_only, train.kind: [lse], ...} # a block's own start
```

``imagenet`` is the model as ``model.*`` builds it (its backbone loaded from
``model.pretrained``); a warm-up name is the checkpoint ``<folder>/<experiment>/<name>.pt``
that the warm-up stage trains from the experiment's own data, model and optim settings
(``base`` plus the warm-up's overrides; ``train.kind`` defaults to ``source_only``). Each
warm-up is built once and shared by the rows that name it. This module knows no repository
folder names: callers pass the folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ripu.archs import ARCHS
from ripu.config import Config, apply_overrides
from ripu.engine.checkpoint import open_checkpoint
from ripu.errors import ConfigError, RipuError
from ripu.kinds import get_kind
from ripu.starts import IMAGENET

INIT_KEY = "init"
WARMUP_KIND = "source_only"
# MLflow experiment of every warm-up run (the report leaves it out).
WARMUP_EXPERIMENT = "warmup"


@dataclass(frozen=True)
class Warmup:
    """A declared warm-up: its name, its overrides as written and its resolved config."""

    name: str
    overrides: dict[str, Any]
    cfg: Config


def parse_warmups(raw: Any, base_cfg: Config, base: Mapping[str, Any], path: Path
                  ) -> dict[str, Warmup]:
    """The ``warmups`` section -> {name: Warmup}; raises ConfigError naming the bad key.

    A warm-up's config is ``base_cfg`` + the experiment's ``base`` + its overrides; it must
    see no target labels (its kind's ``target_labels`` is ``none``).
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: warmups: expected a mapping of name -> overrides, got "
                          f"{raw!r}")
    out = {}
    for name, overrides in raw.items():
        where = f"{path}: warmups.{name}"
        if not isinstance(name, str) or name == IMAGENET or not name.replace("_", "").isalnum():
            raise ConfigError(f"{where}: expected a name of letters, digits and _ other than "
                              f"{IMAGENET}")
        if not isinstance(overrides, dict):
            raise ConfigError(f"{where}: expected a mapping of dotted overrides, got "
                              f"{overrides!r}")
        overrides = {"train.kind": WARMUP_KIND, **overrides}
        try:
            cfg = apply_overrides(base_cfg, {**base, **overrides,
                                             "tracking.experiment": WARMUP_EXPERIMENT})
        except ConfigError as exc:
            raise ConfigError(f"{where}: {str(exc).removeprefix('overrides: ')}") from None
        if get_kind(cfg.train.kind).target_labels != "none":
            raise ConfigError(f"{where}.train.kind: {cfg.train.kind} uses target labels, "
                              f"expected a kind without them such as {WARMUP_KIND}")
        out[name] = Warmup(name, dict(overrides), cfg)
    return out


def check_init(value: Any, warmups: Mapping[str, Warmup], where: str) -> str:
    """An ``init`` value: ``imagenet`` or a declared warm-up name; ConfigError otherwise."""
    if value == IMAGENET or (isinstance(value, str) and value in warmups):
        return value
    names = ", ".join([IMAGENET, *warmups])
    raise ConfigError(f"{where}: init {value!r} is neither {IMAGENET} nor a warm-up of this "
                      f"file, expected one of {names}")


def check_imagenet(cfg: Config, where: str) -> None:
    """A row that starts from ImageNet weights must name the weights file."""
    if ARCHS[cfg.model.arch].imagenet and not cfg.model.pretrained:
        raise ConfigError(f"{where}: init {IMAGENET} needs model.pretrained (a local ImageNet "
                          f"weights file for {cfg.model.arch}), got null")


def warmup_path(folder: str | Path, experiment: str, name: str) -> Path:
    """Where the warm-up ``name`` of ``experiment`` lives: ``<folder>/<experiment>/<name>.pt``."""
    return Path(folder) / experiment / f"{name}.pt"


def model_signature(cfg: Config) -> dict[str, Any]:
    """What an init checkpoint must match: ``{"arch", "backbone", "num_classes"}``
    (``backbone`` None for a model without a ResNet backbone)."""
    m = cfg.model
    return {"arch": m.arch, "backbone": m.backbone if ARCHS[m.arch].resnet else None,
            "num_classes": cfg.data.num_classes}


def trial_inits(trials: Sequence[Any], experiment: str, *, init: str | Path | None = None,
                folder: str | Path | None = None) -> dict[str, str | None]:
    """Trial name -> the checkpoint it starts from (None: the model as ``model.*`` builds it).

    ``init`` (``ripu sweep --init``) overrides every declaration. Otherwise a trial whose
    row names a warm-up starts from :func:`warmup_path` under ``folder``; RipuError when that
    file is missing (or no folder is given), ConfigError for an ImageNet row of a DeepLab
    without ``model.pretrained``.
    """
    if init is not None:
        path = str(Path(init).resolve())
        return {t.name: path for t in trials}
    out: dict[str, str | None] = {}
    for t in trials:
        if t.init == IMAGENET:
            check_imagenet(t.cfg, f"trial {t.name}")
            out[t.name] = None
            continue
        path = warmup_path(folder, experiment, t.init) if folder is not None else None
        if path is None or not path.is_file():
            raise RipuError(f"trial {t.name}: warm-up {t.init} not found"
                            f"{f' at {path}' if path else ''}; expected it built first (the "
                            f"warmup stage) or a checkpoint given with --init")
        out[t.name] = str(path.resolve())
    return out


def read_signature(path: str | Path) -> dict[str, Any] | None:
    """The ``arch``/``backbone``/``num_classes`` a checkpoint records (None when it records
    none, e.g. a bare state dict); RipuError for an unreadable file."""
    ckpt = open_checkpoint(path, mmap=True)  # mmap: only the small header entries are read
    if not isinstance(ckpt, dict) or "arch" not in ckpt:
        return None
    return {k: ckpt.get(k) for k in ("arch", "backbone", "num_classes")}


def check_inits(trials: Sequence[Any], inits: Mapping[str, str | None]) -> None:
    """Refuse (RipuError naming the trial and the mismatch) an init checkpoint whose
    architecture, backbone or number of classes differs from its trial's model.

    A checkpoint that records no backbone (older files) is compared on arch and classes;
    its weights' shapes are still checked when the trial's model loads it.
    """
    signatures: dict[str, dict[str, Any] | None] = {}
    for t in trials:
        path = inits.get(t.name)
        if path is None:
            continue
        if path not in signatures:
            signatures[path] = read_signature(path)
        have, want = signatures[path], model_signature(t.cfg)
        if have is None:
            continue
        wrong = [k for k in want if None not in (have.get(k), want[k]) and have[k] != want[k]]
        if wrong:
            raise RipuError(f"trial {t.name}: init {path}: checkpoint has {_describe(have, wrong)}"
                            f", the model expects {_describe(want, wrong)}; expected a "
                            f"checkpoint of the trial's model")


def _describe(sig: Mapping[str, Any], keys: Sequence[str]) -> str:
    """``19 classes``, ``arch small``, ``backbone resnet50`` for the given keys."""
    return ", ".join(f"{sig[k]} classes" if k == "num_classes" else f"{k} {sig[k]}"
                     for k in keys)

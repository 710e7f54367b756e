"""Typed, validated experiment configuration: one frozen dataclass per params.yaml section.

`load_config(path, overrides)` reads a params file, applies ``section.key=value`` overrides
(as ``dvc exp run -S`` does) and returns a frozen :class:`Config`. Unknown keys, wrong types and
out-of-range values raise :class:`ConfigError` naming the full key path and what was expected.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ripu.errors import ConfigError

TRIAL_KINDS = ("source_only", "supervised", "active", "source_free", "lse", "hybrid")


def _range(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> dict:
    """Field metadata: value must lie in [lo, hi] (or (lo, hi] when ``lo_open``)."""
    return {"lo": lo, "hi": hi, "lo_open": lo_open}


def _f(default: Any, **rng: Any) -> Any:
    """A dataclass field with a default (copied when mutable) and an optional range."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=_range(**rng))
    return field(default=default, metadata=_range(**rng))


@dataclass(frozen=True)
class SynthConfig:
    """The embedded synthetic domain-shift benchmark (`ripu data synth`)."""

    out: str = "data/synthetic"
    seed: int = _f(0, lo=0)
    source_images: int = _f(240, lo=1)
    target_train: int = _f(160, lo=1)
    target_val: int = _f(60, lo=1)
    height: int = _f(128, lo=32)
    width: int = _f(256, lo=32)


@dataclass(frozen=True)
class DataConfig:
    """Source and target datasets and how images are fed to the network."""

    source: Literal["gta5", "synthia", "cityscapes"] = "gta5"
    source_root: str = "data/synthetic/source"
    target: Literal["cityscapes"] = "cityscapes"
    target_root: str = "data/synthetic/target"
    num_classes: Literal[19, 16] = 19
    source_size: tuple[int, int] = (256, 128)  # (W, H) source resize
    target_size: tuple[int, int] = (256, 128)  # (W, H) target resize (training and selection)
    eval_size: tuple[int, int] = (256, 128)  # (W, H) evaluation input; logits upsampled to labels
    crop: tuple[int, int] | None = None  # (W, H) random crop after resize
    flip: bool = True
    class_balance: bool = True
    class_balance_rule: Literal["uniform", "authors"] = "uniform"  # draw rule (ripu.data.sampling)
    order: Literal["random", "epochs"] = "random"  # unbalanced draws: independent or shuffled passes
    resize: Literal["cv2_linear", "pil_bicubic"] = "cv2_linear"  # resize rule (ripu.data.transforms)
    workers: int = _f(0, lo=0)


@dataclass(frozen=True)
class ModelConfig:
    arch: Literal["small", "deeplabv2", "deeplabv3plus"] = "small"
    backbone: Literal["resnet101", "resnet50"] = "resnet101"
    pretrained: str | None = None  # local file of ImageNet ResNet weights
    freeze_bn: bool = True
    bn_batch_stats: bool = False  # with freeze_bn: BN normalises with batch statistics in training


@dataclass(frozen=True)
class OptimConfig:
    """SGD with poly decay; the head gets ``head_lr_mult`` times the backbone lr."""

    lr: float = _f(2.5e-4, lo=0, lo_open=True)
    head_lr_mult: float = _f(10.0, lo=0, lo_open=True)
    momentum: float = _f(0.9, lo=0, hi=1)
    weight_decay: float = _f(5e-4, lo=0)
    poly_power: float = _f(0.9, lo=0)
    poly_iters: int = _f(62500, lo=1)  # length of the poly schedule
    iters: int = _f(40000, lo=1)  # where training stops
    batch_source: int = _f(2, lo=1)
    batch_target: int = _f(2, lo=1)


@dataclass(frozen=True)
class ActiveConfig:
    """Target-label acquisition (METHOD.md section 1)."""

    strategy: str = "ripu_region"
    budget: float = _f(0.022, lo=0, hi=1, lo_open=True)  # fraction of target pixels
    points: int = _f(40, lo=1)  # labelled points per image (point strategies)
    radius: int = _f(1, lo=0)
    rounds: int = _f(5, lo=1)
    round_at: list[float] = _f([0.25, 0.30, 0.35, 0.40, 0.45])  # fractions of optim.iters
    batch_size: int = _f(4, lo=1)  # inference batch for selection
    select_size: Literal["train", "label"] = "train"  # score at data.target_size or label size


@dataclass(frozen=True)
class LossConfig:
    """Weights of the RIPU objective (METHOD.md section 2) and the LSE focal term."""

    source_ce: float = _f(1.0, lo=0)
    target_ce: float = _f(1.0, lo=0)
    lc: float = _f(0.1, lo=0)
    nl: float = _f(1.0, lo=0)
    nl_threshold: float = _f(0.05, lo=0, hi=1, lo_open=True)
    focal: float = _f(0.1, lo=0)  # beta
    focal_gamma: float = _f(3.0, lo=0)


@dataclass(frozen=True)
class LSEConfig:
    """LSE self-training (METHOD.md section 3)."""

    rounds: int = _f(7, lo=1)
    p_base: float = _f(0.10, lo=0, hi=1)
    p_step: float = _f(0.05, lo=0, hi=1)
    rule: Literal["authors", "per_class"] = "authors"
    patches: int = _f(4, lo=1)
    scale: int = _f(2, lo=1)
    epochs: int = _f(2, lo=1)  # iterations per round = kept images x epochs x patches / batch


@dataclass(frozen=True)
class TrainConfig:
    kind: Literal[TRIAL_KINDS] = "active"  # type: ignore[valid-type]
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision when on a GPU
    threads: int = _f(0, lo=0)  # torch CPU threads (0: torch's default)
    eval_every: int = _f(0, lo=0)  # 0: only at the end
    eval_flip: bool = False
    checkpoint_every: int = _f(500, lo=1)
    log_every: int = _f(50, lo=1)
    save_model: bool = False  # log the final checkpoint to MLflow


@dataclass(frozen=True)
class TrackingConfig:
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "synthetic"


@dataclass(frozen=True)
class SweepConfig:
    experiment: str = "experiments/synthetic.yaml"
    cpus_per_trial: float = _f(1.0, lo=0, lo_open=True)
    gpus_per_trial: float = _f(0.0, lo=0)
    workers_per_trial: int = _f(1, lo=1)  # >1: data-parallel trial (Ray Train, DDP)
    max_concurrent: int = _f(2, lo=1)
    max_failures: int = _f(2, lo=0)


@dataclass(frozen=True)
class ReportConfig:
    out: str = "reports"


@dataclass(frozen=True)
class Config:
    seed: int = _f(0, lo=0)
    synth: SynthConfig = field(default_factory=SynthConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    active: ActiveConfig = field(default_factory=ActiveConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    lse: LSEConfig = field(default_factory=LSEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


# ----------------------------------------------------------------------------- conversion


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {type(None): "null", int: "an integer", float: "a number", bool: "true or false",
            str: "a string"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against annotation ``tp`` and return it in that type."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad
        return _build(tp, value, path)
    if origin is Literal:
        for choice in typing.get_args(tp):
            if value == choice and type(value) is type(choice):
                return value
        raise bad
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, path)
            except ConfigError:
                continue
        raise bad
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{path}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=False)))
    if origin is list:
        if not isinstance(value, list | tuple):
            raise bad
        (arg,) = typing.get_args(tp)
        return [_convert(v, arg, f"{path}[{i}]") for i, v in enumerate(value)]
    if tp is type(None):
        if value is not None:
            raise bad
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {path}")


def _check_range(value: Any, meta: typing.Mapping, path: str) -> None:
    lo, hi, lo_open = meta.get("lo"), meta.get("hi"), meta.get("lo_open", False)
    if lo is None and hi is None:
        return
    below = value <= lo if lo_open and lo is not None else lo is not None and value < lo
    above = hi is not None and value > hi
    if below or above:
        left = "(" if lo_open else "["
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ConfigError(f"{path}: {value!r} is out of range, expected a value in "
                          f"{left}{lo_s}, {hi_s}{']' if hi is not None else ')'}")


def _build(cls: type, raw: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls, include_extras=False)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(f"{where}: unknown key, expected one of {', '.join(fields)}")
    kwargs = {}
    for name, value in raw.items():
        path = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _convert(value, hints[name], path)
        _check_range(kwargs[name], fields[name].metadata, path)
    obj = cls(**kwargs)
    _validate_section(obj, prefix)
    return obj


def _validate_section(obj: Any, prefix: str) -> None:
    """Checks that span several keys of one section."""
    if isinstance(obj, ActiveConfig):
        if len(obj.round_at) != obj.rounds:
            raise ConfigError(f"{prefix}.round_at: expected {obj.rounds} values (one per round, "
                              f"active.rounds), got {len(obj.round_at)}")
        if any(not 0 <= r < 1 for r in obj.round_at) or list(obj.round_at) != sorted(obj.round_at):
            raise ConfigError(f"{prefix}.round_at: expected increasing fractions in [0, 1), "
                              f"got {obj.round_at}")
    if isinstance(obj, OptimConfig) and obj.iters > obj.poly_iters:
        raise ConfigError(f"{prefix}.iters: {obj.iters} exceeds optim.poly_iters "
                          f"({obj.poly_iters}); expected iters <= poly_iters")


def _validate_config(cfg: Config) -> None:
    """Checks that span sections (strategy names are checked against the registry)."""
    from ripu.acquisition.strategies import STRATEGIES

    if cfg.active.strategy not in STRATEGIES:
        raise ConfigError(f"active.strategy: unknown strategy {cfg.active.strategy!r}, expected "
                          f"one of {', '.join(sorted(STRATEGIES))}")


# ----------------------------------------------------------------------------- public API


def config_from_dict(raw: Any, source: str = "params") -> Config:
    """Build and validate a :class:`Config` from a parsed params mapping."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    cfg = _build(Config, raw, "")
    _validate_config(cfg)
    return cfg


def read_yaml(path: str | Path, what: str = "params file",
              expected: str = "a YAML mapping of sections") -> Any:
    """Parse a YAML file; a missing, unreadable, empty or broken file is a ConfigError
    saying it is ``what`` and that ``expected`` was expected."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found, expected an existing YAML file")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{path}: broken YAML ({first}), expected {expected}") from None
    if data is None:
        raise ConfigError(f"{path}: file is empty, expected {expected}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``"section.key=value"`` -> (key path, YAML-parsed value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"-S {text!r}: expected section.key=value")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"-S {text!r}: value is not valid YAML") from None
    return key.strip(), parsed


def set_path(raw: dict, key: str, value: Any) -> None:
    """Set ``raw[a][b]... = value`` for the dotted ``key``; unknown parents are created."""
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parts[:i + 1])}: is a value, not a section; cannot "
                              f"set {key}, expected a key path such as "
                              f"{'.'.join(parts[:i + 1])}=VALUE")
        node = child
    node[parts[-1]] = value


def load_config(path: str | Path = "params.yaml", overrides: typing.Iterable[str] = ()) -> Config:
    """Read ``path``, apply ``-S`` style overrides, validate; raises ConfigError."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    for text in overrides:
        set_path(raw, *parse_override(text))
    return config_from_dict(raw, str(path))


def to_dict(cfg: Any) -> dict:
    """The config as plain YAML/JSON-able nested dicts (tuples become lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(cfg))


def flatten(cfg: Config) -> dict[str, Any]:
    """``{"section.key": value}`` for every leaf (lists as JSON strings): MLflow params."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else k)
        else:
            out[prefix] = json.dumps(node) if isinstance(node, list) else node
    walk(to_dict(cfg), "")
    return out


def apply_overrides(cfg: Config, overrides: typing.Mapping[str, Any]) -> Config:
    """A new validated config with ``{"section.key": value}`` applied (Ray trials use this)."""
    raw = to_dict(cfg)
    for key, value in overrides.items():
        set_path(raw, key, value)
    return config_from_dict(raw, "overrides")


def params_hash(cfg: Config, length: int = 12) -> str:
    """A short stable hash of the resolved config."""
    text = json.dumps(to_dict(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def dump_yaml(cfg: Config) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)

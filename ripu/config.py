"""Typed, validated experiment configuration: one frozen dataclass per params.yaml section.

`load_config(path, overrides)` reads a params file, applies ``section.key=value`` overrides
(as ``dvc exp run -S`` does) and returns a frozen :class:`Config`. A params file may derive
from another (``base: ../../params.yaml``, relative to the file): it then holds only what
differs, merged key by key over the base's sections (:func:`read_params`). The sections are pydantic
dataclasses: strict types (no bool for a number, no string for an integer), ranges, unknown
keys refused. :func:`validated` turns pydantic's first error into a one-line
:class:`ConfigError` naming the full key path and what was expected. Registry-backed names are
checked against the registries (:mod:`ripu.kinds`, and :mod:`ripu.names` for the torch-backed
ones), so loading a config imports no torch.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import AfterValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from ripu import names
from ripu.archs import ARCHS
from ripu.errors import ConfigError
from ripu.kinds import get_kind, kind_names

T = TypeVar("T")

# Every section: frozen, unknown keys refused.
section = dataclass(frozen=True, config=ConfigDict(extra="forbid"))

# Strict scalars (an integer is accepted where a number is expected) and their ranges.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
NonNegInt = Annotated[Int, Field(ge=0)]
PosInt = Annotated[Int, Field(ge=1)]
NonNeg = Annotated[Float, Field(ge=0)]
Pos = Annotated[Float, Field(gt=0)]
Unit = Annotated[Float, Field(ge=0, le=1)]
OpenUnit = Annotated[Float, Field(gt=0, le=1)]  # (0, 1]
Size = tuple[Int, Int]  # (W, H)

# Names the registries hold.
Arch = Literal[tuple(ARCHS)]  # type: ignore[valid-type]
Backbone = Literal[names.BACKBONES]  # type: ignore[valid-type]
Dataset = Literal[names.DATASETS]  # type: ignore[valid-type]
TargetDataset = Literal[names.TARGET_DATASETS]  # type: ignore[valid-type]
Optimizer = Literal[names.OPTIMIZERS]  # type: ignore[valid-type]
Normalization = Literal[names.NORMALIZATIONS]  # type: ignore[valid-type]
Beta = Annotated[Float, Field(ge=0, lt=1)]


def _known_strategy(name: str) -> str:
    if name not in names.STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}, expected one of "
                         f"{', '.join(sorted(names.STRATEGIES))}")
    return name


StrategyName = Annotated[Str, AfterValidator(_known_strategy)]


def _known_kind(name: str) -> str:
    """A registered trial kind (looked up when validated: a kind registered later counts)."""
    if name not in kind_names():
        raise ValueError(f"expected one of {', '.join(map(repr, kind_names()))}, got {name!r}")
    return name


Kind = Annotated[Str, AfterValidator(_known_kind)]


class Invalid(ValueError):
    """A check across keys found ``key`` (relative to the checked section) wrong."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@section
class SynthConfig:
    """The embedded synthetic domain-shift benchmark (`ripu data synth`)."""

    out: Str = "data/synthetic"
    seed: NonNegInt = 0
    source_images: PosInt = 240
    target_train: PosInt = 160
    target_val: PosInt = 60
    height: Annotated[Int, Field(ge=32)] = 128
    width: Annotated[Int, Field(ge=32)] = 256
    target: Literal["v5", "v4"] = "v5"  # the target domain's version (README, benchmark)


@section
class DataConfig:
    """Source and target datasets and how images are fed to the network."""

    source: Dataset = "gta5"
    source_root: Str = "data/synthetic/source"
    target: TargetDataset = "cityscapes"
    target_root: Str = "data/synthetic/target"
    num_classes: Literal[19, 16] = 19
    source_size: Size = (256, 128)  # (W, H) source resize
    target_size: Size = (256, 128)  # (W, H) target resize (training and selection)
    eval_size: Size = (256, 128)  # (W, H) evaluation input; logits upsampled to labels
    crop: Size | None = None  # (W, H) random crop after resize
    flip: Bool = True
    class_balance: Bool = True
    class_balance_rule: Literal["uniform", "authors"] = "uniform"  # draw rule (ripu.data.sampling)
    order: Literal["random", "epochs"] = "random"  # unbalanced draws: independent or shuffled passes
    resize: Literal["cv2_linear", "pil_bicubic"] = "cv2_linear"  # resize rule (ripu.data.transforms)
    normalize: Normalization = "imagenet"  # pixel normalisation (ripu.data.transforms)
    workers: NonNegInt = 0
    keep_decoded: Bool = False  # keep decoded images/labels in memory (small datasets only)


@section
class ModelConfig:
    arch: Arch = "small"
    backbone: Backbone = "resnet101"
    pretrained: Str | None = None  # local file of ImageNet ResNet weights
    freeze_bn: Bool = True
    bn_batch_stats: Bool = False  # with freeze_bn: BN normalises with batch statistics in training
    width: Pos = 1.0  # channel multiplier of an arch that has one (vgg16_fcn8s); 1: the paper's

    def __post_init__(self) -> None:
        if self.width != 1.0 and not ARCHS[self.arch].width:
            scalable = [a for a, t in ARCHS.items() if t.width]
            raise Invalid("width", f"{self.width:g} needs an arch with a channel multiplier "
                                   f"({', '.join(scalable)}), model.arch is {self.arch}; "
                                   f"expected 1.0")


@section
class OptimConfig:
    """The optimiser (``name``: SGD with ``momentum``, or Adam with ``betas``; both with
    ``weight_decay``) and its poly decay (``poly_power`` 0: a fixed rate); the head gets
    ``head_lr_mult`` and biases ``bias_lr_mult`` times the backbone lr."""

    name: Optimizer = "sgd"
    lr: Pos = 2.5e-4
    head_lr_mult: Pos = 10.0
    bias_lr_mult: Pos = 1.0
    momentum: Unit = 0.9  # sgd
    betas: tuple[Beta, Beta] = (0.9, 0.999)  # adam
    weight_decay: NonNeg = 5e-4
    poly_power: NonNeg = 0.9
    poly_iters: PosInt = 62500  # length of the poly schedule
    iters: PosInt = 40000  # where training stops
    batch_source: PosInt = 2
    batch_target: PosInt = 2

    def __post_init__(self) -> None:
        if self.iters > self.poly_iters:
            raise Invalid("iters", f"{self.iters} exceeds optim.poly_iters ({self.poly_iters}); "
                                   f"expected iters <= poly_iters")


@section
class ActiveConfig:
    """Target-label acquisition (docs/method.md section 1)."""

    strategy: StrategyName = "ripu_region"
    budget: OpenUnit = 0.022  # fraction of target pixels
    points: PosInt = 40  # labelled points per image (point strategies)
    radius: NonNegInt = 1
    rounds: PosInt = 5
    round_at: list[Float] = Field(  # fractions of optim.iters
        default_factory=lambda: [0.25, 0.30, 0.35, 0.40, 0.45])
    batch_size: PosInt = 4  # inference batch for selection (others: train.infer_batch)
    select_size: Literal["train", "label"] = "train"  # score at data.target_size or label size
    # logits to the selection size: network output -> input size -> label size, as the
    # authors (core/active/build.py:113, :124), or directly (one bilinear step)
    upsample: Literal["two_step", "one_step"] = "two_step"

    def __post_init__(self) -> None:
        if len(self.round_at) != self.rounds:
            raise Invalid("round_at", f"expected {self.rounds} values (one per round, "
                                      f"active.rounds), got {len(self.round_at)}")
        if any(not 0 <= r < 1 for r in self.round_at) or self.round_at != sorted(self.round_at):
            raise Invalid("round_at", f"expected increasing fractions in [0, 1), "
                                      f"got {self.round_at}")


@section
class LossConfig:
    """Weights of the RIPU objective (docs/method.md section 2) and the LSE focal term."""

    source_ce: NonNeg = 1.0
    target_ce: NonNeg = 1.0
    lc: NonNeg = 0.1
    nl: NonNeg = 1.0
    nl_threshold: OpenUnit = 0.05
    focal: NonNeg = 0.1  # beta
    focal_gamma: NonNeg = 3.0


@section
class LSEConfig:
    """LSE self-training (docs/method.md section 3)."""

    rounds: PosInt = 7
    p_base: Unit = 0.10
    p_step: Unit = 0.05
    rule: Literal["authors", "authors_ceil", "per_class"] = "authors"  # ripu.selftrain.lse
    patches: PosInt = 4
    scale: PosInt = 2
    epochs: PosInt = 2  # iterations per round = kept images x epochs x patches / batch


@section
class TrainConfig:
    kind: Kind = "active"
    device: Str = "auto"  # auto | cpu | cuda | cuda:N
    amp: Bool = True  # mixed precision when on a GPU
    threads: NonNegInt = 0  # torch CPU threads (0: torch's default)
    eval_every: NonNegInt = 0  # 0: only at the end
    eval_flip: Bool = False
    # images per forward pass of inference outside selection and evaluation: LSE's and the
    # hybrid's pseudo-labels, people's draft labels, the warm-up's anatomy
    infer_batch: PosInt = 4
    checkpoint_every: PosInt = 500
    log_every: PosInt = 50
    save_model: Bool = False  # log the final checkpoint to MLflow


@section
class TrackingConfig:
    uri: Str = "sqlite:///mlflow.db"
    experiment: Str = "synthetic"
    retry_seconds: Pos = 300.0  # how long runs wait for an unreachable tracking server
    # a server's basic-auth user: a file (chmod 600) in MLflow's credentials-file format, read
    # when $MLFLOW_TRACKING_USERNAME / $MLFLOW_TRACKING_PASSWORD are unset (ripu.credentials)
    credentials: Str | None = None


@section
class SweepConfig:
    experiment: Str = "experiments/synthetic.yaml"
    cpus_per_trial: Pos = 1.0
    gpus_per_trial: NonNeg = 0.0
    workers_per_trial: PosInt = 1  # >1: data-parallel trial (Ray Train, DDP)
    max_concurrent: PosInt = 2
    max_failures: NonNegInt = 2
    # warm-up name -> a model file the warm-up stage imports instead of training the warm-up
    # (e.g. the LSE authors' released gta5_vggfcn_init.pth; ripu.warmups)
    warmup_files: dict[Str, Str] = Field(default_factory=dict)


@section
class ReportConfig:
    out: Str = "reports"


@section
class AnnotateConfig:
    """Where a round's labels come from (:mod:`ripu.annotate`): the ground-truth oracle
    (``url: null``, the default) or people in a Label Studio server at ``url``. The token is
    read from the environment variable ``token_env`` or the file ``token_file``, never from
    params."""

    url: Str | None = None  # e.g. http://127.0.0.1:8080
    project: Str = "ripu"  # project title prefix: one project per trial, "<project>/<trial>"
    token_env: Str = "LABEL_STUDIO_TOKEN"  # noqa: S105 (the variable's name, not a token)
    token_file: Str | None = None  # used when the environment variable is unset


@section
class Config:
    seed: NonNegInt = 0
    synth: SynthConfig = Field(default_factory=SynthConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    active: ActiveConfig = Field(default_factory=ActiveConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    lse: LSEConfig = Field(default_factory=LSEConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    annotate: AnnotateConfig = Field(default_factory=AnnotateConfig)


def check_label_source(cfg: Config) -> None:
    """Refuse (ConfigError, one line) people labelling the rounds of a strategy that selects
    by the ground truth. Checked where a trial's labels are set up (a trial, the sweep before
    Ray), not when a config loads: a params file with ``annotate.url`` may still feed a grid
    that also holds oracle rows to read, such as DVC's view of a pipeline."""
    people = cfg.annotate.url is not None and get_kind(cfg.train.kind).selects
    if people and cfg.active.strategy in names.GROUND_TRUTH_STRATEGIES:
        raise ConfigError(f"active.strategy: {cfg.active.strategy} selects by the ground "
                          "truth, so people cannot label its rounds (annotate.url is set); "
                          "expected a strategy that reads no labels, or annotate.url: null")


# ----------------------------------------------------------------------------- errors

_SCALARS = {type(None): "null", int: "an integer", float: "a number", bool: "true or false",
            str: "a string", dict: "a mapping"}


def _strip(tp: Any) -> Any:
    """``Annotated[X, ...]`` -> ``X``."""
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _expected(tp: Any) -> str:
    """What a value of annotation ``tp`` looks like in YAML terms."""
    tp = _strip(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(a) for a in args)
    if origin is tuple:
        return f"a list of {len(args)} values"
    if origin is list:
        return f"a list, each {_expected(args[0])}"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    return _SCALARS.get(tp, str(tp))


def _interval(metadata: list) -> str:
    """The bounds among a field's constraints as an interval: ``Gt(0), Le(1)`` -> ``(0, 1]``."""
    b = {k: getattr(m, k) for m in metadata for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}
    lo, hi = b.get("gt", b.get("ge")), b.get("lt", b.get("le"))
    return ("(" if lo is None or "gt" in b else "[") + ("-inf" if lo is None else f"{lo:g}") + \
        ", " + ("inf" if hi is None else f"{hi:g}") + (")" if hi is None or "lt" in b else "]")


def _locate(cls: type, loc: tuple) -> tuple[Any, Any, Any]:
    """(annotation, field info or None, dataclass holding the last key) at ``loc``."""
    tp, info, owner = cls, None, cls
    for part in loc:
        tp = _strip(tp)
        if isinstance(part, str):
            fields = getattr(tp, "__pydantic_fields__", {})
            if part not in fields:  # an unknown key
                return None, None, tp
            owner, info = tp, fields[part]
            tp = info.annotation
        else:  # an item of a list or tuple (of a nullable one too)
            if typing.get_origin(tp) in (typing.Union, types.UnionType):
                tp = next(a for a in typing.get_args(tp) if a is not type(None))
            args, info = typing.get_args(_strip(tp)), None
            tp = args[0] if typing.get_origin(_strip(tp)) is list else args[part]
    return tp, info, owner


def _message(err: Any, cls: type, prefix: str) -> str:
    """One pydantic error as ``<key path>: <what is wrong>, expected <what>``. A field's
    ``description`` (``Field(description=...)``), where given, is what it expects."""
    kind, loc = err["type"], tuple(err["loc"])
    if kind == "missing" and loc and isinstance(loc[-1], int):  # a list too short for a tuple
        loc = loc[:-1]
    path = prefix
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else f"{path}.{part}" if path else part
    tp, info, owner = _locate(cls, loc)
    if kind == "unexpected_keyword_argument":
        return f"{path}: unknown key, expected one of {', '.join(owner.__pydantic_fields__)}"
    if kind == "value_error":
        exc = err["ctx"]["error"]
        if isinstance(exc, Invalid):
            return f"{path + '.' if path else ''}{exc.key}: {exc}"
        return f"{path}: {exc}"
    value = err["input"]
    if info is not None and info.description:
        return f"{path}: expected {info.description}, got {value!r}"
    if kind.startswith(("greater_than", "less_than")):  # a field's bounds, or a list item's
        bounds = info.metadata if info is not None else [
            m for a in typing.get_args(tp)[1:] for m in getattr(a, "metadata", [a])]
        value = float(value) if _strip(tp) is float else value
        return f"{path}: {value!r} is out of range, expected a value in {_interval(bounds)}"
    return f"{path}: expected {_expected(tp)}, got {value!r}"


def validated(cls: type[T], raw: Any, prefix: str = "") -> T:
    """``raw`` (parsed YAML) as a ``cls``; ConfigError naming the first wrong key (its path
    below ``prefix``) and what was expected. Unknown keys are reported first."""
    try:
        return TypeAdapter(cls).validate_python(raw)
    except ValidationError as exc:
        first = min(exc.errors(), key=lambda e: e["type"] != "unexpected_keyword_argument")
        raise ConfigError(_message(first, cls, prefix)) from None


# ----------------------------------------------------------------------------- public API


def config_from_dict(raw: Any, source: str = "params") -> Config:
    """Build and validate a :class:`Config` from a parsed params mapping."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    return validated(Config, raw)


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


BASE_KEY = "base"


def merge(base: dict, over: dict) -> dict:
    """``over``'s params over ``base``'s: sections key by key; a key's value (a list, or a
    mapping such as ``sweep.warmup_files``) and a top-level value replaced whole."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = {**out[key], **value} if both else value
    return out


def read_params(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """The params mapping of ``path``, its ``base`` file's (if it names one) merged under
    it; ConfigError for a missing base, a cycle, or anything but a mapping."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    if BASE_KEY not in raw:
        return raw
    base = raw.pop(BASE_KEY)
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: base: expected the path of a params file (relative to "
                          f"this file), got {base!r}")
    parent = (path.parent / base).resolve()
    if parent in _seen or parent == path.resolve():
        raise ConfigError(f"{path}: base: {base} derives from itself; expected a chain of "
                          f"params files that ends")
    return merge(read_params(parent, (*_seen, path.resolve())), raw)


def load_config(path: str | Path = "params.yaml", overrides: typing.Iterable[str] = ()) -> Config:
    """Read ``path`` (and its base), apply ``-S`` style overrides, validate; raises
    ConfigError."""
    raw = read_params(path)
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


def leaf_keys() -> tuple[str, ...]:
    """Every key of the config schema, ``section.name`` (a mapping such as
    ``sweep.warmup_files`` is one key), in declaration order."""
    return _leaf_keys(Config, "")


@functools.cache
def _leaf_keys(cls: type, prefix: str) -> tuple[str, ...]:
    hints = typing.get_type_hints(cls, include_extras=True)
    keys: list[str] = []
    for f in dataclasses.fields(cls):
        tp = _strip(hints[f.name])
        keys += (_leaf_keys(tp, f"{prefix}{f.name}.") if dataclasses.is_dataclass(tp)
                 else [f"{prefix}{f.name}"])
    return tuple(keys)


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


# Sections left out of the hash while they hold their defaults, so that configs written
# before the section existed keep their hash.
OPTIONAL_SECTIONS = {"annotate": AnnotateConfig}
# Keys that took over a use of an older key, left out of the hash while they equal it, so
# that configs written before they existed keep their hash: inference outside selection
# used active.batch_size before train.infer_batch.
SUCCESSOR_KEYS = {"train.infer_batch": "active.batch_size"}


def params_hash(cfg: Config, length: int = 12) -> str:
    """A short stable hash of the resolved config."""
    plain = to_dict(cfg)
    for name, default in OPTIONAL_SECTIONS.items():
        if plain.get(name) == to_dict(default()):
            del plain[name]
    for key, older in SUCCESSOR_KEYS.items():
        (section, name), (older_section, older_name) = key.split("."), older.split(".")
        if plain[section][name] == plain[older_section][older_name]:
            del plain[section][name]
    text = json.dumps(plain, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def dump_yaml(cfg: Config) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)

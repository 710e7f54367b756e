"""Config loading: defaults, overrides, and every kind of bad input named precisely."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ripu.archs import ARCHS, arch_of
from ripu.config import (
    Config,
    apply_overrides,
    config_from_dict,
    flatten,
    load_config,
    params_hash,
    to_dict,
)
from ripu.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, data, name: str = "params.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_repository_params_load_and_round_trip():
    cfg = load_config(REPO / "params.yaml")
    assert cfg.model.arch == "small" and cfg.data.num_classes == 19
    assert config_from_dict(to_dict(cfg)) == cfg
    assert dataclasses.is_dataclass(cfg) and cfg.__dataclass_params__.frozen


def test_defaults_are_the_paper_setting():
    cfg = Config()
    assert (cfg.optim.lr, cfg.optim.head_lr_mult, cfg.optim.momentum) == (2.5e-4, 10.0, 0.9)
    assert (cfg.optim.poly_iters, cfg.optim.iters) == (62500, 40000)
    assert (cfg.loss.lc, cfg.loss.nl, cfg.loss.nl_threshold) == (0.1, 1.0, 0.05)
    assert cfg.active.round_at == [0.25, 0.30, 0.35, 0.40, 0.45]


def test_overrides_parse_yaml_values(tmp_path):
    path = write(tmp_path, {"active": {"budget": 0.05}})
    cfg = load_config(path, ["active.budget=0.022", "data.source_size=[64, 32]",
                             "model.pretrained=null", "seed=3"])
    assert cfg.active.budget == 0.022 and cfg.data.source_size == (64, 32)
    assert cfg.model.pretrained is None and cfg.seed == 3


def test_int_accepted_for_float_but_not_bool_for_int(tmp_path):
    assert load_config(write(tmp_path, {"optim": {"lr": 1}})).optim.lr == 1.0
    with pytest.raises(ConfigError, match=r"^optim\.iters: expected an integer, got True$"):
        load_config(write(tmp_path, {"optim": {"iters": True}}))


@pytest.mark.parametrize("raw, message", [
    ({"active": {"budjet": 0.1}}, r"^active\.budjet: unknown key, expected one of strategy, "),
    ({"nonsense": 1}, r"^nonsense: unknown key"),
    ({"active": {"budget": 0.0}}, r"^active\.budget: 0\.0 is out of range, expected a value in "
                                  r"\(0, 1\]$"),
    ({"active": {"budget": 1.5}}, r"^active\.budget: 1\.5 is out of range"),
    ({"active": {"rounds": 0, "round_at": []}}, r"^active\.rounds: 0 is out of range"),
    ({"active": {"radius": -1}}, r"^active\.radius: -1 is out of range"),
    ({"optim": {"iters": 0}}, r"^optim\.iters: 0 is out of range"),
    ({"optim": {"lr": "fast"}}, r"^optim\.lr: expected a number, got 'fast'$"),
    ({"data": {"source_size": [1, 2, 3]}}, r"^data\.source_size: expected a list of 2 values"),
    ({"data": {"num_classes": 21}}, r"^data\.num_classes: expected one of 19, 16, got 21$"),
    ({"model": {"arch": "unet"}}, r"^model\.arch: expected one of 'small', 'deeplabv2'"),
    ({"train": {"kind": "magic"}}, r"^train\.kind: expected one of 'source_only'"),
    ({"active": {"strategy": "magic"}}, r"^active\.strategy: unknown strategy 'magic', "
                                         r"expected one of .*ripu_region"),
    ({"active": {"rounds": 2}}, r"^active\.round_at: expected 2 values"),
    ({"active": {"round_at": [0.5, 0.1, 0.2, 0.3, 0.4]}}, r"^active\.round_at: expected increasing"),
    ({"optim": {"iters": 10, "poly_iters": 5}}, r"^optim\.iters: 10 exceeds optim\.poly_iters"),
    ({"data": 3}, r"^data: expected a mapping, got 3$"),
    ({"optim": {"name": "rmsprop"}}, r"^optim\.name: expected one of 'sgd', 'adam', got "
                                     r"'rmsprop'$"),
    ({"optim": {"betas": [0.9, 1.0]}}, r"^optim\.betas\[1\]: 1\.0 is out of range, expected a "
                                       r"value in \[0, 1\)$"),
    ({"optim": {"betas": [0.9]}}, r"^optim\.betas: expected a list of 2 values"),
    ({"optim": {"bias_lr_mult": 0}}, r"^optim\.bias_lr_mult: 0\.0 is out of range"),
    ({"data": {"normalize": "bgr"}}, r"^data\.normalize: expected one of 'imagenet', "
                                     r"'caffe_bgr', got 'bgr'$"),
    ({"model": {"width": 0.5}}, r"^model\.width: 0\.5 needs an arch with a channel multiplier "
                                r"\(vgg16_fcn8s\), model\.arch is small; expected 1\.0$"),
    ({"sweep": {"warmup_files": ["a.pth"]}}, r"^sweep\.warmup_files: expected a mapping"),
])
def test_bad_values_name_the_full_key(tmp_path, raw, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, raw))


@pytest.mark.parametrize("text, message", [
    ("", r"file is empty"),
    ("a: [1, 2\n", r"broken YAML"),
    ("- 1\n- 2\n", r"expected a mapping of sections, got list"),
])
def test_broken_files(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"params file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("override, message", [
    ("active.budget", r"expected section\.key=value"),
    ("active.budget=2", r"^active\.budget: 2\.0 is out of range"),
    ("seed.x=1", r"^seed: expected an integer, got \{.x.: 1\}$"),
])
def test_bad_overrides(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, {}), [override])


def test_apply_overrides_validates_and_leaves_original():
    cfg = Config()
    new = apply_overrides(cfg, {"active.budget": 0.05, "seed": 2})
    assert (new.active.budget, new.seed) == (0.05, 2) and cfg.active.budget == 0.022
    with pytest.raises(ConfigError, match=r"^active\.nope: unknown key"):
        apply_overrides(cfg, {"active.nope": 1})


def test_flatten_and_hash():
    cfg = Config()
    flat = flatten(cfg)
    assert flat["active.budget"] == 0.022 and flat["active.round_at"] == "[0.25, 0.3, 0.35, 0.4, 0.45]"
    assert flat["data.source_size"] == "[256, 128]"
    assert params_hash(cfg) == params_hash(Config())
    assert params_hash(cfg) != params_hash(apply_overrides(cfg, {"seed": 1}))


def test_registry_names_are_the_registries_keys():
    """The torch-free name lists the config checks against hold exactly the registries' keys."""
    from ripu import names
    from ripu.acquisition import STRATEGIES
    from ripu.data import DATASETS
    from ripu.models import BACKBONES

    assert set(names.BACKBONES) == set(BACKBONES)
    from ripu.data.transforms import NORMALIZATIONS
    from ripu.engine.optim import OPTIMIZERS
    assert set(names.OPTIMIZERS) == set(OPTIMIZERS)
    assert set(names.NORMALIZATIONS) == set(NORMALIZATIONS)
    assert set(names.DATASETS) == set(DATASETS) and set(names.STRATEGIES) == set(STRATEGIES)
    assert names.STRATEGY_MODES == {name: s.mode for name, s in STRATEGIES.items()}
    assert set(names.GROUND_TRUTH_STRATEGIES) == {
        name for name, s in STRATEGIES.items() if s.uses_ground_truth}
    assert set(names.TARGET_DATASETS) <= set(names.DATASETS)

    for arch in ARCHS:  # each name the config accepts builds
        assert config_from_dict({"model": {"arch": arch}}).model.arch == arch


def test_each_architecture_is_registered_once_with_its_class_and_traits():
    """An entry's location is its class, and the class knows its name and traits from it."""
    from ripu.models import SegmentationModel, build_model

    for name, arch in ARCHS.items():
        cls = arch.model_class()
        assert issubclass(cls, SegmentationModel) and cls.__name__ == arch.location.split(":")[1]
        assert arch_of(cls) == name
    assert build_model("small", 3).arch == "small"
    with pytest.raises(ConfigError, match=r"^unknown model arch 'unet', expected one of "
                                          r"deeplabv2, deeplabv3plus, small, vgg16_fcn8s$"):
        ARCHS["unet"]


def test_reading_an_architectures_traits_imports_no_torch():
    code = ("import sys; from ripu.archs import ARCHS; "
            "assert ARCHS['vgg16_fcn8s'].width and ARCHS['deeplabv2'].resnet; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.integration
def test_loading_a_config_imports_no_torch():
    code = ("import sys; from ripu.config import load_config; load_config(sys.argv[1]); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(REPO / "params.yaml")],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_inference_batch_keeps_the_hash_of_configs_from_before_it():
    """train.infer_batch took over LSE's and people's use of active.batch_size: a config
    where the two agree hashes as before the key existed, one where they differ does not;
    only selection reads active.batch_size."""
    same = apply_overrides(Config(), {"active.batch_size": 8, "train.infer_batch": 8})
    plain = to_dict(same)
    del plain["train"]["infer_batch"], plain["annotate"]
    before = hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:12]
    assert params_hash(same) == before
    assert params_hash(apply_overrides(same, {"train.infer_batch": 2})) != before
    readers = sorted(str(p.relative_to(REPO)) for p in [*(REPO / "ripu").rglob("*.py"),
                                                        *(REPO / "pipelines").rglob("*.py")]
                     if re.search(r"active\.batch_size|\ba\.batch_size", p.read_text()))
    assert readers == ["ripu/config.py", "ripu/engine/selection.py"]


def test_sections_are_frozen_and_replace_validates():
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1
    assert dataclasses.replace(cfg.active, budget=0.5).budget == 0.5
    with pytest.raises(ValueError, match="budget"):
        dataclasses.replace(cfg.active, budget=2.0)


@pytest.mark.parametrize("raw, message", [
    ({"data": {"crop": [1, "b"]}}, r"^data\.crop\[1\]: expected an integer, got 'b'$"),
    ({"data": {"crop": "x"}}, r"^data\.crop: expected a list of 2 values or null, got 'x'$"),
    ({"model": {"pretrained": 3}}, r"^model\.pretrained: expected a string or null, got 3$"),
    ({"data": {"flip": "yes"}}, r"^data\.flip: expected true or false, got 'yes'$"),
    ({"optim": {"iters": "7"}}, r"^optim\.iters: expected an integer, got '7'$"),
    ({"active": {"round_at": [0.1, "a"], "rounds": 2}},
     r"^active\.round_at\[1\]: expected a number, got 'a'$"),
    # an unknown key is named before a bad value of the same section
    ({"active": {"budget": 3, "nope": 1}}, r"^active\.nope: unknown key"),
])
def test_pydantic_errors_become_one_line(raw, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_ints_become_floats_for_numbers():
    cfg = config_from_dict({"optim": {"lr": 1}, "active": {"round_at": [0, 0.5], "rounds": 2}})
    assert type(cfg.optim.lr) is float and [type(r) for r in cfg.active.round_at] == [float] * 2
    assert params_hash(cfg) == params_hash(config_from_dict(to_dict(cfg)))

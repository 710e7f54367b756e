"""Where trials start: warm-up declarations, per-row inits, init checks before Ray, the paper
files' declarations and pipelines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

from pipelines.common import load_params
from ripu.cli import main as cli_main
from ripu.config import apply_overrides, load_config
from ripu.errors import ConfigError, RipuError
from ripu.experiments import load_experiment
from ripu.warmups import (
    check_inits,
    model_signature,
    read_signature,
    trial_inits,
    warmup_path,
)
from tests.test_sweep import make_tiny_data

REPO = Path(__file__).resolve().parents[1]
PAPER = ("gta5_to_cityscapes", "synthia_to_cityscapes")


@pytest.fixture(scope="module")
def base_cfg():
    return load_config(REPO / "params.yaml")


def write(tmp: Path, spec: dict, name: str = "exp.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


SPEC = {
    "name": "x",
    "base": {"optim.lr": 0.001, "optim.batch_source": 1},
    "warmups": {"stage1": {"optim.lr": 0.0005, "optim.iters": 20, "optim.poly_iters": 30}},
    "grid": [{"train.kind": ["active"], "seed": [0, 1]},
             {"init": "stage1", "train.kind": ["source_free", "lse"], "seed": [0]}],
}


# ----------------------------------------------------------------------------- parsing


def test_warmup_config_is_params_plus_base_plus_its_overrides(tmp_path, base_cfg):
    exp = load_experiment(write(tmp_path, SPEC), base_cfg)
    (w,) = exp.warmups.values()
    assert w.name == "stage1" and w.cfg.train.kind == "source_only"  # the default kind
    assert (w.cfg.optim.lr, w.cfg.optim.iters, w.cfg.optim.poly_iters) == (0.0005, 20, 30)
    assert w.cfg.optim.batch_source == 1  # from base
    assert w.cfg.optim.momentum == base_cfg.optim.momentum  # from params
    assert w.cfg.tracking.experiment == "warmup"
    inits = {t.name: t.init for t in exp.trials}
    assert inits == {"active-ripu_region-b0.022-s0": "imagenet",
                     "active-ripu_region-b0.022-s1": "imagenet",
                     "source_free-ripu_region-b0.022-s0": "stage1", "lse-s0": "stage1"}
    # `init` chooses the start, it is no override: trial configs and names do not carry it.
    assert all("init" not in t.overrides for t in exp.trials)


def test_top_level_init_is_every_blocks_default(tmp_path, base_cfg):
    spec = {**SPEC, "init": "stage1"}
    exp = load_experiment(write(tmp_path, spec), base_cfg)
    assert {t.init for t in exp.trials} == {"stage1"}
    spec["grid"] = [{"init": "imagenet", "seed": [0]}, {"seed": [1]}]
    exp = load_experiment(write(tmp_path, spec), base_cfg)
    assert [t.init for t in exp.trials] == ["imagenet", "stage1"]


@pytest.mark.parametrize("change, message", [
    ({"init": "stage2"}, "init 'stage2' is neither imagenet nor a warm-up of this file, "
                         "expected one of imagenet, stage1"),
    ({"grid": [{"init": "nope", "seed": [0]}]}, "grid.init: init 'nope' is neither"),
    ({"warmups": ["stage1"]}, "warmups: expected a mapping of name -> overrides"),
    ({"warmups": {"imagenet": {}}}, "warmups.imagenet: expected a name"),
    ({"warmups": {"s": {"optim.lrr": 0.1}}}, "warmups.s: optim.lrr"),
    ({"warmups": {"s": {"tracking.uri": "x"}}}, "warmups.s.tracking.uri: tracking.* is set "
                                                "in params.yaml"),
    ({"warmups": {"s": {"train.kind": "supervised"}}},
     "warmups.s.train.kind: supervised uses target labels, expected a kind without them"),
    ({"warmups": {"s": {"optim.iters": 9, "optim.poly_iters": 8}}},
     "warmups.s: optim.iters: 9 exceeds optim.poly_iters (8)"),
])
def test_bad_declarations_name_the_key(tmp_path, base_cfg, change, message):
    path = write(tmp_path, {**SPEC, **change})
    with pytest.raises(ConfigError) as info:
        load_experiment(path, base_cfg)
    assert str(path) in str(info.value) and message in str(info.value)


# ----------------------------------------------------------------------------- inits


def test_trial_inits_resolve_warmups_and_init_overrides_them(tmp_path, base_cfg):
    exp = load_experiment(write(tmp_path, SPEC), base_cfg)
    with pytest.raises(RipuError, match=r"trial source_free-ripu_region-b0.022-s0: warm-up "
                                        r"stage1 not found at .*x/stage1.pt; expected it built"):
        trial_inits(exp.trials, exp.name, folder=tmp_path / "models")
    built = warmup_path(tmp_path / "models", "x", "stage1")
    assert built == tmp_path / "models" / "x" / "stage1.pt"
    built.parent.mkdir(parents=True)
    built.write_bytes(b"")
    inits = trial_inits(exp.trials, exp.name, folder=tmp_path / "models")
    assert inits == {"active-ripu_region-b0.022-s0": None, "active-ripu_region-b0.022-s1": None,
                     "source_free-ripu_region-b0.022-s0": str(built), "lse-s0": str(built)}
    other = tmp_path / "other.pt"
    assert set(trial_inits(exp.trials, exp.name, init=other, folder=tmp_path / "models")
               .values()) == {str(other)}


def test_an_imagenet_row_of_a_deeplab_needs_the_weights_file(tmp_path, base_cfg):
    spec = {**SPEC, "base": {"model.arch": "deeplabv2"}}
    exp = load_experiment(write(tmp_path, spec), base_cfg)
    with pytest.raises(ConfigError, match="trial active-ripu_region-b0.022-s0: init imagenet "
                                          "needs model.pretrained"):
        trial_inits(exp.trials[:2], exp.name)


def _save(path: Path, cfg) -> Path:
    torch.save({"model": {}, **model_signature(cfg), "iterations": 1}, path)
    return path


def test_check_inits_names_the_trial_and_every_mismatch(tmp_path, base_cfg):
    spec = {**SPEC, "base": {"model.arch": "deeplabv2", "model.backbone": "resnet50"}}
    exp = load_experiment(write(tmp_path, spec), base_cfg)
    sf = exp.trial("source_free-ripu_region-b0.022-s0")
    same = _save(tmp_path / "same.pt", sf.cfg)
    assert read_signature(same) == {"arch": "deeplabv2", "backbone": "resnet50",
                                    "num_classes": 19}
    check_inits(exp.trials, {sf.name: str(same)})  # a fitting checkpoint passes
    for overrides, message in (
            ({"model.arch": "small"}, "checkpoint has arch small, the model expects arch "
                                      "deeplabv2"),
            ({"model.backbone": "resnet101"}, "checkpoint has backbone resnet101, the model "
                                              "expects backbone resnet50"),
            ({"data.num_classes": 16}, "checkpoint has 16 classes, the model expects 19 "
                                       "classes"),
            ({"model.arch": "deeplabv3plus", "data.num_classes": 16},
             "checkpoint has arch deeplabv3plus, 16 classes, the model expects arch deeplabv2, "
             "19 classes")):
        other = _save(tmp_path / "other.pt", apply_overrides(sf.cfg, overrides))
        with pytest.raises(RipuError) as info:
            check_inits(exp.trials, {sf.name: str(other)})
        assert str(info.value).startswith(f"trial {sf.name}: init {other}: ")
        assert message in str(info.value)
    bare = tmp_path / "bare.pt"  # a bare state dict records nothing: its shapes are checked later
    torch.save({"w": torch.zeros(1)}, bare)
    check_inits(exp.trials, {sf.name: str(bare)})


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("via", ["--init", "declared warm-up"])
def test_sweep_refuses_an_init_of_another_architecture_before_ray(tmp_path, capsys, via):
    """A DeepLab sweep given a small-network checkpoint: exit 2, one line naming the trial
    and the mismatch, nothing written, Ray never started."""
    import ray

    data = make_tiny_data(tmp_path / "data")
    params = tmp_path / "params.yaml"
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"].update(source_root=str(data / "source"), target_root=str(data / "target"))
    raw["tracking"]["uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params.write_text(yaml.safe_dump(raw))
    exp = write(tmp_path, {
        "name": "deep", "base": {"model.arch": "deeplabv2", "model.backbone": "resnet50"},
        "warmups": {"stage1": {"optim.iters": 2, "optim.poly_iters": 2}},
        "init": "stage1", "grid": [{"train.kind": ["source_free"], "seed": [0]}]})
    small = _save(tmp_path / "small.pt", load_config(params))  # params.yaml: arch small
    args = ["sweep", "-q", "--params", str(params), "--experiment", str(exp),
            "--out", str(tmp_path / "runs")]
    if via == "--init":
        args += ["--init", str(small)]
    else:  # the warm-up file of the experiment holds the small network
        (tmp_path / "models" / "deep").mkdir(parents=True)
        os.replace(small, tmp_path / "models" / "deep" / "stage1.pt")
        small = tmp_path / "models" / "deep" / "stage1.pt"
        args += ["--warmups", str(tmp_path / "models")]
    before = _tree(tmp_path)
    code = cli_main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0] == (f"ripu: error: trial source_free-ripu_region-b0.022-s0: init {small}: "
                      f"checkpoint has arch small, the model expects arch deeplabv2; expected "
                      f"a checkpoint of the trial's model")
    assert _tree(tmp_path) == before  # no runs/, no mlflow.db, nothing changed
    assert not ray.is_initialized()


# ----------------------------------------------------------------------------- paper files


@pytest.mark.parametrize("name", PAPER)
def test_paper_rows_declare_their_start(name):
    cfg = load_params(REPO, f"experiments/{name}/params.yaml")
    exp = load_experiment(REPO / "experiments" / f"{name}.yaml", cfg, root=REPO)
    starts = {t.cfg.train.kind: set() for t in exp.trials}
    for t in exp.trials:
        starts[t.cfg.train.kind].add(t.init)
    assert starts == {"source_only": {"imagenet"}, "supervised": {"imagenet"},
                      "active": {"imagenet"}, "source_free": {"source_only"},
                      "lse": {"source_only", "fcn8s_source_only"}}
    assert list(exp.warmups) == ["source_only", "fcn8s_source_only"]
    fcn = exp.warmups["fcn8s_source_only"].cfg
    for t in exp.trials:  # the VGG16-FCN8s warm-up fits the rows that load it
        if t.init == "fcn8s_source_only":
            assert model_signature(t.cfg) == model_signature(fcn) == {
                "arch": "vgg16_fcn8s", "backbone": None, "num_classes": fcn.data.num_classes}
    w = exp.warmups["source_only"]
    # The authors' stage 1 (configs/{gtav,synthia}/deeplabv2_r101_src.yaml): BASE_LR 5e-4,
    # MAX_ITER 31250, STOP_ITER 20000, batch 2, DeepLab-v2 ResNet-101 from ImageNet weights.
    c = w.cfg
    assert (c.train.kind, c.optim.lr, c.optim.iters, c.optim.poly_iters) == (
        "source_only", 0.0005, 20000, 31250)
    assert (c.optim.batch_source, c.model.arch, c.model.backbone) == (2, "deeplabv2",
                                                                        "resnet101")
    assert c.model.pretrained == str(REPO / "models/resnet101_imagenet.pth")
    # The warm-up is the experiment's own data and model: it fits every row that loads it.
    for t in exp.trials:
        if t.init == w.name:
            assert model_signature(t.cfg) == model_signature(c)
    # What the machine supplies comes from the params file, not the experiment file.
    for t in [*exp.trials, w]:
        assert t.cfg.data.target_root == str(REPO / "data/cityscapes")


@pytest.mark.parametrize("name", PAPER)
def test_paper_pipeline_declarations(name):
    """Stage names carry the experiment's name; the literal paths agree with the params
    file; both paper pipelines have the same shape."""
    spec = yaml.safe_load((REPO / "experiments" / name / "dvc.yaml").read_text())
    params = yaml.safe_load((REPO / "experiments" / name / "params.yaml").read_text())
    pfile = f"experiments/{name}/params.yaml"
    assert list(spec["stages"]) == [f"{name}_{s}" for s in ("data", "warmup", "sweep",
                                                             "report")]
    for stage_name, stage in spec["stages"].items():
        stage_kind = stage_name.removeprefix(f"{name}_")
        assert stage["wdir"] == "../.."
        assert stage["cmd"] == f"python -m pipelines.{stage_kind} --params {pfile}"
        for dep in stage["deps"]:
            assert (REPO / dep).exists() or dep.startswith(("data/", "models/", "runs/", "metrics/")), dep
        (entry,) = stage["params"]
        assert list(entry) == [pfile]
    assert params["tracking"]["experiment"] == name
    assert params["sweep"]["experiment"] == f"experiments/{name}.yaml"
    st = spec["stages"]
    assert st[f"{name}_data"]["outs"] == [params["synth"]["out"]]
    assert st[f"{name}_warmup"]["outs"] == [f"models/{name}"]
    assert {f"models/{name}", params["synth"]["out"]} <= set(st[f"{name}_sweep"]["deps"])
    assert st[f"{name}_sweep"]["outs"] == [{f"runs/{name}": {"persist": True}}]
    assert f"runs/{name}" in st[f"{name}_report"]["deps"]
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in st[f"{name}_report"]["outs"]]
    assert all(o.startswith(params["report"]["out"] + "/") for o in outs)
    # The same pipeline for both experiments, but for the name.
    other = [p for p in PAPER if p != name][0]
    twin = (REPO / "experiments" / other / "dvc.yaml").read_text()
    mine = (REPO / "experiments" / name / "dvc.yaml").read_text()
    strip = [line for line in mine.replace(name, "@").splitlines() if not line.startswith("#")]
    assert [line for line in twin.replace(other, "@").splitlines()
            if not line.startswith("#") and "title:" not in line] == [
        line for line in strip if "title:" not in line]


# ----------------------------------------------------------------------------- imported warm-ups

WIDTH = 0.0625


def authors_layout(cfg) -> dict[str, torch.Tensor]:
    """A random FCN8s state dict in the LSE authors' key layout (model/fcn8s.py: conv1_1 ...
    fc7, score_fr, score_pool3/4, upscore2/_pool4/8) at ``WIDTH``."""
    from ripu.models import build_model

    torch.manual_seed(7)
    model = build_model("vgg16_fcn8s", cfg.data.num_classes, width=WIDTH)
    out = {}
    for key, value in model.state_dict().items():
        key = key.removeprefix("backbone.").replace("classifier.", "score_fr.")
        out[key] = torch.randn_like(value) * 0.05
    return out


def test_warmup_stage_imports_a_named_file_instead_of_training(tmp_path):
    """sweep.warmup_files: the stage writes the file's weights as the warm-up (no training),
    evaluated on val; an unknown warm-up name or a missing file is one line before writing."""
    from pipelines import warmup as stage

    data = make_tiny_data(tmp_path / "data")
    spec = {"name": "imp", "base": {"data.source_size": [64, 32], "data.target_size": [64, 32],
                                    "data.eval_size": [64, 32]},
            "warmups": {"fcn": {"model.arch": "vgg16_fcn8s", "model.width": WIDTH,
                                "data.normalize": "caffe_bgr", "model.pretrained": None}},
            "grid": [{"init": "fcn", "train.kind": ["lse"], "model.arch": ["vgg16_fcn8s"],
                      "model.width": [WIDTH], "data.normalize": ["caffe_bgr"], "seed": [0]}]}
    exp_file = write(tmp_path, spec)
    cfg = apply_overrides(load_config(REPO / "params.yaml"), {
        "data.source_root": str(data / "source"), "data.target_root": str(data / "target"),
        "sweep.experiment": str(exp_file), "tracking.experiment": "imp"})
    theirs = tmp_path / "gta5_vggfcn_init.pth"
    torch.save(authors_layout(cfg), theirs)

    wide = tmp_path / "wide.pth"  # the authors' layout at another width: shapes do not fit
    torch.save({k: torch.cat([v, v]) if k == "conv1_1.weight" else v
                for k, v in authors_layout(cfg).items()}, wide)
    for files, message in (({"nope": str(theirs)}, r"^sweep\.warmup_files\.nope: nope is not a "
                                                    r"warm-up of .*exp\.yaml, expected one of fcn$"),
                           ({"fcn": str(tmp_path / "no.pth")}, r"no\.pth does not exist"),
                           ({"fcn": str(wide)}, r"wide\.pth does not fit: shape mismatches "
                                                r"\(file vs model\) \[backbone\.conv1_1\.weight")):
        bad = apply_overrides(cfg, {"sweep.warmup_files": files})
        with pytest.raises(RipuError, match=message):
            stage.run(tmp_path, bad)
        assert not (tmp_path / "models").exists() and not (tmp_path / "metrics").exists()

    stage.run(tmp_path, apply_overrides(cfg, {"sweep.warmup_files": {"fcn": str(theirs)}}))
    ckpt = torch.load(warmup_path(tmp_path / "models", "imp", "fcn"), weights_only=True)
    assert (ckpt["arch"], ckpt["iterations"], ckpt["imported"]) == (
        "vgg16_fcn8s", 0, str(theirs))
    state = torch.load(theirs, weights_only=True)
    assert torch.equal(ckpt["model"]["backbone.conv3_2.weight"], state["conv3_2.weight"])
    assert torch.equal(ckpt["model"]["classifier.bias"], state["score_fr.bias"])
    assert torch.equal(ckpt["model"]["upscore8.weight"], state["upscore8.weight"])
    metrics = yaml.safe_load((tmp_path / "metrics" / "imp" / "warmups.json").read_text())
    assert metrics["fcn"]["iterations"] == 0 and 0.0 <= metrics["fcn"]["miou"] <= 1.0
    assert not (tmp_path / "models" / "warmup_trials").exists()  # nothing trained

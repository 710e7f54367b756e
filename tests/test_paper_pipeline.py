"""A paper experiment end to end with its documented command,
``dvc repro experiments/gta5_to_cityscapes/dvc.yaml``, on tiny GTA5 and Cityscapes files in
their real layouts, on the CPU: a tiny DeepLab (ResNet-50 backbone at 64x32) and FCN-8s on
VGG16 at 1/16 of its width, from random "ImageNet" weights files, every row of the shipped
experiment file with its training lengths shrunk. Shows that the stage-1 warm-ups are trained
from the experiment's models and settings, that the source-free and LSE trials start from
theirs (the VGG16-FCN8s LSE row from the FCN8s warm-up), that the other rows start from the
ImageNet file, and that the report is built.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipelines.common import load_params
from ripu.engine.checkpoint import read_checkpoint
from ripu.engine.trainer import run_trial
from ripu.experiments import load_experiment
from ripu.tracking import list_runs
from tests.data.layouts import write_cityscapes, write_gta5
from tests.test_pipeline import _run

pytestmark = pytest.mark.integration  # real Ray clusters, DVC, servers or subprocesses

REPO = Path(__file__).resolve().parents[1]
NAME = "gta5_to_cityscapes"
PIPELINE = f"experiments/{NAME}/dvc.yaml"
PARAMS = f"experiments/{NAME}/params.yaml"
STAGES = [f"{NAME}_{s}" for s in ("data", "warmup", "sweep", "report")]


def scene(seed: int, h: int = 32, w: int = 64) -> np.ndarray:
    """Cityscapes label ids of a street scene: sky, building, vegetation, road, sidewalk,
    a car and a person at seeded places, unlabelled (0) in a corner."""
    rng = np.random.default_rng(seed)
    label = np.full((h, w), 23, dtype=np.uint8)  # sky
    horizon = int(rng.integers(8, 14))
    label[horizon:horizon + 8] = 11  # building
    label[horizon:horizon + 8, int(rng.integers(0, w // 2)):][:, :12] = 21  # vegetation
    label[h // 2 + 2:] = 7  # road
    label[h // 2 + 2:, :8] = 8  # sidewalk
    x = int(rng.integers(10, w - 16))
    label[h // 2:h // 2 + 6, x:x + 12] = 26  # car
    label[h // 2 - 4:h // 2 + 6, x + 14:x + 16] = 24  # person
    label[-3:, -4:] = 0  # unlabelled -> 255
    return label


def write_fixtures(repo: Path) -> None:
    """data/gta5 (6 images) and data/cityscapes (4 train, 2 val), 64x32, real layouts."""
    write_gta5(repo / "data" / "gta5", [scene(i) for i in range(6)])
    write_cityscapes(repo / "data" / "cityscapes", "train",
                     {"aachen": [scene(10 + i) for i in range(4)]})
    write_cityscapes(repo / "data" / "cityscapes", "val",
                     {"frankfurt": [scene(20 + i) for i in range(2)]})


def write_imagenet(path: Path) -> None:
    """A random torchvision ResNet-50 state dict standing in for the ImageNet weights."""
    import torchvision

    torch.manual_seed(1234)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)


VGG_WIDTH = 0.0625  # the FCN-8s rows' channel multiplier here (the structure is VGG16's)


def write_vgg16(path: Path) -> None:
    """A random VGG16 state dict in torchvision's layout (``features.N``, ``classifier.N``,
    fc6 / fc7 as linear layers) at ``VGG_WIDTH``, standing in for the ImageNet weights."""
    from ripu.models.fcn8s import TORCHVISION_KEYS, VGG16Backbone

    torch.manual_seed(4321)
    state = {}
    for name, value in VGG16Backbone(VGG_WIDTH).state_dict().items():
        layer, _, part = name.partition(".")
        value = torch.randn_like(value) * (2.0 / max(1, value[0].numel())) ** 0.5
        state[f"{TORCHVISION_KEYS[layer]}.{part}"] = value.flatten(1) if part == "weight" \
            and layer.startswith("fc") else value
    fc = state["classifier.3.weight"].shape[0]
    state.update({"classifier.6.weight": torch.randn(1000, fc), "classifier.6.bias":
                  torch.zeros(1000)})
    torch.save(state, path)


def shrink(spec: dict) -> dict:
    """The shipped experiment with every row kept, at 64x32 on a ResNet-50 (FCN-8s rows at
    1/16 width), a few iterations."""
    spec["base"].update({
        "data.source_size": [64, 32], "data.target_size": [64, 32], "data.eval_size": [64, 32],
        "data.workers": 0, "model.backbone": "resnet50", "optim.iters": 4,
        "optim.poly_iters": 4, "active.batch_size": 2, "train.amp": False,
        "train.checkpoint_every": 100, "train.log_every": 2})
    spec["warmups"]["source_only"].update({"optim.iters": 3, "optim.poly_iters": 4})
    spec["warmups"]["fcn8s_source_only"].update({"optim.iters": 3, "optim.poly_iters": 4,
                                                 "model.width": VGG_WIDTH})
    # The authors' LSE rule, floor(N_c p / C) images of class c, keeps none of 4 images, and
    # floor(N_c p) needs p >= 1/4.
    small = {"optim.iters": [4], "active.budget": [0.05], "lse.rounds": [1], "lse.epochs": [1],
             "lse.rule": ["per_class"], "lse.p_base": [0.5]}
    sizes = ("data.source_size", "data.target_size", "data.eval_size")
    for block in spec["grid"]:
        block.update({k: v for k, v in small.items() if k in block})
        block.update({k: [[64, 32]] for k in sizes if k in block})
        if block.get("model.arch") == ["vgg16_fcn8s"]:
            block["model.width"] = [VGG_WIDTH]
    return spec


def user_params(repo: Path) -> None:
    """What a user supplies: dataset roots, the ImageNet weights file, the resources."""
    params = yaml.safe_load((repo / PARAMS).read_text())
    params["data"].update(source_root="data/gta5", target_root="data/cityscapes")
    params["model"]["pretrained"] = "models/resnet50_imagenet.pth"
    params["train"]["threads"] = 1
    params["sweep"].update(cpus_per_trial=1, gpus_per_trial=0, max_concurrent=2, max_failures=0)
    (repo / PARAMS).write_text(yaml.safe_dump(params, sort_keys=False))


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model"]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def replay(cfg, out: Path, init: str | None) -> dict[str, torch.Tensor]:
    """The same trial run here, untracked, from ``init``: its final weights."""
    run_trial(cfg, out, init=init, progress=False, callbacks=[])
    return weights(out / "checkpoints" / "last.pt")


@pytest.mark.slow
def test_paper_experiment_end_to_end(tmp_path):
    repo = tmp_path / "repo"
    for item in ("ripu", "pipelines", "experiments"):
        shutil.copytree(REPO / item, repo / item,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for item in ("dvc.yaml", ".dvcignore", ".gitignore", "params.yaml"):
        shutil.copy2(REPO / item, repo / item)
    exp_file = repo / "experiments" / f"{NAME}.yaml"
    exp_file.write_text(yaml.safe_dump(shrink(yaml.safe_load(exp_file.read_text())),
                                       sort_keys=False))
    user_params(repo)
    write_fixtures(repo)
    write_imagenet(repo / "models" / "resnet50_imagenet.pth")
    write_vgg16(repo / "models" / "vgg16_imagenet.pth")  # the FCN8s warm-up's path

    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    env.pop("RAY_ADDRESS", None)
    dvc = [str(Path(venv_bin) / "dvc")]
    _run(["git", "init", "-q"], repo, env)
    _run([*dvc, "init", "-q"], repo, env)
    _run([*dvc, "config", "core.analytics", "false"], repo, env)

    listing, _ = _run([*dvc, "stage", "list", "--all"], repo, env)
    for stage in STAGES:
        assert f"{PIPELINE}:{stage}" in listing or stage in listing, listing

    out, seconds = _run([*dvc, "repro", PIPELINE], repo, env)  # the documented command
    print(f"\ndvc repro {PIPELINE}: {seconds:.1f} s")
    ran = re.findall(r"Running stage '([^']+)'", out)
    assert ran == [f"{PIPELINE}:{stage}" for stage in STAGES], out[-3000:]  # not the default's
    check_outputs(repo, tmp_path)
    out, _ = _run([*dvc, "repro", PIPELINE], repo, env)
    assert "Running stage" not in out


def check_outputs(repo: Path, tmp_path: Path) -> None:
    """What the pipeline wrote: the warm-up, the trials' starts, the report."""
    cfg = load_params(repo, PARAMS)
    exp = load_experiment(repo / "experiments" / f"{NAME}.yaml", cfg, root=repo)
    imagenet = str(repo / "models" / "resnet50_imagenet.pth")
    index = json.loads((repo / "data/checked" / NAME / "index.json").read_text())
    assert index["counts"] == {"source": 6, "target": 4, "val": 2}

    # The stage-1 warm-ups: the experiment's model and data, the warm-up's own schedule.
    warm_path = repo / "models" / NAME / "source_only.pt"
    ckpt = torch.load(warm_path, weights_only=True)
    assert (ckpt["arch"], ckpt["backbone"], ckpt["num_classes"], ckpt["iterations"]) == (
        "deeplabv2", "resnet50", 19, 3)
    fcn_path = repo / "models" / NAME / "fcn8s_source_only.pt"
    fcn_ckpt = torch.load(fcn_path, weights_only=True)
    assert (fcn_ckpt["arch"], fcn_ckpt["backbone"], fcn_ckpt["iterations"]) == (
        "vgg16_fcn8s", None, 3)
    uri = f"sqlite:///{repo / 'mlflow.db'}"
    wruns = {r.data.tags["ripu.trial"]: r for r in list_runs(uri, "warmup")}
    assert sorted(wruns) == ["fcn8s_source_only", "source_only"]
    fp = wruns["fcn8s_source_only"].data.params
    assert (fp["model.arch"], fp["optim.name"], fp["optim.betas"], fp["data.normalize"]) == (
        "vgg16_fcn8s", "adam", "[0.9, 0.99]", "caffe_bgr")
    assert fp["model.pretrained"] == str(repo / "models" / "vgg16_imagenet.pth")
    wrun = wruns["source_only"]
    p = wrun.data.params
    assert wrun.data.tags["ripu.experiment"] == NAME and wrun.info.status == "FINISHED"
    assert (p["train.kind"], p["model.arch"], p["model.backbone"], p["model.pretrained"]) == (
        "source_only", "deeplabv2", "resnet50", imagenet)
    assert (p["optim.lr"], p["optim.iters"], p["optim.poly_iters"], p["optim.batch_source"]) == (
        "0.0005", "3", "4", "2")
    assert (p["data.source"], p["data.source_root"], p["data.source_size"]) == (
        "gta5", str(repo / "data/gta5"), "[64, 32]")
    # ... and exactly that: the declared warm-up trained here gives the same weights.
    warmup, fcn_warmup = exp.warmups["source_only"], exp.warmups["fcn8s_source_only"]
    assert same(replay(warmup.cfg, tmp_path / "replay_warmup", None), ckpt["model"])
    assert same(replay(fcn_warmup.cfg, tmp_path / "replay_fcn", None), fcn_ckpt["model"])

    # Every row ran, from the start it declares.
    runs = {r.data.tags["ripu.trial"]: r for r in list_runs(uri, NAME)
            if "mlflow.parentRunId" in r.data.tags}
    assert set(runs) == {t.name for t in exp.trials} and len(runs) == 8
    starts = {}
    for t in exp.trials:
        results = json.loads((repo / "runs" / NAME / t.name / "results.json").read_text())
        assert results["iterations"] > 0
        run = runs[t.name]
        assert run.info.status == "FINISHED"
        vgg = t.cfg.model.arch == "vgg16_fcn8s"
        assert run.data.params["model.pretrained"] == ("None" if vgg else imagenet)
        starts[t.cfg.train.kind, t.cfg.model.arch] = run.data.tags["ripu.init"]
    assert starts == {
        ("source_only", "deeplabv2"): "imagenet", ("supervised", "deeplabv2"): "imagenet",
        ("active", "deeplabv2"): "imagenet", ("active", "deeplabv3plus"): "imagenet",
        ("source_free", "deeplabv2"): str(warm_path), ("lse", "deeplabv2"): str(warm_path),
        ("lse", "vgg16_fcn8s"): str(fcn_path)}

    # The trials loaded those weights: replayed here from them, they end bit for bit where the
    # sweep's trials ended; the source-free trial from the ImageNet weights ends elsewhere.
    def final(kind: str, strategy: str | None = None, arch: str = "deeplabv2"):
        (t,) = [t for t in exp.trials if t.cfg.train.kind == kind and t.cfg.model.arch ==
                arch and (strategy is None or t.cfg.active.strategy == strategy)]
        return t, weights(repo / "runs" / NAME / t.name / "checkpoints" / "last.pt")

    sf, sf_final = final("source_free")
    assert same(replay(sf.cfg, tmp_path / "replay_sf", str(warm_path)), sf_final)
    assert not same(replay(sf.cfg, tmp_path / "replay_sf_imagenet", None), sf_final)
    lse, lse_final = final("lse")
    assert same(replay(lse.cfg, tmp_path / "replay_lse", str(warm_path)), lse_final)
    vlse, vlse_final = final("lse", arch="vgg16_fcn8s")
    assert same(replay(vlse.cfg, tmp_path / "replay_vlse", str(fcn_path)), vlse_final)
    assert not same(fcn_ckpt["model"], vlse_final)  # it trained
    ra, ra_final = final("active", "ripu_region")
    assert same(replay(ra.cfg, tmp_path / "replay_ra", None), ra_final)

    # The report: one row per trial, no warm-up.
    reports = repo / "reports" / NAME
    for name in ("results.csv", "summary.md", "budget_curve.png", "budget_curve.csv",
                 "per_class.png", "metrics.json"):
        assert (reports / name).is_file(), name
    with open(reports / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["trial"] for r in rows) == sorted(t.name for t in exp.trials)

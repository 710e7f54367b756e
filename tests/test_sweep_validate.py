"""Before Ray starts, a sweep checks its trials from configs and file headers alone: the same
refusals, with the same one-line messages, as the trials' own checks, without building a
trainer, decoding data, touching torch's global state or calling a server."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import ripu.data.base as data_base
from ripu.config import apply_overrides, load_config
from ripu.data.synthetic import generate
from ripu.engine.trainer import Trainer
from ripu.errors import RipuError
from ripu.experiments import load_experiment
from ripu.sweep.runner import validate_inputs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def sweep(tmp_path):
    """A tiny dataset and an experiment of four kinds over it."""
    data = generate(tmp_path / "data", seed=0, source_images=4, target_train=4, target_val=2,
                    height=32, width=64, progress=False) and tmp_path / "data"
    cfg = apply_overrides(load_config(REPO / "params.yaml"), {
        "data.source_root": str(data / "source"), "data.target_root": str(data / "target"),
        "data.source_size": [64, 32], "data.target_size": [64, 32], "data.eval_size": [64, 32],
        "train.threads": 3, "tracking.experiment": "tiny"})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny", "grid": [
        {"train.kind": ["source_only", "supervised", "active", "lse"], "seed": [0]}]}))
    return cfg, path, data


def _trials(cfg, path, **overrides):
    return load_experiment(path, apply_overrides(cfg, overrides)).trials


def test_validation_decodes_nothing_and_calls_no_server(sweep, monkeypatch):
    cfg, path, data = sweep
    decoded = []
    for name in ("read_rgb", "read_index_png"):
        real = getattr(data_base, name)
        monkeypatch.setattr(data_base, name, lambda p, real=real: decoded.append(p) or real(p))
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    # annotate.url: a port nothing listens on; the trials would find out, the check does not ask
    trials = _trials(cfg, path, **{"annotate.url": "http://127.0.0.1:9"})
    validate_inputs(trials, {t.name: None for t in trials})
    assert decoded == []
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)
    assert not list(data.rglob(".class_lists.json"))  # no cache written beside the data


def _truncate(data: Path) -> None:
    label = sorted((data / "target" / "gtFine" / "val").rglob("*.png"))[0]
    label.write_bytes(label.read_bytes()[:40])


@pytest.mark.parametrize(("overrides", "damage"), [
    ({"data.target_root": "/nowhere"}, None),
    ({"model.pretrained": "/nowhere/resnet.pth"}, None),
    ({"train.device": "tpu:0"}, None),
    ({}, _truncate),
], ids=["missing-dataset", "missing-weights", "not-a-device", "truncated-label"])
def test_validation_refuses_as_the_trial_does(sweep, overrides, damage):
    cfg, path, data = sweep
    if damage:
        damage(data)
    trials = _trials(cfg, path, **overrides)
    with pytest.raises(RipuError) as checked:
        validate_inputs(trials, {t.name: None for t in trials})
    with pytest.raises(RipuError) as trial:
        Trainer(trials[0].cfg, path.parent / "trial", progress=False)
    assert str(checked.value) == str(trial.value)
    assert "\n" not in str(checked.value)


def test_a_cuda_device_the_driver_lacks_is_left_to_the_nodes(sweep):
    """On a cluster the trials run on nodes that may have GPUs the driver has not."""
    cfg, path, _ = sweep
    trials = _trials(cfg, path, **{"train.device": "cuda:7"})
    validate_inputs(trials, {t.name: None for t in trials})


def test_people_cannot_label_the_oracles_rounds(sweep):
    """With annotate.url set, the oracle (it selects by the ground truth) is refused before
    Ray starts, with the message its trial gives before it calls the server; the kinds that do
    not select, and the oracle without people, pass."""
    cfg, path, _ = sweep
    people = {"annotate.url": "http://127.0.0.1:9", "active.strategy": "oracle"}
    trials = _trials(cfg, path, **people)
    with pytest.raises(RipuError) as checked:
        validate_inputs(trials, {t.name: None for t in trials})
    active = next(t for t in trials if t.cfg.train.kind == "active")
    with pytest.raises(RipuError) as trial:
        Trainer(active.cfg, path.parent / "trial", progress=False)
    assert str(checked.value) == str(trial.value)
    assert str(checked.value).startswith("active.strategy: oracle selects by the ground truth")
    others = [t for t in trials if t.cfg.train.kind != "active"]
    validate_inputs(others, {t.name: None for t in others})
    alone = _trials(cfg, path, **{"active.strategy": "oracle"})
    validate_inputs(alone, {t.name: None for t in alone})

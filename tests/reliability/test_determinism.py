"""Runs are deterministic on the CPU (issue "Reliability", part 3): the same seed gives
bit-identical round files, weights, logged metrics and results; another seed differs."""

from __future__ import annotations

import pytest
import torch

from ripu.acquisition import LabelState
from ripu.commands import select_cli
from ripu.engine.callbacks import Callback
from ripu.engine.checkpoint import read_checkpoint
from ripu.engine.trainer import run_trial
from tests.conftest import tiny_config


class Recorder(Callback):
    """Every metric the trainer logs, with its step."""

    def __init__(self) -> None:
        self.logged: list[tuple[int, dict[str, float]]] = []

    def on_log(self, trainer, metrics, step):
        self.logged.append((step, dict(metrics)))


def trial(tiny_data, folder, strategy: str, seed: int) -> dict:
    cfg = tiny_config(tiny_data, folder, **{"active.strategy": strategy, "seed": seed})
    rec = Recorder()
    results = run_trial(cfg, folder / "trial", progress=False, callbacks=[rec])
    out = folder / "trial"
    return {
        "cfg": cfg,
        "results": {k: v for k, v in results.items() if k != "seconds"},
        "logged": rec.logged,
        "rounds": {p.name: p.read_bytes() for p in sorted((out / "masks").glob("round_*.npz"))},
        "weights": read_checkpoint(out / "checkpoints" / "last.pt")["model"],
        "dir": out,
    }


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory) -> dict:
    """Two random_region trials with seed 0 and one with seed 1, each in its own folder."""
    return {name: trial(tiny_data, tmp_path_factory.mktemp(name), "random_region", seed)
            for name, seed in (("a", 0), ("b", 0), ("c", 1))}


def same_weights(x: dict, y: dict) -> bool:
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_same_seed_gives_identical_round_files_weights_and_metrics(runs):
    a, b = runs["a"], runs["b"]
    assert list(a["rounds"]) == ["round_0.npz", "round_1.npz"]
    assert a["rounds"] == b["rounds"]  # byte for byte
    assert same_weights(a["weights"], b["weights"])
    assert a["logged"] == b["logged"] and len(a["logged"]) == 4
    assert a["results"] == b["results"]


def test_another_seed_differs(runs):
    a, c = runs["a"], runs["c"]
    masks = {name: LabelState.load(run["dir"] / "masks" / "round_0.npz") for name, run in
             (("a", a), ("c", c))}
    assert masks["a"].ids == masks["c"].ids
    assert any(not (masks["a"].labelled[i] == masks["c"].labelled[i]).all()
               for i in masks["a"].ids)
    assert a["rounds"] != c["rounds"]
    assert not same_weights(a["weights"], c["weights"])
    assert a["logged"] != c["logged"]


@pytest.mark.parametrize("strategy", ["ripu_region", "ripu_point"])
def test_ripu_trials_repeat_exactly(tiny_data, tmp_path, strategy):
    a = trial(tiny_data, tmp_path / "a", strategy, 0)
    b = trial(tiny_data, tmp_path / "b", strategy, 0)
    assert a["rounds"] == b["rounds"] and a["results"] == b["results"]
    assert same_weights(a["weights"], b["weights"]) and a["logged"] == b["logged"]


def test_select_command_repeats_exactly(runs, tmp_path):
    """`ripu select` from the same checkpoint twice: the same round file, byte for byte."""
    a = runs["a"]
    checkpoint = a["dir"] / "checkpoints" / "last.pt"
    paths = [select_cli(a["cfg"], checkpoint, tmp_path / name, None, progress=False)
             for name in ("x", "y")]
    assert [p.name for p in paths] == ["round_0.npz", "round_0.npz"]
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert LabelState.load(paths[0]).labelled_fraction() > 0

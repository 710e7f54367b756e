"""Trial checkpoints: round trip, refusal of another config or start, or a broken file."""

from __future__ import annotations

import pytest
import torch

from ripu.engine.checkpoint import (
    TrialCheckpoint,
    load_trial_checkpoint,
    save_trial_checkpoint,
)
from ripu.errors import RipuError
from ripu.starts import Start

NO_FILE = Start("imagenet", None, None)  # a model built from model.* alone


def test_round_trip_keeps_every_field(tmp_path):
    labels = {"pseudo": {"a": torch.tensor([[1, 255]], dtype=torch.uint8)}}
    ckpt = TrialCheckpoint(model={"w": torch.arange(3.)}, optimizer={"state": {}},
                           iteration=7, rounds_done=2, config_hash="h1", num_classes=19,
                           arch="small", seconds=1.5, labels=labels)
    path = save_trial_checkpoint(tmp_path / "c" / "last.pt", ckpt)
    back = load_trial_checkpoint(path, "h1", NO_FILE)
    assert (back.iteration, back.rounds_done, back.seconds, back.arch) == (7, 2, 1.5, "small")
    assert torch.equal(back.model["w"], torch.arange(3.))
    assert torch.equal(back.labels["pseudo"]["a"], labels["pseudo"]["a"])
    assert torch.equal(back.torch_rng, torch.get_rng_state())  # saved when not given
    no_pseudo = save_trial_checkpoint(tmp_path / "d.pt", TrialCheckpoint(
        model={}, optimizer={}, iteration=0, rounds_done=0, config_hash="h1", num_classes=1,
        arch="small"))
    assert load_trial_checkpoint(no_pseudo, "h1", NO_FILE).labels == {}


def test_another_config_or_a_broken_file_is_refused(tmp_path):
    path = save_trial_checkpoint(tmp_path / "t" / "checkpoints" / "last.pt", TrialCheckpoint(
        model={}, optimizer={}, iteration=0, rounds_done=0, config_hash="h1", num_classes=1,
        arch="small"))
    with pytest.raises(RipuError, match="was started with another config"):
        load_trial_checkpoint(path, "h2", NO_FILE)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RipuError, match="unreadable checkpoint"):
        load_trial_checkpoint(path, "h1", NO_FILE)


def test_a_checkpoint_from_another_start_is_refused_in_one_line(tmp_path):
    path = save_trial_checkpoint(tmp_path / "t" / "checkpoints" / "last.pt", TrialCheckpoint(
        model={}, optimizer={}, iteration=0, rounds_done=0, config_hash="h1", num_classes=1,
        arch="small", start_sha256="a" * 64))
    assert load_trial_checkpoint(path, "h1", Start("source_only", "w.pt", "a" * 64)).iteration == 0
    for now in (Start("source_only", "w.pt", "b" * 64), NO_FILE):
        with pytest.raises(RipuError) as info:
            load_trial_checkpoint(path, "h1", now)
        message = str(info.value)
        assert "\n" not in message and "started from weights with sha256 aaaaaaaaaaaa" in message
        assert f"its start is now {now.describe()}" in message

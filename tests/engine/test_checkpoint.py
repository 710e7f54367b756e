"""Trial checkpoints: round trip, refusal of another config or a broken file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ripu.engine.checkpoint import (
    TrialCheckpoint,
    load_trial_checkpoint,
    save_trial_checkpoint,
)
from ripu.errors import RipuError


def test_round_trip_keeps_every_field(tmp_path):
    pseudo = {"a": np.array([[1, 255]], dtype=np.uint8)}
    ckpt = TrialCheckpoint(model={"w": torch.arange(3.)}, optimizer={"state": {}},
                           iteration=7, rounds_done=2, config_hash="h1", num_classes=19,
                           arch="small", seconds=1.5, pseudo=pseudo)
    path = save_trial_checkpoint(tmp_path / "c" / "last.pt", ckpt)
    back = load_trial_checkpoint(path, "h1")
    assert (back.iteration, back.rounds_done, back.seconds, back.arch) == (7, 2, 1.5, "small")
    assert torch.equal(back.model["w"], torch.arange(3.))
    assert np.array_equal(back.pseudo["a"], pseudo["a"])
    assert torch.equal(back.torch_rng, torch.get_rng_state())  # saved when not given
    no_pseudo = save_trial_checkpoint(tmp_path / "d.pt", TrialCheckpoint(
        model={}, optimizer={}, iteration=0, rounds_done=0, config_hash="h1", num_classes=1,
        arch="small"))
    assert load_trial_checkpoint(no_pseudo, "h1").pseudo is None


def test_another_config_or_a_broken_file_is_refused(tmp_path):
    path = save_trial_checkpoint(tmp_path / "t" / "checkpoints" / "last.pt", TrialCheckpoint(
        model={}, optimizer={}, iteration=0, rounds_done=0, config_hash="h1", num_classes=1,
        arch="small"))
    with pytest.raises(RipuError, match="was started with another config"):
        load_trial_checkpoint(path, "h2")
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RipuError, match="unreadable checkpoint"):
        load_trial_checkpoint(path, "h1")

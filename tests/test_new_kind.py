"""Adding a trial kind is one registry entry and its test (docs/extending.md's worked example):
"RIPU regions plus pseudo-labels above a fixed confidence", composed of the selection-rounds
schedule and a new label source, runs end to end with no change to the engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ripu.data.labels import IGNORE_INDEX
from ripu.engine.callbacks import Callback
from ripu.engine.trainer import run_trial
from ripu.inference import predict
from ripu.kinds import KINDS, TrialKind
from ripu.label_sources import SelectedAndPseudo
from ripu.parts import LABEL_SOURCES
from tests.conftest import tiny_config

THRESHOLD = 0.1  # an untrained tiny network is unsure: a low bar so that some pixels pass


class SelectedAndConfident(SelectedAndPseudo):
    """The selected pixels, plus the model's prediction wherever its softmax exceeds
    THRESHOLD on the pixels not selected (computed after each selection round)."""

    def after_selection(self, trainer, round_index: int) -> None:
        target = trainer.data["target"]
        masks = trainer.state.masks_for(target.ids)
        self.maps = {}
        for p in predict(trainer.model, target, device=trainer.device):
            prob, label = p.logits.softmax(1).max(1)
            for item, pr, lab in zip(p.items, prob, label, strict=True):
                keep = (pr > THRESHOLD).numpy() & ~masks[item["id"]]
                self.maps[item["id"]] = np.where(keep, lab.numpy(), IGNORE_INDEX).astype(
                    np.uint8)


@pytest.fixture
def confident_kind():
    LABEL_SOURCES.register("selected+confident", SelectedAndConfident)
    KINDS.register("active_confident", TrialKind(
        "active_confident", "RIPU + confident", 6, ("src", "lc", "tgt", "nl", "pseudo"),
        True, True, "selected+confident", "selection_rounds",
        description="active plus the model's confident predictions on unselected pixels"))
    yield
    del KINDS["active_confident"], LABEL_SOURCES["selected+confident"]


def test_a_kind_composed_of_a_new_label_source_runs(confident_kind, tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, **{"train.kind": "active_confident"})
    seen = {}

    class Keep(Callback):
        def on_end(self, trainer, results, result) -> None:
            seen["trainer"] = trainer

    results = run_trial(cfg, tmp_path / "trial", progress=False, callbacks=[Keep()])
    trainer = seen["trainer"]
    assert results["kind"] == "active_confident" and results["iterations"] == cfg.optim.iters
    maps, masks = trainer.labels.pseudo, trainer.state.masks_for(trainer.data["target"].ids)
    assert sorted(maps) == sorted(masks)
    assert all((maps[i][masks[i]] == IGNORE_INDEX).all() for i in maps)  # selected: no pseudo
    assert sum(int((m != IGNORE_INDEX).sum()) for m in maps.values()) > 0
    ckpt = torch.load(tmp_path / "trial" / "checkpoints" / "last.pt", weights_only=True)
    assert all(np.array_equal(ckpt["labels"]["pseudo"][i].numpy(), maps[i]) for i in maps)

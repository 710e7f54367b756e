"""The trainer end to end on tiny data: each kind, loss going down, exact resume, MLflow contents."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from ripu.acquisition import LabelState
from ripu.data.build import build_datasets
from ripu.engine.callbacks import Callback
from ripu.engine.trainer import Trainer, run_trial
from ripu.errors import RipuError, TrainingDiverged
from tests.conftest import tiny_config


class Recorder(Callback):
    """Collects logged metrics; optionally interrupts training after ``stop_at`` iterations."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.logs: list[tuple[int, dict]] = []
        self.stop_at = stop_at

    def on_log(self, trainer, metrics, step):
        self.logs.append((step, metrics))
        if self.stop_at is not None and step >= self.stop_at:
            raise KeyboardInterrupt("simulated kill")


@pytest.mark.parametrize("kind, strategy", [
    ("source_only", "ripu_region"), ("supervised", "ripu_region"), ("active", "ripu_region"),
    ("active", "ripu_point"), ("active", "random_region"), ("source_free", "ripu_region"),
])
def test_each_kind_runs_and_writes_results(tiny_data, tmp_path, kind, strategy):
    cfg = tiny_config(tiny_data, tmp_path, **{"train.kind": kind, "active.strategy": strategy,
                                              "optim.iters": 4, "optim.poly_iters": 4})
    res = run_trial(cfg, tmp_path / "trial", progress=False, callbacks=[])
    saved = json.loads((tmp_path / "trial" / "results.json").read_text())
    assert saved == res
    assert res["iterations"] == 4 and 0.0 <= res["miou"] <= 1.0 and len(res["iou"]) == 19
    rounds = sorted((tmp_path / "trial" / "masks").glob("round_*.npz"))
    if kind in ("active", "source_free"):
        assert [p.name for p in rounds] == ["round_0.npz", "round_1.npz"]
        assert res["labelled_fraction"] > 0
        if strategy != "ripu_point":  # at most ceil(32*64*0.025/9) = 6 squares per round
            assert res["labelled_fraction"] <= 2 * 6 * 9 / (32 * 64)
    else:
        assert rounds == []
        assert res["labelled_fraction"] == (1.0 if kind == "supervised" else 0.0)
    labelled, target = res["labelled_pixels"], res["target_pixels"]
    assert list(labelled) == list(target) == list(res["iou"])  # every class, by name
    assert sum(target.values()) > 0.9 * 6 * 32 * 64  # all target train pixels but ignore
    if kind == "supervised":
        assert labelled == target
    elif kind == "source_only":
        assert set(labelled.values()) == {0}
    else:
        assert all(0 <= labelled[c] <= target[c] for c in target)
        assert 0 < sum(labelled.values()) <= res["labelled_fraction"] * 6 * 32 * 64


def test_labelled_pixel_counts_match_the_round_files_and_labels(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path)
    res = run_trial(cfg, tmp_path / "t", progress=False, callbacks=[])
    state = LabelState.load(tmp_path / "t" / "masks" / "round_1.npz")
    target = build_datasets(cfg, only=("target",))["target"]
    expected = np.zeros(19, dtype=np.int64)
    for i in range(len(target)):
        label = target[i]["label"].numpy()
        mask = state.masks_for([target[i]["id"]])[target[i]["id"]]
        expected += np.bincount(label[mask & (label != 255)], minlength=19)[:19]
    assert list(res["labelled_pixels"].values()) == expected.tolist()
    assert sum(expected) > 0


def test_point_budget_is_exact(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, **{"active.strategy": "ripu_point", "active.points": 5})
    run_trial(cfg, tmp_path / "t", progress=False, callbacks=[])
    state = LabelState.load(tmp_path / "t" / "masks" / "round_1.npz")
    counts = [int(m.sum()) for m in state.masks_for(state.ids).values()]
    assert counts == [5] * len(counts)


def test_region_budget_never_exceeded_and_grows_per_round(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, **{"active.budget": 0.1, "active.radius": 1})
    run_trial(cfg, tmp_path / "t", progress=False, callbacks=[])
    r0 = LabelState.load(tmp_path / "t" / "masks" / "round_0.npz")
    r1 = LabelState.load(tmp_path / "t" / "masks" / "round_1.npz")
    for image_id in r0.ids:
        m0, m1 = r0.masks_for([image_id])[image_id], r1.masks_for([image_id])[image_id]
        assert (m1 | m0).sum() == m1.sum()  # labelled pixels stay labelled
        # per round ceil(32*64*0.05/9) = 12 regions of at most 9 pixels
        assert m0.sum() <= 12 * 9 and m1.sum() <= 24 * 9
    assert r1.labelled_fraction() > r0.labelled_fraction()


def test_short_run_lowers_the_loss(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, **{"train.kind": "source_only", "optim.iters": 40,
                                              "optim.poly_iters": 40, "train.log_every": 10})
    rec = Recorder()
    run_trial(cfg, tmp_path / "t", progress=False, callbacks=[rec])
    losses = [m["train/loss"] for _, m in rec.logs]
    assert len(losses) == 4 and losses[-1] < losses[0]


def test_every_parameter_gets_a_gradient(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, **{"train.kind": "supervised"})
    trainer = Trainer(cfg, tmp_path / "t", progress=False)
    batch = trainer.batches()[0]
    terms = trainer.loss_terms(batch)
    assert set(terms) == {"src", "lc", "tgt", "nl"}
    sum(terms.values()).backward()
    for name, p in trainer.model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.any(p.grad != 0), name


def test_batches_are_a_function_of_the_iteration(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path)
    a = Trainer(cfg, tmp_path / "a", progress=False).batches()
    b = Trainer(cfg, tmp_path / "b", progress=False).batches()
    for it in (0, 5):
        assert torch.equal(a[it]["source"]["image"], b[it]["source"]["image"])
        assert torch.equal(a[it]["target"]["label"], b[it]["target"]["label"])
    assert not torch.equal(a[0]["source"]["image"], a[1]["source"]["image"])


def test_resume_continues_exactly(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, **{"optim.iters": 12, "optim.poly_iters": 12,
                                              "train.checkpoint_every": 3})
    full = run_trial(cfg, tmp_path / "full", progress=False, callbacks=[])
    with pytest.raises(KeyboardInterrupt):
        run_trial(cfg, tmp_path / "cut", progress=False, callbacks=[Recorder(stop_at=8)])
    assert not (tmp_path / "cut" / "results.json").exists()
    resumed = run_trial(cfg, tmp_path / "cut", resume=True, progress=False, callbacks=[])
    assert {k: v for k, v in resumed.items() if k != "seconds"} == \
        {k: v for k, v in full.items() if k != "seconds"}
    for r in (0, 1):
        a = LabelState.load(tmp_path / "full" / "masks" / f"round_{r}.npz")
        b = LabelState.load(tmp_path / "cut" / "masks" / f"round_{r}.npz")
        for image_id in a.ids:
            assert np.array_equal(a.masks_for([image_id])[image_id],
                                  b.masks_for([image_id])[image_id])


def test_resume_with_changed_config_is_refused(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path)
    run_trial(cfg, tmp_path / "t", progress=False, callbacks=[])
    changed = tiny_config(tiny_data, tmp_path, **{"active.budget": 0.02})
    with pytest.raises(RipuError, match="another config"):
        run_trial(changed, tmp_path / "t", resume=True, progress=False, callbacks=[])


def test_init_checkpoint_for_other_classes_is_refused(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, **{"train.kind": "source_only"})
    run_trial(cfg, tmp_path / "t", progress=False, callbacks=[])
    other = tiny_config(tiny_data, tmp_path, **{"data.num_classes": 16})
    with pytest.raises(RipuError, match="checkpoint has 19 classes, the model expects 16"):
        Trainer(other, tmp_path / "u", init=tmp_path / "t" / "checkpoints" / "last.pt",
                progress=False)


@pytest.mark.integration  # a real MLflow store
def test_mlflow_run_holds_params_metrics_and_artifacts(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path)
    res = run_trial(cfg, tmp_path / "t", progress=False)
    client = MlflowClient(cfg.tracking.uri)
    exp = client.get_experiment_by_name("test")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["active.budget"] == "0.05" and run.data.params["seed"] == "0"
    assert run.data.tags["ripu.strategy"] == "ripu_region" and run.data.tags["ripu.seed"] == "0"
    assert run.data.metrics["final/miou"] == pytest.approx(res["miou"])
    for name, count in res["labelled_pixels"].items():
        key = name.replace(" ", "_")
        assert run.data.metrics[f"labelled_px/{key}"] == count
        assert run.data.metrics[f"target_px/{key}"] == res["target_pixels"][name]
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert steps == [2, 4, 6, 8]
    fractions = client.get_metric_history(run.info.run_id, "acq/labelled_fraction")
    assert [m.step for m in fractions] == [0, 1] and fractions[1].value > fractions[0].value
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "confusion_matrix.png", "results.json", "masks",
            "selection"} <= artifacts
    masks = {a.path for a in client.list_artifacts(run.info.run_id, "masks")}
    assert masks == {"masks/round_0.npz", "masks/round_1.npz"}


def test_a_diverging_trial_stops_at_that_iteration_naming_the_rate(tiny_data, tmp_path):
    # lr 1e30 with frozen BatchNorm: the first step sends the weights to inf, so iteration 1's
    # loss is not finite; the trial stops there, before any selection round. Its rate is the
    # poly schedule's 1e30 (1 - 1/8)^0.9 = 8.86762e29.
    cfg = tiny_config(tiny_data, tmp_path, **{"model.freeze_bn": True, "optim.lr": 1e30,
                                              "active.round_at": [0.5, 0.75]})
    trainer = Trainer(cfg, tmp_path / "trial", progress=False, callbacks=[])
    with pytest.raises(TrainingDiverged) as err:
        trainer.train_until(cfg.optim.iters)
    message = str(err.value)
    assert "diverged at iteration 1:" in message and "learning rate 8.86762e+29" in message
    assert "\n" not in message and trainer.iteration == 1 and trainer.rounds_done == 0


def test_source_and_target_share_one_forward_pass_with_frozen_batchnorm(tiny_data, tmp_path):
    # Frozen BatchNorm: each image's logits depend on that image alone, so one pass over both
    # batches gives the loss terms (and gradients) of two passes; with BatchNorm in training
    # mode the passes stay apart.
    frozen = Trainer(tiny_config(tiny_data, tmp_path, **{"model.freeze_bn": True,
                                                         "train.kind": "supervised"}),
                     tmp_path / "a", progress=False, callbacks=[])
    assert frozen.objective.joint
    assert not Trainer(tiny_config(tiny_data, tmp_path, **{"train.kind": "supervised"}),
                       tmp_path / "b", progress=False, callbacks=[]).objective.joint
    batch = frozen.batches()[0]
    calls = []

    def forward(images, size):
        calls.append(len(images))
        return frozen._logits(images, size)

    joint = frozen.objective.terms(batch, forward, frozen.device)
    frozen.objective.joint = False
    apart = frozen.objective.terms(batch, forward, frozen.device)
    assert calls == [4, 2, 2]
    assert set(joint) == set(apart) == {"src", "lc", "tgt", "nl"}
    for k in joint:
        torch.testing.assert_close(joint[k], apart[k], rtol=1e-5, atol=1e-6)

"""Data-parallel trials: rank slices, DDP steps equal single-process steps, Ray Train on gloo.

The equality test runs two real gloo processes (torch.multiprocessing) through the same
worker function Ray Train calls; the Ray test runs the whole TorchTrainer path.
Assumption of the equality test: the loss is a mean over equally many pixels on each rank,
which holds for ``source_only`` on source labels without ignore pixels (the fixture maps
the synthetic void ids to road) and with frozen BatchNorm (per-rank batch statistics
would differ from whole-batch ones on CPU).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from ripu.engine.callbacks import Callback
from ripu.engine.distributed import check_divisible, train_worker
from ripu.engine.parallel import DistContext
from ripu.engine.trainer import Trainer, run_trial, train_trial
from ripu.engine.trial_dir import TrialDir
from ripu.errors import RipuError
from tests.conftest import tiny_config

pytestmark = pytest.mark.integration  # real Ray clusters, DVC, servers or subprocesses

ITERS = 4


@pytest.fixture(scope="module")
def no_void_data(tmp_path_factory, tiny_data) -> Path:
    """The tiny data with every source pixel labelled (void ids mapped to road, id 7)."""
    from ripu.data.synthetic import LABEL_IDS_19

    root = tmp_path_factory.mktemp("novoid") / "synthetic"
    shutil.copytree(tiny_data, root)
    (root / "source" / ".class_lists.json").unlink(missing_ok=True)  # built from old labels
    for path in sorted((root / "source" / "labels").glob("*.png")):
        ids = np.asarray(Image.open(path))
        ids = np.where(np.isin(ids, LABEL_IDS_19), ids, 7).astype(np.uint8)
        Image.fromarray(ids).save(path)
    return root


def _equal_config(data: Path, tmp: Path, **extra):
    return tiny_config(data, tmp, **{
        "train.kind": "source_only", "model.freeze_bn": True, "optim.batch_source": 2,
        "optim.iters": ITERS, "optim.poly_iters": ITERS, "train.checkpoint_every": ITERS,
        **extra})


# ----------------------------------------------------------------------------- units


def test_rank_slice_takes_equal_consecutive_shares():
    batch = {"source": {"image": torch.arange(12.).view(4, 3), "label": torch.arange(4)},
             "target": None}
    first, second = DistContext(0, 2).slice(batch), DistContext(1, 2).slice(batch)
    assert first["target"] is None and second["target"] is None
    assert first["source"]["label"].tolist() == [0, 1]
    assert second["source"]["label"].tolist() == [2, 3]
    joined = torch.cat([first["source"]["image"], second["source"]["image"]])
    assert torch.equal(joined, batch["source"]["image"])
    assert DistContext().slice(batch) is batch  # one process: the whole batch
    with pytest.raises(RipuError, match="does not divide among 3 workers"):
        DistContext(0, 3).slice(batch)


def test_single_process_context_is_free_and_main():
    one, model = DistContext(), torch.nn.Linear(2, 2)
    assert one.is_main and not DistContext(1, 2).is_main
    assert one.wrap(model, torch.device("cpu")) is model
    assert one.mean({"a": 1.5}, torch.device("cpu")) == {"a": 1.5}
    assert one.all_true(True, torch.device("cpu")) and not one.all_true(False, "cpu")
    with pytest.raises(RipuError, match="rank 2 of 2 workers"):
        DistContext(2, 2)


def test_batch_sizes_must_divide_among_workers(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, **{"optim.batch_source": 2,
                                              "optim.batch_target": 3})
    check_divisible(cfg, 1)
    with pytest.raises(RipuError, match="optim.batch_target: 3 does not divide among 2"):
        check_divisible(cfg, 2)
    source_only = tiny_config(tiny_data, tmp_path, **{"train.kind": "source_only",
                                                      "optim.batch_target": 3})
    check_divisible(source_only, 2)  # target batches are not used
    with pytest.raises(RipuError, match="optim.batch_source: 2 does not divide among 4"):
        check_divisible(source_only, 4)


@dataclasses.dataclass(frozen=True)
class SecondRankAlone(DistContext):
    """Rank 1 of 2 without a process group: trains on whole batches, unwrapped."""

    def wrap(self, model, device):
        return model

    def slice(self, batch):
        return batch

    def mean(self, metrics, device):
        return dict(metrics)


def test_ranks_other_than_main_write_no_files(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, **{"optim.iters": 2, "optim.poly_iters": 2,
                                              "train.checkpoint_every": 1})
    out = tmp_path / "rank1"
    trainer = Trainer(cfg, out, progress=False, dist=SecondRankAlone(rank=1, world_size=2))
    assert not trainer.is_main
    trainer.select(0)
    trainer.train_until(2)  # checkpoint_every 1: two checkpoint attempts
    results = trainer.finish()
    assert trainer.state.labelled_fraction() > 0 and results["iterations"] == 2
    assert not out.exists() or not any(out.rglob("*"))


# ----------------------------------------------------------------------------- DDP == one process


@dataclasses.dataclass(frozen=True)
class RecordSlices(DistContext):
    """A rank that records the source image indices of each batch it trains on."""

    folder: str = ""

    def slice(self, batch):
        batch = super().slice(batch)
        with open(Path(self.folder) / f"rank{self.rank}.jsonl", "a") as f:
            f.write(json.dumps(batch["source"]["index"].tolist()) + "\n")
        return batch


class RecordLogs(Callback):
    """Rank 0 only: the logged metrics, one JSON line per log step."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_log(self, trainer, metrics, step) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")


def _lines(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _gloo_rank(rank: int, world: int, store: str, cfg, out: str, folder: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world)
    try:
        train_worker(cfg, out, RecordSlices(rank, world, folder), progress=False,
                     callbacks=[RecordLogs(f"{folder}/logs.jsonl")])
    finally:
        dist.destroy_process_group()


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]


def test_two_gloo_ranks_equal_one_process_on_the_global_batch(no_void_data, tmp_path):
    cfg = _equal_config(no_void_data, tmp_path)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = Trainer(cfg, tmp_path / "single", progress=False,
                  callbacks=[RecordLogs(str(tmp_path / "one" / "logs.jsonl"))],
                  dist=RecordSlices(0, 1, str(tmp_path / "one")))
    TrialDir(tmp_path / "single").prepare(cfg, resume=False)
    single = train_trial(one)
    mp.spawn(_gloo_rank, args=(2, str(tmp_path / "store"), cfg, str(tmp_path / "ddp"),
                               str(tmp_path / "two")), nprocs=2, join=True)
    ddp = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert ddp["iterations"] == single["iterations"] == ITERS
    # Each rank trained on its half of every global batch.
    whole = _lines(tmp_path / "one" / "rank0.jsonl")
    first, second = _lines(tmp_path / "two" / "rank0.jsonl"), _lines(tmp_path / "two" /
                                                                    "rank1.jsonl")
    assert len(whole) == ITERS and all(len(b) == 2 for b in whole)
    assert [a + b for a, b in zip(first, second, strict=True)] == whole
    # Same weights after the same steps ...
    a, b = _weights(tmp_path / "single"), _weights(tmp_path / "ddp")
    initial = Trainer(cfg, tmp_path / "init", progress=False).model.state_dict()
    moved = [k for k in a if not torch.equal(a[k], initial[k])]
    assert moved  # the runs trained, so equality below is not trivial
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)
    # ... and the same logged losses: rank 0 logs the mean over ranks.
    logs_one, logs_two = _lines(tmp_path / "one" / "logs.jsonl"), _lines(tmp_path / "two" /
                                                                        "logs.jsonl")
    assert [r["step"] for r in logs_two] == [r["step"] for r in logs_one] == [2, 4]
    for r1, r2 in zip(logs_one, logs_two, strict=True):
        assert r2["train/loss"] == pytest.approx(r1["train/loss"], rel=1e-5)
    # One process on half the batch ends elsewhere: the halves matter.
    half = _equal_config(no_void_data, tmp_path, **{"optim.batch_source": 1})
    run_trial(half, tmp_path / "half", progress=False, callbacks=[])
    c = _weights(tmp_path / "half")
    assert any(not torch.allclose(c[k], a[k], rtol=1e-5, atol=1e-6) for k in moved)


# ----------------------------------------------------------------------------- Ray Train


@pytest.mark.slow  # about a minute: a local Ray, a Train controller, two workers
def test_active_trial_on_two_ray_gloo_workers(tiny_data, tmp_path, monkeypatch):
    from ray import cloudpickle

    from ripu.engine.distributed import run_trial_distributed
    from ripu.tracking import list_runs, metric_history

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cfg = tiny_config(tiny_data, tmp_path, **{"optim.iters": 6, "optim.poly_iters": 6})
    out = tmp_path / "trial"
    results = run_trial_distributed(cfg, out, num_workers=2, progress=False)
    assert results == json.loads((out / "results.json").read_text())
    assert results["iterations"] == 6 and 0.0 <= results["miou"] <= 1.0
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["round_0.npz", "round_1.npz"]
    assert not list(out.rglob(".*.npz")) and not list(out.rglob(".*.json"))
    (run,) = list_runs(cfg.tracking.uri, cfg.tracking.experiment)  # rank 0 logs, once
    assert run.info.status == "FINISHED"
    losses = metric_history(cfg.tracking.uri, run.info.run_id, "train/loss")
    assert [s for s, _ in losses] == [2, 3, 4, 6]  # log_every 2, and where round 1 starts
    assert all(math.isfinite(v) for _, v in losses)
    rounds = metric_history(cfg.tracking.uri, run.info.run_id, "acq/labelled_fraction")
    assert [s for s, _ in rounds] == [0, 1]
    assert rounds[-1][1] == pytest.approx(results["labelled_fraction"])


def test_sweep_resources_split_among_workers():
    from ripu.config import SweepConfig
    from ripu.engine.distributed import DRIVER_RESOURCES, sweep_scaling, trial_resources

    one = SweepConfig(cpus_per_trial=4, gpus_per_trial=1)
    assert trial_resources(one) == {"cpu": 4, "gpu": 1}
    two = SweepConfig(cpus_per_trial=8, gpus_per_trial=2, workers_per_trial=2)
    assert trial_resources(two) == DRIVER_RESOURCES and DRIVER_RESOURCES["cpu"] == 0
    assert sweep_scaling(two) == {"num_workers": 2, "use_gpu": True,
                                  "resources_per_worker": {"CPU": 4.0, "GPU": 1.0}}
    cpu = SweepConfig(cpus_per_trial=2, workers_per_trial=2)
    assert sweep_scaling(cpu) == {"num_workers": 2, "use_gpu": False,
                                  "resources_per_worker": {"CPU": 1.0}}
    shared = SweepConfig(gpus_per_trial=1, workers_per_trial=2)
    with pytest.raises(RipuError, match="at least one GPU per worker"):
        trial_resources(shared)


@pytest.mark.slow  # a minute or two: Ray Tune running a Ray Train trial
def test_sweep_runs_a_data_parallel_trial(tiny_data, tmp_path, monkeypatch):
    import yaml

    from ripu.sweep import run_sweep
    from ripu.tracking import list_runs, metric_history

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = tiny_config(tiny_data, tmp_path, **{
        "optim.iters": 6, "optim.poly_iters": 6, "sweep.workers_per_trial": 2,
        "sweep.cpus_per_trial": 2, "sweep.max_concurrent": 1, "sweep.max_failures": 0})
    exp = tmp_path / "dp.yaml"
    exp.write_text(yaml.safe_dump({"name": "dp", "grid": [
        {"train.kind": ["active"], "active.strategy": ["ripu_region"], "seed": [0]}]}))
    (row,) = run_sweep(cfg, exp, out_dir=tmp_path / "runs", progress=False)
    assert row["status"] == "finished" and row["iterations"] == 6
    out = tmp_path / "runs" / "dp" / row["trial"]
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["round_0.npz", "round_1.npz"]
    runs = list_runs(cfg.tracking.uri, "dp")
    (child,) = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert child.info.status == "FINISHED" and child.data.tags["ripu.trial"] == row["trial"]
    steps = [s for s, _ in metric_history(cfg.tracking.uri, child.info.run_id, "train/loss")]
    assert steps == [2, 3, 4, 6]

"""The ``lse`` and ``hybrid`` trial kinds end to end on tiny synthetic data."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ripu.config import config_from_dict
from ripu.data.synthetic import generate
from ripu.engine.callbacks import Callback
from ripu.engine.trainer import run_trial
from ripu.engine.trial_dir import TrialDir
from ripu.errors import RipuError
from ripu.selftrain.train import load_round, round_iterations, save_round
from ripu.trial import trial_config_hash

ROUNDS = 2


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "data"
    generate(root, seed=0, source_images=6, target_train=6, target_val=3, height=32, width=64,
             progress=False)
    return root


def make_cfg(root: Path, tmp: Path, kind: str = "lse", **sections: dict):
    raw = {
        "seed": 0,
        "data": {"source_root": str(root / "source"), "target_root": str(root / "target"),
                 "source_size": [64, 32], "target_size": [64, 32], "eval_size": [64, 32]},
        "model": {"arch": "small"},
        "optim": {"lr": 0.01, "iters": 4, "poly_iters": 4, "batch_source": 2,
                  "batch_target": 2},
        "active": {"strategy": "ripu_region", "budget": 0.05, "rounds": 1, "round_at": [0.0],
                   "batch_size": 3},
        "lse": {"rounds": ROUNDS, "p_base": 0.5, "p_step": 0.25, "rule": "per_class",
                "patches": 2, "epochs": 1},
        "train": {"kind": kind, "device": "cpu", "threads": 1, "checkpoint_every": 3,
                  "log_every": 1},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "lse-test"},
    }
    for name, values in sections.items():
        raw[name].update(values)
    return config_from_dict(raw)


class Capture(Callback):
    """Keeps the trainer and what each round recorded (metrics, text files)."""

    def __init__(self) -> None:
        self.trainer = None
        self.rounds: dict[int, tuple[dict, dict]] = {}

    def on_record(self, trainer, metrics, step, texts) -> None:
        self.rounds[step] = (metrics, texts)

    def on_end(self, trainer, results, result) -> None:
        self.trainer = trainer


class Interrupt(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_log(self, trainer, metrics, step) -> None:
        if step == self.at:
            raise KeyboardInterrupt(f"interrupted at iteration {step}")


def canonical(results: dict, drop: tuple[str, ...] = ()) -> str:
    """Results as sorted JSON, so NaN IoUs (classes absent from val) compare equal."""
    return json.dumps({k: v for k, v in results.items() if k not in drop}, sort_keys=True)


def model_state(out_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(out_dir / "checkpoints" / "last.pt", map_location="cpu",
                      weights_only=True)
    return ckpt["model"]


def test_round_iterations():
    assert round_iterations(3, 2, 4, 1) == 24  # the authors' setting: batch 1
    assert round_iterations(3, 1, 2, 4) == 2  # ceil(6 / 4)
    assert round_iterations(0, 2, 4, 2) == 0
    with pytest.raises(RipuError, match="batch_target"):
        round_iterations(1, 1, 1, 0)


@pytest.fixture(scope="module")
def lse_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("lse")
    cfg = make_cfg(data_root, tmp)
    capture = Capture()
    from ripu.engine.callbacks import TrackingCallback

    callbacks = [TrackingCallback.for_trial(cfg, tmp / "trial"), capture]
    results = run_trial(cfg, tmp / "trial", progress=False, callbacks=callbacks)
    return cfg, tmp / "trial", results, capture


def test_lse_trial_end_to_end(lse_run):
    cfg, out, results, capture = lse_run
    assert canonical(json.loads((out / "results.json").read_text())) == canonical(results)
    assert results["kind"] == "lse" and results["labelled_fraction"] == 0.0
    assert 0.0 <= results["miou"] <= 1.0
    expected_start = 0
    for r in range(ROUNDS):
        rnd = load_round(TrialDir(out).round_cache("lse", r))
        ps = rnd.pseudo_set
        assert ps.round_index == r and ps.fraction == pytest.approx(0.5 + 0.25 * r)
        assert len(ps.kept_images) >= 1  # the test below needs training in every round
        assert rnd.start == expected_start
        assert rnd.iterations == math.ceil(len(ps.kept_images) * 1 * 2 / 2)
        assert ps.num_patches == 2 * len(ps.kept_images)
        assert ps.accuracy is not None and 0.0 <= ps.accuracy <= 1.0
        metrics, texts = capture.rounds[r]  # the hook saw this round's cached labels
        assert metrics["lse/kept_images"] == len(ps.kept_images)
        assert metrics["lse/patches"] == ps.num_patches
        names = capture.trainer.data["target"].class_names
        assert [metrics[f"lse/tau/{n.replace(' ', '_')}"] for n in names] == ps.tau.tolist()
        assert json.loads(texts[f"lse/round_{r}.json"]) == json.loads(json.dumps(
            {**ps.diagnostics(), "class_names": list(names), "iteration": rnd.end}))
        expected_start = rnd.end
    assert results["iterations"] == expected_start == capture.trainer.iteration
    assert capture.trainer.rounds_done == ROUNDS


def test_lse_trial_logs_rounds_to_mlflow(lse_run):
    from mlflow.tracking import MlflowClient

    cfg, out, _, _ = lse_run
    client = MlflowClient(cfg.tracking.uri)
    run_id = (out / "mlflow_run_id.txt").read_text().strip()
    caches = [load_round(TrialDir(out).round_cache("lse", r)) for r in range(ROUNDS)]

    def history(key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))

    assert history("lse/kept_images") == [(r, len(c.pseudo_set.kept_images))
                                          for r, c in enumerate(caches)]
    assert history("lse/coverage") == [(r, pytest.approx(c.pseudo_set.coverage))
                                       for r, c in enumerate(caches)]
    accuracy = history("lse/accuracy")
    assert [s for s, _ in accuracy] == list(range(ROUNDS))
    assert all(0.0 <= v <= 1.0 for _, v in accuracy)
    assert history("lse/tau/road") == [(r, pytest.approx(float(c.pseudo_set.tau[0])))
                                       for r, c in enumerate(caches)]
    assert history("lse/iteration") == [(r, c.end) for r, c in enumerate(caches)]
    # Poly decay restarts at optim.lr in every round; step s logs iteration s - 1.
    expected = [(it + 1, pytest.approx(0.01 * (1 - (it - c.start) / c.iterations) ** 0.9))
                for c in caches for it in range(c.start, c.end)]
    assert history("train/lr") == expected
    files = [f.path for f in client.list_artifacts(run_id, "lse")]
    assert files == [f"lse/round_{r}.json" for r in range(ROUNDS)]
    local = client.download_artifacts(run_id, "lse/round_1.json", str(out.parent))
    diag = json.loads(Path(local).read_text())
    assert diag["kept_images"] == len(caches[1].pseudo_set.kept_images)
    assert diag["class_names"][0] == "road" and len(diag["tau"]) == 19
    assert client.get_run(run_id).info.status == "FINISHED"


def test_lse_resume_matches_uninterrupted_run(lse_run, tmp_path: Path):
    cfg, out, results, _ = lse_run
    trial = tmp_path / "trial"
    first, second = (load_round(TrialDir(out).round_cache("lse", r)) for r in range(2))
    every = cfg.train.checkpoint_every
    mid = (first.end // every + 1) * every  # the first periodic checkpoint inside round 1
    assert first.end < mid < second.end  # else the test data no longer exercises this
    with pytest.raises(KeyboardInterrupt):
        run_trial(cfg, trial, progress=False, callbacks=[Interrupt(mid + 1)])
    assert not (trial / "results.json").exists()
    ckpt = torch.load(trial / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert (ckpt["iteration"], ckpt["rounds_done"]) == (mid, 1)  # resumes mid-round 1
    cache_1 = TrialDir(trial).round_cache("lse", 1)
    original = load_round(cache_1)
    # A cache that does not fit the checkpoint (another start iteration) is refused.
    save_round(cache_1, dataclasses.replace(original, start=original.start + 1000))
    with pytest.raises(RipuError, match="LSE round cache of another run"):
        run_trial(cfg, trial, resume=True, progress=False, callbacks=[])
    save_round(cache_1, original)
    built = cache_1.stat().st_mtime_ns
    resumed = run_trial(cfg, trial, resume=True, progress=False, callbacks=[])
    assert cache_1.stat().st_mtime_ns == built  # reused, not rebuilt
    assert canonical(resumed, drop=("seconds",)) == canonical(results, drop=("seconds",))
    a, b = model_state(out), model_state(trial)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fresh_run_discards_stale_round_cache(lse_run, tmp_path: Path):
    cfg, out, _, _ = lse_run
    cfg = dataclasses.replace(cfg, lse=dataclasses.replace(cfg.lse, rounds=1))
    stale = TrialDir(tmp_path / "trial").round_cache("lse", 0)
    rnd = load_round(TrialDir(out).round_cache("lse", 0))
    marked = dataclasses.replace(rnd.pseudo_set, kept_ids=["stale"])
    save_round(stale, dataclasses.replace(rnd, pseudo_set=marked, config_hash=trial_config_hash(cfg)))
    # --resume without a checkpoint starts afresh: the old folder's cache must not be reused.
    run_trial(cfg, tmp_path / "trial", resume=True, progress=False, callbacks=[])
    assert load_round(stale).pseudo_set.kept_ids == rnd.pseudo_set.kept_ids


def test_unreadable_cache_is_refused(tmp_path: Path):
    bad = TrialDir(tmp_path).round_cache("lse", 0)
    bad.parent.mkdir()
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RipuError, match="unreadable LSE round cache"):
        load_round(bad)
    torch.save({"version": 99}, bad)
    with pytest.raises(RipuError, match="not an LSE round cache"):
        load_round(bad)


def test_hybrid_trial_pseudo_labels_skip_selected_pixels(data_root: Path, tmp_path: Path):
    cfg = make_cfg(data_root, tmp_path, kind="hybrid")
    capture = Capture()
    results = run_trial(cfg, tmp_path / "trial", progress=False, callbacks=[capture])
    trainer = capture.trainer
    assert results["kind"] == "hybrid" and results["iterations"] == cfg.optim.iters
    assert (tmp_path / "trial" / "masks" / "round_0.npz").is_file()
    ids = trainer.data["target"].ids
    masks = trainer.state.masks_for(ids)
    pseudo_maps = trainer.labels.pseudo
    assert sorted(pseudo_maps) == sorted(ids)
    selected = unselected_labelled = 0
    for image_id in ids:
        pseudo, mask = pseudo_maps[image_id], masks[image_id]
        assert pseudo.dtype == np.uint8 and pseudo.shape == mask.shape == (32, 64)
        assert (pseudo[mask] == 255).all()
        selected += int(mask.sum())
        unselected_labelled += int((pseudo[~mask] != 255).sum())
    assert selected > 0 and unselected_labelled > 0
    assert 0.0 < results["labelled_fraction"] <= 0.05 + 1e-9
    ckpt = torch.load(tmp_path / "trial" / "checkpoints" / "last.pt", map_location="cpu",
                      weights_only=True)
    assert all(np.array_equal(ckpt["labels"]["pseudo"][k].numpy(), pseudo_maps[k])
               for k in ids)


def test_round_keeping_no_image_trains_nothing(data_root: Path, tmp_path: Path, caplog):
    # The authors' rule keeps floor(N_c * p / C) = floor(6 * 0.1 / 19) = 0 images per class.
    cfg = make_cfg(data_root, tmp_path, lse={"rounds": 1, "p_base": 0.1, "rule": "authors"})
    capture = Capture()
    with caplog.at_level("WARNING", logger="ripu.selftrain.train"):
        results = run_trial(cfg, tmp_path / "trial", progress=False, callbacks=[capture])
    rnd = load_round(TrialDir(tmp_path / "trial").round_cache("lse", 0))
    assert rnd.pseudo_set.kept_images == [] and rnd.iterations == 0
    assert results["iterations"] == 0 and capture.rounds[0][0]["lse/patches"] == 0
    assert "keeps no target image" in caplog.text

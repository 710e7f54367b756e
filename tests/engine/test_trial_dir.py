"""TrialDir: the folder layout, stale files, finished and resumable checks."""

from __future__ import annotations

import json
from fnmatch import fnmatch

import torch

from ripu.annotate.ledger import ledger_path
from ripu.annotate.round_labels import labels_path
from ripu.engine.checkpoint import TrialCheckpoint, checkpoint_identity, save_trial_checkpoint
from ripu.engine.trial_dir import TrialDir
from ripu.label_sources import LabelSource
from ripu.trial import trial_config_hash
from tests.conftest import tiny_config


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")


def _checkpoint(cfg, start_sha256: str | None = None) -> TrialCheckpoint:
    return TrialCheckpoint(model={"w": torch.ones(2)}, optimizer={}, iteration=3,
                           rounds_done=1, config_hash=trial_config_hash(cfg), num_classes=19,
                           arch="small", start_sha256=start_sha256)


def test_layout(tmp_path):
    t = TrialDir(tmp_path / "a" / ".." / "t")
    assert t.root == (tmp_path / "t").resolve()
    assert t.checkpoint == t.root / "checkpoints" / "last.pt"
    assert t.results_file == t.root / "results.json"
    assert t.round_file(2) == t.root / "masks" / "round_2.npz"
    assert t.round_cache("lse", 0) == t.root / "lse" / "round_0.pt"
    assert t.run_id_file.name == "mlflow_run_id.txt" and t.run_id() is None
    t.write_run_id("abc")
    assert t.run_id() == "abc"


def test_prepare_removes_an_earlier_attempt_unless_resuming(tmp_path):
    cfg = tiny_config(tmp_path, tmp_path)
    t = TrialDir(tmp_path / "t")
    stale = [t.results_file, t.checkpoint, t.round_file(0), t.round_file(1),
             t.round_cache("lse", 0)]
    for path in stale:
        _touch(path)
    t.prepare(cfg, resume=True)  # a checkpoint: keep everything
    assert all(p.exists() for p in stale) and t.same_config(cfg)
    t.prepare(cfg, resume=False)
    assert not any(p.exists() for p in stale) and t.config_file.is_file()
    other = tiny_config(tmp_path, tmp_path, **{"active.budget": 0.02})
    assert not t.same_config(other)
    _touch(t.round_file(0))
    t.prepare(cfg, resume=True)  # nothing to resume from: a fresh attempt
    assert not t.round_file(0).exists()


def test_a_fresh_attempt_sets_people_labels_aside_and_keeps_them(tmp_path):
    """People's round labels and task ledgers (the label source's kept files, named by
    ripu.annotate) are never deleted: a fresh attempt moves them to masks/earlier/<n>/ (n
    counting attempts); resuming leaves them in place."""
    cfg = tiny_config(tmp_path, tmp_path)
    t = TrialDir(tmp_path / "t")
    kept = LabelSource.kept_files
    people = {labels_path(t.masks_dir, 0): "round 0", ledger_path(t.masks_dir, 0): "{}",
              ledger_path(t.masks_dir, 1): "{1}"}
    assert all(any(fnmatch(p.name, pattern) for pattern in kept) for p in people)
    for path, text in people.items():
        _touch(path)
        path.write_text(text)
    _touch(t.checkpoint)
    t.prepare(cfg, resume=True, kept_files=kept)
    assert all(p.read_text() == text for p, text in people.items())
    t.prepare(cfg, resume=False, kept_files=kept)
    assert not any(p.exists() for p in people)
    assert {p.name: p.read_text() for p in (t.masks_dir / "earlier" / "1").iterdir()} == \
        {p.name: text for p, text in people.items()}
    _touch(ledger_path(t.masks_dir, 0))
    t.prepare(cfg, resume=False, kept_files=kept)  # no checkpoint: a fresh attempt again
    assert [p.name for p in (t.masks_dir / "earlier" / "2").iterdir()] == ["tasks_0.json"]
    t.prepare(cfg, resume=False, kept_files=kept)  # nothing to set aside: no empty folder
    assert sorted(p.name for p in (t.masks_dir / "earlier").iterdir()) == ["1", "2"]
    _touch(ledger_path(t.masks_dir, 0))
    t.prepare(cfg, resume=False)  # a folder alone keeps nothing it was not told to keep
    assert ledger_path(t.masks_dir, 0).exists()


def test_finished_and_resumable_follow_the_config_hash(tmp_path):
    cfg = tiny_config(tmp_path, tmp_path)
    other = tiny_config(tmp_path, tmp_path, **{"seed": 1})
    device_only = tiny_config(tmp_path, tmp_path, **{"train.device": "cpu",
                                                     "tracking.experiment": "elsewhere"})
    t = TrialDir(tmp_path / "t")
    assert t.finished_results(cfg, None) is None and not t.can_resume(cfg, None)
    save_trial_checkpoint(t.checkpoint, _checkpoint(cfg))
    assert checkpoint_identity(t.checkpoint) == (trial_config_hash(cfg), None)
    assert t.can_resume(cfg, None) and t.can_resume(device_only, None)
    assert not t.can_resume(other, None)
    t.write_results({"resume_hash": trial_config_hash(cfg), "start_sha256": None, "miou": 0.5})
    assert t.finished_results(cfg, None) == json.loads(t.results_file.read_text())
    assert t.finished_results(other, None) is None
    t.checkpoint.write_bytes(t.checkpoint.read_bytes()[:50])  # truncated: start afresh
    assert not t.can_resume(cfg, None)
    t.results_file.write_text("{")
    assert t.finished_results(cfg, None) is None


def test_files_of_another_start_count_for_nothing(tmp_path):
    cfg = tiny_config(tmp_path, tmp_path)
    other = tiny_config(tmp_path, tmp_path, **{"seed": 1})
    old, new = "a" * 64, "b" * 64
    t = TrialDir(tmp_path / "t")
    assert not t.start_changed(cfg, new)  # nothing there
    save_trial_checkpoint(t.checkpoint, _checkpoint(cfg, start_sha256=old))
    assert t.can_resume(cfg, old) and not t.can_resume(cfg, new) and not t.can_resume(cfg, None)
    assert t.start_changed(cfg, new) and not t.start_changed(cfg, old)
    assert not t.start_changed(other, new)  # another config: started afresh, not rerun
    t.write_results({"resume_hash": trial_config_hash(cfg), "start_sha256": old, "miou": 0.5})
    assert t.finished_results(cfg, old) is not None and t.finished_results(cfg, new) is None
    t.checkpoint.unlink()
    assert t.start_changed(cfg, new) and not t.start_changed(cfg, old)

"""The locked environments: lock files, the installed venv against its lock, the environment
every run records (ripu.environment), the drift check's diff."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from ripu.environment import KEY_PACKAGES, LOCK, environment_tags, lock_sha256, pip_freeze
from ripu.trial import trial_tags

REPO = Path(__file__).resolve().parents[1]
REQ = REPO / "requirements"
sys.path.insert(0, str(REQ))
import drift  # noqa: E402  (requirements/drift.py: the drift check)

PIN_LINE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[^\s\\]+ \\$")


@pytest.mark.parametrize("name", ["ripu.lock", "label-studio.lock"])
def test_every_requirement_of_a_lock_is_pinned_with_hashes(name):
    lines = (REQ / name).read_text().splitlines()
    heads = [ln for ln in lines if ln and not ln.startswith((" ", "#"))]
    assert len(heads) > 50
    assert all(PIN_LINE.match(ln) for ln in heads), [ln for ln in heads if not PIN_LINE.match(ln)]
    hashes = sum(ln.strip().startswith("--hash=sha256:") for ln in lines)
    assert hashes >= len(heads)


def test_installed_venv_equals_its_lock():
    """`make .venv/.installed` installs the lock exactly: every distribution but the project
    itself (and pip, which the venv brings) is pinned at its installed version."""
    locked = drift.pins(LOCK.read_text())
    installed = {n: v for n, v in drift.pins(pip_freeze()).items() if n not in ("pip", "ripu")}
    assert drift.changes(locked, installed) == []


def test_torch_pair_is_the_one_on_this_machines_disk():
    locked = drift.pins(LOCK.read_text())
    wanted = drift.pins((REQ / "torch.txt").read_text())
    assert wanted == {"torch": "2.14.1", "torchvision": "0.29.1"}
    assert {k: locked[k] for k in wanted} == wanted


def test_label_studio_lock_keeps_sentry_sdk_below_3_and_says_why():
    version = drift.pins((REQ / "label-studio.lock").read_text())["sentry-sdk"]
    assert int(version.split(".")[0]) < 3
    caps = (REQ / "label-studio-caps.txt").read_text()
    assert re.search(r"^sentry-sdk<3$", caps, re.MULTILINE)
    assert "send_default_pii" in caps  # the reason: Label Studio 1.23.2 dies with sentry 3
    assert "label-studio-caps.txt" in (REQ / "label-studio.lock").read_text()  # applied


def test_drift_lists_changed_added_and_removed_packages():
    locked = drift.pins("a==1.0 \\\nB_c==2.0\nd==3\n")
    assert locked == {"a": "1.0", "b-c": "2.0", "d": "3"}
    fresh = {"a": "1.0", "b-c": "2.1", "e": "0.1"}
    assert drift.changes(locked, fresh) == ["b-c: 2.0 -> 2.1", "d: 3 -> absent",
                                            "e: absent -> 0.1"]


def test_drift_round_trip_speaks_ripus_waiting_status_and_reads_the_caps():
    from ripu.annotate import WAITING_STATUS

    assert drift.WAITING_STATUS == WAITING_STATUS  # drift.py runs without ripu installed
    assert drift.ANNOTATOR.is_file()
    assert drift.held_caps() == ["sentry-sdk"]
    assert drift.TINY_TRIAL["active.rounds"] == 2  # the round trip answers two rounds
    names = [name for name, _ in drift.steps(Path("/nowhere"), label_studio=True)]
    assert names[-1] == "label-studio: people round trip"


def test_environment_tags_name_the_lock_and_versions(monkeypatch):
    monkeypatch.delenv("RIPU_LOCK_SHA256", raising=False)
    tags = environment_tags()
    assert tags["ripu.lock_sha256"] == hashlib.sha256(LOCK.read_bytes()).hexdigest()
    assert {k: tags[f"ripu.version.{k}"] for k in KEY_PACKAGES} == {
        k: metadata.version(k) for k in KEY_PACKAGES}
    monkeypatch.setenv("RIPU_LOCK_SHA256", "f" * 64)
    assert lock_sha256() == "f" * 64
    monkeypatch.delenv("RIPU_LOCK_SHA256")
    assert lock_sha256(REQ / "no-such.lock") == "none"


def test_every_trial_is_tagged_with_its_environment(monkeypatch):
    from ripu.config import Config

    monkeypatch.delenv("RIPU_LOCK_SHA256", raising=False)
    assert environment_tags().items() <= trial_tags(Config()).items()


@pytest.mark.integration
def test_drift_help_and_gpu_smoke_without_cuda_are_one_command_each():
    out = subprocess.run([sys.executable, str(REQ / "drift.py"), "--help"], check=True,
                         capture_output=True, text=True).stdout
    assert "drift" in out.lower()
    import torch

    if torch.cuda.is_available():  # a GPU machine runs the real smoke instead (make gpu-smoke)
        return
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_smoke"], cwd=REPO,
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines() == [
        f"gpu-smoke: no CUDA device visible (torch {torch.__version__}); nothing run"]


@pytest.mark.slow  # needs .venv-ls (make test-e2e builds it)
@pytest.mark.integration
def test_label_studio_venv_equals_its_lock():
    """`make .venv-ls/.installed` installs its lock exactly (pip, which the venv brings,
    aside)."""
    import os

    venv = Path(os.environ.get("RIPU_LABEL_STUDIO_VENV", REPO / ".venv-ls"))
    assert (venv / "bin" / "python").is_file(), f"{venv} missing: run make .venv-ls/.installed"
    freeze = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "freeze", "--all"],
                            check=True, capture_output=True, text=True).stdout
    installed = {n: v for n, v in drift.pins(freeze).items() if n != "pip"}
    assert drift.changes(drift.pins((REQ / "label-studio.lock").read_text()), installed) == []

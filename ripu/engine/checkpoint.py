"""Checkpoint files: model weights for ``--init`` and the trial checkpoint for exact resume.

Every read passes ``weights_only=True``: no code runs from a file. A trial checkpoint is a
dict of plain tensors and numbers (:func:`save_trial_checkpoint`); ``config_hash`` is the
trial's :func:`ripu.trial.trial_config_hash` and ``start_sha256`` the hash of the weights it
started from (:mod:`ripu.starts`), so a checkpoint of another config or start is refused.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ripu.errors import RipuError
from ripu.io import atomic_path
from ripu.starts import Start

CHECKPOINT_VERSION = 1


def read_checkpoint(path: str | Path, *, mmap: bool = False) -> Any:
    """``torch.load`` with ``weights_only=True`` (no code runs from the file) and torch's
    warnings about foreign files silenced (the caller reports a bad file in one line).
    ``mmap``: map the file instead of reading it (cheap header look-ups)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def open_checkpoint(path: str | Path, *, mmap: bool = False) -> Any:
    """:func:`read_checkpoint`, or RipuError naming the file when it cannot be read (a
    truncated or foreign file, or a pickle that would run code)."""
    try:
        return read_checkpoint(path, mmap=mmap)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise RipuError(f"{path}: unreadable checkpoint ({type(exc).__name__}), expected a "
                        f"file written by ripu") from None


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load model weights from a checkpoint (``{"model": state_dict}`` or a bare state dict).

    RipuError naming the file for a missing or unreadable file, another class count or
    another architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise RipuError(f"{path}: checkpoint not found, expected a .pt file")
    ckpt = open_checkpoint(path)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise RipuError(f"{path}: expected a checkpoint dict with a 'model' state dict")
    own = model.state_dict()
    for key, value in own.items():
        if key in state and state[key].shape != value.shape:
            classes = getattr(model, "num_classes", value.shape[0])
            if "classifier" in key or "head" in key or key.endswith(("cls.weight", "cls.bias")):
                raise RipuError(f"{path}: checkpoint has {state[key].shape[0]} classes, the model "
                                f"expects {classes} (data.num_classes)")
            raise RipuError(f"{path}: parameter {key} has shape {tuple(state[key].shape)}, the "
                            f"model expects {tuple(value.shape)} (another architecture?)")
    missing = [k for k in own if k not in state]
    if missing:
        raise RipuError(f"{path}: {len(missing)} model parameters missing (e.g. {missing[0]}), "
                        f"expected a checkpoint of model.arch={getattr(model, 'arch', '?')}")
    model.load_state_dict(state)


@dataclass
class TrialCheckpoint:
    """What a trial needs to continue exactly where it stopped.

    ``model`` / ``optimizer``: state dicts. ``start_sha256``: the start's file hash (None:
    the model as built, no file). ``labels``: the state of the trial's target-label source
    (its ``state_dict``: tensors, in nested dicts). ``torch_rng``: torch's global CPU RNG
    state.
    """

    model: dict[str, Any]
    optimizer: dict[str, Any]
    iteration: int
    rounds_done: int
    config_hash: str
    num_classes: int
    arch: str
    backbone: str | None = None
    start_sha256: str | None = None
    seconds: float = 0.0
    torch_rng: torch.Tensor | None = None
    labels: dict[str, Any] = field(default_factory=dict, repr=False)


def save_trial_checkpoint(path: str | Path, ckpt: TrialCheckpoint) -> Path:
    """Write ``ckpt`` atomically (a complete file or the previous one, never half of one)."""
    payload = {
        "version": CHECKPOINT_VERSION, "model": ckpt.model, "optimizer": ckpt.optimizer,
        "iteration": ckpt.iteration, "rounds_done": ckpt.rounds_done,
        "config_hash": ckpt.config_hash, "num_classes": ckpt.num_classes, "arch": ckpt.arch,
        "backbone": ckpt.backbone, "start_sha256": ckpt.start_sha256, "seconds": ckpt.seconds,
        "torch_rng": ckpt.torch_rng if ckpt.torch_rng is not None else torch.get_rng_state(),
        "labels": ckpt.labels,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_trial_checkpoint(path: str | Path, config_hash: str, start: Start) -> TrialCheckpoint:
    """Read a trial checkpoint written with ``config_hash`` from ``start``; RipuError (one
    line, saying to drop ``--resume``) for an unreadable file, one of another config, or one
    whose start's file has changed since (a rebuilt warm-up)."""
    path = Path(path)
    try:
        raw = open_checkpoint(path)
    except RipuError as exc:
        raise RipuError(f"--resume: {exc}; drop --resume to start afresh") from None
    if not isinstance(raw, dict) or raw.get("config_hash") != config_hash:
        raise RipuError(f"--resume: {path.parent.parent} was started with another config "
                        f"(see its config.yaml); expected the same params, or drop --resume")
    if raw.get("start_sha256") != start.sha256:
        was = raw.get("start_sha256")
        raise RipuError(f"resume: {path.parent.parent} started from weights with sha256 "
                        f"{was[:12] if was else 'none'}, its start is now {start.describe()}; "
                        f"expected the start it began from (rebuilt since?): rerun it afresh "
                        f"(drop --resume; a new sweep does so)")
    return TrialCheckpoint(
        model=raw["model"], optimizer=raw["optimizer"], iteration=raw["iteration"],
        rounds_done=raw["rounds_done"], config_hash=raw["config_hash"],
        num_classes=raw.get("num_classes", 0), arch=raw.get("arch", ""),
        backbone=raw.get("backbone"), start_sha256=raw.get("start_sha256"),
        seconds=raw.get("seconds", 0.0), torch_rng=raw["torch_rng"],
        labels=raw["labels"] if "labels" in raw else {"pseudo": raw.get("pseudo", {})})
        # (version 1 files before label sources kept the hybrid's maps as "pseudo")


def checkpoint_identity(path: str | Path) -> tuple[str, str | None] | None:
    """``(config_hash, start_sha256)`` of a trial checkpoint, None when missing or
    unreadable (a truncated or foreign file). Maps the file: only the small header entries
    are read."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        ckpt = read_checkpoint(path, mmap=True)
    except Exception:  # noqa: BLE001 - a truncated or foreign file
        return None
    if not isinstance(ckpt, dict) or "config_hash" not in ckpt:
        return None
    return ckpt["config_hash"], ckpt.get("start_sha256")

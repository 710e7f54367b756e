"""Where a trial's target labels come from: a part of its kind (``TrialKind.target_labels``),
registered by name in :data:`ripu.parts.LABEL_SOURCES`.

A label source gives the trainer's batches their target supervision
(:meth:`LabelSource.target_labels`), acts after each selection round and when a round's
labels are due, and owns its checkpoint state (``state_dict`` / ``load_state_dict``, as
Lightning's loops do). The engine calls these methods and knows no source by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ripu.annotate import PEOPLE_FILES, people_labels
from ripu.data.labels import IGNORE_INDEX
from ripu.engine.batches import TargetLabels
from ripu.engine.trial_dir import TrialDir
from ripu.selftrain.runner import full_pseudo_labels

if TYPE_CHECKING:
    from ripu.config import Config
    from ripu.engine.trainer import Trainer


class LabelSource:
    """No target labels in the batches' masks: none at all, every pixel (the upper bound),
    or labels the schedule hands the batches itself (LSE's patches)."""

    # The masks folder's files a fresh attempt sets aside instead of deleting
    # (TrialDir.prepare): people's labels and ledgers, whatever kind now runs in the folder.
    kept_files: tuple[str, ...] = PEOPLE_FILES

    def __init__(self, cfg: Config, trial_dir: TrialDir) -> None:
        self.cfg = cfg

    def target_labels(self, trainer: Trainer) -> TargetLabels:
        """The target supervision of the trainer's current label state."""
        return TargetLabels(labelled=None)

    def after_selection(self, trainer: Trainer, round_index: int) -> None:
        """Called once selection round ``round_index``'s file is written."""

    def receive(self, trainer: Trainer, round_index: int) -> None:
        """The labels of rounds up to ``round_index`` are due."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (checkpoint tensors)."""


class Selected(LabelSource):
    """The pixels selection rounds labelled, by the ground-truth oracle or, with
    ``annotate.url``, by people in Label Studio (server and token checked when built)."""

    def __init__(self, cfg: Config, trial_dir: TrialDir) -> None:
        super().__init__(cfg, trial_dir)
        self.people = people_labels(cfg, trial_dir.masks_dir, trial_dir.root.name)
        self.people_labels: dict[str, np.ndarray] | None = None

    @property
    def pseudo(self) -> dict[str, np.ndarray] | None:
        """Pseudo-label maps on the pixels not selected (none here)."""
        return None

    def target_labels(self, trainer: Trainer) -> TargetLabels:
        return TargetLabels(labelled=trainer.state.masks_for(trainer.data["target"].ids),
                            pseudo=self.pseudo, labels=self.people_labels)

    def receive(self, trainer: Trainer, round_index: int) -> None:
        """People's labels of rounds up to ``round_index``; the oracle's need no fetching.
        AwaitingLabels while people have not answered."""
        if self.people is not None:
            self.people_labels = self.people.receive(
                round_index, target=trainer.data["target"], model=trainer.model,
                device=trainer.device)
            for r in range(round_index + 1):  # the pull's counts; the tracker keeps one a round
                trainer.callbacks.on_record(trainer, self.people.round_counts(r), r, {})


class SelectedAndPseudo(Selected):
    """:class:`Selected` plus LSE pseudo-labels on the target pixels not selected, built
    after each selection round (the hybrid kind)."""

    def __init__(self, cfg: Config, trial_dir: TrialDir) -> None:
        super().__init__(cfg, trial_dir)
        self.maps: dict[str, np.ndarray] | None = None

    @property
    def pseudo(self) -> dict[str, np.ndarray] | None:
        return self.maps

    def after_selection(self, trainer: Trainer, round_index: int) -> None:
        """LSE pseudo-labels on the target pixels not selected (255 on selected ones)."""
        lse, target = self.cfg.lse, trainer.data["target"]
        maps = full_pseudo_labels(trainer.model, target, round_index,
                                  num_classes=self.cfg.data.num_classes, p_base=lse.p_base,
                                  p_step=lse.p_step, rule=lse.rule, device=trainer.device,
                                  batch_size=self.cfg.train.infer_batch,
                                  progress=trainer.progress)
        masks = trainer.state.masks_for(target.ids)
        self.maps = {k: np.where(masks[k], IGNORE_INDEX, v).astype(np.uint8)
                     for k, v in maps.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"pseudo": {k: torch.from_numpy(v) for k, v in (self.maps or {}).items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.maps = {k: v.numpy() for k, v in state.get("pseudo", {}).items()} or None

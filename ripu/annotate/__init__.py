"""People in the loop: selection rounds labelled by annotators in Label Studio.

The ground-truth oracle is the default (``annotate.url: null``). With a URL, a trial's
selection rounds are pushed to Label Studio as tasks and its labels pulled back
(:mod:`ripu.annotate.people`); the trainer is the same, only where a round's labels come
from differs.
"""

from __future__ import annotations

from pathlib import Path

from ripu.annotate.client import AnnotateError
from ripu.annotate.people import WAITING_STATUS, AwaitingLabels, PeopleLabels
from ripu.config import Config, check_label_source
from ripu.kinds import get_kind

__all__ = ["PEOPLE_FILES", "WAITING_STATUS", "AnnotateError", "AwaitingLabels", "PeopleLabels",
           "people_labels"]

# People's work in a trial's masks folder, as glob patterns: round labels
# (round_labels.labels_path) and task ledgers (ledger.ledger_path). Never deleted: a trial
# that starts afresh sets them aside (ripu.label_sources.LabelSource.kept_files).
PEOPLE_FILES = ("labels_*.npz", "tasks_*.json")


def people_labels(cfg: Config, masks_dir: Path, trial: str) -> PeopleLabels | None:
    """The trial's people label source (server and token checked now), or None when its
    rounds' labels come from the ground-truth oracle (no URL, or a kind without rounds)."""
    if cfg.annotate.url is None or not get_kind(cfg.train.kind).selects:
        return None
    check_label_source(cfg)
    return PeopleLabels(cfg, masks_dir, trial)

"""The trial folder: where each file of a trial lives, and whether it finished or can resume.

Layout of ``<root>``::

    config.yaml            the resolved config, written as each attempt starts
    checkpoints/last.pt    the trial checkpoint (ripu.engine.checkpoint)
    masks/round_<r>.npz    the label state after selection round r (ripu.acquisition.state)
    masks/...              what a trial's label source writes there and keeps (its
                           ``kept_files``: people's labels and task ledgers, ripu.annotate)
    masks/earlier/<n>/     those kept files of earlier attempts that started afresh, set aside
    <part>/round_<r>.pt    round r's cache of a schedule or label source (``round_cache``)
    results.json           the final results; present only when the trial finished
    mlflow_run_id.txt      the trial's MLflow run, continued on resume
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ripu.acquisition.state import round_path
from ripu.config import Config, dump_yaml, load_config
from ripu.engine.checkpoint import checkpoint_identity
from ripu.errors import RipuError
from ripu.io import write_json, write_text
from ripu.trial import trial_config_hash

RUN_ID_FILE = "mlflow_run_id.txt"


@dataclass(frozen=True)
class TrialDir:
    """One trial's folder (``root`` is made absolute)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())

    # ------------------------------------------------------------------ paths

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoints" / "last.pt"

    @property
    def results_file(self) -> Path:
        return self.root / "results.json"

    @property
    def run_id_file(self) -> Path:
        return self.root / RUN_ID_FILE

    @property
    def masks_dir(self) -> Path:
        return self.root / "masks"

    def round_file(self, round_index: int) -> Path:
        """The label state after selection round ``round_index``."""
        return round_path(self.masks_dir, round_index)

    def round_cache(self, part: str, round_index: int) -> Path:
        """Round ``round_index``'s cache of the trial part ``part`` (a schedule's or label
        source's working file, e.g. LSE's pseudo-labels): ``<part>/round_<r>.pt``."""
        return self.root / part / f"round_{round_index}.pt"

    # ------------------------------------------------------------------ state

    def finished_results(self, cfg: Config, start: str | None) -> dict[str, Any] | None:
        """The stored results when this exact config (its trial config hash) produced them
        from the start whose file hash is ``start`` (None: no weights file)."""
        results = self._results(cfg)
        if results is None or results.get("start_sha256") != start:
            return None
        return results

    def can_resume(self, cfg: Config, start: str | None) -> bool:
        """True when the folder holds a checkpoint written with this config from ``start``."""
        return checkpoint_identity(self.checkpoint) == (trial_config_hash(cfg), start)

    def start_changed(self, cfg: Config, start: str | None) -> bool:
        """True when results or a checkpoint of this config hold another start than
        ``start`` (a rebuilt warm-up, or files from before starts were recorded)."""
        results, ckpt = self._results(cfg), checkpoint_identity(self.checkpoint)
        return (results is not None and results.get("start_sha256") != start) or \
            (ckpt is not None and ckpt[0] == trial_config_hash(cfg) and ckpt[1] != start)

    def _results(self, cfg: Config) -> dict[str, Any] | None:
        """results.json when this config (its trial config hash) wrote it."""
        try:
            results = json.loads(self.results_file.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(results, dict) or \
                results.get("resume_hash") != trial_config_hash(cfg):
            return None
        return results

    def same_config(self, cfg: Config) -> bool:
        """True when ``config.yaml`` (written as each attempt starts) is this config's."""
        try:
            return trial_config_hash(load_config(self.config_file)) == trial_config_hash(cfg)
        except RipuError:
            return False

    def run_id(self) -> str | None:
        """The MLflow run id of the trial, None when none was recorded."""
        try:
            return self.run_id_file.read_text().strip() or None
        except OSError:
            return None

    # ------------------------------------------------------------------ writes

    def prepare(self, cfg: Config, resume: bool, kept_files: Sequence[str] = ()) -> None:
        """Create the folder and write ``config.yaml``. Without a checkpoint to resume from
        (or without ``resume``) the files of an earlier attempt (results, checkpoint, round
        files, round caches) are removed first, and the masks folder's files matching the
        glob patterns ``kept_files`` (the label source's: people's labels and task ledgers)
        are moved to ``masks/earlier/<n>/``, never deleted: a fresh attempt may select other
        pixels, so it must not read them as its own."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not (resume and self.checkpoint.is_file()):
            for stale in [self.results_file, self.checkpoint,
                          *sorted(self.masks_dir.glob("round_*.npz")),
                          *sorted(self.root.glob("*/round_*.pt"))]:
                stale.unlink(missing_ok=True)
            self._set_aside(kept_files)
        write_text(self.config_file, dump_yaml(cfg))

    def _set_aside(self, kept_files: Sequence[str]) -> None:
        """Move the masks folder's files matching ``kept_files`` into the next
        ``masks/earlier/<n>/``."""
        files = [f for pattern in kept_files for f in sorted(self.masks_dir.glob(pattern))]
        if not files:
            return
        earlier = self.masks_dir / "earlier"
        n = 1 + max((int(p.name) for p in earlier.glob("*") if p.name.isdigit()), default=0)
        (earlier / str(n)).mkdir(parents=True)
        for f in files:
            f.rename(earlier / str(n) / f.name)

    def write_results(self, results: dict[str, Any]) -> Path:
        """Write ``results.json`` atomically (its presence marks the trial finished)."""
        write_json(self.results_file, results)
        return self.results_file

    def write_run_id(self, run_id: str) -> None:
        """Record the trial's MLflow run id (atomic: a resume never reads half an id)."""
        write_text(self.run_id_file, run_id + "\n")

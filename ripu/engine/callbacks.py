"""Trainer callbacks: logging, figures and reporting happen here, never in the training step."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ripu.acquisition.export import contact_sheet
from ripu.acquisition.state import LabelState
from ripu.config import Config, dump_yaml, flatten
from ripu.confusion_image import save_confusion_image
from ripu.engine.trial_dir import RUN_ID_FILE, TrialDir
from ripu.record_names import (
    ACQ,
    FINAL_IOU,
    FINAL_ITERATIONS,
    LABELLED_BOUNDARY_PX,
    LABELLED_PX,
    TARGET_PX,
    VAL,
)
from ripu.tracking import Tracker, check_tracking, retry_for
from ripu.trial import final_summary, miou_metrics, trial_tags

if TYPE_CHECKING:  # annotations only
    from ripu.engine.evaluate import EvalResult
    from ripu.engine.trainer import Trainer

__all__ = ["RUN_ID_FILE", "Callback", "CallbackList", "TrackingCallback"]


class Callback:
    """No-op base: override what you need."""

    def on_start(self, trainer: Trainer) -> None: ...
    def on_log(self, trainer: Trainer, metrics: dict[str, float], step: int) -> None: ...
    def on_round(self, trainer: Trainer, round_index: int, path: Path) -> None: ...
    def on_record(self, trainer: Trainer, metrics: dict[str, float], step: int,
                  texts: dict[str, str]) -> None:
        """What a schedule or label source records at ``step`` (e.g. its round): metrics,
        and text files by name."""
    def on_eval(self, trainer: Trainer, result: EvalResult, step: int) -> None: ...
    def on_before_checkpoint(self, trainer: Trainer, path: Path) -> None:
        """Called before the checkpoint at ``path`` is written."""
    def on_checkpoint(self, trainer: Trainer, path: Path) -> None: ...
    def on_end(self, trainer: Trainer, results: dict[str, Any], result: EvalResult) -> None: ...
    def on_fail(self, trainer: Trainer) -> None: ...
    def on_wait(self, trainer: Trainer) -> None:
        """The trial stopped at a checkpoint until people label a round (ripu.annotate)."""


class CallbackList(Callback):
    """Calls each callback in order."""

    def __init__(self, callbacks) -> None:
        self.callbacks = list(callbacks)

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("on_"):
            def call(*args: Any) -> None:
                for cb in object.__getattribute__(self, "callbacks"):
                    getattr(cb, name)(*args)
            return call
        return object.__getattribute__(self, name)


class TrackingCallback(Callback):
    """Log a trial to MLflow: params, tags, metrics with steps, figures and artifacts.

    Writes run in the background (:class:`ripu.tracking.Tracker`); the selection contact
    sheets and the confusion image are drawn there too. Before each checkpoint is
    written, the values logged so far are flushed: a trial killed after a checkpoint keeps
    every value logged before it, and when resumed it logs the round files (and sheets) a
    killed run had not written yet. The run ends (``finish``) once everything is written.
    """

    def __init__(self, tracker) -> None:
        self.tracker = tracker

    @classmethod
    def for_trial(cls, cfg: Config, out_dir: Path, *, resume: bool = False,
                  parent_run_id: str | None = None, run_name: str | None = None,
                  extra_tags: dict[str, str] | None = None,
                  background: bool = True) -> TrackingCallback:
        """A run for the trial in ``out_dir``; a resumed trial continues its own run.
        ``background=False``: every write is done before its hook returns."""
        check_tracking(cfg.tracking)
        retry_for(cfg.tracking.retry_seconds)
        trial = TrialDir(out_dir)
        run_id = trial.run_id() if resume else None
        tags = {**trial_tags(cfg), **(extra_tags or {})}
        tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment, run_id=run_id,
                          run_name=run_name or trial.root.name, tags=tags,
                          parent_run_id=parent_run_id, background=background,
                          once_per_step=True)
        trial.write_run_id(tracker.run_id)  # atomic: a resume never reads half an id
        return cls(tracker)

    def on_start(self, trainer: Trainer) -> None:
        self.tracker.set_tags(trainer.start.tags())  # where its weights start (ripu.starts)
        self.tracker.log_params(flatten(trainer.cfg))
        self.tracker.log_text(dump_yaml(trainer.cfg), "config.yaml")
        if trainer.rounds_done:  # resumed after selection rounds
            self._log_missing_rounds(trainer)

    def on_log(self, trainer: Trainer, metrics: dict[str, float], step: int) -> None:
        self.tracker.log_metrics(metrics, step)

    def on_round(self, trainer: Trainer, round_index: int, path: Path) -> None:
        stats = trainer.state.round_stats[-1] if trainer.state.round_stats else {}
        self.tracker.log_metrics({
            f"{ACQ}labelled_fraction": trainer.state.labelled_fraction(),
            f"{ACQ}round_fraction": float(stats.get("round_fraction", 0.0)),
            f"{ACQ}iteration": trainer.iteration}, step=round_index)
        self._log_round(trainer, path)

    def _log_round(self, trainer: Trainer, path: Path, state=None) -> None:
        """The round file and its contact sheet (rendered in the background; select_round
        returns a new state, so ``trainer.state`` of this round is not changed later)."""
        state = trainer.state if state is None else state
        target = trainer.data["target"]
        self.tracker.log_artifact(path, "masks")
        self.tracker.log_file(lambda out: contact_sheet(state, target, out, max_images=12),
                              f"selection/{path.with_suffix('.png').name}")

    def _log_missing_rounds(self, trainer: Trainer) -> None:
        """Log the round files (and their sheets) of rounds done that the run lacks."""
        have = self.tracker.artifact_names("masks")
        for r in range(trainer.rounds_done):
            path = trainer.trial_dir.round_file(r)
            if path.name not in have and path.is_file():
                self._log_round(trainer, path, LabelState.load(path))

    def on_record(self, trainer: Trainer, metrics: dict[str, float], step: int,
                  texts: dict[str, str]) -> None:
        self.tracker.log_metrics(metrics, step=step)
        for name, text in texts.items():
            self.tracker.log_text(text, name)

    def on_eval(self, trainer: Trainer, result: EvalResult, step: int) -> None:
        self.tracker.log_metrics({f"{VAL}{k}": v for k, v in miou_metrics(result.summary).items()},
                                 step)

    def on_before_checkpoint(self, trainer: Trainer, path: Path) -> None:
        self.tracker.flush(files=False)

    def on_end(self, trainer: Trainer, results: dict[str, Any], result: EvalResult) -> None:
        metrics = final_summary(results)
        metrics.update({f"{FINAL_IOU}{name.replace(' ', '_')}": v
                        for name, v in results["iou"].items()})
        for key, prefix in (("labelled_pixels", LABELLED_PX), ("target_pixels", TARGET_PX)):
            metrics.update({f"{prefix}{name.replace(' ', '_')}": v
                            for name, v in results.get(key, {}).items()})
        if "labelled_boundary_pixels" in results:  # ripu.anatomy: on ground-truth boundaries
            metrics[LABELLED_BOUNDARY_PX] = results["labelled_boundary_pixels"]
        metrics[FINAL_ITERATIONS] = results["iterations"]
        self.tracker.log_metrics(metrics, step=results["iterations"])
        confusion, names = result.confusion.cpu().clone(), trainer.data["val"].class_names
        self.tracker.log_file(lambda out: save_confusion_image(confusion, names, out),
                              "confusion_matrix.png")
        self.tracker.log_artifact(trainer.trial_dir.results_file)
        if trainer.cfg.train.save_model:
            self.tracker.log_artifact(trainer.checkpoint_path, "checkpoint")
        self.tracker.finish("FINISHED")

    def on_fail(self, trainer: Trainer) -> None:
        with contextlib.suppress(Exception):  # never mask the original error
            self.tracker.finish("FAILED")

    def on_wait(self, trainer: Trainer) -> None:
        """Waiting for people is no failure: the run is SCHEDULED until the trial goes on."""
        self.tracker.finish("SCHEDULED")

"""One trial end to end: the training loop, selection rounds, exact resume.

Trial kinds (``train.kind``, described in :mod:`ripu.kinds`) share one loop and differ in
their loss terms (:mod:`ripu.engine.objective`), the batches they draw and two parts their
kind composes (:mod:`ripu.parts`): a schedule (plain iterations, selection rounds at
``active.round_at``, LSE rounds) and a target-label source (``trainer.labels``: what the
batches are supervised with, owning its checkpoint state). The engine calls them and knows
none by name. Checkpoint files live in :mod:`ripu.engine.checkpoint`, the folder layout in
:mod:`ripu.engine.trial_dir`, data parallelism behind :class:`ripu.engine.parallel.DistContext`.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ripu.acquisition import LabelState
from ripu.config import Config
from ripu.engine.batches import IterationBatches, TargetLabels, loader
from ripu.engine.build import build_model_from, select_device
from ripu.engine.callbacks import Callback, CallbackList, TrackingCallback
from ripu.engine.checkpoint import (
    TrialCheckpoint,
    load_trial_checkpoint,
    load_weights,
    save_trial_checkpoint,
)
from ripu.engine.evaluate import EvalResult, evaluate
from ripu.engine.objective import Objective
from ripu.engine.optim import build_optimizer
from ripu.engine.parallel import DistContext
from ripu.engine.schedule import poly_lr, set_lr
from ripu.engine.selection import run_round
from ripu.engine.trial_data import (
    TrialData,
    class_pixel_counts,
    load_trial_data,
)
from ripu.engine.trial_dir import TrialDir
from ripu.errors import TrainingDiverged, Waiting
from ripu.kinds import get_kind
from ripu.parts import label_source, run_schedule
from ripu.record_names import MIOU, TRAIN, TRAIN_LR
from ripu.starts import start_of
from ripu.tracking import check_tracking
from ripu.trial import miou_metrics, selection, trial_config_hash
from ripu.warmups import model_signature


class Trainer:
    """Model, optimiser, data and label state of one trial, with the training primitives.

    ``data``: the trial's checked datasets (default: :func:`load_trial_data`, which decodes
    every label once). ``dist``: this process's rank of a data-parallel trial (default: a
    single process); ranks other than the main one write no files.
    """

    def __init__(self, cfg: Config, out_dir: str | Path, *, init: str | Path | None = None,
                 progress: bool = True, callbacks: Sequence[Callback] = (),
                 data: TrialData | None = None, dist: DistContext | None = None) -> None:
        self.kind = get_kind(cfg.train.kind)
        self.cfg = cfg
        self.trial_dir = TrialDir(out_dir)
        # where its target labels come from (a people server and token are checked now)
        self.labels = label_source(self.kind, cfg, self.trial_dir)
        self.out_dir = self.trial_dir.root
        self.progress = progress
        self.callbacks = CallbackList(callbacks)
        self.dist = dist or DistContext()
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.seed)
        self.device = select_device(cfg.train.device)
        self.amp = cfg.train.amp and self.device.type == "cuda"
        data = data or load_trial_data(cfg, progress=progress)
        self.data = data.datasets
        self.class_lists = data.class_lists
        self.model = build_model_from(cfg, self.device)
        if init:
            load_weights(self.model, init)
        self.start = start_of(cfg, init)  # what the weights start from (ripu.starts)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.objective = Objective(self.kind.terms, cfg.loss, joint=self.model.per_image)
        self.iteration = 0
        self.rounds_done = 0
        self.state = LabelState()
        self.seconds = 0.0
        self._train_model: torch.nn.Module | None = None

    # ------------------------------------------------------------------ state

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    @property
    def checkpoint_path(self) -> Path:
        return self.trial_dir.checkpoint

    @property
    def train_model(self) -> torch.nn.Module:
        """The module training forward passes go through (``model``, or its DDP wrapper,
        made at the first training step: every rank gets there at the same iteration)."""
        if self._train_model is None:
            self._train_model = self.dist.wrap(self.model, self.device)
        return self._train_model

    def target_labels(self) -> TargetLabels:
        """Target supervision for the current label state (None masks: all labelled)."""
        return self.labels.target_labels(self)

    def batches(self, target: torch.utils.data.Dataset | None = None,
                target_labels: TargetLabels | None = None, first: int = 0) -> IterationBatches:
        """The iteration-indexed batches for this trial's kind (passes of ``data.order:
        epochs`` counted from iteration ``first``)."""
        cfg, use_target = self.cfg, self.kind.uses_target
        return IterationBatches(
            cfg.seed, source=self.data.get("source"), batch_source=cfg.optim.batch_source,
            class_lists=self.class_lists,
            target=(target or self.data["target"]) if use_target else None,
            batch_target=cfg.optim.batch_target if use_target else 0,
            target_labels=target_labels or self.target_labels(), flip=cfg.data.flip,
            balance_rule=cfg.data.class_balance_rule, order=cfg.data.order, first=first)

    def save_checkpoint(self) -> Path:
        """Write the trial checkpoint (main rank only) and tell the callbacks."""
        path = self.trial_dir.checkpoint
        if not self.is_main:
            return path
        ckpt = TrialCheckpoint(
            model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
            iteration=self.iteration, rounds_done=self.rounds_done,
            config_hash=trial_config_hash(self.cfg), **model_signature(self.cfg),
            start_sha256=self.start.sha256, seconds=self.seconds, torch_rng=torch.get_rng_state(),
            labels=self.labels.state_dict())
        self.callbacks.on_before_checkpoint(self, path)
        save_trial_checkpoint(path, ckpt)
        self.callbacks.on_checkpoint(self, path)
        return path

    def load_checkpoint(self) -> None:
        """Continue from the trial checkpoint: weights, optimiser, iteration, label state."""
        ckpt = load_trial_checkpoint(self.trial_dir.checkpoint, trial_config_hash(self.cfg),
                                     self.start)
        self.model.load_state_dict(ckpt.model)
        self.optimizer.load_state_dict(ckpt.optimizer)
        self.iteration, self.rounds_done = ckpt.iteration, ckpt.rounds_done
        self.seconds = ckpt.seconds
        torch.set_rng_state(ckpt.torch_rng)
        self.labels.load_state_dict(ckpt.labels)
        if self.rounds_done and self.kind.selects:  # LSE rounds write no masks
            self.state = LabelState.load(self.trial_dir.round_file(self.rounds_done - 1))

    # ------------------------------------------------------------------ training

    def lr_at(self, iteration: int) -> float:
        o = self.cfg.optim
        return poly_lr(o.lr, iteration, o.poly_iters, o.poly_power)

    def _logits(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.train_model(images.to(self.device, non_blocking=True))
        return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=True)

    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Unweighted loss terms of one batch for this trial's kind (docs/method.md sections 2, 3)."""
        return self.objective.terms(batch, self._logits, self.device)

    def train_until(self, end: int, batches: IterationBatches | None = None,
                    lr_at: Callable[[int], float] | None = None, desc: str = "train") -> None:
        """Train iterations ``self.iteration .. end-1``; log, evaluate and checkpoint on the way."""
        if self.iteration >= end:
            return
        cfg, objective = self.cfg.train, self.objective
        lr_at = lr_at or self.lr_at
        batches = batches or self.batches()
        self.model.train()
        sums: dict[str, float] = defaultdict(float)
        count = 0
        bar = tqdm(total=end - self.iteration, desc=desc, disable=not self.progress,
                   dynamic_ncols=True, leave=False)
        started = time.perf_counter()
        for batch in loader(batches, self.iteration, end, self.cfg.data.workers):
            batch = self.dist.slice(batch)
            lr = lr_at(self.iteration)
            set_lr(self.optimizer, lr)
            terms = self.loss_terms(batch)
            total = objective.total(terms)
            values = {k: v.item() for k, v in terms.items()}
            if not all(map(math.isfinite, values.values())):
                raise TrainingDiverged(
                    f"{self.cfg.train.kind} trial diverged at iteration {self.iteration}: loss "
                    f"terms {values} at learning rate {lr:g} (head {lr * self.cfg.optim.head_lr_mult:g}); "
                    f"expected finite losses, lower optim.lr")
            self.optimizer.zero_grad(set_to_none=True)
            if isinstance(total, torch.Tensor) and total.requires_grad:
                total.backward()
                self.optimizer.step()
            self.iteration += 1
            count += 1
            for k, v in values.items():
                sums[k] += v
            sums["loss"] += objective.logged_total(values)
            bar.update(1)
            if self.iteration % cfg.log_every == 0 or self.iteration == end:
                means = {k: v / count for k, v in sums.items()}
                bar.set_postfix({k: f"{v:.3f}" for k, v in means.items()}, refresh=False)
                metrics = {f"{TRAIN}{k}": v for k, v in means.items()}
                metrics[TRAIN_LR] = lr
                self.callbacks.on_log(self, self.dist.mean(metrics, self.device),
                                      self.iteration)
                sums.clear()
                count = 0
            if cfg.eval_every and self.iteration % cfg.eval_every == 0 and self.iteration < end:
                self.evaluate(step=self.iteration)
                self.model.train()
            if self.iteration % cfg.checkpoint_every == 0:
                self.seconds += time.perf_counter() - started
                started = time.perf_counter()
                self.save_checkpoint()
        self.seconds += time.perf_counter() - started
        bar.close()

    # ------------------------------------------------------------------ rounds and evaluation

    def select(self, round_index: int) -> Path:
        """Run selection round ``round_index``, write its round file, checkpoint."""
        self.state = run_round(self.cfg, self.model, self.data["target"], self.state,
                               round_index, device=self.device, progress=self.progress)
        path = self.trial_dir.round_file(round_index)
        if self.is_main:
            self.state.save(path)
        self.labels.after_selection(self, round_index)
        self.rounds_done = round_index + 1
        self.callbacks.on_round(self, round_index, path)
        self.save_checkpoint()
        return path

    def receive_labels(self, round_index: int) -> None:
        """The labels of rounds up to ``round_index`` (its label source's: people's are
        fetched, the oracle's need none). Waiting while people have not answered."""
        self.labels.receive(self, round_index)

    def evaluate(self, step: int | None = None) -> EvalResult:
        result = evaluate(self.model, self.data["val"], self.cfg.data.num_classes,
                          input_size=self.cfg.data.eval_size, flip=self.cfg.train.eval_flip,
                          device=self.device, batch_size=1, progress=self.progress)
        self.callbacks.on_eval(self, result, self.iteration if step is None else step)
        return result

    def labelled_fraction(self) -> float:
        fixed = self.kind.labelled_fraction_fixed
        return self.state.labelled_fraction() if fixed is None else fixed

    def labelled_pixels(self) -> tuple[dict[str, int], dict[str, int], int]:
        """Per-class counts ``{class name: pixels}`` of the labelled target pixels (all
        rounds) and of all target train pixels, at the training size, ignore pixels not
        counted, and the labelled pixels on ground-truth boundaries
        (:func:`ripu.engine.trial_data.class_pixel_counts`)."""
        target = self.data["target"]
        counts = class_pixel_counts(
            target, self.state.labelled if self.kind.labels_selected else None,
            everything=self.kind.labels_everything)
        names = target.class_names
        return ({n: int(v) for n, v in zip(names, counts.labelled.tolist(), strict=True)},
                {n: int(v) for n, v in zip(names, counts.total.tolist(), strict=True)},
                counts.boundary)

    def finish(self) -> dict[str, Any]:
        """Final evaluation; write results.json; tell the callbacks."""
        result = self.evaluate()
        picked = selection(self.cfg)
        labelled_px, target_px, on_boundary = self.labelled_pixels()
        results = {
            "kind": self.cfg.train.kind, "seed": self.cfg.seed, "iterations": self.iteration,
            "resume_hash": trial_config_hash(self.cfg),
            "start": self.start.name, "start_sha256": self.start.sha256,
            "strategy": picked.strategy, "budget": picked.budget,
            "labelled_fraction": self.labelled_fraction(), "seconds": round(self.seconds, 3),
            MIOU: float(result.miou), **miou_metrics(result.summary),
            "iou": {name: None if math.isnan(v) else float(v)  # None: class absent in val
                    for name, v in zip(self.data["val"].class_names, result.iou.tolist(),
                                       strict=True)},
            "labelled_pixels": labelled_px, "target_pixels": target_px,
        }
        if self.kind.selects and self.kind.labels_selected:
            results["labelled_boundary_pixels"] = on_boundary
        if self.is_main:
            self.trial_dir.write_results(results)
        self.callbacks.on_end(self, results, result)
        return results


def run_trial(cfg: Config, out_dir: str | Path, *, init: str | Path | None = None,
              resume: bool = False, progress: bool = True,
              callbacks: Sequence[Callback] | None = None) -> dict[str, Any]:
    """Run one trial in ``out_dir`` (layout: :class:`ripu.engine.trial_dir.TrialDir`).

    ``callbacks`` default to MLflow tracking of ``cfg.tracking``. With ``resume``, continue
    from the last checkpoint in ``out_dir`` (the same config is required).
    """
    trial = TrialDir(out_dir)
    # Validate everything (tracking store, datasets, model, init and resume checkpoints)
    # before the trial folder or the MLflow run is touched: bad input writes nothing.
    if callbacks is None:
        check_tracking(cfg.tracking)
    trainer = Trainer(cfg, trial.root, init=init, progress=progress, callbacks=callbacks or ())
    if resume and trial.checkpoint.is_file():
        trainer.load_checkpoint()  # refuses a checkpoint of another config
    trial.prepare(cfg, resume, trainer.labels.kept_files)
    if callbacks is None:
        trainer.callbacks = CallbackList([TrackingCallback.for_trial(cfg, trial.root,
                                                                     resume=resume)])
    return train_trial(trainer)


def train_trial(trainer: Trainer) -> dict[str, Any]:
    """The trial's schedule on a prepared trainer: training segments and selection rounds
    (or LSE rounds), a last checkpoint, the final evaluation; returns the results."""
    trainer.callbacks.on_start(trainer)
    try:
        run_schedule(trainer.kind, trainer)
        if trainer.iteration % trainer.cfg.train.checkpoint_every:
            trainer.save_checkpoint()
        return trainer.finish()
    except Waiting:
        trainer.callbacks.on_wait(trainer)
        raise
    except BaseException:
        trainer.callbacks.on_fail(trainer)
        raise

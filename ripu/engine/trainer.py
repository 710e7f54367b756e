"""One trial end to end: the RIPU objective, selection rounds, checkpoints, exact resume.

Trial kinds (``train.kind``) share one loop and differ only in the loss terms they use and
in where target supervision comes from (METHOD.md section 2):

- ``source_only``: CE on source.
- ``supervised``: every target pixel labelled (the upper bound), full objective.
- ``active``: ``CE_src + CE_tgt(selected) + lc * L_LC + nl * L_NL`` with selection rounds.
- ``source_free``: no source data: ``CE_tgt(selected) + nl * L_NL`` with selection rounds.
- ``hybrid``: ``active`` plus LSE pseudo-labels on the target pixels not selected.
- ``lse``: LSE self-training rounds (``ripu.selftrain.train``).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ripu import losses
from ripu.acquisition import Budget, LabelState, get_strategy, latest_round, select_round
from ripu.config import Config, dump_yaml, params_hash
from ripu.engine.batches import IterationBatches, TargetLabels, loader
from ripu.engine.build import build_datasets, build_model_from, select_device
from ripu.engine.callbacks import Callback, CallbackList
from ripu.engine.evaluate import EvalResult, evaluate
from ripu.engine.schedule import poly_lr, round_iterations, set_lr
from ripu.errors import RipuError
from ripu.io import atomic_path, write_json, write_text
from ripu.warmups import model_signature

# Loss terms per trial kind; weights come from the `loss` section.
TERMS: dict[str, tuple[str, ...]] = {
    "source_only": ("src",),
    "supervised": ("src", "lc", "tgt", "nl"),
    "active": ("src", "lc", "tgt", "nl"),
    "source_free": ("tgt", "nl"),
    "hybrid": ("src", "lc", "tgt", "nl", "pseudo", "pseudo_focal"),
    "lse": ("src", "tgt", "tgt_focal"),
}
SELECTION_KINDS = ("active", "source_free", "hybrid")
CHECKPOINT_VERSION = 1


def resume_hash(cfg: Config) -> str:
    """Hash of what determines a trial's results (not where it logs or how it is scheduled)."""
    return params_hash(dataclasses.replace(cfg, tracking=type(cfg.tracking)(),
                                           sweep=type(cfg.sweep)(), report=type(cfg.report)(),
                                           train=dataclasses.replace(cfg.train, device="auto",
                                                                     threads=0)))


def budget_of(cfg: Config) -> Budget:
    """The labelling budget of the ``active`` section, in the strategy's mode."""
    a = cfg.active
    return Budget(mode=get_strategy(a.strategy).mode, fraction=a.budget,
                  points_per_image=a.points, rounds=a.rounds, radius=a.radius)


def read_checkpoint(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True`` (no code runs from the file) and torch's
    warnings about foreign files silenced (the caller reports a bad file in one line)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load model weights from a checkpoint (``{"model": state_dict}`` or a bare state dict)."""
    path = Path(path)
    if not path.is_file():
        raise RipuError(f"{path}: checkpoint not found, expected a .pt file")
    try:
        ckpt = read_checkpoint(path)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise RipuError(f"{path}: unreadable checkpoint ({type(exc).__name__}), expected a "
                        f"file written by ripu") from None
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


class Trainer:
    """Model, optimiser, data and label state of one trial, with the training primitives."""

    def __init__(self, cfg: Config, out_dir: Path, *, init: str | Path | None = None,
                 progress: bool = True, callbacks: Sequence[Callback] = ()) -> None:
        if cfg.train.kind in SELECTION_KINDS:
            get_strategy(cfg.active.strategy)  # fail before any work
        self.cfg = cfg
        self.out_dir = Path(out_dir).resolve()
        self.progress = progress
        self.callbacks = CallbackList(callbacks)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.seed)
        self.device = select_device(cfg.train.device)
        self.amp = cfg.train.amp and self.device.type == "cuda"
        kind = cfg.train.kind
        wanted = ["target", "val"] + ([] if kind == "source_free" else ["source"])
        self.data = build_datasets(cfg, only=wanted)
        self.model = build_model_from(cfg, self.device)
        if init:
            load_weights(self.model, init)
        self.optimizer = torch.optim.SGD(
            self.model.param_groups(cfg.optim.lr, cfg.optim.head_lr_mult),
            lr=cfg.optim.lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
        self.iteration = 0
        self.rounds_done = 0
        self.state = LabelState()
        self.pseudo: dict[str, np.ndarray] | None = None
        self.class_lists = self._class_lists() if "source" in self.data else None
        self._check_labels("target", "val")
        self.seconds = 0.0
        # Data-parallel hooks (ripu.engine.distributed): training forward passes go through
        # `train_model` (a DDP wrapper of `model`), `batch_transform` takes this rank's slice
        # of each batch, and ranks other than the main one write no files.
        self.train_model: torch.nn.Module = self.model
        self.batch_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.is_main = True

    # ------------------------------------------------------------------ paths and state

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoints" / "last.pt"

    @property
    def masks_dir(self) -> Path:
        return self.out_dir / "masks"

    def _class_lists(self) -> dict[int, list[int]] | None:
        if not self.cfg.data.class_balance:
            return None
        from ripu.data.sampling import class_image_lists

        source = self.data["source"]
        cache = Path(source.items[0][1]).parents[1] / ".class_lists.json" if len(source) else None
        try:
            return class_image_lists(source, cache, progress=self.progress)
        except OSError:  # read-only dataset folder: compute without caching
            return class_image_lists(source, None, progress=self.progress)

    def _check_labels(self, *names: str) -> None:
        """Decode every label of the named datasets, so that an unreadable file or an id
        outside the label map is a DatasetError before any work (the class lists read the
        source labels)."""
        from tqdm.auto import tqdm

        for name in names:
            ds = self.data[name]
            for i in tqdm(range(len(ds)), desc=f"check {name} labels",
                          disable=not self.progress, leave=False):
                ds.read_label(i)

    def target_labels(self) -> TargetLabels:
        """Target supervision for the current label state (None masks: all labelled)."""
        if self.cfg.train.kind == "supervised":
            return TargetLabels(labelled=None)
        if self.cfg.train.kind in SELECTION_KINDS:
            return TargetLabels(labelled=self.state.masks_for(self.data["target"].ids),
                                pseudo=self.pseudo)
        return TargetLabels(labelled=None)

    def batches(self, target: torch.utils.data.Dataset | None = None,
                target_labels: TargetLabels | None = None, first: int = 0) -> IterationBatches:
        """The iteration-indexed batches for this trial's kind (passes of ``data.order:
        epochs`` counted from iteration ``first``)."""
        cfg, kind = self.cfg, self.cfg.train.kind
        use_target = kind != "source_only"
        return IterationBatches(
            cfg.seed, source=self.data.get("source"), batch_source=cfg.optim.batch_source,
            class_lists=self.class_lists,
            target=(target or self.data["target"]) if use_target else None,
            batch_target=cfg.optim.batch_target if use_target else 0,
            target_labels=target_labels or self.target_labels(), flip=cfg.data.flip,
            balance_rule=cfg.data.class_balance_rule, order=cfg.data.order, first=first)

    def save_checkpoint(self) -> Path:
        if not self.is_main:
            return self.checkpoint_path
        ckpt = {
            "version": CHECKPOINT_VERSION, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "iteration": self.iteration,
            "rounds_done": self.rounds_done, "config_hash": resume_hash(self.cfg),
            **model_signature(self.cfg),  # arch, backbone, num_classes
            "seconds": self.seconds, "torch_rng": torch.get_rng_state(),
            "pseudo": {k: torch.from_numpy(v) for k, v in (self.pseudo or {}).items()},
        }
        self.callbacks.on_before_checkpoint(self, self.checkpoint_path)
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(ckpt, tmp)
        self.callbacks.on_checkpoint(self, self.checkpoint_path)
        return self.checkpoint_path

    def load_checkpoint(self) -> None:
        """Continue from ``checkpoint_path``: weights, optimiser, iteration, label state."""
        try:
            ckpt = read_checkpoint(self.checkpoint_path)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
            raise RipuError(f"--resume: unreadable checkpoint {self.checkpoint_path} "
                            f"({type(exc).__name__}), expected a file written by ripu; drop "
                            f"--resume to start afresh") from None
        if not isinstance(ckpt, dict) or ckpt.get("config_hash") != resume_hash(self.cfg):
            raise RipuError(f"--resume: {self.out_dir} was started with another config "
                            f"(see its config.yaml); expected the same params, or drop --resume")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.iteration, self.rounds_done = ckpt["iteration"], ckpt["rounds_done"]
        self.seconds = ckpt.get("seconds", 0.0)
        torch.set_rng_state(ckpt["torch_rng"])
        self.pseudo = {k: v.numpy() for k, v in ckpt["pseudo"].items()} or None
        if self.rounds_done and self.cfg.train.kind in SELECTION_KINDS:  # lse: no masks
            self.state = LabelState.load(self.masks_dir / f"round_{self.rounds_done - 1}.npz")

    # ------------------------------------------------------------------ training

    def lr_at(self, iteration: int) -> float:
        o = self.cfg.optim
        return poly_lr(o.lr, iteration, o.poly_iters, o.poly_power)

    def _logits(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.train_model(images.to(self.device, non_blocking=True))
        return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=True)

    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Unweighted loss terms of one batch for this trial's kind (METHOD.md sections 2, 3)."""
        terms, wanted = {}, TERMS[self.cfg.train.kind]
        src, tgt = batch["source"], batch["target"]
        if src is not None and "src" in wanted:
            label = src["label"].to(self.device)
            logits = self._logits(src["image"], label.shape[-2:])
            terms["src"] = losses.cross_entropy(logits, label)
            if "lc" in wanted and self.cfg.loss.lc > 0:
                terms["lc"] = losses.local_consistency(logits.softmax(1), label)
        if tgt is not None:
            label = tgt["label"].to(self.device)
            logits = self._logits(tgt["image"], label.shape[-2:])
            if "tgt" in wanted:
                terms["tgt"] = losses.cross_entropy(logits, label)
            if "tgt_focal" in wanted:
                terms["tgt_focal"] = losses.focal_loss(logits, label, self.cfg.loss.focal_gamma)
            if "nl" in wanted and self.cfg.loss.nl > 0:
                terms["nl"] = losses.negative_learning(logits.softmax(1),
                                                       self.cfg.loss.nl_threshold)
            if "pseudo" in wanted:
                pseudo = tgt["pseudo"].to(self.device)
                terms["pseudo"] = losses.cross_entropy(logits, pseudo)
                terms["pseudo_focal"] = losses.focal_loss(logits, pseudo,
                                                          self.cfg.loss.focal_gamma)
        return terms

    def weights(self) -> dict[str, float]:
        w = self.cfg.loss
        return {"src": w.source_ce, "lc": w.lc, "tgt": w.target_ce, "nl": w.nl,
                "tgt_focal": w.focal, "pseudo": w.target_ce, "pseudo_focal": w.focal}

    def train_until(self, end: int, batches: IterationBatches | None = None,
                    lr_at=None, desc: str = "train") -> None:
        """Train iterations ``self.iteration .. end-1``; log, evaluate and checkpoint on the way."""
        if self.iteration >= end:
            return
        from tqdm.auto import tqdm

        cfg, weights = self.cfg.train, self.weights()
        lr_at = lr_at or self.lr_at
        batches = batches or self.batches()
        self.model.train()
        sums: dict[str, float] = defaultdict(float)
        count = 0
        bar = tqdm(total=end - self.iteration, desc=desc, disable=not self.progress,
                   dynamic_ncols=True, leave=False)
        started = time.perf_counter()
        for batch in loader(batches, self.iteration, end, self.cfg.data.workers):
            if self.batch_transform is not None:
                batch = self.batch_transform(batch)
            lr = lr_at(self.iteration)
            set_lr(self.optimizer, lr)
            terms = self.loss_terms(batch)
            total = sum(weights[k] * v for k, v in terms.items())
            self.optimizer.zero_grad(set_to_none=True)
            if isinstance(total, torch.Tensor) and total.requires_grad:
                total.backward()
                self.optimizer.step()
            self.iteration += 1
            count += 1
            for k, v in terms.items():
                sums[k] += v.item()
            sums["loss"] += sum(weights[k] * v.item() for k, v in terms.items())
            bar.update(1)
            if self.iteration % cfg.log_every == 0 or self.iteration == end:
                means = {k: v / count for k, v in sums.items()}
                bar.set_postfix({k: f"{v:.3f}" for k, v in means.items()}, refresh=False)
                metrics = {f"train/{k}": v for k, v in means.items()}
                metrics["train/lr"] = lr
                self.callbacks.on_log(self, metrics, self.iteration)
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

    def budget(self) -> Budget:
        return budget_of(self.cfg)

    def select(self, round_index: int) -> Path:
        """Run selection round ``round_index``, write its round file, checkpoint."""
        a = self.cfg.active
        self.state = select_round(self.model, self.data["target"], self.state, a.strategy,
                                  self.budget(), round_index, seed=self.cfg.seed,
                                  device=self.device, batch_size=a.batch_size,
                                  progress=self.progress)
        path = self.masks_dir / f"round_{round_index}.npz"
        if self.is_main:
            self.state.save(path)
        if self.cfg.train.kind == "hybrid":
            self.pseudo = self._hybrid_pseudo_labels(round_index)
        self.rounds_done = round_index + 1
        self.callbacks.on_round(self, round_index, path)
        self.save_checkpoint()
        return path

    def _hybrid_pseudo_labels(self, round_index: int) -> dict[str, np.ndarray]:
        """LSE pseudo-labels on the target pixels not selected (255 on selected ones)."""
        from ripu.selftrain.runner import full_pseudo_labels

        lse = self.cfg.lse
        maps = full_pseudo_labels(self.model, self.data["target"], round_index,
                                  num_classes=self.cfg.data.num_classes, p_base=lse.p_base,
                                  p_step=lse.p_step, rule=lse.rule, device=self.device,
                                  batch_size=self.cfg.active.batch_size, progress=self.progress)
        masks = self.state.masks_for(self.data["target"].ids)
        return {k: np.where(masks[k], 255, v).astype(np.uint8) for k, v in maps.items()}

    def evaluate(self, step: int | None = None) -> EvalResult:
        result = evaluate(self.model, self.data["val"], self.cfg.data.num_classes,
                          input_size=self.cfg.data.eval_size, flip=self.cfg.train.eval_flip,
                          device=self.device, batch_size=1, progress=self.progress)
        self.callbacks.on_eval(self, result, self.iteration if step is None else step)
        return result

    def labelled_fraction(self) -> float:
        if self.cfg.train.kind == "supervised":
            return 1.0
        if self.cfg.train.kind in SELECTION_KINDS:
            return self.state.labelled_fraction()
        return 0.0

    def finish(self) -> dict[str, Any]:
        """Final evaluation; write results.json; tell the callbacks."""
        result = self.evaluate()
        a = self.cfg.active
        results = {
            "kind": self.cfg.train.kind, "seed": self.cfg.seed, "iterations": self.iteration,
            "resume_hash": resume_hash(self.cfg),
            "strategy": a.strategy if self.cfg.train.kind in SELECTION_KINDS else None,
            "budget": a.budget if self.cfg.train.kind in SELECTION_KINDS else 0.0,
            "labelled_fraction": self.labelled_fraction(), "seconds": round(self.seconds, 3),
            "miou": float(result.miou),
            **{k: float(v) for k, v in result.summary.items()
               if k.startswith("miou") and isinstance(v, float)},
            "iou": {name: None if math.isnan(v) else float(v)  # None: class absent in val
                    for name, v in zip(self.data["val"].class_names, result.iou.tolist(),
                                       strict=True)},
        }
        if self.is_main:
            write_json(self.out_dir / "results.json", results)
        self.callbacks.on_end(self, results, result)
        return results


def prepare_out_dir(cfg: Config, out_dir: Path, resume: bool) -> bool:
    """Create the trial folder; True when there is a checkpoint to resume from."""
    out_dir.mkdir(parents=True, exist_ok=True)
    can_resume = resume and (out_dir / "checkpoints" / "last.pt").is_file()
    if not can_resume:
        for stale in [out_dir / "results.json", out_dir / "checkpoints" / "last.pt",
                      *sorted((out_dir / "masks").glob("round_*.npz")),
                      *sorted((out_dir / "lse").glob("round_*.pt"))]:
            stale.unlink(missing_ok=True)
    write_text(out_dir / "config.yaml", dump_yaml(cfg))
    return can_resume


def run_trial(cfg: Config, out_dir: str | Path, *, init: str | Path | None = None,
              resume: bool = False, progress: bool = True,
              callbacks: Sequence[Callback] | None = None) -> dict[str, Any]:
    """Run one trial in ``out_dir`` (checkpoints/, masks/round_<r>.npz, results.json).

    ``callbacks`` default to MLflow tracking of ``cfg.tracking``. With ``resume``, continue
    from the last checkpoint in ``out_dir`` (the same config is required).
    """
    from ripu.engine.callbacks import TrackingCallback
    from ripu.tracking import check_uri

    out_dir = Path(out_dir).resolve()
    # Validate everything (tracking store, datasets, model, init and resume checkpoints)
    # before the trial folder or the MLflow run is touched: bad input writes nothing.
    if callbacks is None:
        check_uri(cfg.tracking.uri)
    trainer = Trainer(cfg, out_dir, init=init, progress=progress, callbacks=callbacks or ())
    if resume and trainer.checkpoint_path.is_file():
        trainer.load_checkpoint()  # refuses a checkpoint of another config
    prepare_out_dir(cfg, out_dir, resume)
    if callbacks is None:
        trainer.callbacks = CallbackList([TrackingCallback.for_trial(cfg, out_dir,
                                                                     resume=resume)])
    return train_trial(trainer)


def train_trial(trainer: Trainer) -> dict[str, Any]:
    """The trial's schedule on a prepared trainer: training segments and selection rounds
    (or LSE rounds), a last checkpoint, the final evaluation; returns the results."""
    cfg = trainer.cfg
    trainer.callbacks.on_start(trainer)
    try:
        if cfg.train.kind == "lse":
            from ripu.selftrain.train import train_lse

            train_lse(trainer)
        else:
            if cfg.train.kind in SELECTION_KINDS:
                for r, at in enumerate(round_iterations(cfg.active.round_at, cfg.optim.iters)):
                    if r >= trainer.rounds_done:
                        trainer.train_until(at)
                        trainer.select(r)
            trainer.train_until(cfg.optim.iters)
        if trainer.iteration % cfg.train.checkpoint_every:
            trainer.save_checkpoint()
        return trainer.finish()
    except BaseException:
        trainer.callbacks.on_fail(trainer)
        raise


# ---------------------------------------------------------------------------- CLI helpers


def select_cli(cfg: Config, checkpoint: str | Path, masks_dir: Path, round_index: int | None,
               progress: bool = True) -> Path:
    """`ripu select`: the next round file of ``masks_dir`` from a checkpoint."""
    device = select_device(cfg.train.device)
    target = build_datasets(cfg, only=("target",))["target"]
    model = build_model_from(cfg, device)
    load_weights(model, checkpoint)
    last = latest_round(masks_dir)
    state = LabelState.load(last[1]) if last else LabelState()
    if round_index is None:
        round_index = last[0] + 1 if last else 0
    elif last and round_index != last[0] + 1:
        raise RipuError(f"--round {round_index}: the last complete round in {masks_dir} is "
                        f"{last[0]}, expected --round {last[0] + 1}")
    elif not last and round_index != 0:
        raise RipuError(f"--round {round_index}: {masks_dir} has no round file, expected 0")
    state = select_round(model, target, state, cfg.active.strategy, budget_of(cfg), round_index,
                         seed=cfg.seed, device=device, batch_size=cfg.active.batch_size,
                         progress=progress)
    path = Path(masks_dir) / f"round_{round_index}.npz"
    state.save(path)
    return path


def evaluate_checkpoint(cfg: Config, checkpoint: str | Path, *, flip: bool = False,
                        progress: bool = True) -> EvalResult:
    """`ripu evaluate`: a checkpoint on the target val split at ``data.eval_size``."""
    device = select_device(cfg.train.device)
    val = build_datasets(cfg, only=("val",))["val"]
    model = build_model_from(cfg, device)
    load_weights(model, checkpoint)
    return evaluate(model, val, cfg.data.num_classes, input_size=cfg.data.eval_size,
                    flip=flip, device=device, batch_size=1, progress=progress)

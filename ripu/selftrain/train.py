"""The ``lse`` trial kind: rounds of LSE pseudo-labels, each followed by training on them.

docs/method.md section 3. Each round's pseudo-label set is cached in the trial folder's
``lse/round_<r>.pt`` (:meth:`ripu.engine.trial_dir.TrialDir.round_cache`) together with
the iteration at which the round started and how many iterations it trains, so a resumed
trial reuses the labels of the model that built them instead of rebuilding them from a
later model.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ripu.engine.batches import TargetLabels
from ripu.engine.checkpoint import read_checkpoint
from ripu.engine.schedule import poly_lr
from ripu.errors import RipuError
from ripu.io import atomic_path
from ripu.record_names import LSE
from ripu.selftrain.lse import Box, Patch
from ripu.selftrain.runner import PatchDataset, PseudoLabelSet, build_pseudo_labels
from ripu.trial import trial_config_hash

if TYPE_CHECKING:
    from ripu.engine.trainer import Trainer

__all__ = [
    "LSERound",
    "load_round",
    "round_iterations",
    "save_round",
    "train_lse",
]

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
PART = "lse"  # the trial folder's subfolder of round caches


@dataclass(frozen=True)
class LSERound:
    """One round's pseudo-labels and where the round sits on the global iteration axis.

    The round trains iterations ``start .. start + iterations - 1``; ``config_hash`` is the
    trial's config hash (:func:`ripu.trial.trial_config_hash`) when the labels were built.
    """

    pseudo_set: PseudoLabelSet
    start: int
    iterations: int
    config_hash: str

    @property
    def end(self) -> int:
        return self.start + self.iterations


def round_iterations(kept_images: int, epochs: int, patches: int, batch_target: int) -> int:
    """Iterations of one round: ``ceil(kept images x epochs x patches / batch)`` (docs/method.md section 3)."""
    if min(kept_images, epochs, patches) < 0 or batch_target < 1:
        raise RipuError(f"LSE round size needs kept_images, epochs, patches >= 0 and "
                        f"batch_target >= 1, got {kept_images}, {epochs}, {patches}, "
                        f"{batch_target}")
    return math.ceil(kept_images * epochs * patches / batch_target)


def _to_plain(rnd: LSERound) -> dict[str, Any]:
    ps = rnd.pseudo_set
    return {
        "version": CACHE_VERSION, "start": rnd.start, "iterations": rnd.iterations,
        "config_hash": rnd.config_hash, "round_index": ps.round_index,
        "fraction": ps.fraction, "rule": ps.rule, "scale": ps.scale,
        "num_images": ps.num_images, "kept_images": list(ps.kept_images),
        "kept_ids": list(ps.kept_ids),
        "kept_per_class": {int(c): list(v) for c, v in ps.kept_per_class.items()},
        "tau": ps.tau.detach().cpu().clone(),
        "patches": {int(pos): [{"box": list(p.box), "label": p.label.cpu().clone()}
                               for p in patches] for pos, patches in ps.patches.items()},
        "coverage": ps.coverage, "accuracy": ps.accuracy,
    }


def _from_plain(d: dict[str, Any]) -> LSERound:
    ps = PseudoLabelSet(
        round_index=d["round_index"], fraction=d["fraction"], rule=d["rule"],
        scale=d["scale"], num_images=d["num_images"], kept_images=list(d["kept_images"]),
        kept_ids=list(d["kept_ids"]), kept_per_class=dict(d["kept_per_class"]), tau=d["tau"],
        patches={pos: [Patch(box=Box(*p["box"]), label=p["label"]) for p in patches]
                 for pos, patches in d["patches"].items()},
        coverage=d["coverage"], accuracy=d["accuracy"])
    return LSERound(ps, start=d["start"], iterations=d["iterations"],
                    config_hash=d["config_hash"])


def save_round(path: str | Path, rnd: LSERound) -> None:
    """Write one round's cache atomically (plain tensors, lists and dicts)."""
    with atomic_path(path) as tmp:
        torch.save(_to_plain(rnd), tmp)


def load_round(path: str | Path) -> LSERound:
    """Read a cache written by :func:`save_round` (``weights_only=True``)."""
    path = Path(path)
    try:
        d = read_checkpoint(path)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise RipuError(f"{path}: unreadable LSE round cache ({type(exc).__name__}), expected "
                        f"a file written by ripu; delete it to rebuild the round") from None
    if not isinstance(d, dict) or d.get("version") != CACHE_VERSION:
        raise RipuError(f"{path}: not an LSE round cache of version {CACHE_VERSION}; delete it "
                        f"to rebuild the round")
    return _from_plain(d)


def _round_labels(trainer: Trainer, r: int) -> LSERound:
    """Round ``r``'s pseudo-labels: from the cache when resumed, else built and cached."""
    cfg, lse = trainer.cfg, trainer.cfg.lse
    path, config_hash = trainer.trial_dir.round_cache(PART, r), trial_config_hash(trainer.cfg)
    if path.is_file():
        rnd = load_round(path)
        if rnd.config_hash != config_hash or not rnd.start <= trainer.iteration <= rnd.end:
            raise RipuError(f"{path}: LSE round cache of another run (config or iterations "
                            f"{rnd.start}..{rnd.end} do not match iteration {trainer.iteration}"
                            f"); expected the cache of this trial, or drop --resume")
        return rnd
    ps = build_pseudo_labels(
        trainer.model, trainer.data["target"], r, num_classes=cfg.data.num_classes,
        p_base=lse.p_base, p_step=lse.p_step, rule=lse.rule, n_patches=lse.patches,
        scale=lse.scale, seed=cfg.seed, device=trainer.device,
        batch_size=cfg.train.infer_batch, progress=trainer.progress)
    n = round_iterations(len(ps.kept_images), lse.epochs, lse.patches, cfg.optim.batch_target)
    rnd = LSERound(ps, start=trainer.iteration, iterations=n, config_hash=config_hash)
    save_round(path, rnd)
    trainer.save_checkpoint()
    return rnd


def train_lse(trainer: Trainer) -> None:
    """Run the LSE rounds ``trainer.rounds_done .. lse.rounds - 1`` (docs/method.md section 3).

    Round ``r`` builds pseudo-labels with the current model (fraction ``p_r = p_base +
    p_step * r``, rule ``lse.rule``), caches them and checkpoints, then trains ``n_r =
    ceil(kept images x lse.epochs x lse.patches / optim.batch_target)`` iterations on
    source batches plus batches of the round's scale-invariant patches with the loss
    ``source_ce * CE(source) + target_ce * CE(patch) + focal * FL(patch)`` (trial kind
    ``lse``). Learning rate: poly decay *within each round*, restarting at ``optim.lr`` at
    the round's first iteration: ``lr(it) = optim.lr * (1 - (it - start_r) / n_r) **
    optim.poly_power``; ``optim.iters`` and ``optim.poly_iters`` are not used. Iterations
    are numbered globally across rounds. A round that keeps no image trains 0 iterations.
    After training, the callbacks' ``on_record`` hook gets the round's record, ``rounds_done`` becomes
    ``r + 1`` and a checkpoint is written, so a resumed trial continues exactly.
    """
    cfg = trainer.cfg
    for r in range(trainer.rounds_done, cfg.lse.rounds):
        rnd = _round_labels(trainer, r)
        if rnd.iterations == 0:
            logger.warning("LSE round %d keeps no target image (p_r = %g, rule %s): it trains "
                           "0 iterations", r, rnd.pseudo_set.fraction, rnd.pseudo_set.rule)
        else:
            patches = PatchDataset(trainer.data["target"], rnd.pseudo_set)
            batches = trainer.batches(target=patches, target_labels=TargetLabels(labelled=None),
                                      first=rnd.start)

            def lr_at(it: int, start: int = rnd.start, n: int = rnd.iterations) -> float:
                return poly_lr(cfg.optim.lr, it - start, n, cfg.optim.poly_power)

            trainer.train_until(rnd.end, batches, lr_at=lr_at, desc=f"LSE round {r}")
        trainer.callbacks.on_record(trainer, *round_record(trainer, r, rnd.pseudo_set))
        trainer.rounds_done = r + 1
        trainer.save_checkpoint()


def round_record(trainer: Trainer, r: int, pseudo_set: PseudoLabelSet
                 ) -> tuple[dict[str, float], int, dict[str, str]]:
    """What LSE round ``r`` records (step = round): kept images, coverage, accuracy, tau per
    class, and its diagnostics as ``lse/round_<r>.json``."""
    names = trainer.data["target"].class_names
    metrics = {f"{LSE}{k}": v for k, v in {
        "kept_images": len(pseudo_set.kept_images), "patches": pseudo_set.num_patches,
        "fraction": pseudo_set.fraction, "coverage": pseudo_set.coverage,
        "accuracy": pseudo_set.accuracy, "iteration": trainer.iteration}.items()}
    metrics.update({f"{LSE}tau/{name.replace(' ', '_')}": float(t)
                    for name, t in zip(names, pseudo_set.tau.tolist(), strict=True)})
    diagnostics = {**pseudo_set.diagnostics(), "class_names": list(names),
                   "iteration": trainer.iteration}
    return metrics, r, {f"lse/round_{r}.json": json.dumps(diagnostics, indent=2,
                                                          sort_keys=True)}


class LSERounds:
    """The LSE schedule (``lse_rounds`` in :data:`ripu.parts.SCHEDULES`)."""

    def run(self, trainer: Trainer) -> None:
        train_lse(trainer)


LSE_ROUNDS = LSERounds()

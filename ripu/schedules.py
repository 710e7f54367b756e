"""How a trial's training is scheduled: a part of its kind (``TrialKind.schedule``),
registered by name in :data:`ripu.parts.SCHEDULES` (LSE's rounds:
:data:`ripu.selftrain.train.LSE_ROUNDS`). ``train_trial`` runs ``schedule.run(trainer)``;
the engine knows no schedule by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ripu.engine.schedule import round_iterations

if TYPE_CHECKING:
    from ripu.engine.trainer import Trainer


class Iterations:
    """``optim.iters`` iterations, nothing else."""

    def run(self, trainer: Trainer) -> None:
        trainer.train_until(trainer.cfg.optim.iters)


class SelectionRounds:
    """Selection rounds at ``active.round_at`` (docs/method.md section 2): train to each
    round's iteration, select, receive the round's labels; then train to ``optim.iters``.
    Rounds a resumed trial finished are not selected again, their labels are received."""

    def run(self, trainer: Trainer) -> None:
        cfg = trainer.cfg
        for r, at in enumerate(round_iterations(cfg.active.round_at, cfg.optim.iters)):
            if r >= trainer.rounds_done:
                trainer.train_until(at)
                trainer.select(r)
            trainer.receive_labels(r)
        trainer.train_until(cfg.optim.iters)


ITERATIONS = Iterations()
SELECTION_ROUNDS = SelectionRounds()

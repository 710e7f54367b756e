"""DVC stage `sweep`: every trial of sweep.experiment on Ray Tune, each from the weights its
row declares (ImageNet weights, or a warm-up of models/<experiment>/).

Trial folders go to runs/<experiment name>/ (a persistent DVC output: an interrupted sweep
resumes its trials); Ray Tune's own files to ray_results/. A line per finished trial goes to
stdout. Ctrl-C (SIGINT) stops Ray, its trials and the tracking server, then exits with
status 130; SIGTERM (preemption) does the same and exits with status 143. The next
`dvc repro` finishes what was left.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from pipelines.common import RAY_RESULTS, RUNS, WARMUPS, load_experiment_of, main, show_progress
from ripu.config import Config
from ripu.sweep import run_sweep


def run(root: Path, cfg: Config) -> None:
    exp = load_experiment_of(root, cfg)
    results = run_sweep(cfg, cfg.sweep.experiment, warmups=root / WARMUPS,
                        out_dir=root / RUNS, progress=show_progress(),
                        storage=root / RAY_RESULTS)
    done = {s: sum(r["status"] == s for r in results) for s in ("finished", "skipped", "stopped")}
    print(f"sweep {exp.name}: {len(results)} trials ({done})")


def exit_now(code: int | str | None) -> None:
    """Exit with ``code`` without Python's finalization: its last garbage collection over
    the torch, Ray and MLflow modules takes 5-10 s; Ray, the server and the runs are closed
    already, and the streams are flushed here."""
    if isinstance(code, str):
        print(code, file=sys.stderr)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


if __name__ == "__main__":
    try:
        main(run)
    except SystemExit as exc:
        exit_now(exc.code)
    exit_now(0)

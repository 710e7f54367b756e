"""DVC stage `sweep`: every trial of sweep.experiment on Ray Tune, each from the weights its
row declares (ImageNet weights, or a warm-up of models/<experiment>/).

Trial folders go to runs/<experiment name>/ (a persistent DVC output: an interrupted sweep
resumes its trials); Ray Tune's own files to ray_results/.
"""

from __future__ import annotations

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


if __name__ == "__main__":
    main(run)

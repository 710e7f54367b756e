"""DVC stage `sweep`: every trial of sweep.experiment on Ray Tune, from models/warmup.pt.

Trial folders go to runs/<experiment name>/ (a persistent DVC output: an interrupted sweep
resumes its trials); Ray Tune's own files to ray_results/.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.common import RAY_RESULTS, RUNS, WARMUP_MODEL, main, show_progress
from ripu.config import Config
from ripu.errors import ConfigError
from ripu.experiments import load_experiment
from ripu.sweep import run_sweep


def run(root: Path, cfg: Config) -> None:
    exp = load_experiment(cfg.sweep.experiment, cfg, root=root)
    if exp.name != cfg.tracking.experiment:
        raise ConfigError(f"{cfg.sweep.experiment}: name {exp.name!r} differs from "
                          f"tracking.experiment {cfg.tracking.experiment!r}; expected the same "
                          f"(the report and the DVC output runs/<name> use it)")
    results = run_sweep(cfg, cfg.sweep.experiment, init=root / WARMUP_MODEL,
                        out_dir=root / RUNS, progress=show_progress(),
                        storage=root / RAY_RESULTS)
    done = {s: sum(r["status"] == s for r in results) for s in ("finished", "skipped", "stopped")}
    print(f"sweep {exp.name}: {len(results)} trials ({done})")


if __name__ == "__main__":
    main(run)

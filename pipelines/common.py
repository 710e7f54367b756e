"""What every stage shares: the repository root, params.yaml, absolute paths, error handling.

Only ``pipelines/`` and ``ripu/cli.py`` know the repository's folder names. A stage reads
params.yaml, or the params file given as ``--params FILE`` (the paper pipelines'
``experiments/<name>/params.yaml``), always running from the repository root.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ripu.config import Config, apply_overrides, load_config
from ripu.environment import git_revision
from ripu.errors import ConfigError, RipuError, exit_status
from ripu.experiments import Experiment, load_experiment
from ripu.tracking import absolute_uri

PARAMS = "params.yaml"
WARMUPS = Path("models")  # warm-up <name> of experiment <exp>: models/<exp>/<name>.pt
WARMUP_METRICS = Path("metrics")  # metrics/<exp>/warmups.json
WARMUP_TRIALS = Path("models/warmup_trials")  # resumable working folders of the warm-ups
RUNS = Path("runs")
RAY_RESULTS = Path("ray_results")  # Ray Tune's own files (git- and dvc-ignored)


def repo_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding params.yaml and
    dvc.yaml; DVC runs stages there."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PARAMS).is_file() and (folder / "dvc.yaml").is_file():
            return folder
    raise RipuError(f"{here}: no {PARAMS} with a dvc.yaml here or above, expected to run "
                    f"inside the repository")


def resolve(root: Path, path: str) -> str:
    """``path`` made absolute against ``root`` (absolute paths stay as they are)."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (root / p).resolve())


def load_params(root: Path, params: str | Path = PARAMS) -> Config:
    """params.yaml with its relative paths resolved against ``root``.

    Ray trials run in other folders, so data roots, the synthetic output, the pretrained
    weights, the experiment file, the report folder and a SQLite tracking store become
    absolute (warm-up files and a tracking credentials file too). Also records the repository's git revision for every run (RIPU_GIT_REVISION).
    """
    cfg = load_config(root / params)
    paths = {"synth.out": cfg.synth.out, "data.source_root": cfg.data.source_root,
             "data.target_root": cfg.data.target_root, "sweep.experiment": cfg.sweep.experiment,
             "report.out": cfg.report.out}
    if cfg.model.pretrained:
        paths["model.pretrained"] = cfg.model.pretrained
    if cfg.tracking.credentials:
        paths["tracking.credentials"] = cfg.tracking.credentials
    paths.update({f"sweep.warmup_files.{k}": v for k, v in cfg.sweep.warmup_files.items()})
    overrides = {key: resolve(root, value) for key, value in paths.items()}
    overrides["tracking.uri"] = absolute_uri(cfg.tracking.uri, root)
    if "RIPU_GIT_REVISION" not in os.environ:
        os.environ["RIPU_GIT_REVISION"] = git_revision(root)
    return apply_overrides(cfg, overrides)


def load_experiment_of(root: Path, cfg: Config) -> Experiment:
    """The experiment file ``sweep.experiment``; its name must be ``tracking.experiment``
    (the report, runs/<name> and models/<name> use it). Raises ConfigError."""
    exp = load_experiment(cfg.sweep.experiment, cfg, root=root)
    if exp.name != cfg.tracking.experiment:
        raise ConfigError(f"{cfg.sweep.experiment}: name {exp.name!r} differs from "
                          f"tracking.experiment {cfg.tracking.experiment!r}; expected the same "
                          f"(the report and the DVC outputs runs/<name>, models/<name> use it)")
    return exp


def params_file(argv: list[str] | None = None) -> str:
    """``--params FILE`` of a stage's command line (default params.yaml)."""
    parser = argparse.ArgumentParser(description="a DVC stage of the ripu pipeline")
    parser.add_argument("--params", default=PARAMS, help="params file (default params.yaml)")
    return parser.parse_args(sys.argv[1:] if argv is None else argv).params


def show_progress() -> bool:
    """Progress bars only on an interactive terminal (not in DVC logs)."""
    return sys.stderr.isatty()


def _run(stage: Callable[[Path, Config], None], params: str) -> None:
    root = repo_root()
    os.chdir(root)
    stage(root, load_params(root, params))


def main(stage: Callable[[Path, Config], None], argv: list[str] | None = None) -> None:
    """Run ``stage(root, cfg)`` from the repository root with the params file of ``argv``
    (default: the command line); a RipuError becomes one stderr line and exit status 2
    (:func:`ripu.errors.exit_status`)."""
    status = exit_status(_run, stage, params_file(argv))
    if status:
        sys.exit(status)

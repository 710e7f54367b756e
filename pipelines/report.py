"""DVC stage `report`: MLflow runs of ``tracking.experiment`` -> ``report.out`` (tables,
figures, DVC metrics and plots). Run as ``python -m pipelines.report``.

Reads ``params.yaml`` (or ``--params FILE``) of the repository root (the folder holding it, found from this file's
path, not the working directory); a relative SQLite tracking URI and ``report.out`` are
resolved against that root (:func:`pipelines.common.load_params`). The warm-ups' error
anatomy comes from ``metrics/<experiment>/warmups.json`` when the warmup stage wrote it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipelines.common import PARAMS, WARMUP_METRICS, load_params, params_file
from ripu.credentials import use_credentials
from ripu.errors import exit_status
from ripu.report import build_report

ROOT = Path(__file__).resolve().parents[1]


def _report(root: Path, params: str) -> None:
    cfg = load_params(root, params)
    use_credentials(cfg.tracking)
    warmups = root / WARMUP_METRICS / cfg.tracking.experiment / "warmups.json"
    info = build_report(cfg.tracking.uri, experiment=cfg.tracking.experiment,
                        out_dir=cfg.report.out,
                        warmups=json.loads(warmups.read_text()) if warmups.is_file() else None)
    print(f"report: {info['runs']} runs in {info['groups']} groups, best {info['best']} "
          f"-> {cfg.report.out}")
    if info["environments"]:
        print(info["environments"], file=sys.stderr)


def main(root: Path = ROOT, params: str = PARAMS) -> int:
    """Build the report for the params file ``params`` (``--params FILE``, default
    params.yaml) in ``root``; 2 on bad input (one line on stderr)."""
    return exit_status(_report, root, params)


if __name__ == "__main__":
    sys.exit(main(params=params_file()))

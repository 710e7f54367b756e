"""DVC stage `report`: MLflow runs of ``tracking.experiment`` -> ``report.out`` (tables,
figures, DVC metrics and plots). Run as ``python -m pipelines.report``.

Reads ``params.yaml`` of the repository root (the folder holding it, found from this file's
path, not the working directory); a relative SQLite tracking URI and ``report.out`` are
resolved against that root (:func:`pipelines.common.load_params`).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(root: Path = ROOT, params: str = "params.yaml") -> int:
    """Build the report for the params file in ``root`` (``--params FILE``, default
    params.yaml); 2 on bad input (one line on stderr)."""
    from pipelines.common import load_params
    from ripu.errors import RipuError
    from ripu.report import build_report

    try:
        cfg = load_params(root, params)
        info = build_report(cfg.tracking.uri, experiment=cfg.tracking.experiment,
                            out_dir=cfg.report.out)
    except RipuError as exc:
        print(f"ripu: error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {info['runs']} runs in {info['groups']} groups, best {info['best']} "
          f"-> {cfg.report.out}")
    return 0


if __name__ == "__main__":
    from pipelines.common import params_file

    sys.exit(main(params=params_file()))

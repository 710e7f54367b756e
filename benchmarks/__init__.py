"""Benchmarks that measure ours and a baseline side by side in one run and report a ratio.

``python -m benchmarks`` (``make bench``) runs every module in its own process and writes
``reports/bench.json`` and ``reports/bench.md``; each module also runs alone:
``python -m benchmarks.<name> [--quick] [--json FILE]``. Every module's ``run(quick)``
returns ``{"figures": {...}, "ours": str, "baseline": str, "measurements": {...},
"conditions": {...}}``.

On a shared machine, set ``OMP_WAIT_POLICY=PASSIVE`` before torch is imported (idle
OpenMP threads sleep instead of spinning) and fix torch's thread count; the conditions
(load average, threads, policy) are reported with every result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
THREADS = 1  # torch threads of every benchmark: 1 is steadiest on a shared 2-core machine


def setup() -> None:
    """Fix torch's thread count (every benchmark's ``run`` starts with this)."""
    import torch

    torch.set_num_threads(THREADS)


def conditions() -> dict[str, Any]:
    """The machine's state while a benchmark runs: load, cores, threads, versions."""
    import torch

    return {"load_average": [round(x, 2) for x in os.getloadavg()],
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            "torch": torch.__version__, "python": platform.python_version()}


def synthetic_data(root: Path, *, source: int = 16, target: int = 16, val: int = 4) -> Path:
    """A small synthetic benchmark at params.yaml's image size (128 x 256) in ``root``."""
    from ripu.data.synthetic import generate

    generate(root, seed=0, source_images=source, target_train=target, target_val=val,
             height=128, width=256, progress=False)
    return root


def bench_config(data: Path, tmp: Path, **overrides: Any):
    """params.yaml (the default experiment) on ``data``, tracked in ``tmp``/mlflow.db, on the
    CPU with :data:`THREADS` threads, plus ``overrides``."""
    from ripu.config import apply_overrides, load_config

    cfg = load_config(REPO / "params.yaml")
    return apply_overrides(cfg, {
        "data.source_root": str(data / "source"), "data.target_root": str(data / "target"),
        "data.workers": 0, "train.device": "cpu", "train.threads": THREADS,
        "tracking.uri": f"sqlite:///{tmp / 'mlflow.db'}", **overrides})


def scratch(prefix: str) -> tempfile.TemporaryDirectory:
    """A temporary folder for one benchmark's files (removed afterwards)."""
    return tempfile.TemporaryDirectory(prefix=f"ripu-bench-{prefix}-")


def cli(run: Callable[..., dict[str, Any]], doc: str, argv: list[str] | None = None) -> int:
    """``--quick`` and ``--json FILE`` around a module's ``run``; prints the figures."""
    from ripu.io import write_json

    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small, fast version")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    result.setdefault("conditions", conditions())
    print(json.dumps(result["figures"], indent=2, sort_keys=True))
    if args.json is not None:
        write_json(args.json, result)
    return 0


def main_of(run: Callable[..., dict[str, Any]], doc: str) -> None:
    sys.exit(cli(run, doc))

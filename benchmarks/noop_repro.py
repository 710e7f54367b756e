"""No-op `dvc repro`: the seconds a second `dvc repro` takes after a successful one.

    python -m benchmarks.noop_repro [--json FILE]      (--quick runs the same: tiny already)

In a temporary copy of the repository with tiny params (tests/test_pipeline.py's
``_tiny_repo``: 8 source / 8 target images at 32 x 64, a two-trial sweep): ``git init``,
``dvc init``, ``dvc repro`` (timed, reported), then ``dvc repro`` again (the figure), which
must report "Data and pipelines are up to date." and run no stage. Baseline: the DVC
command line's own start (``dvc version``), so the ratio shows what checking the pipeline
adds to starting DVC.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import conditions, main_of, scratch, setup
from ripu.errors import RipuError


def _env() -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}
    env.pop("RAY_ADDRESS", None)
    return env


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[str, float]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)
    seconds = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RipuError(f"{' '.join(cmd)} failed with status {proc.returncode}: "
                        f"{out.strip()[-2000:]}")
    return out, seconds


def run(quick: bool = False) -> dict[str, Any]:
    from tests.test_pipeline import _tiny_repo

    setup()
    dvc = str(Path(sys.executable).with_name("dvc"))
    env = _env()
    with scratch("repro") as tmp:
        repo = _tiny_repo(Path(tmp) / "repo")
        for cmd in (["git", "init", "-q"], [dvc, "init", "-q"],
                    [dvc, "config", "core.analytics", "false"]):
            _timed(cmd, repo, env)
        _, first = _timed([dvc, "repro"], repo, env)
        out, second = _timed([dvc, "repro"], repo, env)
        if "Running stage" in out or "up to date" not in out:
            raise RipuError(f"the second dvc repro was not a no-op:\n{out[-2000:]}")
        _, startup = _timed([dvc, "version"], repo, env)
    return {
        "figures": {"noop_repro_seconds": round(second, 2)},
        "ours": "second `dvc repro` (nothing to do)",
        "baseline": "`dvc version` (DVC's start-up)",
        "measurements": {"first_repro_seconds": round(first, 2),
                         "dvc_startup_seconds": round(startup, 2),
                         "noop_over_startup": round(second / startup, 2)},
        "conditions": conditions(),
    }


if __name__ == "__main__":
    main_of(run, __doc__)

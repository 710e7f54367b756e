"""MLflow overhead: the share of a tracked trial's time spent logging.

    python -m benchmarks.mlflow_overhead [--quick] [--json FILE]

One trial of the default experiment (params.yaml: RIPU regions, 2.2% over 5 rounds,
``train.log_every`` 20, 600 iterations; ``--quick`` 60) on a small synthetic set, run twice
in one process: with the MLflow TrackingCallback against a SQLite store, and with no
callbacks. Figure (instrumented): seconds inside ``TrackingCallback.for_trial`` (creating
the run) and inside every TrackingCallback hook (params, metrics, round files, selection
contact sheets, the confusion figure, results) over the tracked trial's wall time, hooks
included. Also reported: the difference estimate ``(t_tracked - t_untracked) /
t_tracked``, noisier on a shared machine. Not counted (reported): importing mlflow and
matplotlib, and creating the SQLite store's tables: once per process and once per store.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks import bench_config, conditions, main_of, scratch, setup, synthetic_data
from ripu.engine.callbacks import Callback


class Timed(Callback):
    """Forward every hook to ``inner`` and add up the seconds spent inside it."""

    def __init__(self, inner: Callback) -> None:
        self.inner = inner
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("on_"):
            return object.__getattribute__(self, name)
        hook = getattr(object.__getattribute__(self, "inner"), name)
        seconds = object.__getattribute__(self, "seconds")
        calls = object.__getattribute__(self, "calls")

        def timed(*args: Any) -> None:
            start = time.perf_counter()
            try:
                hook(*args)
            finally:
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
                calls[name] = calls.get(name, 0) + 1
        return timed


def run(quick: bool = False) -> dict[str, Any]:
    from ripu.engine.callbacks import TrackingCallback
    from ripu.engine.trainer import Trainer, run_trial

    setup()
    iters = 60 if quick else 600
    with scratch("mlflow") as tmp:
        tmp = Path(tmp)
        data = synthetic_data(tmp / "data", source=16, target=16, val=4)
        cfg = bench_config(data, tmp, **{"optim.iters": iters, "optim.poly_iters": iters,
                                         "tracking.experiment": "bench"})
        Trainer(cfg, tmp / "warm", progress=False)  # label checks and class-list cache

        start = time.perf_counter()
        import mlflow  # noqa: F401 - timed: once per process, not per trial

        import ripu.acquisition.export  # noqa: F401 - matplotlib: likewise
        import ripu.report.figures  # noqa: F401

        import_seconds = time.perf_counter() - start
        from ripu.tracking import experiment_id

        start = time.perf_counter()
        experiment_id(cfg.tracking.uri, cfg.tracking.experiment)  # creates the store
        store_seconds = time.perf_counter() - start

        start = time.perf_counter()
        run_trial(cfg, tmp / "untracked", progress=False, callbacks=[])
        t_untracked = time.perf_counter() - start

        start = time.perf_counter()
        tracking = TrackingCallback.for_trial(cfg, tmp / "tracked")
        create_seconds = time.perf_counter() - start
        timed = Timed(tracking)
        results = run_trial(cfg, tmp / "tracked", progress=False, callbacks=[timed])
        t_tracked = time.perf_counter() - start
    logging = create_seconds + sum(timed.seconds.values())
    return {
        "figures": {"mlflow_overhead_fraction": round(logging / t_tracked, 5)},
        "ours": "trial with MLflow tracking (SQLite store)",
        "baseline": "the same trial without callbacks",
        "measurements": {
            "iterations": iters, "rounds": cfg.active.rounds, "log_every": cfg.train.log_every,
            "tracked_seconds": round(t_tracked, 3), "untracked_seconds": round(t_untracked, 3),
            "logging_seconds": round(logging, 4), "create_run_seconds": round(create_seconds, 4),
            "hook_seconds": {k: round(v, 4) for k, v in sorted(timed.seconds.items())},
            "hook_calls": dict(sorted(timed.calls.items())),
            "difference_fraction": round((t_tracked - t_untracked) / t_tracked, 4),
            "not_counted": {"import_mlflow_matplotlib_seconds": round(import_seconds, 3),
                            "create_store_seconds": round(store_seconds, 3)},
            "miou": round(results["miou"], 4)},
        "conditions": conditions(),
    }


if __name__ == "__main__":
    main_of(run, __doc__)

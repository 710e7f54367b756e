"""MLflow overhead: the share of a tracked trial's time that training waits for tracking.

    python -m benchmarks.mlflow_overhead [--quick] [--json FILE]

One trial of the default experiment (params.yaml: RIPU regions, 2.2% over 5 rounds,
``train.log_every`` 20, 600 iterations; ``--quick`` 60) on a small synthetic set, run three
times in one process against one SQLite store: with no callbacks, with the MLflow
TrackingCallback writing in the background (ours), and with every write done inside its hook
(the baseline, the former behaviour). Figure (instrumented): seconds inside
``TrackingCallback.for_trial`` (creating the run) and inside every TrackingCallback hook
(queueing, the flushes before checkpoints, and ``finish`` at the end, which waits for every
queued write) over the tracked trial's wall time, hooks included. Also reported: the seconds
the background threads wrote, and the difference estimates ``(t_tracked - t_untracked) /
t_tracked`` (noisy on a shared machine). Not counted (reported): importing mlflow and the
image libraries, and creating the SQLite store's tables: once per process and once per store.

Two checks of nothing lost: every value the background run was given is in the store at its
step afterwards (``mlflow_values_complete``); and a trial process killed with SIGKILL after
its third checkpoint (the ``--quick`` trial) keeps every value logged before the last
checkpoint it wrote (``mlflow_kill_keeps_values``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import REPO, bench_config, conditions, main_of, scratch, setup, synthetic_data
from ripu.engine.callbacks import Callback

JOURNAL = "journal.jsonl"
KILL_AFTER = 3  # checkpoints written before the kill


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


class Journal(Callback):
    """Write every metric batch a tracker is given, and a marker before each checkpoint, to a
    JSON-lines file (each line reaches the OS before the call returns, so a SIGKILL keeps it).

    Put it after the TrackingCallback: its marker is then written after the tracking
    callback's flush and before the checkpoint file.
    """

    def __init__(self, tracker: Any, path: Path) -> None:
        self.file = open(path, "a", buffering=1)  # noqa: SIM115 - open for the whole trial
        log_metrics = tracker.log_metrics

        def journaled(metrics: dict[str, float], step: int = 0) -> None:
            self._write({"step": int(step), "metrics": {k: float(v) for k, v in metrics.items()
                                                         if v is not None}})
            log_metrics(metrics, step)
        tracker.log_metrics = journaled

    def _write(self, entry: dict[str, Any]) -> None:
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()

    def on_before_checkpoint(self, trainer: Any, path: Path) -> None:
        self._write({"checkpoint": [trainer.iteration, trainer.rounds_done]})

    def on_end(self, trainer: Any, results: dict[str, Any], result: Any) -> None:
        self.file.close()


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The journal's entries; a line cut by a kill is dropped."""
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return entries


def values_before_checkpoint(entries: list[dict[str, Any]],
                             checkpoint: tuple[int, int] | None) -> list[dict[str, Any]]:
    """The metric entries before the last marker of ``checkpoint`` ((iteration, rounds
    done) of the checkpoint file); every entry when ``checkpoint`` is None."""
    if checkpoint is None:
        return [e for e in entries if "metrics" in e]
    marks = [i for i, e in enumerate(entries) if e.get("checkpoint") == list(checkpoint)]
    if not marks:
        raise AssertionError(f"no journal marker for checkpoint {checkpoint}")
    return [e for e in entries[:marks[-1]] if "metrics" in e]


def missing_values(uri: str, run_id: str, entries: list[dict[str, Any]]) -> list[str]:
    """The logged (key, step, value) triples that the run's metric histories lack."""
    import math

    from ripu.tracking import metric_history

    want: dict[str, set[tuple[int, float]]] = {}
    for e in entries:
        for key, value in e["metrics"].items():
            if math.isfinite(value):  # the tracker skips NaN and infinite values
                want.setdefault(key, set()).add((e["step"], value))
    missing = []
    for key, points in sorted(want.items()):
        have = set(metric_history(uri, run_id, key))
        missing += [f"{key}@{s}={v}" for s, v in sorted(points - have)]
    return missing


def _child(config_file: str, out_dir: str) -> None:
    """A tracked trial with a journal (the process the kill check kills)."""
    from ripu.config import load_config
    from ripu.engine.callbacks import TrackingCallback
    from ripu.engine.trainer import run_trial

    cfg, out = load_config(Path(config_file)), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tracking = TrackingCallback.for_trial(cfg, out)
    run_trial(cfg, out, progress=False,
              callbacks=[tracking, Journal(tracking.tracker, out / JOURNAL)])


def killed_trial(cfg: Any, out: Path, kill_after: int = KILL_AFTER,
                 timeout: float = 900.0) -> dict[str, Any]:
    """Run a tracked trial in a subprocess, SIGKILL it once its journal holds ``kill_after``
    checkpoint markers and the checkpoint file is written; then compare the journal with
    the store. Returns the values missing among those logged before the last checkpoint."""
    from ripu.config import dump_yaml
    from ripu.engine.checkpoint import read_checkpoint
    from ripu.io import write_text
    from ripu.tracking import list_runs

    out.mkdir(parents=True, exist_ok=True)
    config_file = out.parent / f"{out.name}.yaml"
    write_text(config_file, dump_yaml(cfg))
    journal = out / JOURNAL
    ckpt_path = out / "checkpoints" / "last.pt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.mlflow_overhead", "--child",
                             str(config_file), str(out)], cwd=REPO, env=env)
    deadline = time.monotonic() + timeout
    try:
        while True:
            marks = [e for e in read_journal(journal) if "checkpoint" in e] \
                if journal.is_file() else []
            if len(marks) >= kill_after and ckpt_path.is_file():
                break
            if proc.poll() is not None:
                raise RuntimeError(f"the trial ended (status {proc.returncode}) before "
                                   f"{kill_after} checkpoints")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {kill_after} checkpoints within {timeout} s")
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    entries = read_journal(journal)
    ckpt = read_checkpoint(ckpt_path)
    checkpoint = (int(ckpt["iteration"]), int(ckpt["rounds_done"]))
    before = values_before_checkpoint(entries, checkpoint)
    run_id = (out / "mlflow_run_id.txt").read_text().strip()
    (run,) = [r for r in list_runs(cfg.tracking.uri, cfg.tracking.experiment)
              if r.info.run_id == run_id]
    return {"returncode": proc.returncode, "checkpoint": list(checkpoint),
            "markers": sum("checkpoint" in e for e in entries),
            "values_logged": sum(len(e["metrics"]) for e in entries if "metrics" in e),
            "values_before_checkpoint": sum(len(e["metrics"]) for e in before),
            "missing": missing_values(cfg.tracking.uri, run_id, before),
            "run_status": run.info.status}


def tracked_trial(cfg: Any, out: Path, *, background: bool) -> dict[str, Any]:
    """One trial with the TrackingCallback (timed); its seconds and whether every value it
    was given is in the store afterwards."""
    from ripu.engine.callbacks import TrackingCallback
    from ripu.engine.trainer import run_trial

    start = time.perf_counter()
    tracking = TrackingCallback.for_trial(cfg, out, background=background)
    create_seconds = time.perf_counter() - start
    timed = Timed(tracking)
    journal = Journal(tracking.tracker, out / JOURNAL)
    results = run_trial(cfg, out, progress=False, callbacks=[timed, journal])
    seconds = time.perf_counter() - start
    waited = create_seconds + sum(timed.seconds.values())
    missing = missing_values(cfg.tracking.uri, tracking.tracker.run_id,
                             values_before_checkpoint(read_journal(out / JOURNAL), None))
    return {"seconds": seconds, "waited": waited, "create": create_seconds,
            "hooks": timed.seconds, "calls": timed.calls, "miou": results["miou"],
            "background": tracking.tracker.background_seconds, "missing": missing}


def run(quick: bool = False) -> dict[str, Any]:
    from ripu.config import apply_overrides
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

        import ripu.acquisition.export  # noqa: F401 - cv2, PIL (the images): likewise
        import ripu.confusion_image  # noqa: F401

        import_seconds = time.perf_counter() - start
        from ripu.tracking import experiment_id

        start = time.perf_counter()
        experiment_id(cfg.tracking.uri, cfg.tracking.experiment)  # creates the store
        store_seconds = time.perf_counter() - start

        start = time.perf_counter()
        run_trial(cfg, tmp / "untracked", progress=False, callbacks=[])
        t_untracked = time.perf_counter() - start
        ours = tracked_trial(cfg, tmp / "background", background=True)
        base = tracked_trial(cfg, tmp / "inline", background=False)
        quick_cfg = apply_overrides(cfg, {"optim.iters": 60, "optim.poly_iters": 60})
        killed = killed_trial(quick_cfg, tmp / "killed")
    fraction = ours["waited"] / ours["seconds"]
    base_fraction = base["waited"] / base["seconds"]
    return {
        "figures": {
            "mlflow_overhead_fraction": round(fraction, 5),
            "mlflow_overhead_fraction_inline": round(base_fraction, 5),
            "mlflow_overhead_reduction": round(base_fraction / fraction, 2),
            "mlflow_values_complete": not ours["missing"] and not base["missing"],
            "mlflow_kill_keeps_values": (killed["returncode"] == -signal.SIGKILL
                                         and killed["values_before_checkpoint"] > 0
                                         and not killed["missing"]),
        },
        "ours": "trial with MLflow tracking written in the background (SQLite store)",
        "baseline": "the same trial tracked with every write inside its hook",
        "measurements": {
            "iterations": iters, "rounds": cfg.active.rounds, "log_every": cfg.train.log_every,
            "untracked_seconds": round(t_untracked, 3),
            **{f"{name}_{key}": value for name, m in (("ours", ours), ("inline", base))
               for key, value in {
                   "seconds": round(m["seconds"], 3), "waited_seconds": round(m["waited"], 4),
                   "create_run_seconds": round(m["create"], 4),
                   "background_seconds": round(m["background"], 4),
                   "hook_seconds": {k: round(v, 4) for k, v in sorted(m["hooks"].items())},
                   "hook_calls": dict(sorted(m["calls"].items())),
                   "difference_fraction": round((m["seconds"] - t_untracked) / m["seconds"], 4),
                   "missing_values": m["missing"][:20], "miou": round(m["miou"], 4)}.items()},
            "killed_trial": {**killed, "missing": killed["missing"][:20]},
            "not_counted": {"import_mlflow_images_seconds": round(import_seconds, 3),
                            "create_store_seconds": round(store_seconds, 3)}},
        "conditions": conditions(),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(*sys.argv[2:4])
    else:
        main_of(run, __doc__)

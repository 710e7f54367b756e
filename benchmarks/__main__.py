"""Run every benchmark, each in its own process; write reports/bench.json and bench.md.

    python -m benchmarks                    # make bench
    python -m benchmarks --quick            # small versions (minutes)
    python -m benchmarks --only acquisition --only train_throughput

Each benchmark measures ours and a baseline side by side in one run (see each module's
docstring); the table gives every figure, its goal, whether it is met and the command that
produced it. ``--only`` updates those entries of an existing bench.json and keeps the rest.
Exit status 1 when a benchmark failed to run (a figure that misses its goal is reported,
not an error).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Goal:
    figure: str
    op: str  # ">=", "<=", "==" or "" (reported, no goal)
    value: Any = None
    note: str = ""

    def met(self, got: Any) -> bool | None:
        if not self.op or got is None:
            return None
        return {">=": got >= self.value, "<=": got <= self.value,
                "==": got == self.value}[self.op]

    def text(self) -> str:
        return f"{self.op} {self.value}" if self.op else ""


@dataclass(frozen=True)
class Bench:
    name: str
    module: str
    goals: tuple[Goal, ...]
    timeout: int
    full_args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ("--quick",)

    def command(self, quick: bool, json_path: Path) -> list[str]:
        return [sys.executable, "-m", self.module,
                *(self.quick_args if quick else self.full_args), "--json", str(json_path)]


BENCHMARKS: tuple[Bench, ...] = (
    Bench("acquisition", "benchmarks.acquisition",
          (Goal("acquisition_speedup", ">=", 15, "one RA round, 19x1024x2048"),
           Goal("masks_identical", "==", True)), 1800,
          full_args=("--threads", "1"),
          quick_args=("--threads", "1", "--size", "256", "512", "--repeats", "2")),
    Bench("selection_memory", "benchmarks.selection_memory",
          (Goal("selection_peak_memory_mb", "", note="one RA round, 19x1024x2048"),
           Goal("selection_memory_ratio", "", note="naive peak / ours"),
           Goal("round_file_mb_2975", "", note="round 4, 2975 x 1280x640")), 1800),
    Bench("train_throughput", "benchmarks.train_throughput",
          (Goal("train_throughput_ratio", ">=", 0.95), Goal("train_step_speedup", "", note="ours with a forward pass per batch / ours"),
           Goal("train_step_ms", "", note="ours: one forward pass over source and target"),
           Goal("train_step_ms_before", "", note="ours with a forward pass per batch"),
           Goal("train_step_ms_bare", "", note="bare loop, a forward pass per batch"),
           Goal("train_same_result", "==", True)),
          1800),
    Bench("batch_building", "benchmarks.batch_building",
          (Goal("batch_building_speedup", ">=", 2),
           Goal("batch_source_ms", "", note="ours, per iteration"),
           Goal("batch_source_ms_before", "", note="a transform on every draw, per iteration"),
           Goal("batch_same_result", "==", True)), 1800),
    Bench("mlflow_overhead", "benchmarks.mlflow_overhead",
          (Goal("mlflow_overhead_fraction", "<=", 0.02),
           Goal("mlflow_overhead_fraction_inline", "", note="every write inside its hook"),
           Goal("mlflow_overhead_reduction", "", note="inline fraction / ours"),
           Goal("mlflow_values_complete", "==", True),
           Goal("mlflow_kill_keeps_values", "==", True)), 2400),
    Bench("noop_repro", "benchmarks.noop_repro", (Goal("noop_repro_seconds", "<=", 30),),
          2400, quick_args=()),
    Bench("cluster", "benchmarks.cluster", (Goal("cluster_two_node_speedup", ">=", 1.6),),
          2400),
)
BY_NAME = {b.name: b for b in BENCHMARKS}


def _acquisition_result(raw: dict[str, Any]) -> dict[str, Any]:
    """benchmarks/acquisition.py's flat JSON in the common shape."""
    figures = {k: raw.pop(k) for k in ("acquisition_speedup", "masks_identical")}
    cond = {k: raw.pop(k) for k in ("load_average", "omp_wait_policy", "threads") if k in raw}
    return {"figures": figures, "ours": "ripu.acquisition (fast)",
            "baseline": "ripu.acquisition.naive (straightforward)", "measurements": raw,
            "conditions": cond}


def run_one(bench: Bench, quick: bool, env: dict[str, str]) -> dict[str, Any]:
    """Run one benchmark in a fresh process; its result, or ``{"error": ...}``."""
    with tempfile.TemporaryDirectory(prefix="ripu-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = bench.command(quick, out)
        shown = " ".join(["python", *map(shlex.quote, cmd[1:-2])])
        print(f"== {bench.name}: {shown}", flush=True)
        load = os.getloadavg()[0]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, timeout=bench.timeout,
                                  capture_output=True, text=True)
            error = None if proc.returncode == 0 and out.is_file() else (
                f"exit status {proc.returncode}: "
                f"{(proc.stderr.strip().splitlines() or ['no output'])[-1][:300]}")
        except subprocess.TimeoutExpired:
            error, proc = f"timed out after {bench.timeout} s", None
        seconds = time.perf_counter() - start
        if proc is not None and proc.returncode != 0:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        result = json.loads(out.read_text()) if out.is_file() else {}
    if bench.name == "acquisition" and result:
        result = _acquisition_result(result)
    result.setdefault("conditions", {})["load_average_at_start"] = round(load, 2)
    result.update(command=shown, wall_seconds=round(seconds, 1), quick=quick)
    if error:
        result["error"] = error
    return result


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(results: dict[str, dict[str, Any]]) -> str:
    """The Markdown table: one row per figure."""
    rows = ["| figure | value | goal | met | ours | baseline | command |",
            "|---|---|---|---|---|---|---|"]
    for bench in BENCHMARKS:
        res = results.get(bench.name)
        if res is None:
            continue
        for goal in bench.goals:
            got = res.get("figures", {}).get(goal.figure)
            met = goal.met(got)
            value = "error: " + res["error"] if "error" in res and got is None else _fmt(got)
            rows.append(f"| {goal.figure} | {value} | {goal.text() or goal.note} | "
                        f"{'' if met is None else ('yes' if met else 'NO')} | "
                        f"{res.get('ours', '')} | {res.get('baseline', '')} | "
                        f"`{res.get('command', '')}` |")
    return "\n".join(rows) + "\n"


def markdown(doc: dict[str, Any]) -> str:
    lines = ["# Benchmarks", "", f"`{doc['invocation']}`"
             f" on {doc['machine']['cpu_count']} CPUs, load average when done "
             f"{doc['machine']['load_average'][0]}; OMP_WAIT_POLICY="
             f"{doc['machine']['omp_wait_policy']}, torch threads 1 in each benchmark. "
             "Each benchmark's own conditions are in bench.json.", "", table(doc["results"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ripu.io import write_json, write_text

    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(BY_NAME), default=None,
                        help="run only this benchmark (repeatable)")
    parser.add_argument("--quick", action="store_true", help="small, fast versions")
    parser.add_argument("--out", type=Path, default=REPO / "reports",
                        help="folder of bench.json and bench.md (default: reports/)")
    args = parser.parse_args(argv)

    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                       os.environ.get("PYTHONPATH")]))}
    env.pop("RAY_ADDRESS", None)
    path = args.out / "bench.json"
    previous = {}
    if args.only and path.is_file():
        try:
            previous = json.loads(path.read_text()).get("results", {})
        except (OSError, ValueError):
            previous = {}
    chosen = [BY_NAME[n] for n in args.only] if args.only else list(BENCHMARKS)
    results = dict(previous)
    failed = []
    for bench in chosen:
        results[bench.name] = run_one(bench, args.quick, env)
        if "error" in results[bench.name]:
            failed.append(bench.name)
    doc = {"machine": {"cpu_count": os.cpu_count(),
                       "load_average": [round(x, 2) for x in os.getloadavg()],
                       "omp_wait_policy": env["OMP_WAIT_POLICY"]},
           "quick": args.quick,
           "invocation": " ".join(["python -m benchmarks", *map(shlex.quote, argv if argv
                                                                  is not None else sys.argv[1:])]),
           "figures": {k: v for r in results.values() for k, v in r.get("figures", {}).items()},
           "results": {b.name: results[b.name] for b in BENCHMARKS if b.name in results}}
    write_json(path, doc)
    text = markdown(doc)
    write_text(args.out / "bench.md", text)
    print(text)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmarks in their small versions: each returns a well-formed result with sane figures.

No wall-clock assertions: ratios must be positive and finite, results identical where the
benchmark compares two implementations of one computation.
"""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import __main__ as bench_main
from ripu.acquisition.budget import Budget, units_for_round

pytestmark = pytest.mark.integration  # a real MLflow store (and, some, subprocesses)


def _well_formed(result: dict, figures: set[str]) -> None:
    assert figures <= set(result["figures"])
    assert result["ours"] and result["baseline"]
    cond = result["conditions"]
    assert cond["torch_threads"] == 1 and len(cond["load_average"]) == 3
    for name in figures:
        value = result["figures"][name]
        if not isinstance(value, bool):
            assert math.isfinite(value) and value > 0, (name, value)


def test_acquisition_masks_identical_and_faster(tmp_path):
    from benchmarks import acquisition

    out = tmp_path / "acq.json"
    assert acquisition.main(["--size", "64", "128", "--repeats", "1", "--threads", "1",
                             "--json", str(out)]) == 0
    raw = json.loads(out.read_text())
    shaped = bench_main._acquisition_result(dict(raw))
    assert shaped["figures"]["masks_identical"] is True
    assert shaped["figures"]["acquisition_speedup"] > 0
    assert raw["regions"] == math.ceil(64 * 128 * 0.022 / 5 / 9)


def test_selection_memory_parts(tmp_path):
    from benchmarks import selection_memory as sm

    peak = sm.selection_peak(64, 128)
    assert peak["regions"] == math.ceil(64 * 128 * 0.022 / 5 / 9)
    assert peak["ours_mb"] >= 0 and peak["naive_mb"] >= 0 and peak["logits_mb"] > 0
    files = sm.round_files(1, 6, tmp_path)
    h, w = sm.SIZE
    budget = Budget("region", 0.022, 0, 5, 1)
    for r in (0, 4):  # whole 3x3 squares, a few clipped at the border
        most = sum(units_for_round(budget, h, w, k) for k in range(r + 1)) * 9 / (h * w)
        assert 0.97 * most <= files[f"round_{r}"]["labelled_fraction"] <= most
    assert 0 < files["round_0"]["bytes"] < files["round_4"]["bytes"]
    assert files["round_4"]["bytes_at_2975"] == round(files["round_4"]["bytes"] * 2975 / 6)
    assert files["packed_bytes_at_2975"] == 2 * 2975 * h * w // 8
    assert files["round_4"]["bytes_at_2975"] < files["packed_bytes_at_2975"]
    assert not list(tmp_path.iterdir())  # the round files are removed


def test_train_throughput_same_result(tmp_path):
    from benchmarks import train_throughput

    result = train_throughput.run(quick=True)
    _well_formed(result, {"train_throughput_ratio", "train_step_ms", "train_step_ms_before",
                          "train_step_ms_bare", "train_step_speedup", "train_same_result"})
    assert result["figures"]["train_same_result"] is True
    m = result["measurements"]
    assert len(m["ours_seconds"]) == len(m["before_seconds"]) == len(m["bare_seconds"]) \
        == m["rounds"]
    assert m["joint_pass"] is True  # params.yaml freezes BatchNorm


@pytest.mark.slow
def test_mlflow_overhead_counts_the_hooks_and_loses_nothing():
    from benchmarks import mlflow_overhead

    result = mlflow_overhead.run(quick=True)
    _well_formed(result, {"mlflow_overhead_fraction", "mlflow_overhead_fraction_inline",
                          "mlflow_overhead_reduction"})
    m, figures = result["measurements"], result["figures"]
    assert 0 < figures["mlflow_overhead_fraction"] < 1
    assert figures["mlflow_values_complete"] is True
    assert figures["mlflow_kill_keeps_values"] is True
    for name in ("ours", "inline"):
        calls = m[f"{name}_hook_calls"]
        assert calls["on_round"] == 5 and calls["on_end"] == 1
        assert calls["on_log"] >= m["iterations"] // m["log_every"]
        assert calls["on_before_checkpoint"] == calls["on_checkpoint"] >= 5
    assert m["inline_background_seconds"] == 0 < m["ours_background_seconds"]
    assert m["killed_trial"]["values_before_checkpoint"] > 0


@pytest.mark.slow
def test_noop_repro_runs_nothing():
    from benchmarks import noop_repro

    result = noop_repro.run(quick=True)  # raises unless the second repro ran no stage
    _well_formed(result, {"noop_repro_seconds"})
    assert result["measurements"]["first_repro_seconds"] > 0


@pytest.mark.slow
def test_cluster_sweeps_on_one_and_two_nodes():
    from benchmarks import cluster

    result = cluster.run(quick=True)
    _well_formed(result, {"cluster_two_node_speedup"})
    m = result["measurements"]
    assert m["statuses"] == ["finished"] and len(m["trial_train_seconds"]) == 2 * m["trials"]


# ----------------------------------------------------------------------------- the runner


def test_goals_and_table():
    speed = bench_main.Goal("acquisition_speedup", ">=", 15)
    assert speed.met(20.0) is True and speed.met(3.0) is False and speed.met(None) is None
    assert bench_main.Goal("x", "").met(1.0) is None
    results = {"acquisition": {"figures": {"acquisition_speedup": 47.7,
                                           "masks_identical": True},
                               "ours": "fast", "baseline": "naive", "command": "python -m x"},
               "cluster": {"error": "timed out after 1 s", "command": "python -m y"}}
    text = bench_main.table(results)
    assert "| acquisition_speedup | 47.7 | >= 15 | yes | fast | naive | `python -m x` |" in text
    assert "| cluster_two_node_speedup | error: timed out after 1 s | >= 1.6 |  |" in text
    assert "noop_repro" not in text


def test_only_updates_its_entries(tmp_path):
    kept = {"figures": {"noop_repro_seconds": 3.0}, "ours": "a", "baseline": "b",
            "command": "python -m benchmarks.noop_repro"}
    (tmp_path / "bench.json").write_text(json.dumps({"results": {"noop_repro": kept}}))
    assert bench_main.main(["--only", "acquisition", "--quick", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["results"]["noop_repro"] == kept and doc["quick"] is True
    acq = doc["results"]["acquisition"]
    assert acq["figures"]["masks_identical"] is True and acq["figures"]["acquisition_speedup"] > 0
    assert acq["command"] == ("python -m benchmarks.acquisition --threads 1 --size 256 512 "
                              "--repeats 2")
    assert doc["figures"]["noop_repro_seconds"] == 3.0
    md = (tmp_path / "bench.md").read_text()
    assert "| acquisition_speedup |" in md and "| noop_repro_seconds | 3 | <= 30 | yes |" in md


def test_batch_building_same_batches_with_kept_source_items():
    from benchmarks import batch_building

    result = batch_building.run(quick=True)
    _well_formed(result, {"batch_building_speedup", "batch_source_ms", "batch_source_ms_before",
                          "batch_same_result"})
    assert result["figures"]["batch_same_result"] is True
    assert result["measurements"]["iterations"] == 100

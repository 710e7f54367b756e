"""`make gpu-smoke` on the CPU: the same cases, the small network, a tiny set (the CUDA run
itself needs a GPU machine; README, "GPU")."""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu_smoke


@pytest.mark.integration
def test_every_kind_in_both_precisions_and_a_selection_round_run(tmp_path, capsys):
    out = tmp_path / "smoke.json"
    assert gpu_smoke.main(["--device", "cpu", "--arch", "small", "--size", "64x32",
                           "--label-size", "256x128", "--iters", "4", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["case"] for r in rows] == [f"{k} {p}" for k in gpu_smoke.KIND_CASES
                                         for p in ("fp32", "bf16")] + ["RA round at 256x128"]
    assert all(r["seconds"] > 0 for r in rows)
    assert all(r["peak_mib"] is None for r in rows)  # no GPU memory on the CPU
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "| case | s/iteration | seconds | peak GPU MiB |"
    assert printed[-1].startswith("gpu-smoke: every case passed on cpu")


def test_a_failing_case_stops_the_smoke_with_one_line(tmp_path, capsys):
    out = tmp_path / "smoke.json"
    assert gpu_smoke.main(["--device", "cpu", "--arch", "no_such_net", "--size", "64x32",
                           "--iters", "2", "--json", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gpu-smoke: FAILED at source_only fp32:")
    assert not out.exists()

"""Paired differences over seeds (``paired.csv`` and its section of ``summary.md``), computed
by hand on trials logged into a real SQLite MLflow store."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ripu.report import build_report
from ripu.report.paired import COLUMNS, PAIRS, Pair, paired_frame, paired_t
from tests.test_report import log_trial

pytestmark = pytest.mark.integration  # a real MLflow store (and, some, subprocesses)

# (kind, strategy, budget) -> {seed: mIoU}. Expected differences in points, by hand:
#   RIPU-RA - random regions @ 2.2%: seeds 0 1 2 -> +2, +3, 0: mean 5/3 = 1.67,
#     std sqrt(((1/3)^2 + (4/3)^2 + (5/3)^2) / 2) = sqrt(7/3) = 1.53; 2 / 0 / 1 tie
#   RIPU-RA - random regions @ 5%: only seed 1 in both -> -1: n 1, no std; 0 / 1 / 0
#   random regions @ 1% has no RIPU-RA twin, RIPU-PA no random points: skipped
#   LSE - source only: seeds 0 1 -> -1, +3: mean 1, std sqrt(8) = 2.83; 1 / 1 / 0
#   hybrid RIPU-RA - RIPU-RA @ 2.2%: seeds 0 1 -> -5, +3: mean -1, std sqrt(32) = 5.66
TRIALS = {
    ("active", "ripu_region", 0.022): {0: 0.50, 1: 0.52, 2: 0.47},
    ("active", "random_region", 0.022): {0: 0.48, 1: 0.49, 2: 0.47},
    ("active", "ripu_region", 0.05): {0: 0.60, 1: 0.58},
    ("active", "random_region", 0.05): {1: 0.59, 2: 0.70},
    ("active", "random_region", 0.01): {0: 0.40},
    ("active", "ripu_point", 0.0): {0: 0.44},
    ("lse", "lse", 0.0): {0: 0.30, 1: 0.33},
    ("source_only", "source_only", 0.0): {0: 0.31, 1: 0.30},
    ("hybrid", "ripu_region", 0.022): {0: 0.45, 1: 0.55},
    ("supervised", "supervised", 0.0): {0: 0.80},
}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("paired")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    MlflowClient(uri).create_experiment("paired", artifact_location=str(root / "artifacts"))
    for (kind, strategy, budget), seeds in TRIALS.items():
        for seed, miou in seeds.items():
            log_trial(uri, "paired", f"{kind}-{strategy}-{budget:g}-s{seed}", kind, strategy,
                      seed, miou, budget=budget)
    build_report(uri, experiment="paired", out_dir=root / "out")
    return {"paired": pd.read_csv(root / "out" / "paired.csv", dtype={"seeds": str, "differences": str}),
            "md": re.sub(r" +", " ", (root / "out" / "summary.md").read_text()),
            "results": pd.read_csv(root / "out" / "results.csv")}


def test_paired_csv_hand_computed(report):
    p = report["paired"]
    assert list(p.columns) == list(COLUMNS)
    got = [(r.method, r.baseline, r.budget_label, r.n, r.mean_diff,
            "" if math.isnan(r.std_diff) else r.std_diff,  # undefined for one seed: empty
            r.method_better, r.baseline_better, r.ties, r.seeds, r.differences)
           for r in p.itertuples(index=False)]
    assert got == [
        ("ripu_region", "random_region", "2.2%", 3, 1.67, round(math.sqrt(7 / 3), 2), 2, 0, 1,
         "0 1 2", "+2.00 +3.00 +0.00"),
        ("ripu_region", "random_region", "5%", 1, -1.0, "", 0, 1, 0, "1", "-1.00"),
        ("lse", "source_only", "0%", 2, 1.0, round(math.sqrt(8), 2), 1, 1, 0, "0 1",
         "-1.00 +3.00"),
        ("hybrid/ripu_region", "ripu_region", "2.2%", 2, -1.0, round(math.sqrt(32), 2), 1, 1,
         0, "0 1", "-5.00 +3.00"),
    ]
    assert p["comparison"].tolist()[0] == "RIPU-RA − random regions"
    assert p["comparison"].tolist()[-1] == "RIPU-RA + LSE − RIPU-RA"


# The paired t by hand. With 2 degrees of freedom the two-sided p of t is 1 - |t| / sqrt(t^2 +
# 2), with 1 it is 1 - (2 / pi) atan |t|; t(0.975) is 4.302653 (df 2) and 12.706205 (df 1).
#   2.2%: d = +2, +3, 0: se = sqrt(7/3) / sqrt(3) = 0.88192, t = 1.88982, p = 0.19936,
#     interval 5/3 -+ 4.302653 x 0.88192 = [-2.13, +5.46]
#   LSE: d = -1, +3: se = 2, t = 0.5, p = 1 - (2/pi) atan 0.5 = 0.70483, 1 -+ 25.41
#   hybrid: d = -5, +3: se = 4, t = -0.25, p = 1 - (2/pi) atan 0.25 = 0.84404, -1 -+ 50.82
def test_paired_interval_and_test_hand_computed(report):
    p = report["paired"].set_index(["method", "budget_label"])
    got = {k: (r.ci_low, r.ci_high, r.p_value, r.verdict) for k, r in p.iterrows()}
    assert got[("ripu_region", "2.2%")] == (-2.13, 5.46, 0.1994, "no detectable difference")
    assert got[("lse", "0%")] == (-24.41, 26.41, 0.7048, "no detectable difference")
    assert got[("hybrid/ripu_region", "2.2%")] == (-51.82, 49.82, 0.844,
                                                   "no detectable difference")
    one = got[("ripu_region", "5%")]  # one seed: no interval, no test
    assert all(math.isnan(v) for v in one[:3]) and one[3] == "no detectable difference"


@pytest.mark.parametrize(("diffs", "low", "high", "p", "verdict"), [
    # mean 2, std 1, se 1/sqrt(3): t = 3.4641, p = 1 - 3.4641 / sqrt(14) = 0.07418
    ([1.0, 2.0, 3.0], -0.48414, 4.48414, 0.07418, "no detectable difference"),
    # mean 3: t = 5.19615, p = 1 - 5.19615 / sqrt(29) = 0.03510
    ([2.0, 3.0, 4.0], 0.51586, 5.48414, 0.03510, "method higher"),
    ([-4.0, -3.0, -2.0], -5.48414, -0.51586, 0.03510, "baseline higher"),
    ([1.5, 1.5], 1.5, 1.5, 0.0, "method higher"),  # no spread: a zero-width interval
])
def test_paired_t_by_hand(diffs, low, high, p, verdict):
    test = paired_t(diffs)
    assert (test.ci_low, test.ci_high, test.p_value) == pytest.approx((low, high, p), abs=1e-5)
    assert test.verdict == verdict


def test_paired_section_in_summary(report):
    md = report["md"]
    assert "## Paired differences over seeds" in md
    assert ("| RIPU-RA − random regions | 2.2% | 3 | +1.67 ± 1.53 | [-2.13, +5.46] | 0.199 | "
            "no detectable difference | 2 / 0 / 1 | s0 +2.00, s1 +3.00, s2 +0.00 |") in md
    assert ("| RIPU-RA − random regions | 5% | 1 | -1.00 | | | no detectable difference | "
            "0 / 1 / 0 | s1 -1.00 |") in md
    assert ("| LSE − source only | 0% | 2 | +1.00 ± 2.83 | [-24.41, +26.41] | 0.705 | "
            "no detectable difference | 1 / 1 / 0 | s0 -1.00, s1 +3.00 |") in md
    # the paper's "random below RIPU" ordering check comes from the same pair table
    assert "- ✗ random regions @ 5% (64.50) < RIPU-RA @ 5% (59.00)" in md


def test_pairs_are_data_and_missing_ones_are_skipped(report):
    results = report["results"]
    custom = (Pair("ripu_point", "random_point"), Pair("supervised", "ripu_region"),
              Pair("ripu_region", "no_such_method"))
    assert paired_frame(results, custom).empty  # no shared (budget, seed): nothing, no error
    # a pair of two methods with budgets of their own never pairs across budgets
    flipped = paired_frame(results, (Pair("random_region", "ripu_region"),))
    assert flipped["budget_label"].tolist() == ["2.2%", "5%"]
    assert flipped["mean_diff"].tolist() == [-1.67, 1.0]
    assert (flipped["method_better"].tolist(), flipped["baseline_better"].tolist()) == (
        [0, 1], [2, 0])


def test_no_pairs_gives_header_and_a_sentence(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).create_experiment("alone", artifact_location=str(tmp_path / "a"))
    log_trial(uri, "alone", "ra", "active", "ripu_region", 0, 0.5)
    build_report(uri, experiment="alone", out_dir=tmp_path / "out")
    assert (tmp_path / "out" / "paired.csv").read_text() == ",".join(COLUMNS) + "\n"
    assert ("No method and its baseline were run with the same seed, budget and network."
            in (tmp_path / "out" / "summary.md").read_text())


def test_selection_headroom_line_pairs_the_oracle_with_random_regions():
    results = pd.DataFrame({
        "method": ["oracle"] * 2 + ["random_region"] * 2, "budget_label": ["2.2%"] * 4,
        "network": ["small"] * 4, "seed": [0, 1, 0, 1], "miou": [0.45, 0.47, 0.42, 0.43]})
    (row,) = paired_frame(results, (Pair("oracle", "random_region",
                                         label="selection headroom"),)).to_dict("records")
    assert row["comparison"] == ("selection headroom: oracle regions (uses the ground truth: "
                                 "an upper bound, not a method) − random regions")
    assert row["differences"] == "+3.00 +4.00" and row["mean_diff"] == 3.5
    assert Pair("oracle", "random_region", label="selection headroom") in PAIRS

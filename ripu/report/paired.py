"""Paired differences over seeds: a method against its baseline, run by run.

Trials of the two methods with the same seed and the same budget label are paired (the same
warm-up, data order and draws), and the difference of their mIoU is what varies with the
method alone. Which method is set against which baseline is the data table :data:`PAIRS`;
pairs or budgets the experiment did not run are skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ripu.report.names import display_name
from ripu.report.tables import markdown_table


@dataclass(frozen=True)
class Pair:
    """``method`` against ``baseline`` (method ids, :func:`ripu.report.names.method_id`).

    ``paper_claims``: the paper reports ``method`` above ``baseline`` at the same budget (an
    ordering check of the summary).
    """

    method: str
    baseline: str
    paper_claims: bool = False


PAIRS: tuple[Pair, ...] = (
    Pair("ripu_region", "random_region", paper_claims=True),
    Pair("ripu_point", "random_point", paper_claims=True),
    Pair("lse", "source_only"),
    Pair("hybrid/ripu_region", "ripu_region"),
    Pair("hybrid/ripu_point", "ripu_point"),
)
COLUMNS = ("comparison", "method", "baseline", "budget_label", "n", "mean_diff", "std_diff",
           "method_better", "baseline_better", "ties", "seeds", "differences")


def _by_seed(results: pd.DataFrame, method: str) -> pd.DataFrame:
    """mIoU (%) per (budget label, seed) of one method; the mean where a seed ran twice."""
    runs = results[results["method"] == method]
    return (runs.assign(miou=100 * runs["miou"])
            .groupby(["budget_label", "seed"], sort=False, as_index=False)["miou"].mean())


def paired_frame(results: pd.DataFrame, pairs: tuple[Pair, ...] = PAIRS) -> pd.DataFrame:
    """One row per pair and budget label with both methods run: n paired seeds, mean and
    sample std (ddof=1; NaN for one seed) of ``method - baseline`` mIoU in points, seeds
    where each side is higher (equal: ``ties``), the seeds and their differences
    (space-separated, seed order). Budgets in the order of ``results``."""
    rows = []
    for pair in pairs:
        joined = _by_seed(results, pair.method).merge(
            _by_seed(results, pair.baseline), on=["budget_label", "seed"],
            suffixes=("_method", "_baseline"), sort=False)
        for label in dict.fromkeys(joined["budget_label"]):
            part = joined[joined["budget_label"] == label].sort_values("seed")
            diff = part["miou_method"] - part["miou_baseline"]
            rows.append({
                "comparison": f"{display_name(pair.method)} − {display_name(pair.baseline)}",
                "method": pair.method, "baseline": pair.baseline, "budget_label": label,
                "n": len(part), "mean_diff": round(float(diff.mean()), 2),
                "std_diff": round(float(diff.std()), 2) if len(part) > 1 else math.nan,
                "method_better": int((part["miou_method"] > part["miou_baseline"]).sum()),
                "baseline_better": int((part["miou_method"] < part["miou_baseline"]).sum()),
                "ties": int((part["miou_method"] == part["miou_baseline"]).sum()),
                "seeds": " ".join(str(s) for s in part["seed"]),
                "differences": " ".join(f"{d:+.2f}" for d in diff)})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def paired_markdown(paired: pd.DataFrame) -> str:
    """The ``## Paired differences`` section of ``summary.md``."""
    lines = ["## Paired differences over seeds", "",
             "mIoU of a method minus its baseline's, in points, between trials with the same "
             "seed and budget; mean ± sample std over the paired seeds, and how many seeds "
             "favour each side.", ""]
    if paired.empty:
        return "\n".join(lines + ["No method and its baseline were run with the same seed "
                                  "and budget.", ""])
    table = pd.DataFrame({
        "comparison": paired["comparison"], "budget": paired["budget_label"],
        "n": paired["n"].astype(str),
        "difference (mean ± std)": [f"{m:+.2f}" if math.isnan(s) else f"{m:+.2f} ± {s:.2f}"
                                    for m, s in zip(paired["mean_diff"], paired["std_diff"],
                                                    strict=True)],
        "seeds favouring method / baseline / tie": [
            f"{a} / {b} / {t}" for a, b, t in zip(paired["method_better"],
                                                  paired["baseline_better"], paired["ties"],
                                                  strict=True)],
        "per seed": [", ".join(f"s{s} {d}" for s, d in zip(ss.split(), ds.split(), strict=True))
                     for ss, ds in zip(paired["seeds"], paired["differences"], strict=True)]})
    return "\n".join(lines) + "\n" + markdown_table(table) + "\n"

"""Paired differences over seeds: a method against its baseline, run by run.

Trials of the two methods with the same seed, budget label and network are paired (the same
warm-up, data order and draws), and the difference of their mIoU is what varies with the
method alone. Which method is set against which baseline is the data table :data:`PAIRS`;
pairs or budgets the experiment did not run are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ripu.report.names import display_name
from ripu.report.tables import GROUP, markdown_table, several_networks


@dataclass(frozen=True)
class Pair:
    """``method`` against ``baseline`` (method ids, :func:`ripu.report.names.method_id`).

    ``paper_claims``: the paper reports ``method`` above ``baseline`` at the same budget (an
    ordering check of the summary). ``label``: what the difference measures, put before the
    comparison (``selection headroom: ...``).
    """

    method: str
    baseline: str
    paper_claims: bool = False
    label: str = ""

    @property
    def comparison(self) -> str:
        """``RIPU-RA − random regions``; ``<label>: oracle ... − random regions``."""
        text = f"{display_name(self.method)} − {display_name(self.baseline)}"
        return f"{self.label}: {text}" if self.label else text


PAIRS: tuple[Pair, ...] = (
    Pair("ripu_region", "random_region", paper_claims=True),
    Pair("ripu_point", "random_point", paper_claims=True),
    Pair("lse", "source_only"),
    Pair("hybrid/ripu_region", "ripu_region"),
    Pair("hybrid/ripu_point", "ripu_point"),
    # uses the ground truth (an upper bound, not a method): what a perfect selector gains
    Pair("oracle", "random_region", label="selection headroom"),
)
COLUMNS = ("comparison", "method", "baseline", "budget_label", "network", "n", "mean_diff",
           "std_diff", "ci_low", "ci_high", "p_value", "verdict", "method_better",
           "baseline_better", "ties", "seeds", "differences")
CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedTest:
    """Student's t on paired differences: the mean, its ``CONFIDENCE`` interval and the
    two-sided p-value of a zero mean (NaN with fewer than two differences; an interval of
    width 0 and p = 1 or 0 when every difference is equal)."""

    mean: float
    std: float
    ci_low: float
    ci_high: float
    p_value: float

    @property
    def verdict(self) -> str:
        """The wording the interval allows: which side is higher, or no detectable difference."""
        if math.isnan(self.ci_low) or self.ci_low <= 0 <= self.ci_high:
            return "no detectable difference"
        return "method higher" if self.ci_low > 0 else "baseline higher"


def paired_t(differences: Sequence[float], confidence: float = CONFIDENCE) -> PairedTest:
    """:class:`PairedTest` of ``differences`` (method - baseline, one per seed)."""
    d = np.asarray(differences, dtype=float)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return PairedTest(mean, math.nan, math.nan, math.nan, math.nan)
    std = float(d.std(ddof=1))
    if std == 0:
        return PairedTest(mean, 0.0, mean, mean, 1.0 if mean == 0 else 0.0)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    p = float(stats.ttest_1samp(d, 0.0).pvalue)
    return PairedTest(mean, std, mean - half, mean + half, p)


_PAIRED_BY = [*GROUP[1:], "seed"]  # budget label, network, seed


def _by_seed(results: pd.DataFrame, method: str) -> pd.DataFrame:
    """mIoU (%) per (budget label, network, seed) of one method; the mean where a seed ran
    twice."""
    runs = results[results["method"] == method]
    return (runs.assign(miou=100 * runs["miou"])
            .groupby(_PAIRED_BY, sort=False, as_index=False)["miou"].mean())


def paired_frame(results: pd.DataFrame, pairs: tuple[Pair, ...] = PAIRS) -> pd.DataFrame:
    """One row per pair, budget label and network with both methods run: n paired seeds, mean and
    sample std (ddof=1; NaN for one seed) of ``method - baseline`` mIoU in points, its 95%
    t interval, the paired t-test's two-sided p-value and the verdict the interval allows
    (:func:`paired_t`), seeds where each side is higher (equal: ``ties``), the seeds and
    their differences (space-separated, seed order). Budgets in the order of ``results``."""
    rows = []
    for pair in pairs:
        joined = _by_seed(results, pair.method).merge(
            _by_seed(results, pair.baseline), on=_PAIRED_BY,
            suffixes=("_method", "_baseline"), sort=False)
        for label, network in dict.fromkeys(zip(joined["budget_label"], joined["network"],
                                                strict=True)):
            part = joined[(joined["budget_label"] == label) & (joined["network"] == network)
                          ].sort_values("seed")
            diff = part["miou_method"] - part["miou_baseline"]
            test = paired_t(diff.tolist())
            rows.append({
                "comparison": pair.comparison,
                "method": pair.method, "baseline": pair.baseline, "budget_label": label,
                "network": network,
                "n": len(part), "mean_diff": round(test.mean, 2), "std_diff": round(test.std, 2),
                "ci_low": round(test.ci_low, 2), "ci_high": round(test.ci_high, 2),
                "p_value": round(test.p_value, 4), "verdict": test.verdict,
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
             "seed, budget and network; mean ± sample std over the paired seeds, the 95% t "
             "interval of the mean, the paired t-test's two-sided p-value, and how many seeds "
             "favour each side. The verdict follows the interval: no detectable difference "
             "wherever it spans zero.", ""]
    if paired.empty:
        return "\n".join(lines + ["No method and its baseline were run with the same seed, "
                                  "budget and network.", ""])
    columns = {"comparison": paired["comparison"], "budget": paired["budget_label"]}
    if several_networks(paired):
        columns["network"] = paired["network"]
    table = pd.DataFrame({
        **columns,
        "n": paired["n"].astype(str),
        "difference (mean ± std)": [f"{m:+.2f}" if math.isnan(s) else f"{m:+.2f} ± {s:.2f}"
                                    for m, s in zip(paired["mean_diff"], paired["std_diff"],
                                                    strict=True)],
        "95% interval": ["" if math.isnan(lo) else f"[{lo:+.2f}, {hi:+.2f}]"
                         for lo, hi in zip(paired["ci_low"], paired["ci_high"], strict=True)],
        "paired t-test p": ["" if math.isnan(p) else f"{p:.3f}" for p in paired["p_value"]],
        "verdict": paired["verdict"],
        "seeds favouring method / baseline / tie": [
            f"{a} / {b} / {t}" for a, b, t in zip(paired["method_better"],
                                                  paired["baseline_better"], paired["ties"],
                                                  strict=True)],
        "per seed": [", ".join(f"s{s} {d}" for s, d in zip(ss.split(), ds.split(), strict=True))
                     for ss, ds in zip(paired["seeds"], paired["differences"], strict=True)]})
    return "\n".join(lines) + "\n" + markdown_table(table) + "\n"

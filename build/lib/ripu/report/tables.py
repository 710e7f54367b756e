"""Tables over seeds: ``summary.csv``, the DVC metrics and the markdown summary table."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ripu.kinds import get_kind
from ripu.report.names import display_name
from ripu.report.runs import point_budget

# What a row of the summary stands for: a method at a budget on a network. An experiment may
# run one method on two networks (the paper files' LSE on VGG16-FCN8s and on DeepLab-v2), and
# their runs are never averaged or paired together.
GROUP = ["method", "budget_label", "network"]


def several_networks(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` (with a ``network`` column) holds runs of several networks: only
    then do names and keys name a group's network."""
    return frame["network"].nunique() > 1


def iou_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("iou_")]


def uses_all_labels(kind_name: str) -> bool:
    """Every target pixel labelled: the upper bound, not a contender."""
    return get_kind(kind_name).labelled_fraction_fixed == 1.0


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, budget, network) in the order of ``results``: n runs (seeds), mIoU mean,
    std (sample, ddof=1; empty for one run), min and max, mIoU* when logged, labelled
    fraction mean, all in percent (2 decimals; 4 for the labelled fraction), and mean
    per-class IoUs in percent."""
    kinds = [get_kind(k) for k in results["kind"]]
    point = point_budget(results)
    region = [k.selects and not p for k, p in zip(kinds, point, strict=True)]
    fixed = [k.labelled_fraction_fixed or 0.0 for k in kinds]
    data = results.assign(
        budget=np.where(region, results["budget"], fixed),
        points=np.where(point, results["points"], 0),
        labelled_percent=100 * results["labelled_fraction"])
    spec: dict[str, tuple[str, Any]] = {
        "kind": ("kind", "first"), "strategy": ("strategy", "first"),
        "budget": ("budget", "first"), "points": ("points", "first"), "n": ("miou", "size"),
        "miou_mean": ("miou", "mean"), "miou_std": ("miou", "std"),
        "miou_min": ("miou", "min"), "miou_max": ("miou", "max")}
    if "miou13" in data:
        spec.update({"miou13_mean": ("miou13", "mean"), "miou13_std": ("miou13", "std")})
    spec["labelled_percent"] = ("labelled_percent", "mean")
    spec.update({c: (c, "mean") for c in iou_columns(data)})
    summary = data.groupby(GROUP, sort=False).agg(**spec).reset_index()
    percent = [c for c in summary.columns if c.startswith(("miou", "iou_"))]
    summary[percent] = summary[percent] * 100
    summary[percent] = summary[percent].round(2)
    summary["labelled_percent"] = summary["labelled_percent"].round(4)  # 40 px: ~0.005%
    lead = ["method", "kind", "strategy", "budget_label", "budget", "points"]
    return summary[lead + [c for c in summary.columns if c not in lead]]


def group_key(method: str, label: str, network: str = "") -> str:
    """The DVC metrics key of a group: ``ripu_region@2.2%``, ``ripu_point@40px``;
    ``lse@0%@vgg16_fcn8s`` when ``network`` is named (:func:`several_networks`)."""
    key = f"{method}@{label.replace(' px/image', 'px')}"
    return f"{key}@{network}" if network else key


def _maybe(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def metrics_dict(summary: pd.DataFrame) -> dict[str, Any]:
    """Flat DVC metrics: one entry per group plus ``best`` (highest mean mIoU of the groups
    that do not use every target label; supervised is the upper bound, not a contender)."""
    out: dict[str, Any] = {}
    several = several_networks(summary)
    keys = pd.Series([group_key(m, b, n if several else "") for m, b, n in zip(
        summary["method"], summary["budget_label"], summary["network"], strict=True)],
        index=summary.index)
    for key, row in zip(keys, summary.itertuples(index=False), strict=True):
        out[key] = {
            "miou_mean": _maybe(float(row.miou_mean)), "miou_std": _maybe(float(row.miou_std)),
            "n": int(row.n), "labelled_percent": _maybe(float(row.labelled_percent))}
    contenders = summary[[not uses_all_labels(k) for k in summary["kind"]]]
    if len(contenders):
        at = contenders["miou_mean"].idxmax()
        best = contenders.loc[at]
        out["best"] = {"name": keys[at],
                       "miou_mean": float(best["miou_mean"]),
                       "miou_std": _maybe(float(best["miou_std"])), "n": int(best["n"])}
    return out


def pm(mean: float, std: float) -> str:
    """``"43.00 ± 3.61"``; the mean alone when the std is undefined (one run)."""
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def markdown_table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True)


def summary_markdown_table(summary: pd.DataFrame) -> str:
    """The summary as a markdown table: method, its network where there are several,
    budget, n, mIoU mean ± std, range, mIoU* when logged, labelled percent."""
    columns: dict[str, Any] = {"method": [display_name(m) for m in summary["method"]]}
    if several_networks(summary):
        columns["network"] = summary["network"]
    table = pd.DataFrame({
        **columns, "budget": summary["budget_label"], "n": summary["n"].astype(str),
        "mIoU % (mean ± std)": [pm(m, s) for m, s in zip(summary["miou_mean"],
                                                          summary["miou_std"], strict=True)],
        "min – max": [f"{a:.2f} – {b:.2f}" for a, b in zip(summary["miou_min"],
                                                           summary["miou_max"], strict=True)]})
    if "miou13_mean" in summary:
        table["mIoU* % (13)"] = ["" if math.isnan(m) else pm(m, s) for m, s in
                                 zip(summary["miou13_mean"], summary["miou13_std"], strict=True)]
    table["labelled %"] = ["" if math.isnan(v) else f"{v:.3g}"
                           for v in summary["labelled_percent"]]
    return markdown_table(table)

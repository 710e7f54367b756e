"""Matplotlib figures of the report and of a trial: the budget curve, per-class IoUs, the
class shares of the labelled pixels, and the confusion matrix (logged by each trial).

Figures are built with ``matplotlib.figure.Figure`` directly, so no pyplot backend is selected
or needed.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from ripu.io import atomic_path
from ripu.kinds import get_kind, kind_names
from ripu.report.classes import TARGET_GROUP
from ripu.report.names import (
    figure_text,
    group_name,
    method_colour,
    method_name,
    uses_ground_truth,
)
from ripu.report.tables import iou_columns, several_networks

if TYPE_CHECKING:
    pass

# Line styles of the selecting kinds' curves and of the reference kinds' horizontal lines,
# each in kind order (colours are the methods', :func:`ripu.report.names.method_colour`);
# markers of the networks, in the order they first appear, where an experiment has several.
_CURVE_STYLES = ("-", "--", "-.", ":")
_REFERENCE_STYLES = ("--", "-.", ":", (0, (1, 3)))
_NETWORK_MARKERS = ("o", "s", "^", "D", "v")


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 150) -> None:
    """Write ``fig`` to ``path`` atomically (format from the suffix)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)


def _styles(reference: bool) -> dict[str, Any]:
    """Kind name -> line style of the selecting kinds (``reference=False``) or of the
    reference kinds, by kind order."""
    names = [n for n in kind_names() if (get_kind(n).reference if reference
                                         else get_kind(n).selects)]
    table = _REFERENCE_STYLES if reference else _CURVE_STYLES
    return {n: table[i % len(table)] for i, n in enumerate(names)}


# ----------------------------------------------------------------------------- budget curve


def budget_curve_figure(results: pd.DataFrame, summary: pd.DataFrame,
                        experiment: str) -> Figure:
    """mIoU (%) against the labelled fraction of target pixels (%): one line per selection
    method (and network, where there are several; mean with a ± std error bar, single runs
    as faint dots; a strategy that uses the ground truth dashed), the reference kinds (no
    labels, every label) as horizontal lines with a ± std band."""
    fig = Figure(figsize=(9.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    several = several_networks(summary)
    curves = summary[[get_kind(k).selects for k in summary["kind"]]]
    methods = list(dict.fromkeys(zip(curves["method"], curves["network"], strict=True)))
    markers = {n: _NETWORK_MARKERS[i % len(_NETWORK_MARKERS)]
               for i, n in enumerate(dict.fromkeys(summary["network"]))}
    xs = curves["labelled_percent"].dropna()
    xs = xs[xs > 0]
    log = bool(len(xs)) and xs.max() / xs.min() >= 10
    span = float(xs.max() - xs.min()) if len(xs) else 0.0

    def dodge(x: pd.Series, i: int) -> pd.Series:
        """Shift method ``i`` slightly sideways so that equal budgets do not hide each other."""
        step = i - (len(methods) - 1) / 2
        return x * 10 ** (0.012 * step) if log else x + 0.006 * (span or 1.0) * step

    styles = _styles(reference=False)
    for i, (method, network) in enumerate(methods):
        color = method_colour(method)
        part = curves[(curves["method"] == method) & (curves["network"] == network)
                      ].sort_values("labelled_percent")
        runs = results[(results["method"] == method) & (results["network"] == network)]
        ax.scatter(dodge(100 * runs["labelled_fraction"], i), 100 * runs["miou"],
                   color=color, alpha=0.45, s=16, linewidths=0, zorder=3)
        style = "--" if uses_ground_truth(method) else styles[part["kind"].iloc[0]]
        ax.errorbar(dodge(part["labelled_percent"], i), part["miou_mean"],
                    yerr=part["miou_std"].fillna(0.0), color=color, marker=markers[network],
                    capsize=3, linewidth=1.8, linestyle=style,
                    zorder=4, label=f"{method_name(method, network if several else '')} "
                                    f"(n={'/'.join(map(str, part['n']))})")
    refs = _styles(reference=True)
    for row in summary[[get_kind(k).reference for k in summary["kind"]]].itertuples(index=False):
        color, style = method_colour(row.method), refs[row.kind]
        ax.axhline(row.miou_mean, color=color, linestyle=style, linewidth=1.5,
                   label=f"{method_name(row.method, row.network if several else '')} "
                         f"({row.budget_label} labels): "
                         f"{row.miou_mean:.1f} (n={row.n})")
        if not math.isnan(row.miou_std):
            ax.axhspan(row.miou_mean - row.miou_std, row.miou_mean + row.miou_std,
                       color=color, alpha=0.08, linewidth=0)
    if log:
        ax.set_xscale("log")
        ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
                 if xs.min() / 1.5 <= t <= xs.max() * 1.5]
        ax.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("labelled target pixels (%, log scale)")
    else:
        ax.set_xlabel("labelled target pixels (%)")
        if not len(xs):
            ax.set_xlim(0, 100)
    ax.margins(x=0.08)
    ax.set_ylabel("mIoU (%)")
    ax.set_title(f"{experiment}: mIoU against the labelling budget\n"
                 "mean ± std over seeds; dots: single runs (shifted slightly sideways where "
                 "budgets coincide)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    return fig


# ----------------------------------------------------------------------------- heat maps


def _annotate(ax: Any, text: np.ndarray, dark: np.ndarray) -> None:
    """Write ``text[i, j]`` in each cell, white where ``dark[i, j]``."""
    for (i, j), t in np.ndenumerate(text):
        ax.text(j, i, t, ha="center", va="center", fontsize=7,
                color="white" if dark[i, j] else "black")


def _empty(fig: Figure, message: str) -> Figure:
    ax = fig.axes[0] if fig.axes else fig.add_subplot()
    ax.text(0.5, 0.5, message, ha="center", va="center")
    ax.set_axis_off()
    return fig


def per_class_figure(summary: pd.DataFrame, experiment: str) -> Figure:
    """Heat map of the mean IoU (%) over seeds: rows method @ budget, columns mIoU then the
    classes; classes a run did not evaluate (16-class sets) are grey "n/a"."""
    cols = iou_columns(summary)
    values = summary[["miou_mean", *cols]].to_numpy(dtype=float)
    several = several_networks(summary)
    rows = [group_name(m, b, n if several else "", figure=True) for m, b, n in zip(
        summary["method"], summary["budget_label"], summary["network"], strict=True)]
    fig = Figure(figsize=(3.0 + 0.62 * max(len(cols) + 1, 4), 1.6 + 0.42 * len(rows)),
                 layout="constrained")
    if not cols:
        return _empty(fig, "no per-class IoUs were logged")
    ax = fig.add_subplot()
    cmap = colormaps["viridis"].with_extremes(bad="lightgray")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0, vmax=100,
                      aspect="auto")
    fig.colorbar(image, ax=ax, label="IoU (%)", shrink=0.9)
    ax.set_xticks(range(len(cols) + 1), labels=["mIoU"] + [c[4:].replace("_", " ")
                                                            for c in cols],
                  rotation=45, ha="right")
    ax.get_xticklabels()[0].set_fontweight("bold")
    ax.axvline(0.5, color="white", linewidth=3)  # mIoU apart from the classes
    ax.set_yticks(range(len(rows)), labels=rows)
    nan = np.isnan(values)
    _annotate(ax, np.where(nan, "n/a", np.char.mod("%.1f", np.nan_to_num(values))),
              ~nan & (values <= 60))
    ax.set_title(f"{experiment}: per-class IoU (%), mean over seeds", fontsize=11)
    return fig


def labelled_classes_figure(shares: pd.DataFrame, experiment: str) -> Figure:
    """Heat map of the class shares of the labelled pixels
    (:func:`ripu.report.classes.labelled_class_shares`): rows the target's own shares, then
    each selecting method @ budget; cells the share in percent, coloured by log2(share /
    the target's share) (red: asked for more often than the class occurs, blue: less;
    clipped at ±3; grey where the target has no such pixel)."""
    wide = shares.pivot_table(index="group", columns="class", values="share", sort=False)
    rows, cols = list(wide.index), list(wide.columns)
    fig = Figure(figsize=(3.0 + 0.62 * max(len(cols), 7), 2.0 + 0.42 * max(len(rows), 1)),
                 layout="constrained")
    if not rows:
        return _empty(fig, "no labelled_px/<class> metrics were logged")
    values = wide.to_numpy(dtype=float)
    ax = fig.add_subplot()
    if TARGET_GROUP in wide.index:
        target = wide.loc[TARGET_GROUP].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.clip(np.log2(values / target), -3, 3)
        ratio[:, target <= 0] = np.nan
        colour, cmap, label = ratio, colormaps["RdBu_r"], "log2(share / target share)"
        vmin, vmax = -3, 3
    else:
        colour, cmap, label = 100 * values, colormaps["viridis"], "share (%)"
        vmin, vmax = 0, 100
    image = ax.imshow(np.ma.masked_invalid(colour), cmap=cmap.with_extremes(bad="lightgray"),
                      vmin=vmin, vmax=vmax, aspect="auto")
    fig.colorbar(image, ax=ax, label=label, shrink=0.9)
    ax.set_xticks(range(len(cols)), labels=[c.replace("_", " ") for c in cols], rotation=45,
                  ha="right")
    ax.set_yticks(range(len(rows)), labels=[figure_text(r) for r in rows])
    if TARGET_GROUP in wide.index:
        ax.axhline(rows.index(TARGET_GROUP) + 0.5, color="black", linewidth=2)
    _annotate(ax, np.char.mod("%.1f", 100 * values),
              np.abs(np.nan_to_num(colour - (vmin + vmax) / 2)) > 0.6 * (vmax - vmin) / 2)
    ax.set_title(f"{experiment}: class shares (%) of the labelled target pixels\n"
                 "summed over rounds and seeds; colour: against the target's share",
                 fontsize=10)
    return fig

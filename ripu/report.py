"""MLflow runs -> pandas -> tables and matplotlib figures (the `report` stage).

:func:`build_report` reads only the MLflow store: which trial runs count (:func:`select_runs`),
one row per run (:func:`results_frame`), one row per method and budget over seeds
(:func:`summarize`), the comparison with the published numbers (METHOD.md section 5,
:data:`PAPER_RESULTS`) and two figures. Every output is written atomically and is a pure
function of the store, so rebuilding into a fresh folder gives byte-identical tables.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ripu.errors import RipuError
from ripu.io import atomic_path, write_json, write_text

# Trial kinds that select target labels (ripu.engine.trainer.SELECTION_KINDS; not imported so
# that a report needs neither torch nor the training stack).
SELECTION_KINDS = ("active", "source_free", "hybrid")
KIND_ORDER = ("source_only", "lse", "active", "source_free", "hybrid", "supervised")
REFERENCE_KINDS = ("source_only", "lse", "supervised")  # horizontal lines in the budget curve
CLASS_ORDER = (  # METHOD.md section 4 (ripu.data.labels.CLASSES_19), "_" for spaces as logged
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic_light", "traffic_sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
DISPLAY = {
    "ripu_region": "RIPU-RA", "ripu_point": "RIPU-PA", "random_region": "random regions",
    "random_point": "random points", "entropy_region": "entropy regions (U)",
    "impurity_region": "impurity regions (P)", "full_image": "full images",
    "source_only": "source only", "lse": "LSE", "supervised": "supervised",
}
OUTPUTS = ("results.csv", "summary.csv", "summary.md", "budget_curve.png", "budget_curve.csv",
           "per_class.png", "metrics.json")


# ----------------------------------------------------------------------------- published numbers


@dataclass(frozen=True)
class PaperResult:
    """One row of METHOD.md section 5, and which of our (kind, strategy, budget) it matches."""

    setting: str  # "gta5" | "synthia"
    method: str
    network: str
    budget: str
    miou: float
    miou13: float | None = None  # mIoU* (13 classes), SYNTHIA only
    kind: str | None = None  # None: no equivalent in this project (MADA)
    strategy: str | None = None
    fraction: float | None = None  # labelled fraction of region strategies
    points: int | None = None  # labelled points per image of point strategies
    arch: str | None = field(default=None)  # our network string when it is the same network


_V2, _V3 = "deeplabv2/resnet101", "deeplabv3plus/resnet101"
PAPER_RESULTS: tuple[PaperResult, ...] = (
    PaperResult("gta5", "RIPU-PA", "DeepLab-v2 R101", "40 px/image", 65.5,
                kind="active", strategy="ripu_point", points=40, arch=_V2),
    PaperResult("gta5", "RIPU-RA", "DeepLab-v2 R101", "2.2%", 69.6,
                kind="active", strategy="ripu_region", fraction=0.022, arch=_V2),
    PaperResult("gta5", "RIPU-RA", "DeepLab-v3+ R101", "5%", 71.2,
                kind="active", strategy="ripu_region", fraction=0.05, arch=_V3),
    PaperResult("gta5", "RIPU-RA source-free", "DeepLab-v2 R101", "2.2%", 67.1,
                kind="source_free", strategy="ripu_region", fraction=0.022, arch=_V2),
    PaperResult("synthia", "RIPU-PA", "DeepLab-v2 R101", "40 px/image", 66.1,
                kind="active", strategy="ripu_point", points=40, arch=_V2),
    PaperResult("synthia", "RIPU-RA", "DeepLab-v2 R101", "2.2%", 70.1,
                kind="active", strategy="ripu_region", fraction=0.022, arch=_V2),
    PaperResult("synthia", "RIPU-RA", "DeepLab-v3+ R101", "5%", 71.4,
                kind="active", strategy="ripu_region", fraction=0.05, arch=_V3),
    PaperResult("synthia", "RIPU-RA source-free", "DeepLab-v2 R101", "2.2%", 68.7,
                kind="source_free", strategy="ripu_region", fraction=0.022, arch=_V2),
    PaperResult("gta5", "LSE + focal loss", "DeepLab-v2 R101", "0", 47.5,
                kind="lse", strategy="lse", arch=_V2),
    PaperResult("gta5", "LSE + focal loss", "VGG16-FCN8s", "0", 39.0,
                kind="lse", strategy="lse", arch="vgg16_fcn8s"),
    PaperResult("synthia", "LSE + focal loss", "DeepLab-v2 R101", "0", 42.6, 49.4,
                kind="lse", strategy="lse", arch=_V2),
    PaperResult("synthia", "LSE + focal loss", "VGG16-FCN8s", "0", 40.0, 47.0,
                kind="lse", strategy="lse", arch="vgg16_fcn8s"),
    PaperResult("gta5", "MADA", "DeepLab-v3+", "5%", 64.9),
)
SETTINGS = {"gta5": ("gta5_to_cityscapes", "GTA5 -> Cityscapes (19 classes)"),
            "synthia": ("synthia_to_cityscapes", "SYNTHIA -> Cityscapes (16 classes; mIoU* 13)")}
PAPER_ORDERING = (
    "source-only / LSE (no target labels) < RIPU-PA 40 px/image < RIPU-RA 2.2% < RIPU-RA 5%, "
    "with full target supervision as the upper bound; random selection scores below RIPU at "
    "the same budget.")


def paper_setting(experiment: str) -> str | None:
    """``"gta5"`` / ``"synthia"`` when the experiment is one of the paper's settings."""
    name = experiment.lower()
    for key, (prefix, _) in SETTINGS.items():
        if name == prefix or name.startswith(prefix + "_"):
            return key
    return None


# ----------------------------------------------------------------------------- run selection


@dataclass(frozen=True)
class Selection:
    """The trial runs a report uses, the sweep parent they came from, and what is missing."""

    runs: list[Any]
    parent_run_id: str | None
    missing_trials: list[str]


def _tags(run: Any) -> dict[str, str]:
    return dict(run.data.tags)


def _newest_first(runs: Sequence[Any]) -> list[Any]:
    """Runs ordered newest first: start time, then end time, then id (deterministic)."""
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.end_time or 0,
                                       r.info.run_id), reverse=True)


def _finished(run: Any) -> bool:
    return run.info.status == "FINISHED"


def _is_trial(run: Any) -> bool:
    tags = _tags(run)
    return ("ripu.kind" in tags and tags["ripu.kind"] != "warmup"
            and tags.get("ripu.sweep") != "1" and "final/miou" in run.data.metrics)


def _trial_name(run: Any) -> str:
    tags = _tags(run)
    return tags.get("ripu.trial") or tags.get("mlflow.runName") or run.info.run_id


def _read_trials_json(uri: str, run_id: str) -> dict[str, str]:
    """The sweep parent's ``trials.json`` artifact: {trial name: params hash}."""
    from ripu.tracking import read_artifact_text

    try:
        data = json.loads(read_artifact_text(uri, run_id, "trials.json"))
    except Exception as exc:  # noqa: BLE001 - mlflow raises several types for a missing file
        raise RipuError(f"sweep parent run {run_id}: cannot read its trials.json artifact "
                        f"({type(exc).__name__}); expected {{trial name: params hash}}"
                        ) from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise RipuError(f"sweep parent run {run_id}: trials.json is not a mapping of trial name "
                        f"to params hash")
    return {str(k): v for k, v in data.items()}


def select_runs(runs: Sequence[Any], uri: str) -> Selection:
    """The runs a report uses and where they come from (rules: :func:`build_report`)."""
    ordered = _newest_first(runs)
    trials = [r for r in ordered if _finished(r) and _is_trial(r)]
    parents = [r for r in ordered if _finished(r) and _tags(r).get("ripu.sweep") == "1"]
    if parents:
        parent = parents[0]
        wanted = _read_trials_json(uri, parent.info.run_id)
        chosen, missing = [], []
        for name in sorted(wanted):
            match = next((r for r in trials if _tags(r).get("ripu.trial") == name
                          and _tags(r).get("ripu.params_hash") == wanted[name]), None)
            if match is None:
                missing.append(name)
            else:
                chosen.append(match)
        return Selection(chosen, parent.info.run_id, missing)
    newest: dict[str, Any] = {}
    for run in trials:  # newest first: the first run of a trial name wins
        newest.setdefault(_trial_name(run), run)
    return Selection(list(newest.values()), None, [])


# ----------------------------------------------------------------------------- tables


def is_point_strategy(strategy: str) -> bool:
    """Point strategies label single pixels: their budget is ``points`` per image."""
    return strategy.endswith("_point")


def method_id(kind: str, strategy: str) -> str:
    """``ripu_region`` (active), ``source_free/ripu_region``, ``hybrid/ripu_region``, ``lse``."""
    if kind == "active":
        return strategy
    if kind in SELECTION_KINDS:
        return f"{kind}/{strategy}"
    return kind


def display_name(method: str) -> str:
    """A readable name of a :func:`method_id` for tables and legends."""
    kind, _, strategy = method.rpartition("/")
    name = DISPLAY.get(strategy, strategy)
    if kind == "source_free":
        return f"{name} source-free"
    if kind == "hybrid":
        return f"hybrid: LSE + {name}"
    return name


def budget_label(kind: str, strategy: str, budget: float, points: int) -> str:
    """``"2.2%"``, ``"40 px/image"``; ``"0%"`` without target labels, ``"100%"`` supervised."""
    if kind in SELECTION_KINDS:
        return f"{points} px/image" if is_point_strategy(strategy) else f"{100 * budget:g}%"
    return "100%" if kind == "supervised" else "0%"


def _number(run: Any, tag: str, default: str, cast: type) -> Any:
    text = _tags(run).get(tag, default)
    try:
        return cast(float(text)) if cast is int else cast(text)
    except ValueError:
        raise RipuError(f"run {run.info.run_id}: tag {tag}={text!r} is not a number") from None


def _network(params: dict[str, str]) -> str:
    arch = params.get("model.arch", "")
    if arch.startswith("deeplab") and params.get("model.backbone"):
        return f"{arch}/{params['model.backbone']}"
    return arch


def results_frame(runs: Sequence[Any], experiment: str) -> pd.DataFrame:
    """One row per run: tags, final metrics (fractions in [0, 1]) and per-class IoUs
    (``iou_<class>``), sorted by kind, method, budget, seed, trial."""
    rows = []
    for run in runs:
        tags, metrics = _tags(run), dict(run.data.metrics)
        kind = tags["ripu.kind"]
        strategy = tags.get("ripu.strategy", kind)
        budget = _number(run, "ripu.budget", "0", float)
        points = _number(run, "ripu.points", "0", int)
        row = {
            "experiment": experiment, "trial": _trial_name(run), "kind": kind,
            "strategy": strategy, "method": method_id(kind, strategy), "budget": budget,
            "points": points, "budget_label": budget_label(kind, strategy, budget, points),
            "seed": _number(run, "ripu.seed", "-1", int), "network": _network(run.data.params),
            "labelled_fraction": metrics.get("final/labelled_fraction", math.nan),
            "miou": metrics["final/miou"],
        }
        if "final/miou13" in metrics:
            row["miou13"] = metrics["final/miou13"]
        row.update({f"iou_{k[len('final/iou/'):]}": v for k, v in metrics.items()
                    if k.startswith("final/iou/")})
        row.update({"seconds": metrics.get("final/seconds", math.nan),
                    "params_hash": tags.get("ripu.params_hash", ""),
                    "git_revision": tags.get("ripu.git_revision", ""),
                    "run_id": run.info.run_id})
        rows.append(row)
    frame = pd.DataFrame(rows)
    classes = [c[4:] for c in frame.columns if c.startswith("iou_")]
    known = [c for c in CLASS_ORDER if c in classes]
    iou_cols = [f"iou_{c}" for c in known + sorted(set(classes) - set(known))]
    head = [c for c in frame.columns if c not in iou_cols and c not in
            ("seconds", "params_hash", "git_revision", "run_id")]
    frame = frame[head + iou_cols + ["seconds", "params_hash", "git_revision", "run_id"]]
    rank = frame["kind"].map(lambda k: KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER))
    amount = [p if is_point_strategy(s) and k in SELECTION_KINDS else b for k, s, b, p in
              zip(frame["kind"], frame["strategy"], frame["budget"], frame["points"], strict=True)]
    frame = frame.assign(_rank=rank, _amount=amount).sort_values(
        ["_rank", "method", "_amount", "seed", "trial", "run_id"], kind="mergesort")
    return frame.drop(columns=["_rank", "_amount"]).reset_index(drop=True)


def iou_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("iou_")]


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, budget) in the order of ``results``: n runs (seeds), mIoU mean,
    std (sample, ddof=1; empty for one run), min and max, mIoU* when logged, labelled
    fraction mean, all in percent (2 decimals; 4 for the labelled fraction), and mean
    per-class IoUs in percent."""
    point = [k in SELECTION_KINDS and is_point_strategy(s)
             for k, s in zip(results["kind"], results["strategy"], strict=True)]
    region = [k in SELECTION_KINDS and not p for k, p in zip(results["kind"], point, strict=True)]
    data = results.assign(
        budget=np.where(region, results["budget"], np.where(results["kind"] == "supervised",
                                                            1.0, 0.0)),
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
    spec["network"] = ("network", lambda s: " ".join(sorted(set(s) - {""})))
    spec.update({c: (c, "mean") for c in iou_columns(data)})
    summary = data.groupby(["method", "budget_label"], sort=False).agg(**spec).reset_index()
    percent = [c for c in summary.columns if c.startswith(("miou", "iou_"))]
    summary[percent] = summary[percent] * 100
    summary[percent] = summary[percent].round(2)
    summary["labelled_percent"] = summary["labelled_percent"].round(4)  # 40 px: ~0.005%
    lead = ["method", "kind", "strategy", "budget_label", "budget", "points"]
    return summary[lead + [c for c in summary.columns if c not in lead]]


def group_key(method: str, label: str) -> str:
    """The DVC metrics key of a group: ``ripu_region@2.2%``, ``ripu_point@40px``."""
    return f"{method}@{label.replace(' px/image', 'px')}"


def _maybe(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def metrics_dict(summary: pd.DataFrame) -> dict[str, Any]:
    """Flat DVC metrics: one entry per group plus ``best`` (highest mean mIoU of the groups
    that do not use every target label; supervised is the upper bound, not a contender)."""
    out: dict[str, Any] = {}
    for row in summary.itertuples(index=False):
        out[group_key(row.method, row.budget_label)] = {
            "miou_mean": _maybe(float(row.miou_mean)), "miou_std": _maybe(float(row.miou_std)),
            "n": int(row.n), "labelled_percent": _maybe(float(row.labelled_percent))}
    contenders = summary[summary["kind"] != "supervised"]
    if len(contenders):
        best = contenders.loc[contenders["miou_mean"].idxmax()]
        out["best"] = {"name": group_key(best["method"], best["budget_label"]),
                       "miou_mean": float(best["miou_mean"]),
                       "miou_std": _maybe(float(best["miou_std"])), "n": int(best["n"])}
    return out


# ----------------------------------------------------------------------------- markdown


def _pm(mean: float, std: float) -> str:
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def _markdown_table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True)


def summary_markdown_table(summary: pd.DataFrame) -> str:
    table = pd.DataFrame({
        "method": [display_name(m) for m in summary["method"]],
        "budget": summary["budget_label"], "n": summary["n"].astype(str),
        "mIoU % (mean ± std)": [_pm(m, s) for m, s in zip(summary["miou_mean"],
                                                           summary["miou_std"], strict=True)],
        "min – max": [f"{a:.2f} – {b:.2f}" for a, b in zip(summary["miou_min"],
                                                           summary["miou_max"], strict=True)]})
    if "miou13_mean" in summary:
        table["mIoU* % (13)"] = ["" if math.isnan(m) else _pm(m, s) for m, s in
                                 zip(summary["miou13_mean"], summary["miou13_std"], strict=True)]
    table["labelled %"] = ["" if math.isnan(v) else f"{v:.3g}"
                           for v in summary["labelled_percent"]]
    return _markdown_table(table)


def _paper_matches(row: pd.Series, setting: str) -> list[PaperResult]:
    """Paper rows of ``setting`` with our row's method and budget; among rows that differ
    only by network, the one on our network when there is one."""
    def same(p: PaperResult) -> bool:
        if p.setting != setting or p.kind != row["kind"] or p.strategy != row["strategy"]:
            return False
        if p.points is not None:
            return int(row["points"]) == p.points
        if p.fraction is not None:
            return math.isclose(float(row["budget"]), p.fraction, rel_tol=1e-6)
        return True
    found = [p for p in PAPER_RESULTS if same(p)]
    ours = set(str(row["network"]).split())
    on_ours = [p for p in found if p.arch in ours]
    return on_ours or found


def _paper_value(miou: float, miou13: float | None) -> str:
    return f"{miou:.1f}" if miou13 is None else f"{miou:.1f} / {miou13:.1f} (13)"


def paper_section(summary: pd.DataFrame, experiment: str) -> str:
    """Markdown: the published numbers beside ours (a paper setting), or why they are not
    comparable in absolute terms (any other experiment); the paper's table either way."""
    setting = paper_setting(experiment)
    lines = ["## Published numbers (METHOD.md section 5)", ""]
    if setting is None:
        lines += [
            f"Experiment `{experiment}` is not one of the paper's settings "
            f"({', '.join(prefix for prefix, _ in SETTINGS.values())}), so its numbers are "
            "not comparable with the published ones in absolute terms: the synthetic "
            "benchmark has other images, classes' difficulty, resolution and network. What "
            "should carry over is the ordering of the methods. The paper's ordering: "
            f"{PAPER_ORDERING}", "", "The published table, for reference:", ""]
        table = pd.DataFrame([{"setting": SETTINGS[p.setting][1], "method": p.method,
                               "network": p.network, "budget": p.budget,
                               "mIoU %": _paper_value(p.miou, p.miou13)}
                              for p in PAPER_RESULTS])
        return "\n".join(lines) + "\n" + _markdown_table(table) + "\n"
    ours: dict[PaperResult, list[str]] = {}
    for _, row in summary.iterrows():
        m13 = row.get("miou13_mean", math.nan)
        text = _pm(row["miou_mean"], row["miou_std"])
        if setting == "synthia" and not math.isnan(m13):
            text += f" / {m13:.2f} (13)"
        text += f" (n={row['n']}, {row['network'] or 'network unknown'})"
        for paper in _paper_matches(row, setting):
            ours.setdefault(paper, []).append(text)
    rows = [{"method": p.method, "network": p.network, "budget": p.budget,
             "paper mIoU %": _paper_value(p.miou, p.miou13),
             "ours mIoU % (mean ± std)": "; ".join(ours.get(p, [])) or "not run"}
            for p in PAPER_RESULTS if p.setting == setting]
    lines += [f"Setting: {SETTINGS[setting][1]}. Ours beside the paper's row with the same "
              "method and budget (Cityscapes val in the paper; our evaluation split here). "
              f"The paper's ordering: {PAPER_ORDERING}", ""]
    return "\n".join(lines) + "\n" + _markdown_table(pd.DataFrame(rows)) + "\n"


def ordering_checks(summary: pd.DataFrame) -> list[str]:
    """Does our ordering follow the paper's? Markdown bullets, one per comparison of mean
    mIoU: no-label baselines below the cheapest RIPU budget, RIPU increasing with the
    labelled fraction, the richest RIPU budget below supervised, random below RIPU at the
    same budget."""
    groups = {(r.method, r.budget_label): r for r in summary.itertuples(index=False)}

    def name(r: Any) -> str:
        return f"{display_name(r.method)} @ {r.budget_label} ({r.miou_mean:.2f})"

    def check(low: Any, high: Any) -> str:
        mark = "✓" if low.miou_mean < high.miou_mean else "✗"
        return f"- {mark} {name(low)} < {name(high)}"

    ripu = sorted((r for r in groups.values() if r.kind == "active"
                   and r.strategy in ("ripu_point", "ripu_region")),
                  key=lambda r: (r.labelled_percent, r.miou_mean))
    out = []
    if ripu:
        out += [check(r, ripu[0]) for r in groups.values()
                if r.kind in ("source_only", "lse")]
        out += [check(a, b) for a, b in zip(ripu, ripu[1:], strict=False)]
        out += [check(ripu[-1], r) for r in groups.values() if r.kind == "supervised"]
    for (method, label), r in groups.items():
        if r.kind == "active" and method.startswith("random_"):
            twin = groups.get(("ripu_" + method[len("random_"):], label))
            if twin is not None:
                out.append(check(r, twin))
    return out


def summary_markdown(summary: pd.DataFrame, selection: Selection, experiment: str) -> str:
    source = (f"the trials of the newest finished sweep (parent run `{selection.parent_run_id}`)"
              if selection.parent_run_id else
              "every finished trial run of the experiment (no finished sweep parent run), "
              "newest run per trial name")
    n = int(summary["n"].sum())
    parts = [f"# Report: `{experiment}`", "",
             f"{n} runs: {source}. mIoU in percent, mean ± sample std over seeds (n runs).",
             ""]
    if selection.missing_trials:
        parts += ["Trials of the sweep without a finished run (left out): "
                  + ", ".join(f"`{t}`" for t in selection.missing_trials) + ".", ""]
    parts += ["## Summary", "", summary_markdown_table(summary), "",
              paper_section(summary, experiment), "## Our ordering", "",
              "Does our mean mIoU follow the paper's ordering? (✓: the left group scores "
              "below the right one, as in the paper.)", ""]
    checks = ordering_checks(summary)
    parts += (checks or ["No RIPU runs to order."]) + [""]
    parts += ["## Figures", "", "![mIoU against the labelling budget](budget_curve.png)", "",
              "![per-class IoU](per_class.png)", ""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- figures


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def budget_curve_figure(results: pd.DataFrame, summary: pd.DataFrame,
                        experiment: str) -> Figure:
    """mIoU (%) against the labelled fraction of target pixels (%): one line per selection
    method (mean with a ± std error bar, single runs as faint dots), no-label baselines and
    supervised as horizontal lines with a ± std band."""
    fig = Figure(figsize=(9.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    curves = summary[summary["kind"].isin(SELECTION_KINDS)]
    methods = list(dict.fromkeys(curves["method"]))
    xs = curves["labelled_percent"].dropna()
    xs = xs[xs > 0]
    log = bool(len(xs)) and xs.max() / xs.min() >= 10
    span = float(xs.max() - xs.min()) if len(xs) else 0.0

    def dodge(x: pd.Series, i: int) -> pd.Series:
        """Shift method ``i`` slightly sideways so that equal budgets do not hide each other."""
        step = i - (len(methods) - 1) / 2
        return x * 10 ** (0.012 * step) if log else x + 0.006 * (span or 1.0) * step

    styles = {"active": "-", "source_free": "--", "hybrid": "-."}
    for i, (color, method) in enumerate(zip(_colors(len(methods)), methods, strict=True)):
        part = curves[curves["method"] == method].sort_values("labelled_percent")
        runs = results[results["method"] == method]
        ax.scatter(dodge(100 * runs["labelled_fraction"], i), 100 * runs["miou"],
                   color=color, alpha=0.45, s=16, linewidths=0, zorder=3)
        ax.errorbar(dodge(part["labelled_percent"], i), part["miou_mean"],
                    yerr=part["miou_std"].fillna(0.0), color=color, marker="o", capsize=3,
                    linestyle=styles.get(part["kind"].iloc[0], "-"), linewidth=1.8, zorder=4,
                    label=f"{display_name(method)} (n={'/'.join(map(str, part['n']))})")
    refs = {"source_only": ("dimgray", "--"), "lse": ("saddlebrown", "-."),
            "supervised": ("black", ":")}
    for row in summary[summary["kind"].isin(REFERENCE_KINDS)].itertuples(index=False):
        color, style = refs[row.kind]
        ax.axhline(row.miou_mean, color=color, linestyle=style, linewidth=1.5,
                   label=f"{display_name(row.method)} ({row.budget_label} labels): "
                         f"{row.miou_mean:.1f} (n={row.n})")
        if not math.isnan(row.miou_std):
            ax.axhspan(row.miou_mean - row.miou_std, row.miou_mean + row.miou_std,
                       color=color, alpha=0.08, linewidth=0)
    if log:
        from matplotlib.ticker import NullFormatter

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


def per_class_figure(summary: pd.DataFrame, experiment: str) -> Figure:
    """Heat map of the mean IoU (%) over seeds: rows method @ budget, columns mIoU then the
    classes; classes a run did not evaluate (16-class sets) are grey "n/a"."""
    cols = iou_columns(summary)
    values = summary[["miou_mean", *cols]].to_numpy(dtype=float)
    rows = [f"{display_name(m)} @ {b}" for m, b in zip(summary["method"],
                                                       summary["budget_label"], strict=True)]
    fig = Figure(figsize=(3.0 + 0.62 * max(len(cols) + 1, 4), 1.6 + 0.42 * len(rows)),
                 layout="constrained")
    ax = fig.add_subplot()
    if not cols:
        ax.text(0.5, 0.5, "no per-class IoUs were logged", ha="center", va="center")
        ax.set_axis_off()
        return fig
    from matplotlib import colormaps

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
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, "n/a" if math.isnan(v) else f"{v:.1f}", ha="center", va="center",
                fontsize=7, color="black" if math.isnan(v) or v > 60 else "white")
    ax.set_title(f"{experiment}: per-class IoU (%), mean over seeds", fontsize=11)
    return fig


# ----------------------------------------------------------------------------- entry point


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")


def build_report(uri: str, *, experiment: str, out_dir: str | Path) -> dict[str, Any]:
    """Rebuild the report of ``experiment`` from the MLflow store at ``uri`` into ``out_dir``.

    Runs used: the newest FINISHED sweep parent (tag ``ripu.sweep=1``) names its trials in
    its ``trials.json`` artifact ({trial: params hash}); each trial contributes its newest
    FINISHED run with that ``ripu.trial`` tag and ``ripu.params_hash`` (under any parent).
    Without a finished parent: every FINISHED run with a ``ripu.kind`` tag (warm-ups
    excluded) and a ``final/miou``, newest per ``ripu.trial``. Writes ``results.csv``,
    ``summary.csv``, ``summary.md``, ``budget_curve.png``, ``budget_curve.csv``,
    ``per_class.png`` and ``metrics.json``, each atomically.

    Returns ``{"experiment", "parent_run_id", "runs", "groups", "missing_trials", "best",
    "outputs": {file name: path}}``. Raises :class:`RipuError` when no run qualifies.
    """
    from ripu.tracking import check_uri, list_runs

    empty = RipuError(f"no finished runs in experiment {experiment} at {uri}; run the sweep "
                      f"first")
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise empty  # never create an empty store just to read it
    check_uri(uri)
    selection = select_runs(list_runs(uri, experiment), uri)
    if not selection.runs:
        raise empty
    results = results_frame(selection.runs, experiment)
    summary = summarize(results)
    out = Path(out_dir)
    paths = {name: out / name for name in OUTPUTS}
    write_text(paths["results.csv"], _csv(results))
    write_text(paths["summary.csv"], _csv(summary))
    write_text(paths["summary.md"], summary_markdown(summary, selection, experiment))
    curve = pd.DataFrame({"strategy": summary["method"],
                          "labelled_percent": summary["labelled_percent"],
                          "miou": summary["miou_mean"], "budget": summary["budget_label"],
                          "miou_std": summary["miou_std"], "n": summary["n"]}).sort_values(["strategy", "labelled_percent"],
                                                          kind="mergesort")
    write_text(paths["budget_curve.csv"], _csv(curve))
    metrics = metrics_dict(summary)
    write_json(paths["metrics.json"], metrics)
    for name, fig in (("budget_curve.png", budget_curve_figure(results, summary, experiment)),
                      ("per_class.png", per_class_figure(summary, experiment))):
        with atomic_path(paths[name]) as tmp:
            fig.savefig(tmp, dpi=120)
    return {"experiment": experiment, "parent_run_id": selection.parent_run_id,
            "runs": len(results), "groups": len(summary),
            "missing_trials": list(selection.missing_trials),
            "best": metrics.get("best", {}).get("name"),
            "outputs": {k: str(v) for k, v in paths.items()}}

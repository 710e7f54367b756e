"""The comparison with the published numbers (docs/method.md section 5) and the paper's ordering.

:data:`PAPER_RESULTS` is data: the paper's rows and which of our (kind, strategy, budget)
each one matches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ripu.kinds import get_kind
from ripu.report.names import group_name, is_variant, method_id
from ripu.report.paired import PAIRS
from ripu.report.tables import markdown_table, pm, several_networks, uses_all_labels


@dataclass(frozen=True)
class PaperResult:
    """One row of docs/method.md section 5, and which of our (kind, strategy, budget) it matches."""

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

    @property
    def method_id(self) -> str | None:
        """Our method id (:func:`ripu.report.names.method_id`); None without an equivalent."""
        return None if self.kind is None else method_id(self.kind, self.strategy or self.kind)


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


def ranked_methods() -> set[str]:
    """Method ids whose budgets the paper's ordering ranks: its rows of the plain selecting
    kind (RIPU-PA, RIPU-RA)."""
    return {p.method_id for p in PAPER_RESULTS if p.kind is not None
            and get_kind(p.kind).selects and not is_variant(get_kind(p.kind))}


def _paper_matches(row: pd.Series, setting: str) -> list[PaperResult]:
    """Paper rows of ``setting`` with our row's method and budget; among rows that differ
    only by network, the one on our network when there is one."""
    def same(p: PaperResult) -> bool:
        if p.setting != setting or p.method_id != row["method"]:
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
    lines = ["## Published numbers (docs/method.md section 5)", ""]
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
        return "\n".join(lines) + "\n" + markdown_table(table) + "\n"
    ours: dict[PaperResult, list[str]] = {}
    for _, row in summary.iterrows():
        m13 = row.get("miou13_mean", math.nan)
        text = pm(row["miou_mean"], row["miou_std"])
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
    return "\n".join(lines) + "\n" + markdown_table(pd.DataFrame(rows)) + "\n"


def ordering_checks(summary: pd.DataFrame) -> list[str]:
    """Does our ordering follow the paper's? Markdown bullets, one per comparison of mean
    mIoU on one network: no-label baselines below the cheapest ranked RIPU budget, RIPU
    increasing with the labelled fraction, the richest RIPU budget below supervised, each
    baseline the paper places below a method (:data:`ripu.report.paired.PAIRS`) below it at
    the same budget."""
    several = several_networks(summary)
    return [line for network in dict.fromkeys(summary["network"])
            for line in _ordering_checks(summary[summary["network"] == network], several)]


def _ordering_checks(summary: pd.DataFrame, name_network: bool) -> list[str]:
    """:func:`ordering_checks` of the groups of one network (named when ``name_network``)."""
    groups = {(r.method, r.budget_label): r for r in summary.itertuples(index=False)}

    def name(r: Any) -> str:
        network = r.network if name_network else ""
        return f"{group_name(r.method, r.budget_label, network)} ({r.miou_mean:.2f})"

    def check(low: Any, high: Any) -> str:
        mark = "✓" if low.miou_mean < high.miou_mean else "✗"
        return f"- {mark} {name(low)} < {name(high)}"

    ranked = ranked_methods()
    ripu = sorted((r for r in groups.values() if r.method in ranked),
                  key=lambda r: (r.labelled_percent, r.miou_mean))
    out = []
    if ripu:
        out += [check(r, ripu[0]) for r in groups.values()
                if get_kind(r.kind).labelled_fraction_fixed == 0.0]
        out += [check(a, b) for a, b in zip(ripu, ripu[1:], strict=False)]
        out += [check(ripu[-1], r) for r in groups.values() if uses_all_labels(r.kind)]
    for pair in (p for p in PAIRS if p.paper_claims):
        for (method, label), r in groups.items():
            twin = groups.get((pair.method, label))
            if method == pair.baseline and twin is not None:
                out.append(check(r, twin))
    return out

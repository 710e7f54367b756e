"""How the report names methods and budgets: every fact from the kind and strategy
registries, so a new kind needs no edit of the report."""

from __future__ import annotations

import pandas as pd
import pytest

from ripu.errors import RipuError
from ripu.kinds import KINDS, TrialKind
from ripu.report.figures import _styles
from ripu.report.names import (
    METHOD_COLOURS,
    SPARE_COLOURS,
    budget_label,
    display_name,
    is_point_strategy,
    method_colour,
    method_id,
)
from ripu.report.paper import ranked_methods
from ripu.report.tables import uses_all_labels


@pytest.mark.parametrize(("kind", "strategy", "method", "display", "label"), [
    ("active", "ripu_region", "ripu_region", "RIPU-RA", "2.2%"),
    ("active", "ripu_point", "ripu_point", "RIPU-PA", "40 px/image"),
    ("active", "random_point", "random_point", "random points", "40 px/image"),
    ("source_free", "ripu_region", "source_free/ripu_region", "RIPU-RA source-free", "2.2%"),
    ("hybrid", "entropy_region", "hybrid/entropy_region", "entropy regions (U) + LSE", "2.2%"),
    ("source_only", "source_only", "source_only", "source only", "0%"),
    ("lse", "lse", "lse", "LSE", "0%"),
    ("supervised", "supervised", "supervised", "supervised", "100%"),
])
def test_registered_kinds(kind, strategy, method, display, label):
    assert method_id(kind, strategy) == method
    assert display_name(method) == display
    assert budget_label(kind, strategy, 0.022, 40) == label


def test_point_strategies_from_the_strategy_registry():
    assert [s for s in ("ripu_point", "random_point", "ripu_region", "full_image")
            if is_point_strategy(s)] == ["ripu_point", "random_point"]
    with pytest.raises(RipuError, match="unknown acquisition strategy 'bogus'"):
        budget_label("active", "bogus", 0.022, 40)


def test_a_new_kind_needs_no_report_edit(monkeypatch):
    monkeypatch.setitem(KINDS, "relabel", TrialKind(
        "relabel", "relabelled", 6, ("tgt",), False, True, "selected", "selection_rounds"))
    monkeypatch.setitem(KINDS, "teacher", TrialKind(
        "teacher", "teacher", 7, ("tgt",), True, True, "all", "iterations", reference=True))
    assert method_id("relabel", "random_point") == "relabel/random_point"
    assert display_name("relabel/random_point") == "random points relabelled"
    assert budget_label("relabel", "random_point", 0.05, 40) == "40 px/image"
    assert (method_id("teacher", "x"), display_name("teacher")) == ("teacher", "teacher")
    assert budget_label("teacher", "x", 0.0, 0) == "100%" and uses_all_labels("teacher")
    # its curve and reference-line styles follow the kind order, after the existing kinds
    assert _styles(reference=False) == {"active": "-", "source_free": "--", "hybrid": "-.",
                                        "relabel": ":"}
    assert list(_styles(reference=True)) == ["source_only", "lse", "supervised", "teacher"]


def test_the_paper_ranks_the_plain_selecting_kind():
    assert ranked_methods() == {"ripu_point", "ripu_region"}


def _curve_colours(methods: list[str]) -> dict[str, tuple]:
    """Legend label -> RGBA colour of the budget curve drawn for ``methods`` (two budgets
    each) and a source-only reference line."""
    from matplotlib.colors import to_rgba

    from ripu.report.figures import budget_curve_figure
    rows = [{"kind": "active", "method": m, "labelled_percent": b, "miou_mean": 40.0 + b,
             "miou_std": 1.0, "n": 3, "budget_label": f"{b:g}%", "network": "small"}
            for m in methods for b in (2.2, 5.0)]
    rows.append({"kind": "source_only", "method": "source_only", "labelled_percent": 0.0,
                 "miou_mean": 20.0, "miou_std": 1.0, "n": 3, "budget_label": "0%",
                 "network": "small"})
    summary = pd.DataFrame(rows)
    results = pd.DataFrame({"method": summary["method"], "network": summary["network"],
                            "miou": summary["miou_mean"] / 100,
                            "labelled_fraction": summary["labelled_percent"] / 100})
    ax = budget_curve_figure(results, summary, "colours").axes[0]
    handles, labels = ax.get_legend_handles_labels()
    return {label.split(" (")[0]: to_rgba(h.get_color() if hasattr(h, "get_color")
                                          else h.lines[0].get_color())
            for h, label in zip(handles, labels, strict=True)}


def test_a_method_keeps_its_colour_when_methods_are_added():
    from matplotlib.colors import to_rgba
    two = _curve_colours(["ripu_region", "random_region"])
    four = _curve_colours(["entropy_region", "random_point", "ripu_region", "random_region"])
    for name in ("RIPU-RA", "random regions", "source only"):
        assert two[name] == four[name]
    assert two["RIPU-RA"] == to_rgba(METHOD_COLOURS["ripu_region"])
    assert len(set(four.values())) == len(four)  # every line its own colour
    # an unlisted method gets a spare colour from its id alone, the same in every report
    assert method_colour("relabel/random_point") == method_colour("relabel/random_point")
    assert method_colour("relabel/random_point") in SPARE_COLOURS

"""How the report names methods and budgets: every fact from the kind and strategy
registries, so a new kind needs no edit of the report."""

from __future__ import annotations

import pytest

from ripu.errors import RipuError
from ripu.kinds import KINDS, TrialKind
from ripu.report.figures import _styles
from ripu.report.names import budget_label, display_name, is_point_strategy, method_id
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
    monkeypatch.setitem(KINDS, "oracle", TrialKind(
        "oracle", "oracle", 7, ("tgt",), True, True, "all", "iterations", reference=True))
    assert method_id("relabel", "random_point") == "relabel/random_point"
    assert display_name("relabel/random_point") == "random points relabelled"
    assert budget_label("relabel", "random_point", 0.05, 40) == "40 px/image"
    assert (method_id("oracle", "oracle"), display_name("oracle")) == ("oracle", "oracle")
    assert budget_label("oracle", "oracle", 0.0, 0) == "100%" and uses_all_labels("oracle")
    # its curve and reference-line styles follow the kind order, after the existing kinds
    assert _styles(reference=False) == {"active": "-", "source_free": "--", "hybrid": "-.",
                                        "relabel": ":"}
    assert list(_styles(reference=True)) == ["source_only", "lse", "supervised", "oracle"]


def test_the_paper_ranks_the_plain_selecting_kind():
    assert ranked_methods() == {"ripu_point", "ripu_region"}

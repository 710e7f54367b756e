"""Error anatomy in the report (:mod:`ripu.anatomy`): where the warm-up's wrong target pixels
sit, and what share of each selecting method's labelled pixels lie on ground-truth
boundaries (``labelled_boundary_px`` over the ``labelled_px/<class>`` total, summed over the
method's runs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ripu.kinds import get_kind
from ripu.record_names import LABELLED_PX
from ripu.report.names import group_name
from ripu.report.tables import markdown_table, several_networks

BOUNDARY = "labelled_boundary_px"
WARMUP_COLUMNS = ("warmup", "wrong_share", "pred_pure_share", "gt_interior_share")
COLUMNS = ("group", "method", "budget_label", "network", "runs", "labelled_pixels",
           "boundary_pixels", "boundary_share")


def boundary_shares(runs: Sequence[Any], results: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, budget, network) of a selecting kind whose runs logged
    ``labelled_boundary_px``, in the order of ``results``."""
    metrics = {run.info.run_id: dict(run.data.metrics) for run in runs}
    groups: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
    for row in results.itertuples(index=False):
        m = metrics[row.run_id]
        if not get_kind(row.kind).selects or BOUNDARY not in m:
            continue
        labelled = sum(int(round(v)) for k, v in m.items() if k.startswith(LABELLED_PX))
        groups.setdefault((row.method, row.budget_label, row.network), []).append(
            (labelled, int(round(m[BOUNDARY]))))
    several = several_networks(results)
    rows = []
    for (method, label, network), pairs in groups.items():
        labelled, on_boundary = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
        rows.append({"group": group_name(method, label, network if several else ""),
                     "method": method, "budget_label": label, "network": network,
                     "runs": len(pairs), "labelled_pixels": labelled,
                     "boundary_pixels": on_boundary,
                     "boundary_share": round(on_boundary / labelled, 6) if labelled else 0.0})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def warmup_frame(warmups: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per warm-up with an ``anatomy`` entry (metrics/<experiment>/warmups.json)."""
    rows = [{"warmup": name, **{k: m["anatomy"][k] for k in WARMUP_COLUMNS[1:]}}
            for name, m in warmups.items() if isinstance(m, Mapping) and "anatomy" in m]
    return pd.DataFrame(rows, columns=list(WARMUP_COLUMNS))


def anatomy_markdown(warmup: pd.DataFrame, boundary: pd.DataFrame) -> str:
    """The ``## Error anatomy`` section of ``summary.md``."""
    lines = ["## Error anatomy", "",
             "Of the warm-up's wrong target-train pixels (prediction ≠ label, at the label "
             "size, logits upsampled as selection does): the share in prediction-pure 3x3 "
             "windows (impurity zero there) and in ground-truth interiors (3x3 window of one "
             "class). Per selecting method: the share of its labelled pixels on ground-truth "
             "boundaries (labelled pixels that are not interior).", ""]
    if warmup.empty:
        lines += ["No warm-up anatomy (metrics/<experiment>/warmups.json has none).", ""]
    else:
        lines += [markdown_table(pd.DataFrame({
            "warm-up": warmup["warmup"],
            "wrong target pixels": [f"{100 * v:.1f}%" for v in warmup["wrong_share"]],
            "of them in prediction-pure windows": [f"{100 * v:.1f}%"
                                                   for v in warmup["pred_pure_share"]],
            "of them in ground-truth interiors": [f"{100 * v:.1f}%"
                                                  for v in warmup["gt_interior_share"]]})), ""]
    if boundary.empty:
        lines += ["No selecting run logged its boundary pixels.", ""]
    else:
        lines += [markdown_table(pd.DataFrame({
            "method @ budget": boundary["group"], "runs": boundary["runs"].astype(str),
            "labelled pixels on boundaries": [f"{100 * v:.1f}%"
                                              for v in boundary["boundary_share"]]})), ""]
    return "\n".join(lines)

"""What each strategy asks annotators for: the class shares of its labelled pixels.

A selecting trial logs, per class, ``labelled_px/<class>`` (target pixels of that class it
labelled, summed over its selection rounds: the run's last value) and ``target_px/<class>``
(pixels of that class in the target training set). Class names as in ``final/iou/<class>``
(spaces as ``_``; spaces are accepted too).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ripu.kinds import get_kind
from ripu.record_names import LABELLED_PX, TARGET_PX
from ripu.report.names import group_name, metric_class, order_classes
from ripu.report.tables import several_networks

TARGET_GROUP = "target"
COLUMNS = ("group", "method", "budget_label", "network", "runs", "class", "pixels", "share")


def _counts(metrics: dict[str, float], prefix: str) -> Counter:
    return Counter({metric_class(k[len(prefix):]): int(round(v)) for k, v in metrics.items()
                    if k.startswith(prefix)})


def labelled_class_shares(runs: Sequence[Any], results: pd.DataFrame) -> pd.DataFrame:
    """Long table, one row per group and class: the groups are ``target`` (pixels of the
    target training set, summed over the same runs) and then every (method, budget, network)
    of a selecting kind in the order of ``results``; ``pixels`` summed over the group's runs
    (seeds), ``share`` = pixels / the group's total (each group's shares sum to 1). Runs
    without ``labelled_px/`` metrics are left out; no such run gives an empty table."""
    metrics = {run.info.run_id: dict(run.data.metrics) for run in runs}
    groups: dict[tuple[str, str, str], list[Counter]] = {}
    target: list[Counter] = []
    for row in results.itertuples(index=False):
        labelled = _counts(metrics[row.run_id], LABELLED_PX)
        if not get_kind(row.kind).selects or not labelled:
            continue
        groups.setdefault((row.method, row.budget_label, row.network), []).append(labelled)
        target.append(_counts(metrics[row.run_id], TARGET_PX))
    several = several_networks(results)
    parts = ([(TARGET_GROUP, "", "", "", target)] if any(target) else []) + [
        (group_name(m, b, n if several else ""), m, b, n, counts)
        for (m, b, n), counts in groups.items()]
    classes = order_classes(set().union(*(c for *_, counts in parts for c in counts)))
    rows = []
    for group, method, label, network, counts in parts:
        total = sum(counts, Counter())
        pixels = sum(total.values())
        rows += [{"group": group, "method": method, "budget_label": label,
                  "network": network, "runs": len(counts),
                  "class": c, "pixels": total[c],
                  "share": round(total[c] / pixels, 6) if pixels else 0.0} for c in classes]
    return pd.DataFrame(rows, columns=list(COLUMNS))

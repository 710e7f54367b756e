"""What a pull reports for a closed round: tasks done, skipped and deleted, pixels labelled,
pixels painted outside the regions (ignored), regions left unlabelled."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ripu.annotate.pull import Answer


def round_report(r: int, answers: Mapping[str, Answer], deleted: list[str]) -> dict[str, Any]:
    """Round ``r``'s counts over its tasks' answers and the ids of deleted tasks."""
    return {"round": r, "tasks": len(answers) + len(deleted),
            "done": sum(not a.skipped for a in answers.values()),
            "skipped": sum(a.skipped for a in answers.values()), "deleted": deleted,
            "pixels_labelled": sum(a.labelled for a in answers.values()),
            "pixels_outside": sum(a.outside for a in answers.values()),
            "regions": sum(a.regions for a in answers.values()),
            "regions_unlabelled": sum(a.regions_unlabelled for a in answers.values())}


def report_line(h: dict[str, Any]) -> str:
    """The one line a pull prints for a closed round."""
    deleted = f", {len(h['deleted'])} deleted in Label Studio ({', '.join(h['deleted'])})" \
        if h["deleted"] else ""
    return (f"round {h['round']} labels: {h['done']} of {h['tasks']} tasks done "
            f"({h['skipped']} skipped{deleted}), {h['pixels_labelled']:,} pixels labelled, "
            f"{h['pixels_outside']:,} painted outside the regions (ignored), "
            f"{h['regions_unlabelled']} of {h['regions']} regions left unlabelled")

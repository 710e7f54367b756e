"""What a pull reports for a closed round: tasks done, skipped and deleted, empty annotations
ignored, pixels labelled, pixels painted outside the regions (ignored), regions left
unlabelled (a deleted task's regions among them); the same counts as the trial's metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ripu.annotate.pull import Answer
from ripu.record_names import PEOPLE

COUNTS = ("tasks", "done", "skipped", "deleted", "empty", "pixels_labelled", "pixels_outside",
          "regions", "regions_unlabelled")


def round_report(r: int, answers: Mapping[str, Answer],
                 deleted: Mapping[str, Answer]) -> dict[str, Any]:
    """Round ``r``'s counts over its tasks' answers and its deleted tasks' (image id ->
    :func:`ripu.annotate.pull.unanswered`)."""
    every = [*answers.values(), *deleted.values()]
    return {"round": r, "tasks": len(every),
            "done": sum(not a.skipped for a in answers.values()),
            "skipped": sum(a.skipped for a in answers.values()), "deleted": sorted(deleted),
            "empty": sorted(i for i, a in answers.items() for _ in range(a.empty)),
            "pixels_labelled": sum(a.labelled for a in every),
            "pixels_outside": sum(a.outside for a in every),
            "regions": sum(a.regions for a in every),
            "regions_unlabelled": sum(a.regions_unlabelled for a in every)}


def report_line(h: dict[str, Any]) -> str:
    """The one line a pull prints for a closed round."""
    deleted, empty = h["deleted"], h.get("empty", [])
    gone = f", {len(deleted)} deleted in Label Studio ({', '.join(deleted)})" if deleted else ""
    ignored = (f", {len(empty)} empty annotation{'s' * (len(empty) != 1)} ignored "
               f"({', '.join(dict.fromkeys(empty))})") if empty else ""
    return (f"round {h['round']} labels: {h['done']} of {h['tasks']} tasks done "
            f"({h['skipped']} skipped{gone}){ignored}, {h['pixels_labelled']:,} pixels "
            f"labelled, {h['pixels_outside']:,} painted outside the regions (ignored), "
            f"{h['regions_unlabelled']} of {h['regions']} regions left unlabelled")


def round_metrics(h: dict[str, Any]) -> dict[str, float]:
    """A round's counts (its header) as the trial's metrics ``people/<count>``: lists (the
    deleted tasks, the empty annotations) by their length."""
    return {PEOPLE + key: float(len(v) if isinstance(v := h.get(key, 0), list) else v)
            for key in COUNTS}

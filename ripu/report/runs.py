"""Which MLflow runs a report uses, and one table row per run.

:func:`select_runs` applies the rules of :func:`ripu.report.build_report`; :func:`results_frame`
turns the chosen runs into ``results.csv``'s rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ripu.archs import ARCHS
from ripu.errors import RipuError
from ripu.kinds import KINDS, get_kind
from ripu.record_names import (
    BUDGET_TAG,
    FINAL_IOU,
    FINAL_LABELLED_FRACTION,
    FINAL_MIOU,
    FINAL_MIOU13,
    FINAL_SECONDS,
    GIT_REVISION_TAG,
    KIND_TAG,
    LOCK_TAG,
    PARAMS_HASH_TAG,
    POINTS_TAG,
    RUN_NAME_TAG,
    SEED_TAG,
    START_SHA256_TAG,
    START_TAG,
    STRATEGY_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
)
from ripu.report.names import budget_label, is_point_strategy, method_id, order_classes
from ripu.tracking import read_artifact_text

_TAIL = ["seconds", "start", "start_sha256", "params_hash", "git_revision", "lock_sha256",
         "run_id"]


@dataclass(frozen=True)
class Selection:
    """The trial runs a report uses, the sweep parent they came from, and what is missing."""

    runs: list[Any]
    parent_run_id: str | None
    missing_trials: list[str]


def tags(run: Any) -> dict[str, str]:
    return dict(run.data.tags)


def _newest_first(runs: Sequence[Any]) -> list[Any]:
    """Runs ordered newest first: start time, then end time, then id (deterministic)."""
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.end_time or 0,
                                       r.info.run_id), reverse=True)


def _finished(run: Any) -> bool:
    return run.info.status == "FINISHED"


def _is_sweep(run: Any) -> bool:
    return tags(run).get(SWEEP_TAG) == "1"


def _is_trial(run: Any) -> bool:
    """A trial of a registered kind (warm-ups are not one) with a final mIoU."""
    return (tags(run).get(KIND_TAG) in KINDS and not _is_sweep(run)
            and FINAL_MIOU in run.data.metrics)


def trial_name(run: Any) -> str:
    t = tags(run)
    return t.get(TRIAL_TAG) or t.get(RUN_NAME_TAG) or run.info.run_id


def _read_trials_json(uri: str, run_id: str) -> dict[str, str]:
    """The sweep parent's ``trials.json`` artifact: {trial name: params hash}."""
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
    parents = [r for r in ordered if _finished(r) and _is_sweep(r)]
    if parents:
        parent = parents[0]
        wanted = _read_trials_json(uri, parent.info.run_id)
        chosen, missing = [], []
        for name in sorted(wanted):
            match = next((r for r in trials if tags(r).get(TRIAL_TAG) == name
                          and tags(r).get(PARAMS_HASH_TAG) == wanted[name]), None)
            if match is None:
                missing.append(name)
            else:
                chosen.append(match)
        return Selection(chosen, parent.info.run_id, missing)
    newest: dict[str, Any] = {}
    for run in trials:  # newest first: the first run of a trial name wins
        newest.setdefault(trial_name(run), run)
    return Selection(list(newest.values()), None, [])


def _number(run: Any, tag: str, default: str, cast: type) -> Any:
    text = tags(run).get(tag, default)
    try:
        return cast(float(text)) if cast is int else cast(text)
    except ValueError:
        raise RipuError(f"run {run.info.run_id}: tag {tag}={text!r} is not a number") from None


def _network(params: dict[str, str]) -> str:
    arch = params.get("model.arch", "")
    traits = ARCHS.get(arch)
    if traits is not None and traits.resnet and params.get("model.backbone"):
        return f"{arch}/{params['model.backbone']}"
    return arch


def _row(run: Any, experiment: str) -> dict[str, Any]:
    t, metrics = tags(run), dict(run.data.metrics)
    kind = t[KIND_TAG]
    strategy = t.get(STRATEGY_TAG, kind)
    budget = _number(run, BUDGET_TAG, "0", float)
    points = _number(run, POINTS_TAG, "0", int)
    try:
        method, label = method_id(kind, strategy), budget_label(kind, strategy, budget, points)
    except RipuError as exc:
        raise RipuError(f"run {run.info.run_id}: {exc}") from None
    row = {
        "experiment": experiment, "trial": trial_name(run), "kind": kind,
        "strategy": strategy, "method": method, "budget": budget, "points": points,
        "budget_label": label, "seed": _number(run, SEED_TAG, "-1", int),
        "network": _network(run.data.params),
        "labelled_fraction": metrics.get(FINAL_LABELLED_FRACTION, math.nan),
        "miou": metrics[FINAL_MIOU],
    }
    if FINAL_MIOU13 in metrics:
        row["miou13"] = metrics[FINAL_MIOU13]
    row.update({f"iou_{k[len(FINAL_IOU):]}": v for k, v in metrics.items()
                if k.startswith(FINAL_IOU)})
    row.update({"seconds": metrics.get(FINAL_SECONDS, math.nan),
                "start": t.get(START_TAG, ""), "start_sha256": t.get(START_SHA256_TAG, ""),
                "params_hash": t.get(PARAMS_HASH_TAG, ""),
                "git_revision": t.get(GIT_REVISION_TAG, ""),
                "lock_sha256": t.get(LOCK_TAG, ""), "run_id": run.info.run_id})
    return row


def point_budget(frame: pd.DataFrame) -> list[bool]:
    """Per row: a selecting kind with a point strategy (its budget is points per image)."""
    return [get_kind(k).selects and is_point_strategy(s)
            for k, s in zip(frame["kind"], frame["strategy"], strict=True)]


def results_frame(runs: Sequence[Any], experiment: str) -> pd.DataFrame:
    """One row per run: tags, final metrics (fractions in [0, 1]) and per-class IoUs
    (``iou_<class>``), sorted by kind order, method, budget, seed, trial."""
    frame = pd.DataFrame([_row(run, experiment) for run in runs])
    iou_cols = [f"iou_{c}" for c in order_classes(c[4:] for c in frame.columns
                                                  if c.startswith("iou_"))]
    head = [c for c in frame.columns if c not in iou_cols and c not in _TAIL]
    frame = frame[head + iou_cols + _TAIL]
    rank = frame["kind"].map(lambda k: get_kind(k).order)
    amount = [p if point else b for point, b, p in
              zip(point_budget(frame), frame["budget"], frame["points"], strict=True)]
    frame = frame.assign(_rank=rank, _amount=amount).sort_values(
        ["_rank", "method", "_amount", "seed", "trial", "run_id"], kind="mergesort")
    return frame.drop(columns=["_rank", "_amount"]).reset_index(drop=True)


def environments_note(results: pd.DataFrame) -> str | None:
    """One line when the runs come from more than one environment (distinct lock hashes;
    runs that recorded none count as one more), else None."""
    counts = results["lock_sha256"].replace("", "unrecorded").value_counts(sort=False)
    if len(counts) < 2:
        return None
    parts = ", ".join(f"{h[:12]} ({n} runs)" for h, n in sorted(counts.items()))
    return (f"These runs come from {len(counts)} different environments (lock SHA-256: "
            f"{parts}); differences between them may be the environment's.")

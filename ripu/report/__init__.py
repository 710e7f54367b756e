"""MLflow runs -> pandas -> tables and matplotlib figures (the `report` stage).

:func:`build_report` reads only the MLflow store. Its parts: which trial runs count and one
row per run (:mod:`.runs`), how methods, budgets and classes are named (:mod:`.names`), one
row per method and budget over seeds and the DVC metrics (:mod:`.tables`), paired
differences over seeds (:mod:`.paired`), the comparison with the published numbers
(:mod:`.paper`), the class shares of the labelled pixels (:mod:`.classes`), the error
anatomy (:mod:`.anatomy`; the warm-ups' part is passed in from their metrics file) and the
figures (:mod:`.figures`). Every output is written atomically and is a pure function of the store,
so rebuilding into a fresh folder gives byte-identical tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ripu.errors import RipuError
from ripu.io import write_json, write_text
from ripu.report.anatomy import anatomy_markdown, boundary_shares, warmup_frame
from ripu.report.classes import labelled_class_shares
from ripu.report.figures import (
    budget_curve_figure,
    labelled_classes_figure,
    per_class_figure,
    save_figure,
)
from ripu.report.paired import paired_frame, paired_markdown
from ripu.report.paper import ordering_checks, paper_section
from ripu.report.runs import Selection, environments_note, results_frame, select_runs
from ripu.report.tables import metrics_dict, summarize, summary_markdown_table
from ripu.tracking import check_uri, list_runs

__all__ = ["OUTPUTS", "build_report", "summary_markdown"]

OUTPUTS = ("results.csv", "summary.csv", "summary.md", "budget_curve.png", "budget_curve.csv",
           "per_class.png", "metrics.json", "paired.csv", "labelled_classes.csv",
           "labelled_classes.png", "anatomy.csv")


def summary_markdown(summary: pd.DataFrame, paired: pd.DataFrame, selection: Selection,
                     experiment: str, environments: str | None = None,
                     anatomy: str = "") -> str:
    """``summary.md``: where the runs come from, the summary table, the published numbers,
    the ordering checks, the paired differences, the error anatomy section ``anatomy``
    (:func:`ripu.report.anatomy.anatomy_markdown`) and the figures."""
    source = (f"the trials of the newest finished sweep (parent run `{selection.parent_run_id}`)"
              if selection.parent_run_id else
              "every finished trial run of the experiment (no finished sweep parent run), "
              "newest run per trial name")
    n = int(summary["n"].sum())
    parts = [f"# Report: `{experiment}`", "",
             f"{n} runs: {source}. mIoU in percent, mean ± sample std over seeds (n runs).",
             ""]
    if environments:
        parts += [f"**{environments}**", ""]
    if selection.missing_trials:
        parts += ["Trials of the sweep without a finished run (left out): "
                  + ", ".join(f"`{t}`" for t in selection.missing_trials) + ".", ""]
    parts += ["## Summary", "", summary_markdown_table(summary), "",
              paper_section(summary, experiment), "## Our ordering", "",
              "Does our mean mIoU follow the paper's ordering? (✓: the left group scores "
              "below the right one, as in the paper.)", ""]
    checks = ordering_checks(summary)
    parts += (checks or ["No RIPU runs to order."]) + [""]
    parts += [paired_markdown(paired)] + ([anatomy] if anatomy else [])
    parts += ["## Figures", "", "![mIoU against the labelling budget](budget_curve.png)", "",
              "![per-class IoU](per_class.png)", "",
              "![class shares of the labelled pixels against the target's "
              "(labelled_classes.csv)](labelled_classes.png)", ""]
    return "\n".join(parts)


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")


def build_report(uri: str, *, experiment: str, out_dir: str | Path,
                 warmups: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rebuild the report of ``experiment`` from the MLflow store at ``uri`` into ``out_dir``.

    Runs used: the newest FINISHED sweep parent (tag ``ripu.sweep=1``) names its trials in
    its ``trials.json`` artifact ({trial: params hash}); each trial contributes its newest
    FINISHED run with that ``ripu.trial`` tag and ``ripu.params_hash`` (under any parent).
    Without a finished parent: every FINISHED run of a registered kind (``ripu.kind``; warm-ups
    are none) with a ``final/miou``, newest per ``ripu.trial``. ``warmups``: the warm-up
    metrics (``metrics/<experiment>/warmups.json``), whose ``anatomy`` entries join the
    error anatomy. Writes :data:`OUTPUTS`, each atomically.

    Returns ``{"experiment", "parent_run_id", "runs", "groups", "missing_trials", "best",
    "environments" (a one-line note when the runs come from several environments, else None),
    "outputs": {file name: path}}``. Raises :class:`RipuError` when no run qualifies.
    """
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
    paired = paired_frame(results)
    shares = labelled_class_shares(selection.runs, results)
    boundary, warm = boundary_shares(selection.runs, results), warmup_frame(warmups or {})
    anatomy = pd.concat([warm.assign(part="warmup"), boundary.assign(part="labelled")],
                        ignore_index=True)
    metrics = metrics_dict(summary)
    curve = pd.DataFrame({"strategy": summary["method"],
                          "labelled_percent": summary["labelled_percent"],
                          "miou": summary["miou_mean"], "budget": summary["budget_label"],
                          "miou_std": summary["miou_std"], "n": summary["n"]}
                         ).sort_values(["strategy", "labelled_percent"], kind="mergesort")
    out = Path(out_dir)
    paths = {name: out / name for name in OUTPUTS}
    for name, frame in (("results.csv", results), ("summary.csv", summary),
                        ("budget_curve.csv", curve), ("paired.csv", paired),
                        ("labelled_classes.csv", shares), ("anatomy.csv", anatomy)):
        write_text(paths[name], _csv(frame))
    environments = environments_note(results)
    write_text(paths["summary.md"],
               summary_markdown(summary, paired, selection, experiment, environments,
                                anatomy_markdown(warm, boundary)))
    write_json(paths["metrics.json"], metrics)
    for name, fig in (("budget_curve.png", budget_curve_figure(results, summary, experiment)),
                      ("per_class.png", per_class_figure(summary, experiment)),
                      ("labelled_classes.png", labelled_classes_figure(shares, experiment))):
        save_figure(fig, paths[name], dpi=120)
    return {"experiment": experiment, "parent_run_id": selection.parent_run_id,
            "runs": len(results), "groups": len(summary),
            "missing_trials": list(selection.missing_trials),
            "best": metrics.get("best", {}).get("name"), "environments": environments,
            "outputs": {k: str(v) for k, v in paths.items()}}

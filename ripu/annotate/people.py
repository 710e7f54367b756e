"""A round's labels from people: push the round's tasks, pull the answers, wait otherwise.

One Label Studio project per trial (``<annotate.project>/<trial folder>``), one task per
image with pixels selected in the round. :meth:`PeopleLabels.receive` makes round ``r``'s
labels available to the trainer:

- ``labels_<r>.npz`` exists: the round is closed; its labels are read.
- otherwise push: every task of the round not on the server yet (matched by the task's
  ``ripu_*`` keys, so a second or an interrupted push never duplicates one), recorded in
  ``tasks_<r>.json`` as each batch lands; then pull: when every task still on the server is
  answered (submitted or skipped), the labels are written and the round closes. Otherwise
  :class:`AwaitingLabels` says how many tasks wait, in which project, at which URL.

Unfinished tasks hold the round: training goes on only once every task is answered. A task
skipped in Label Studio, or deleted there (reported), leaves its regions unlabelled: those
pixels still count against the budget and are never selected again, and the loss ignores
them. An annotation changed after its round closed is reported once, recorded in that
round's ledger, and not used. :meth:`PeopleLabels.round_counts` gives a closed round's
counts as the trial's metrics.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ripu.acquisition import LabelState
from ripu.acquisition.state import round_path
from ripu.annotate.client import AnnotateError, Studio, connect
from ripu.annotate.interface import MODEL_VERSION, label_config, png, task
from ripu.annotate.ledger import Ledger, ledger_path, read_ledger, write_ledger
from ripu.annotate.pull import answer, answer_annotation, unanswered
from ripu.annotate.report import report_line, round_metrics, round_report
from ripu.annotate.round_labels import (
    labels_path,
    load_round_labels,
    merge_rounds,
    save_round_labels,
)
from ripu.config import Config
from ripu.errors import Waiting
from ripu.inference import predict

WAITING_STATUS = 75  # sysexits.h EX_TEMPFAIL: "try again later", not a failure
PUSH_BATCH = 20
KEYS = ("ripu_trial", "ripu_round", "ripu_image", "ripu_selection")


class AwaitingLabels(Waiting):
    """Round ``round_index`` waits for people: ``waiting`` tasks of project ``title``."""

    def __init__(self, round_index: int, waiting: int, total: int, title: str, url: str):
        self.round_index, self.waiting, self.title, self.url = round_index, waiting, title, url
        super().__init__(f"waiting for people: {waiting} of {total} tasks of round "
                         f"{round_index} in Label Studio project {title!r} at {url}")


def selection_key(selected: np.ndarray) -> str:
    """A short fingerprint of a bool (H, W) selection (tells tasks of another run apart)."""
    return hashlib.sha256(np.packbits(selected).tobytes()
                          + str(selected.shape).encode()).hexdigest()[:16]


def round_selection(masks_dir: Path, round_index: int) -> dict[str, np.ndarray]:
    """Image id -> bool (H, W) pixels selected in round ``round_index`` (images with none
    left out), from the round files."""
    now = LabelState.load(round_path(masks_dir, round_index))
    before = (LabelState.load(round_path(masks_dir, round_index - 1))
              if round_index else LabelState())
    out = {}
    for image_id in now.ids:
        mask = now.labelled[image_id]
        if image_id in before:
            mask &= ~before.labelled[image_id]
        if mask.any():
            out[image_id] = mask
    return out


class PeopleLabels:
    """The label source of a trial whose rounds people label (``annotate.url`` set)."""

    def __init__(self, cfg: Config, masks_dir: Path, trial: str) -> None:
        self.studio: Studio = connect(cfg.annotate)
        self.masks_dir, self.trial = Path(masks_dir), trial
        self.title = f"{cfg.annotate.project}/{trial}"
        self.batch_size = cfg.train.infer_batch
        self._rounds: dict[int, dict[str, np.ndarray]] = {}
        self._headers: dict[int, dict[str, Any]] = {}

    # ------------------------------------------------------------------ the trainer's side

    def receive(self, round_index: int, *, target: Any, model: torch.nn.Module,
                device: torch.device) -> dict[str, np.ndarray]:
        """Labels of rounds ``0..round_index`` merged (id -> uint8 (H, W), 255 unlabelled);
        AwaitingLabels when round ``round_index``'s tasks are not all answered."""
        for r in range(round_index + 1):
            if r not in self._rounds:
                path = labels_path(self.masks_dir, r)
                if not path.is_file():
                    self._close_round(r, target, model, device)
                self._rounds[r], self._headers[r] = load_round_labels(path)
        return merge_rounds(self._rounds[r] for r in range(round_index + 1))

    def round_counts(self, round_index: int) -> dict[str, float]:
        """The pull's counts of a received round as metrics (``people/<count>``)."""
        return round_metrics(self._headers[round_index])

    def _close_round(self, r: int, target: Any, model: torch.nn.Module,
                     device: torch.device) -> None:
        selection = round_selection(self.masks_dir, r)
        project = self.project(target.class_names)
        tasks = self.push(project, r, selection, target, model, device)
        ours = self._ours(tasks, r, selection)
        self._report_closed_rounds(tasks, r)
        answers = {i: answer(ours[i], selection[i], target.class_names)
                   for i in selection if i in ours}
        waiting = sum(a.labels is None for a in answers.values())
        if waiting:
            raise AwaitingLabels(r, waiting, len(answers), self.title, self.studio.url)
        deleted = {i: unanswered(selection[i]) for i in sorted(set(selection) - set(ours))}
        header = round_report(r, answers, deleted)
        header["used"] = {i: _stamp(a.annotation) for i, a in answers.items()
                          if a.annotation is not None}
        labels = {i: a.labels for i, a in answers.items()}
        save_round_labels(labels_path(self.masks_dir, r), labels, header)
        print(report_line(header), flush=True)

    # ------------------------------------------------------------------ project and tasks

    def project(self, class_names: Sequence[str]) -> int:
        """The trial's project id, created (with the interface for ``class_names``) if
        missing; AnnotateError when it exists with another interface."""
        config = label_config(class_names)
        found = [p for p in self.studio.pages("/api/projects") if p.get("title") == self.title]
        if len(found) > 1:
            raise AnnotateError(f"Label Studio at {self.studio.url}: {len(found)} projects "
                                f"titled {self.title!r}, expected one")
        if not found:
            made = self.studio.call("POST", "/api/projects", {
                "title": self.title, "label_config": config, "model_version": MODEL_VERSION,
                "show_collab_predictions": True})
            return int(made["id"])
        if found[0].get("label_config", "").strip() != config.strip():
            raise AnnotateError(f"Label Studio project {self.title!r} has another labelling "
                                f"interface (other classes?); expected ripu's for "
                                f"{len(class_names)} classes, or use another annotate.project")
        return int(found[0]["id"])

    def tasks(self, project: int) -> list[dict[str, Any]]:
        """Every task of ``project`` with its annotations (Label Studio's JSON export)."""
        return self.studio.call(
            "GET", f"/api/projects/{project}/export?exportType=JSON&download_all_tasks=true")

    def _ours(self, tasks: list[dict[str, Any]], r: int,
              selection: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
        """Image id -> task of round ``r`` of this trial; AnnotateError for a task ripu did
        not push, or pushed for another selection (an earlier run of the trial)."""
        ours = {}
        for t in tasks:
            data = t.get("data", {})
            if any(k not in data for k in KEYS) or data["ripu_trial"] != self.trial:
                raise AnnotateError(f"Label Studio project {self.title!r}: task {t['id']} was "
                                    f"not pushed by this trial (no ripu keys for "
                                    f"{self.trial!r}); expected only its tasks, delete it")
            if data["ripu_round"] != r:
                continue
            image_id = data["ripu_image"]
            if image_id not in selection or \
                    data["ripu_selection"] != selection_key(selection[image_id]):
                raise AnnotateError(f"task {t['id']} (image {image_id}, round {r}) belongs to "
                                    f"another selection of round {r} (an earlier run of this "
                                    f"trial); expected this run's, delete it or use another "
                                    f"annotate.project")
            if image_id in ours:
                raise AnnotateError(f"tasks {ours[image_id]['id']} and {t['id']} both hold "
                                    f"image {image_id} of round {r}; expected one, delete one")
            ours[image_id] = t
        return ours

    def push(self, project: int, r: int, selection: Mapping[str, np.ndarray], target: Any,
             model: torch.nn.Module, device: torch.device) -> list[dict[str, Any]]:
        """Push round ``r``'s missing tasks; the project's tasks afterwards (exported once
        when nothing was missing). A task in the ledger but not on the server was deleted
        there and is not pushed again."""
        path = ledger_path(self.masks_dir, r)
        recorded = read_ledger(path)
        tasks = self.tasks(project)
        ours = self._ours(tasks, r, selection)
        ledger = Ledger({**recorded.tasks, **{i: int(t["id"]) for i, t in ours.items()}},
                        recorded.refused)
        todo = [i for i in target.ids if i in selection and i not in ledger.tasks]
        if ledger != recorded or not path.is_file():
            write_ledger(path, ledger)
        drafts = self._drafts(todo, target, model, device)
        for start in range(0, len(todo), PUSH_BATCH):
            batch = todo[start:start + PUSH_BATCH]
            payload = [self._task(project, r, i, target, selection[i], drafts[i])
                       for i in batch]
            got = self.studio.call("POST", f"/api/projects/{project}/import?return_task_ids=true",
                                   payload)
            ledger.tasks.update(zip(batch, (int(x) for x in got.get("task_ids", [])),
                                    strict=False))
            write_ledger(path, ledger)
        return self.tasks(project) if todo else tasks

    def _task(self, project: int, r: int, image_id: str, target: Any, selected: np.ndarray,
              predicted: np.ndarray) -> dict[str, Any]:
        image = png(target.read_image(target.ids.index(image_id)), selected)
        url = self.studio.upload(project, image_id.replace("/", "__") + ".png", image)
        made = task(self.trial, r, image_id, url, selected, predicted, target.class_names)
        made["data"]["ripu_selection"] = selection_key(selected)
        return made

    def _drafts(self, ids: list[str], target: Any, model: torch.nn.Module,
                device: torch.device) -> dict[str, np.ndarray]:
        """The model's prediction (int (H, W) at the label size) for each of ``ids``."""
        if not ids:
            return {}
        positions = [target.ids.index(i) for i in ids]
        out = {}
        for batch in predict(model, target, positions, device=device,
                             batch_size=self.batch_size):
            for item, logits in zip(batch.items, batch.logits, strict=True):
                out[item["id"]] = logits.argmax(0).cpu().numpy()
        return out

    def _report_closed_rounds(self, tasks: list[dict[str, Any]], r: int) -> None:
        """Print one line per annotation changed on a task of a closed round (not used), and
        record it in that round's ledger: a later pull says nothing more of it."""
        changed: dict[int, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
        for t in tasks:
            k, a = t["data"]["ripu_round"], answer_annotation(t)
            if k < r and a is not None:
                changed.setdefault(k, []).append((t, a))
        for k, answered in sorted(changed.items()):
            used = load_round_labels(labels_path(self.masks_dir, k))[1].get("used", {})
            path = ledger_path(self.masks_dir, k)
            ledger = read_ledger(path)
            new = [(t, a) for t, a in answered
                   if used.get(t["data"]["ripu_image"]) != _stamp(a)
                   and ledger.refused.get(str(a["id"])) != str(a.get("updated_at"))]
            for t, a in new:
                print(f"refused: annotation {a['id']} on task {t['id']} (image "
                      f"{t['data']['ripu_image']}) of round {k}, changed after round {k} "
                      f"closed; not used (recorded in {path.name}, not reported again)",
                      flush=True)
                ledger.refused[str(a["id"])] = str(a.get("updated_at"))
            if new:
                write_ledger(path, ledger)


def _stamp(annotation: dict[str, Any]) -> list[Any]:
    """What identifies an annotation's version: its id and when it was last changed."""
    return [annotation["id"], annotation.get("updated_at")]

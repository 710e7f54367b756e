"""Reading people's answers: one exported task -> the round's labels of its image.

A task's answer is its newest annotation (by ``updated_at``, then id), so an edited or a
later annotation replaces an older one. A cancelled (skipped) answer labels nothing. Only
``label`` brush results count (the ``regions`` layer is ripu's own); within the answer a
later stroke overwrites an earlier one. Painted pixels outside the round's selection are
counted and dropped; selected pixels left unpainted stay 255 (ignored by the loss).
Refused, with a message naming the task: a result of another type or for another image
size (labels outside the image), and a class name the experiment does not have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ripu.annotate.client import AnnotateError
from ripu.annotate.interface import LABEL
from ripu.annotate.rle import decode_mask
from ripu.annotate.round_labels import IGNORE


@dataclass(frozen=True)
class Answer:
    """One task's labels: ``labels`` uint8 (H, W) (255 off the selection or unpainted),
    the annotation used (``None``: no answer yet), and the counts the pull reports."""

    labels: np.ndarray | None
    annotation: dict[str, Any] | None
    skipped: bool = False
    labelled: int = 0
    outside: int = 0
    regions: int = 0
    regions_unlabelled: int = 0


def newest_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    """The task's newest annotation (edited or added last), None when it has none."""
    annotations = task.get("annotations") or []
    return max(annotations, key=lambda a: (str(a.get("updated_at") or a.get("created_at")),
                                           int(a["id"])), default=None)


def painted(task: dict[str, Any], annotation: dict[str, Any], shape: tuple[int, int],
            class_names: Sequence[str]) -> np.ndarray:
    """The class map people painted: uint8 (H, W), 255 where nothing was painted."""
    h, w = shape
    out = np.full(shape, IGNORE, np.uint8)
    where = f"task {task['id']} (image {task['data'].get('ripu_image')})"
    for res in annotation.get("result") or []:
        if res.get("from_name") != LABEL:
            continue
        if res.get("type") != "brushlabels" or res.get("value", {}).get("format") != "rle":
            raise AnnotateError(f"{where}: a {res.get('type')!r} result, expected brush "
                                f"strokes of the {LABEL!r} control")
        size = (res.get("original_height"), res.get("original_width"))
        if size != (h, w):
            raise AnnotateError(f"{where}: labels outside the image (drawn on a "
                                f"{size[1]}x{size[0]} image, the task's is {w}x{h})")
        names = res["value"].get("brushlabels") or []
        unknown = [n for n in names if n not in class_names]
        if unknown or len(names) != 1:
            raise AnnotateError(f"{where}: unknown class name {unknown or names}, expected "
                                f"one of {', '.join(class_names)}")
        mask = decode_mask(res["value"]["rle"], h, w)
        out[mask] = class_names.index(names[0])
    return out


def answer(task: dict[str, Any], selected: np.ndarray, class_names: Sequence[str]) -> Answer:
    """The labels of ``task`` on its round's ``selected`` pixels (bool (H, W))."""
    annotation = newest_annotation(task)
    regions, components = cv2.connectedComponents(selected.astype(np.uint8), connectivity=4)
    n_regions = regions - 1
    if annotation is None:
        return Answer(None, None, regions=n_regions, regions_unlabelled=n_regions)
    if annotation.get("was_cancelled"):
        return Answer(np.full(selected.shape, IGNORE, np.uint8), annotation, skipped=True,
                      regions=n_regions, regions_unlabelled=n_regions)
    paint = painted(task, annotation, selected.shape, class_names)
    kept = np.where(selected, paint, IGNORE).astype(np.uint8)
    hit = np.unique(components[kept != IGNORE])
    return Answer(kept, annotation, labelled=int((kept != IGNORE).sum()),
                  outside=int(((paint != IGNORE) & ~selected).sum()), regions=n_regions,
                  regions_unlabelled=n_regions - int((hit > 0).sum()))

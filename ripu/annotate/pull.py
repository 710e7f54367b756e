"""Reading people's answers: one exported task -> the round's labels of its image.

A task's answer is its newest annotation (by ``updated_at``, then id) that holds strokes of
the ``label`` control, so an edit or a later answer replaces an older one, while an *empty*
annotation (submitted with no stroke: a blank one opened with "+", or the draft deleted)
never does: it is counted and ignored. A task with no such annotation is skipped when one of
its annotations was cancelled (skipped in Label Studio), else answered with nothing
painted; either labels nothing. Only ``label`` strokes count (the ``regions`` layer is
ripu's own); within the answer a later stroke overwrites an earlier one. Strokes are drawn on
the upscaled task image and mapped back to label pixels (:mod:`ripu.annotate.display`).
Painted pixels outside the round's selection are counted and dropped; selected pixels left
unpainted stay 255 (ignored by the loss). Refused, with a message naming the task: a result
of another type, or for another image size (labels outside the image), and a class name the
experiment does not have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ripu.annotate.client import AnnotateError
from ripu.annotate.display import downscale
from ripu.annotate.interface import LABEL
from ripu.annotate.rle import decode_mask
from ripu.annotate.round_labels import IGNORE


@dataclass(frozen=True)
class Answer:
    """One task's labels: ``labels`` uint8 (H, W) (255 off the selection or unpainted;
    ``None``: not answered yet), the annotation used (``None``: none with strokes), and the
    counts the pull reports (``empty``: the task's empty annotations, ignored)."""

    labels: np.ndarray | None
    annotation: dict[str, Any] | None
    skipped: bool = False
    labelled: int = 0
    outside: int = 0
    regions: int = 0
    regions_unlabelled: int = 0
    empty: int = 0


def has_strokes(annotation: dict[str, Any]) -> bool:
    """Whether ``annotation`` holds a stroke of the ``label`` control (a class painted)."""
    return any(r.get("from_name") == LABEL for r in annotation.get("result") or [])


def is_empty(annotation: dict[str, Any]) -> bool:
    """Submitted (not skipped) without a single stroke of the ``label`` control."""
    return not annotation.get("was_cancelled") and not has_strokes(annotation)


def answer_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    """The task's newest annotation with strokes (edited or added last), None if none."""
    annotations = [a for a in task.get("annotations") or [] if has_strokes(a)]
    return max(annotations, key=lambda a: (str(a.get("updated_at") or a.get("created_at")),
                                           int(a["id"])), default=None)


def regions_of(selected: np.ndarray) -> tuple[int, np.ndarray]:
    """The number of regions (4-connected) of ``selected`` bool (H, W) and their map
    (int32 (H, W), 0 off the selection, 1..n on region i)."""
    n, components = cv2.connectedComponents(selected.astype(np.uint8), connectivity=4)
    return n - 1, components


def _factor(size: tuple[Any, Any], shape: tuple[int, int]) -> int | None:
    """k when ``size`` (height, width) is ``shape`` upscaled by an integer k >= 1."""
    (sh, sw), (h, w) = size, shape
    if not isinstance(sh, int) or not isinstance(sw, int) or sh < h or sh % h:
        return None
    k = sh // h
    return k if sw == k * w else None


def painted(task: dict[str, Any], annotation: dict[str, Any], shape: tuple[int, int],
            class_names: Sequence[str]) -> np.ndarray:
    """The class map people painted at the label state's ``shape`` (H, W): uint8 (H, W),
    255 where nothing was painted. Strokes drawn on the task image (the label state
    upscaled by an integer factor) are mapped back by :func:`ripu.annotate.display.downscale`."""
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
        k = _factor(size, shape)
        if k is None:
            raise AnnotateError(f"{where}: labels outside the image (drawn on a "
                                f"{size[1]}x{size[0]} image, the task's is {w}x{h} or an "
                                f"integer multiple)")
        names = res["value"].get("brushlabels") or []
        unknown = [n for n in names if n not in class_names]
        if unknown or len(names) != 1:
            raise AnnotateError(f"{where}: unknown class name {unknown or names}, expected "
                                f"one of {', '.join(class_names)}")
        mask = downscale(decode_mask(res["value"]["rle"], k * h, k * w), k)
        out[mask] = class_names.index(names[0])
    return out


def answer(task: dict[str, Any], selected: np.ndarray, class_names: Sequence[str]) -> Answer:
    """The labels of ``task`` on its round's ``selected`` pixels (bool (H, W))."""
    annotations = task.get("annotations") or []
    n_regions, components = regions_of(selected)
    counts = {"regions": n_regions, "empty": sum(is_empty(a) for a in annotations)}
    if not annotations:
        return Answer(None, None, regions_unlabelled=n_regions, **counts)
    annotation = answer_annotation(task)
    if annotation is None:  # skipped, or only empty annotations: nothing painted
        return Answer(np.full(selected.shape, IGNORE, np.uint8), None,
                      skipped=any(a.get("was_cancelled") for a in annotations),
                      regions_unlabelled=n_regions, **counts)
    paint = painted(task, annotation, selected.shape, class_names)
    kept = np.where(selected, paint, IGNORE).astype(np.uint8)
    hit = np.unique(components[kept != IGNORE])
    return Answer(kept, annotation, labelled=int((kept != IGNORE).sum()),
                  outside=int(((paint != IGNORE) & ~selected).sum()),
                  regions_unlabelled=n_regions - int((hit > 0).sum()), **counts)


def unanswered(selected: np.ndarray) -> Answer:
    """A task deleted in Label Studio: its regions (``selected`` bool (H, W)) unlabelled."""
    n_regions, _ = regions_of(selected)
    return Answer(None, None, regions=n_regions, regions_unlabelled=n_regions)

"""Confusion matrix, per-class IoU and mIoU over 19 / 16 / 13 classes (docs/method.md section 4)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ripu.data.labels import CLASSES_13, CLASSES_16, CLASSES_19, IGNORE_INDEX, MIOU13_IN_16
from ripu.errors import RipuError
from ripu.record_names import MIOU, MIOU13


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Count (ground truth, prediction) pairs over the pixels whose target is not
    ``ignore_index``, on the tensors' device.

    Raises RipuError when shapes differ or a counted value lies outside ``[0, num_classes)``.

    Shape:
        pred, target: any equal shape, integer -> ``(num_classes, num_classes)`` int64,
        rows = ground truth, columns = prediction.
    """
    if pred.shape != target.shape:
        raise RipuError(f"confusion_matrix: prediction shape {tuple(pred.shape)} differs from "
                        f"target shape {tuple(target.shape)}; expected equal shapes")
    target = target.reshape(-1).long()
    pred = pred.reshape(-1).long().to(target.device)
    valid = target != ignore_index
    target, pred = target[valid], pred[valid]
    out_of_range = ((target < 0) | (target >= num_classes) | (pred < 0) | (pred >= num_classes))
    if bool(out_of_range.any()):
        raise RipuError(f"confusion_matrix: values outside [0, {num_classes}) that are not the "
                        f"ignore index {ignore_index}; expected class indices")
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(conf: torch.Tensor) -> torch.Tensor:
    """Intersection over union per class: ``TP / (TP + FP + FN)``; NaN for a class absent
    from both ground truth and prediction.

    Shape:
        ``(C, C)`` confusion matrix (rows = ground truth) -> ``(C,)`` float64
    """
    conf = conf.double()
    tp = conf.diagonal()
    union = conf.sum(0) + conf.sum(1) - tp
    return tp / union  # 0 / 0 = NaN where a class appears nowhere


def miou(iou: torch.Tensor, classes: Sequence[int] | None = None) -> float:
    """Mean IoU over ``classes`` (all when None), ignoring NaN entries; NaN when none is
    defined.

    Shape:
        iou ``(C,)`` -> float
    """
    if classes is not None:
        bad = [c for c in classes if not 0 <= c < iou.numel()]
        if bad:
            raise RipuError(f"miou: class indices {bad} outside [0, {iou.numel()})")
        iou = iou[list(classes)]
    return float(torch.nanmean(iou.double()))


def pixel_accuracy(conf: torch.Tensor) -> float:
    """Fraction of counted pixels predicted correctly; NaN when nothing was counted."""
    conf = conf.double()
    return float(conf.trace() / conf.sum())


def summarize(conf: torch.Tensor, class_names: Sequence[str]) -> dict:
    """Headline numbers of a confusion matrix.

    Returns ``{"miou": float, "pixel_accuracy": float, "iou": {class name: float}}`` plus
    ``"miou13"`` (mIoU*, over :data:`ripu.data.labels.MIOU13_IN_16`) for a 16-class set. Undefined values
    are NaN.
    """
    if len(class_names) != conf.shape[0]:
        raise RipuError(f"summarize: {len(class_names)} class names for a {conf.shape[0]}-class "
                        "confusion matrix; expected one name per class")
    iou = iou_per_class(conf).cpu()
    summary: dict = {
        MIOU: miou(iou),
        "pixel_accuracy": pixel_accuracy(conf),
        "iou": {name: float(v) for name, v in zip(class_names, iou.tolist(), strict=True)},
    }
    if len(class_names) == 16:
        summary[MIOU13] = miou(iou, MIOU13_IN_16)
    return summary


def default_class_names(num_classes: int) -> list[str]:
    """The benchmark's class names for 19, 16 or 13 classes, else ``class_0, class_1, ...``."""
    names = {19: CLASSES_19, 16: CLASSES_16, 13: CLASSES_13}.get(num_classes)
    return list(names) if names else [f"class_{i}" for i in range(num_classes)]

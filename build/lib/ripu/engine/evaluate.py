"""Evaluation: predict each image at the input size, upsample to the label, accumulate the
confusion matrix; optional horizontal-flip test-time augmentation (docs/method.md section 4).

Predictions come from :func:`ripu.inference.predict`; ``eval_mode`` and ``predict_logits``
are re-exported from there."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ripu.errors import RipuError
from ripu.inference import eval_mode, predict, predict_logits
from ripu.metrics import confusion_matrix, default_class_names, iou_per_class, miou, summarize

__all__ = ["EvalResult", "eval_mode", "evaluate", "predict_logits"]


@dataclass(frozen=True)
class EvalResult:
    """Outcome of :func:`evaluate`.

    Shape:
        confusion ``(C, C)`` int64 on the CPU (rows = ground truth); iou ``(C,)`` float64.
    """

    confusion: torch.Tensor
    iou: torch.Tensor
    miou: float
    summary: dict


def _resize(image: torch.Tensor, input_size: tuple[int, int] | None) -> torch.Tensor:
    """Resize ``(N, 3, h, w)`` images to ``input_size`` (W, H), bilinear, antialiased."""
    if input_size is None:
        return image
    width, height = input_size
    if image.shape[-2:] == (height, width):
        return image
    return F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False,
                         antialias=True)


def evaluate(
    model: nn.Module,
    dataset: Dataset | Sequence[dict[str, Any]],
    num_classes: int,
    *,
    input_size: tuple[int, int] | None = None,
    flip: bool = False,
    device: str | torch.device = "cpu",
    batch_size: int = 1,
    num_workers: int = 0,
    class_names: Sequence[str] | None = None,
    progress: bool = False,
) -> EvalResult:
    """mIoU of ``model`` on ``dataset`` (items ``{"image": (3, H, W) float normalised,
    "label": (H, W) int64 with 255 ignore, ...}``).

    Each image is resized to ``input_size`` (W, H) when given, predicted, the logits
    upsampled to the label's size (:func:`ripu.inference.predict`, with flip TTA when
    ``flip``) and the confusion matrix accumulated on ``device``. The model runs in eval mode under
    ``torch.no_grad`` and gets its training flags back afterwards; it must already be on
    ``device``. ``class_names`` defaults
    to ``dataset.class_names`` or the benchmark's names for ``num_classes``.
    """
    if batch_size < 1:
        raise RipuError(f"evaluate: batch_size must be >= 1, got {batch_size}")
    if class_names is None:
        class_names = getattr(dataset, "class_names", None) or default_class_names(num_classes)
    if len(class_names) != num_classes:
        raise RipuError(f"evaluate: {len(class_names)} class names for {num_classes} classes")
    device = torch.device(device)
    param = next(model.parameters(), None)
    if param is not None and param.device.type != device.type:
        raise RipuError(f"evaluate: the model is on {param.device}, expected it on {device}")
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    for batch in predict(model, dataset, device=device, batch_size=batch_size, flip=flip,
                         num_classes=num_classes, prepare=lambda x: _resize(x, input_size),
                         num_workers=num_workers, progress=progress, desc="evaluate"):
        labels = torch.stack([item["label"] for item in batch.items]).to(device)
        conf += confusion_matrix(batch.logits.argmax(1), labels, num_classes)
    conf = conf.cpu()
    iou = iou_per_class(conf)
    return EvalResult(confusion=conf, iou=iou, miou=miou(iou),
                      summary=summarize(conf, class_names))

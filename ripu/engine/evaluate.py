"""Evaluation: predict each image at the input size, upsample to the label, accumulate the
confusion matrix; optional horizontal-flip test-time augmentation (METHOD.md section 4)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ripu.errors import RipuError
from ripu.metrics import confusion_matrix, default_class_names, iou_per_class, miou, summarize


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


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode; restore every submodule's training flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in flags:
            m.training = training


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: torch.Tensor, out_size: tuple[int, int], flip: bool = False
) -> torch.Tensor:
    """Network logits upsampled (bilinear, ``align_corners=True``) to ``out_size`` (H, W).

    With ``flip``, the image and its horizontal mirror are both predicted, the mirror's
    softmax is flipped back and the two softmaxes are averaged; the result is returned as
    the log of that average, so its softmax is the averaged probability and its argmax the
    TTA prediction. The caller sets the model's mode (see :func:`eval_mode`).

    Shape:
        images ``(N, 3, h, w)`` -> ``(N, C, H, W)``
    """

    def upsampled(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(model(x), size=tuple(out_size), mode="bilinear", align_corners=True)

    logits = upsampled(images)
    if not flip:
        return logits
    mirrored = upsampled(images.flip(-1)).flip(-1)
    prob = 0.5 * (logits.softmax(1) + mirrored.softmax(1))
    return prob.clamp_min(torch.finfo(prob.dtype).tiny).log()


def _resize(image: torch.Tensor, input_size: tuple[int, int] | None) -> torch.Tensor:
    """Resize ``(N, 3, h, w)`` images to ``input_size`` (W, H), bilinear, antialiased."""
    if input_size is None:
        return image
    width, height = input_size
    if image.shape[-2:] == (height, width):
        return image
    return F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False,
                         antialias=True)


def _as_list(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return batch


def _groups(batch: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Split a batch into runs of items whose image and label sizes agree (stackable)."""
    group: list[dict[str, Any]] = []
    for item in batch:
        key = (tuple(item["image"].shape), tuple(item["label"].shape))
        if group and key != (tuple(group[0]["image"].shape), tuple(group[0]["label"].shape)):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


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
    upsampled to the label's size (:func:`predict_logits`, with flip TTA when ``flip``) and
    the confusion matrix accumulated on ``device``. The model runs in eval mode under
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
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_as_list)
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    with eval_mode(model):
        for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
            for group in _groups(batch):
                images = torch.stack([item["image"] for item in group]).to(device)
                labels = torch.stack([item["label"] for item in group]).to(device)
                logits = predict_logits(model, _resize(images, input_size),
                                        tuple(labels.shape[-2:]), flip=flip)
                if logits.shape[1] != num_classes:
                    raise RipuError(f"evaluate: the model outputs {logits.shape[1]} classes, "
                                    f"expected {num_classes}")
                conf += confusion_matrix(logits.argmax(1), labels, num_classes)
    conf = conf.cpu()
    iou = iou_per_class(conf)
    return EvalResult(confusion=conf, iou=iou, miou=miou(iou),
                      summary=summarize(conf, class_names))

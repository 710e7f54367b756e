"""Batched inference in eval mode: the one prediction loop of evaluation, selection and LSE.

:func:`predict` walks a dataset (or some of its positions) in order, stacks consecutive
items whose image and output sizes agree into batches of at most ``batch_size``, runs the
model once per batch in eval mode under ``no_grad`` and yields the logits upsampled
(bilinear, ``align_corners=True``) to each item's label size: in one step (evaluation, as the
authors' ``test.py:41-42``), or in two, network output -> input size -> label size (selection,
as the authors' ``core/models/classifier.py:31-32`` called with the input size at
``core/active/build.py:113``, then ``build.py:124``). The model's training flags are restored
afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ripu.errors import RipuError


class Prediction(NamedTuple):
    """One batch of :func:`predict`: dataset positions, their items and logits.

    Shape:
        logits ``(N, C, H, W)`` float32 on the model's device, at the items' label size.
    """

    positions: list[int]
    items: list[dict[str, Any]]
    logits: Tensor


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


def check_logits(logits: Any, n: int, num_classes: int | None = None) -> None:
    """RipuError unless ``logits`` is ``(n, num_classes, h, w)`` (any ``C`` when None)."""
    shape = getattr(logits, "shape", None)
    if not isinstance(logits, Tensor) or logits.dim() != 4 or shape[0] != n or \
            (num_classes is not None and shape[1] != num_classes):
        got = tuple(shape) if shape is not None else type(logits).__name__
        raise RipuError(f"model output: expected logits (N, {num_classes or 'C'}, h, w) for "
                        f"{n} images, got {got}")


def upsample(logits: Tensor, out_size: tuple[int, int], via: tuple[int, int] | None = None
             ) -> Tensor:
    """Bilinear (``align_corners=True``) upsampling of logits to ``out_size`` (H, W), first to
    ``via`` (the input's size: the authors' two-step selection path) when given.

    Shape:
        logits ``(N, C, h, w)`` -> ``(N, C, H, W)`` float32
    """
    logits = logits.float()
    for size in ((tuple(via), tuple(out_size)) if via is not None else (tuple(out_size),)):
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
    return logits


@torch.no_grad()
def predict_logits(model: nn.Module, images: Tensor, out_size: tuple[int, int],
                   flip: bool = False, num_classes: int | None = None,
                   two_step: bool = False) -> Tensor:
    """Network logits upsampled (bilinear, ``align_corners=True``) to ``out_size`` (H, W);
    with ``two_step`` first to the images' own size (:func:`upsample`).

    With ``flip``, the image and its horizontal mirror are both predicted, the mirror's
    softmax is flipped back and the two softmaxes are averaged; the result is returned as
    the log of that average, so its softmax is the averaged probability and its argmax the
    TTA prediction. The caller sets the model's mode (see :func:`eval_mode`).

    Shape:
        images ``(N, 3, h, w)`` -> ``(N, C, H, W)``
    """

    def upsampled(x: Tensor) -> Tensor:
        logits = model(x)
        check_logits(logits, x.shape[0], num_classes)
        return upsample(logits, out_size, tuple(x.shape[-2:]) if two_step else None)

    logits = upsampled(images)
    if not flip:
        return logits
    mirrored = upsampled(images.flip(-1)).flip(-1)
    prob = 0.5 * (logits.softmax(1) + mirrored.softmax(1))
    return prob.clamp_min(torch.finfo(prob.dtype).tiny).log()


def output_size(item: dict[str, Any]) -> tuple[int, int]:
    """Where an item's logits go: its label's size, or its image's when it has no label."""
    label = item.get("label")
    ref = label if label is not None else item["image"]
    return int(ref.shape[-2]), int(ref.shape[-1])


def _items(dataset: Sequence[dict[str, Any]], positions: Sequence[int],
           num_workers: int) -> Iterable[dict[str, Any]]:
    if not num_workers:
        return (dataset[p] for p in positions)
    return DataLoader(Subset(dataset, list(positions)), batch_size=None, shuffle=False,
                      num_workers=num_workers)


def predict(model: nn.Module, dataset: Sequence[dict[str, Any]],
            positions: Iterable[int] | None = None, *, device: str | torch.device = "cpu",
            batch_size: int = 1, flip: bool = False, num_classes: int | None = None,
            prepare: Callable[[Tensor], Tensor] | None = None, num_workers: int = 0,
            progress: bool = False, desc: str = "predict", two_step: bool = False
            ) -> Iterator[Prediction]:
    """Predict ``dataset[p]`` for each position ``p`` (default: all), in order, in batches.

    Items are dicts ``{"image": float (3, H, W) normalised, "label": (H, W) | absent, ...}``.
    Consecutive items whose image shapes and output sizes (:func:`output_size`) agree share
    one forward pass of at most ``batch_size`` images; ``prepare`` maps the stacked images
    before the model (e.g. a resize); ``flip`` averages with the mirrored prediction
    (:func:`predict_logits`); ``two_step`` upsamples through the input size first (the
    authors' selection path). The model must already be on ``device``; it runs in eval mode
    under ``no_grad`` and gets its training flags back afterwards, also when the consumer
    stops early. ``num_workers > 0`` reads items in DataLoader worker processes.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise RipuError(f"batch_size: expected a positive integer, got {batch_size!r}")
    positions = list(range(len(dataset)) if positions is None else positions)
    device = torch.device(device)

    def run(pending: list[tuple[int, dict[str, Any]]]) -> Prediction:
        images = torch.stack([item["image"] for _, item in pending]).to(device)
        if prepare is not None:
            images = prepare(images)
        logits = predict_logits(model, images, output_size(pending[0][1]), flip=flip,
                                num_classes=num_classes, two_step=two_step)
        return Prediction([p for p, _ in pending], [item for _, item in pending], logits)

    def key(item: dict[str, Any]) -> tuple:
        return tuple(item["image"].shape), output_size(item)

    with eval_mode(model), torch.no_grad(), tqdm(total=len(positions), desc=desc,
                                                  disable=not progress, leave=False) as bar:
        pending: list[tuple[int, dict[str, Any]]] = []
        for pos, item in zip(positions, _items(dataset, positions, num_workers), strict=True):
            if pending and (len(pending) == batch_size or key(item) != key(pending[0][1])):
                yield run(pending)
                bar.update(len(pending))
                pending = []
            pending.append((pos, item))
        if pending:
            yield run(pending)
            bar.update(len(pending))

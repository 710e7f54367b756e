"""Error anatomy: can impurity see a target's errors, and where do a strategy's labels land?

A pixel is *interior* when its clipped 3x3 window holds one ground-truth class and no ignore
pixel, a *boundary* pixel when it is labelled but not interior. Of a model's wrong target
pixels (prediction != a non-ignore label), the anatomy counts those in *prediction-pure*
3x3 windows (the prediction is one class there: region impurity is zero, whatever the
error) and those in ground-truth interiors; of a strategy's labelled pixels, those on
ground-truth boundaries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from torch import nn

from ripu.acquisition import oracle
from ripu.acquisition.scores import pure_windows
from ripu.data.labels import IGNORE_INDEX as IGNORE
from ripu.inference import predict

RADIUS = 1  # 3x3 windows


def interior(label: torch.Tensor) -> torch.Tensor:
    """Labelled pixels whose 3x3 window holds one class. Shape: (H, W) -> (H, W) bool."""
    return oracle.interior(label, RADIUS)


def boundary(label: torch.Tensor) -> torch.Tensor:
    """Labelled pixels that are not interior. Shape: (H, W) -> (H, W) bool."""
    return (label != IGNORE) & ~interior(label)


def error_counts(logits: torch.Tensor, label: torch.Tensor) -> Counter:
    """``labelled``, ``wrong``, ``wrong_pred_pure`` and ``wrong_gt_interior`` pixel counts.

    Shape:
        logits: (C, H, W); label: (H, W) integer (255: ignore)
    """
    label = label.to(logits.device)
    pred = oracle.prediction(logits)
    wrong = oracle.wrong_pixels(logits, label, pred)
    pure = pure_windows(pred, RADIUS)
    return Counter({"labelled": int((label != IGNORE).sum()), "wrong": int(wrong.sum()),
                    "wrong_pred_pure": int((wrong & pure).sum()),
                    "wrong_gt_interior": int((wrong & interior(label)).sum())})


def shares(counts: Counter) -> dict[str, float]:
    """``wrong_share`` of the labelled pixels; ``pred_pure_share`` and ``gt_interior_share``
    of the wrong ones (0 when nothing is wrong)."""
    wrong = counts["wrong"]
    return {"wrong_share": counts["wrong"] / max(counts["labelled"], 1),
            "pred_pure_share": counts["wrong_pred_pure"] / wrong if wrong else 0.0,
            "gt_interior_share": counts["wrong_gt_interior"] / wrong if wrong else 0.0}


def model_anatomy(model: nn.Module, dataset: Sequence, *, device: torch.device | str = "cpu",
                  batch_size: int = 8, two_step: bool = True) -> dict[str, float]:
    """:func:`shares` of ``model`` over ``dataset`` (items with ``image`` and ``label``), with
    the logits brought to each label's size as selection does; the counts too."""
    counts: Counter = Counter()
    for batch in predict(model, dataset, device=device, batch_size=batch_size,
                         two_step=two_step):
        for item, logits in zip(batch.items, batch.logits, strict=True):
            counts += error_counts(logits, item["label"])
    return {**shares(counts), **{k: int(counts[k]) for k in
                                 ("labelled", "wrong", "wrong_pred_pure", "wrong_gt_interior")}}


def labelled_on_boundary(label: torch.Tensor, mask: torch.Tensor) -> int:
    """Labelled pixels of ``mask`` on ground-truth boundaries. Shape: (H, W), (H, W) bool."""
    return int((mask & boundary(label)).sum())

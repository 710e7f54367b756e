"""The training objective: a trial kind's loss terms and their weights (docs/method.md sections 2, 3).

Terms (names as in :data:`ripu.kinds.LOSS_TERMS`), each a mean over the batch's labelled
pixels:

- ``src``: CE on source labels; ``lc``: local consistency of the source prediction.
- ``tgt``: CE on the target labels (selected pixels, all pixels, or LSE patch labels);
  ``tgt_focal``: the focal loss on them (LSE).
- ``nl``: negative learning on the target prediction.
- ``pseudo`` / ``pseudo_focal``: CE and focal loss on LSE pseudo-labels (hybrid).

Weights come from the ``loss`` section: ``src`` source_ce, ``lc`` lc, ``tgt`` and ``pseudo``
target_ce, ``nl`` nl, ``tgt_focal`` and ``pseudo_focal`` focal. A term whose weight
(``lc``, ``nl``) is 0 is not computed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from ripu import losses
from ripu.config import LossConfig

# logits(images (N, 3, h, w), size (H, W)) -> (N, C, H, W) float logits on the loss device
Forward = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]


def loss_weights(loss: LossConfig) -> dict[str, float]:
    """Weight of every loss term under the ``loss`` section."""
    return {"src": loss.source_ce, "lc": loss.lc, "tgt": loss.target_ce, "nl": loss.nl,
            "tgt_focal": loss.focal, "pseudo": loss.target_ce, "pseudo_focal": loss.focal}


def _label_size(part: Mapping[str, Any]) -> tuple[int, int]:
    """(H, W) of a batch part's labels, where its logits are compared with them."""
    return tuple(part["label"].shape[-2:])


class Objective:
    """The weighted sum of a kind's loss terms.

    ``terms``: the kind's terms (``ripu.kinds.TrialKind.terms``); ``loss``: the weights and
    the NL threshold and focal gamma. ``joint``: source and target images of equal size go
    through one forward pass (only for a model whose outputs are per image,
    :attr:`ripu.models.common.SegmentationModel.per_image`): the same logits, a step
    1.12x faster for the small CPU network (``make bench``, ``train_step_speedup``).
    """

    def __init__(self, terms: tuple[str, ...], loss: LossConfig, joint: bool = False) -> None:
        self.wanted = frozenset(terms)
        self.loss = loss
        self.weights = loss_weights(loss)
        self.joint = joint

    def logits(self, batch: Mapping[str, Any], forward: Forward
               ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Source and target logits at their labels' sizes (None for a batch not used):
        one forward pass over both when ``joint`` and their image and label sizes agree."""
        src, tgt = batch["source"], batch["target"]
        src = src if src is not None and "src" in self.wanted else None
        if (self.joint and src is not None and tgt is not None
                and src["image"].shape[1:] == tgt["image"].shape[1:]
                and _label_size(src) == _label_size(tgt)):
            both = forward(torch.cat([src["image"], tgt["image"]]), _label_size(src))
            return tuple(both.split([len(src["image"]), len(tgt["image"])]))
        return tuple(None if part is None else forward(part["image"], _label_size(part))
                     for part in (src, tgt))

    def terms(self, batch: Mapping[str, Any], forward: Forward,
              device: torch.device) -> dict[str, torch.Tensor]:
        """Unweighted loss terms of one batch ``{"source": {...} | None, "target": ...}``.

        Shape:
            source image (Ns, 3, h, w), label (Ns, H, W); target image (Nt, 3, h, w),
            label (Nt, H, W), pseudo (Nt, H, W); each term a scalar.
        """
        terms: dict[str, torch.Tensor] = {}
        wanted, loss = self.wanted, self.loss
        src, tgt = batch["source"], batch["target"]
        logits, tgt_logits = self.logits(batch, forward)
        if logits is not None:
            label = src["label"].to(device)
            terms["src"] = losses.cross_entropy(logits, label)
            if "lc" in wanted and loss.lc > 0:
                terms["lc"] = losses.local_consistency(logits.softmax(1), label)
        if tgt_logits is not None:
            label, logits = tgt["label"].to(device), tgt_logits
            if "tgt" in wanted:
                terms["tgt"] = losses.cross_entropy(logits, label)
            if "tgt_focal" in wanted:
                terms["tgt_focal"] = losses.focal_loss(logits, label, loss.focal_gamma)
            if "nl" in wanted and loss.nl > 0:
                terms["nl"] = losses.negative_learning(logits.softmax(1), loss.nl_threshold)
            if "pseudo" in wanted:
                pseudo = tgt["pseudo"].to(device)
                terms["pseudo"] = losses.cross_entropy(logits, pseudo)
                if "pseudo_focal" in wanted:
                    terms["pseudo_focal"] = losses.focal_loss(logits, pseudo, loss.focal_gamma)
        return terms

    def total(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor | int:
        """``sum_k weight_k * term_k`` (0 when there is no term)."""
        return sum(self.weights[k] * v for k, v in terms.items())

    def logged_total(self, values: Mapping[str, float]) -> float:
        """The same sum over the terms' Python values, for logging."""
        return sum(self.weights[k] * v for k, v in values.items())

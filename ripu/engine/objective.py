"""The training objective: a trial kind's loss terms and their weights (METHOD.md 2, 3).

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


class Objective:
    """The weighted sum of a kind's loss terms.

    ``terms``: the kind's terms (``ripu.kinds.TrialKind.terms``); ``loss``: the weights and
    the NL threshold and focal gamma.
    """

    def __init__(self, terms: tuple[str, ...], loss: LossConfig) -> None:
        self.wanted = frozenset(terms)
        self.loss = loss
        self.weights = loss_weights(loss)

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
        if src is not None and "src" in wanted:
            label = src["label"].to(device)
            logits = forward(src["image"], label.shape[-2:])
            terms["src"] = losses.cross_entropy(logits, label)
            if "lc" in wanted and loss.lc > 0:
                terms["lc"] = losses.local_consistency(logits.softmax(1), label)
        if tgt is not None:
            label = tgt["label"].to(device)
            logits = forward(tgt["image"], label.shape[-2:])
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

    def logged_total(self, terms: Mapping[str, torch.Tensor]) -> float:
        """The same sum on Python floats, for logging."""
        return sum(self.weights[k] * v.item() for k, v in terms.items())

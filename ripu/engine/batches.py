"""Deterministic training batches: batch ``it`` depends only on (seed, it), so runs resume exactly.

:class:`IterationBatches` is a map-style dataset indexed by iteration; a DataLoader over it
(``batch_size=None``) prefetches whole batches in worker processes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ripu.data import SegmentationDataset
from ripu.data.labels import IGNORE_INDEX
from ripu.data.sampling import SubEpochDraws, check_balance_rule, draw_class_balanced
from ripu.errors import RipuError
from ripu.seeding import seeded_generator

ORDERS = ("random", "epochs")


def _sub_epoch_generator(seed: int, sub_epoch: int) -> torch.Generator:
    """The generator of source sub-epoch ``sub_epoch`` (authors' draw rule; stream 3)."""
    return seeded_generator(seed, sub_epoch, 3)


@dataclass
class TargetLabels:
    """Which target pixels supervise training, per image id, at the target training size.

    ``labelled``: bool (H, W) oracle masks (None: every pixel is labelled, the supervised
    bound). ``pseudo``: uint8 (H, W) pseudo-label maps, 255 where none (hybrid trials).
    ``labels``: uint8 (H, W) maps at the label state's resolution that replace the dataset's
    labels, 255 where none (rounds labelled by people, :mod:`ripu.annotate`; None: the
    ground-truth oracle).
    """

    labelled: Mapping[str, np.ndarray] | None = None
    pseudo: Mapping[str, np.ndarray] | None = None
    labels: Mapping[str, np.ndarray] | None = None


class IterationBatches(torch.utils.data.Dataset):
    """Item ``it``: ``{"source": {...} | None, "target": {...} | None}`` for iteration ``it``.

    Images are drawn independently (``order="random"``) or in shuffled passes without
    replacement counted from iteration ``first`` (``order="epochs"``: the authors'
    ``DataLoader(shuffle=True)`` over a repeated list, BIT-DA/RIPU train.py:68-71 with
    core/datasets/cityscapes.py:82-83, MNaseerSubhani/LSE data/__init__.py:21 and :43).
    Source items: random (or class-balanced by ``balance_rule``, see
    :mod:`ripu.data.sampling`) images with the dataset's random augmentation drawn from the
    iteration's generator. Target items: labels masked to the labelled pixels, plus a
    ``pseudo`` map when pseudo-labels are given, flipped together with the image. A target
    label or mask at another size than the image (selection at label resolution) is first
    resized to the image's size by the target transform's rule (``label_to``: PIL NEAREST
    under ``pil_bicubic``, as the authors' ``Resize`` of label and mask,
    BIT-DA/RIPU core/datasets/transform.py:69 with core/datasets/cityscapes.py:264-270).

    Shape:
        source image (Ns, 3, Hs, Ws), label (Ns, Hs, Ws); target image (Nt, 3, Ht, Wt),
        label (Nt, Ht, Wt), pseudo (Nt, Ht, Wt).
    """

    def __init__(self, seed: int, *, source: SegmentationDataset | None = None,
                 batch_source: int = 0, class_lists: Mapping[int, list[int]] | None = None,
                 target: SegmentationDataset | None = None, batch_target: int = 0,
                 target_labels: TargetLabels | None = None, flip: bool = True,
                 length: int = 2**62, balance_rule: str = "uniform", order: str = "random",
                 first: int = 0) -> None:
        if order not in ORDERS:
            raise RipuError(f"draw order {order!r}: expected one of {', '.join(ORDERS)}")
        self.seed, self.length, self.order, self.first = seed, length, order, first
        self.source, self.batch_source, self.class_lists = source, batch_source, class_lists
        self.target, self.batch_target = target, batch_target
        self.target_labels = target_labels or TargetLabels()
        self.flip = flip
        self.balance_rule = check_balance_rule(balance_rule)
        self._passes: dict[int, tuple[int, list[int]]] = {}
        self._draws = (SubEpochDraws(class_lists, functools.partial(_sub_epoch_generator, seed))
                       if class_lists and balance_rule == "authors" else None)

    def __len__(self) -> int:
        return self.length

    def _indices(self, it: int, size: int, batch: int, stream: int,
                 g: torch.Generator) -> list[int]:
        """``batch`` indices into ``size`` images for iteration ``it``: independent uniform
        draws from ``g`` (order ``random``), or slots ``(it - first) * batch + b`` of
        consecutive shuffled passes, pass ``e`` a permutation from ``(seed, first, e,
        stream)`` (order ``epochs``)."""
        if self.order == "random":
            return torch.randint(size, (batch,), generator=g).tolist()
        out = []
        for slot in range((it - self.first) * batch, (it - self.first + 1) * batch):
            epoch, k = divmod(slot, size)
            if self._passes.get(stream, (None,))[0] != epoch:
                g_pass = seeded_generator(self.seed, self.first, epoch, stream)
                perm = torch.randperm(size, generator=g_pass).tolist()
                self._passes[stream] = (epoch, perm)
            out.append(self._passes[stream][1][k])
        return out

    def _source(self, it: int) -> dict[str, torch.Tensor]:
        g = seeded_generator(self.seed, it, 1)
        if self._draws is not None:
            first = it * self.batch_source
            idx = [self._draws(first + b) for b in range(self.batch_source)]
        elif self.class_lists:
            idx = draw_class_balanced(self.class_lists, self.batch_source, g)
        else:
            idx = self._indices(it, len(self.source), self.batch_source, 4, g)
        images, labels = [], []
        for i in idx:
            image, label = self.source.sample(i, g)
            images.append(image)
            labels.append(label)
        return {"image": torch.stack(images), "label": torch.stack(labels),
                "index": torch.tensor(idx)}

    def _target(self, it: int) -> dict[str, torch.Tensor]:
        g = seeded_generator(self.seed, it, 2)
        idx = self._indices(it, len(self.target), self.batch_target, 5, g)
        images, labels, pseudos = [], [], []
        people, pseudo_maps = self.target_labels.labels, self.target_labels.pseudo
        for i in idx:
            item = self.target[i]
            image, label = item["image"], item["label"]
            size = (image.shape[-1], image.shape[-2])
            if people is not None:  # where this round's labels come from: people, not the oracle
                label = self._at_size(people.get(item["id"]), image)
            elif label.shape != image.shape[-2:]:
                label = self._at_size(label.numpy().astype(np.uint8), image)
            if self.target_labels.labelled is not None:
                mask = self.target_labels.labelled[item["id"]]
                if mask.ndim and mask.shape != image.shape[-2:]:  # 0-d: nothing labelled yet
                    mask = self.target.transform.label_to(mask, size)
                mask = torch.from_numpy(np.ascontiguousarray(mask))
                label = torch.where(mask, label, torch.full_like(label, IGNORE_INDEX))
            pseudo = self._at_size(None if pseudo_maps is None else pseudo_maps.get(item["id"]),
                                   image)
            if self.flip and bool(torch.rand(1, generator=g) < 0.5):
                image, label, pseudo = image.flip(-1), label.flip(-1), pseudo.flip(-1)
            images.append(image)
            labels.append(label)
            pseudos.append(pseudo)
        return {"image": torch.stack(images), "label": torch.stack(labels),
                "pseudo": torch.stack(pseudos), "index": torch.tensor(idx)}

    def _at_size(self, lab: np.ndarray | None, image: torch.Tensor) -> torch.Tensor:
        """A uint8 (h, w) label map at ``image``'s size (resized as the target's labels), as
        long; all IGNORE_INDEX where ``lab`` is None (no map for this image)."""
        if lab is None:
            return torch.full(image.shape[-2:], IGNORE_INDEX, dtype=torch.long)
        if lab.shape != image.shape[-2:]:
            lab = self.target.transform.label_to(lab, (image.shape[-1], image.shape[-2]))
        return torch.from_numpy(np.ascontiguousarray(lab)).long()

    def __getitem__(self, it: int) -> dict[str, dict[str, torch.Tensor] | None]:
        return {
            "source": self._source(it) if self.source is not None and self.batch_source else None,
            "target": self._target(it) if self.target is not None and self.batch_target else None,
        }


def loader(batches: torch.utils.data.Dataset, start: int, end: int,
           workers: int = 0) -> torch.utils.data.DataLoader:
    """Batches ``start .. end-1`` in order, prefetched by ``workers`` processes."""
    return torch.utils.data.DataLoader(batches, batch_size=None, sampler=range(start, end),
                                       num_workers=workers, persistent_workers=False,
                                       pin_memory=torch.cuda.is_available())

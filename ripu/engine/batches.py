"""Deterministic training batches: batch ``it`` depends only on (seed, it), so runs resume exactly.

:class:`IterationBatches` is a map-style dataset indexed by iteration; a DataLoader over it
(``batch_size=None``) prefetches whole batches in worker processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ripu.data import SegmentationDataset
from ripu.data.sampling import draw_class_balanced
from ripu.seeding import seeded_generator

IGNORE = 255


@dataclass
class TargetLabels:
    """Which target pixels supervise training, per image id, at the target training size.

    ``labelled``: bool (H, W) oracle masks (None: every pixel is labelled, the supervised
    bound). ``pseudo``: uint8 (H, W) pseudo-label maps, 255 where none (hybrid trials).
    """

    labelled: Mapping[str, np.ndarray] | None = None
    pseudo: Mapping[str, np.ndarray] | None = None


class IterationBatches(torch.utils.data.Dataset):
    """Item ``it``: ``{"source": {...} | None, "target": {...} | None}`` for iteration ``it``.

    Source items: random (optionally class-balanced) images with the dataset's random
    augmentation drawn from the iteration's generator. Target items: labels masked to the
    labelled pixels, plus a ``pseudo`` map when pseudo-labels are given, flipped together
    with the image.

    Shape:
        source image (Ns, 3, Hs, Ws), label (Ns, Hs, Ws); target image (Nt, 3, Ht, Wt),
        label (Nt, Ht, Wt), pseudo (Nt, Ht, Wt).
    """

    def __init__(self, seed: int, *, source: SegmentationDataset | None = None,
                 batch_source: int = 0, class_lists: Mapping[int, list[int]] | None = None,
                 target: SegmentationDataset | None = None, batch_target: int = 0,
                 target_labels: TargetLabels | None = None, flip: bool = True,
                 length: int = 2**62) -> None:
        self.seed, self.length = seed, length
        self.source, self.batch_source, self.class_lists = source, batch_source, class_lists
        self.target, self.batch_target = target, batch_target
        self.target_labels = target_labels or TargetLabels()
        self.flip = flip

    def __len__(self) -> int:
        return self.length

    def _source(self, it: int) -> dict[str, torch.Tensor]:
        g = seeded_generator(self.seed, it, 1)
        if self.class_lists:
            idx = draw_class_balanced(self.class_lists, self.batch_source, g)
        else:
            idx = torch.randint(len(self.source), (self.batch_source,), generator=g).tolist()
        images, labels = [], []
        for i in idx:
            image, label = self.source.transform(self.source.read_image(i),
                                                 self.source.read_label(i), g)
            images.append(image)
            labels.append(label)
        return {"image": torch.stack(images), "label": torch.stack(labels),
                "index": torch.tensor(idx)}

    def _target(self, it: int) -> dict[str, torch.Tensor]:
        g = seeded_generator(self.seed, it, 2)
        idx = torch.randint(len(self.target), (self.batch_target,), generator=g).tolist()
        images, labels, pseudos = [], [], []
        for i in idx:
            item = self.target[i]
            image, label = item["image"], item["label"]
            if self.target_labels.labelled is not None:
                mask = torch.from_numpy(self.target_labels.labelled[item["id"]])
                label = torch.where(mask, label, torch.full_like(label, IGNORE))
            pseudo = torch.full_like(label, IGNORE)
            if self.target_labels.pseudo is not None and item["id"] in self.target_labels.pseudo:
                pseudo = torch.from_numpy(self.target_labels.pseudo[item["id"]]).long()
            if self.flip and bool(torch.rand(1, generator=g) < 0.5):
                image, label, pseudo = image.flip(-1), label.flip(-1), pseudo.flip(-1)
            images.append(image)
            labels.append(label)
            pseudos.append(pseudo)
        return {"image": torch.stack(images), "label": torch.stack(labels),
                "pseudo": torch.stack(pseudos), "index": torch.tensor(idx)}

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

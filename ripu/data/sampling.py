"""Class-balanced sampling of source images: per-class image lists and a torch Sampler."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Sampler
from tqdm import tqdm

from ripu.errors import RipuError
from ripu.io import write_json


class LabelledDataset(Protocol):
    """What ``class_image_lists`` needs of a dataset."""

    num_classes: int

    @property
    def ids(self) -> list[str]: ...

    def __len__(self) -> int: ...

    def read_label(self, index: int) -> np.ndarray: ...


def dataset_key(dataset: LabelledDataset) -> str:
    """A hash of the dataset's image ids and number of classes and, for a dataset on disk
    (``items`` of (image, label, id)), each label file's size and mtime: the cache key, so a
    replaced or damaged label file invalidates the cache (and is read, and checked, again)."""
    stamps = []
    for item in getattr(dataset, "items", ()):
        st = os.stat(item[1])
        stamps.append([st.st_size, st.st_mtime_ns])
    payload = json.dumps({"ids": list(dataset.ids), "num_classes": int(dataset.num_classes),
                          "labels": stamps})
    return hashlib.sha256(payload.encode()).hexdigest()


def classes_present(label: np.ndarray, num_classes: int) -> list[int]:
    """Sorted class indices present in a mapped label (255 and other ids >= num_classes skipped).

    Shape:
        label: (H, W) uint8
    """
    counts = np.bincount(np.asarray(label, dtype=np.uint8).ravel(), minlength=256)
    return np.flatnonzero(counts[:num_classes]).tolist()


def _load_cache(path: Path, key: str, num_classes: int, size: int) -> dict[int, list[int]] | None:
    """The cached lists if the file exists, parses, matches ``key`` and is well formed."""
    try:
        data = json.loads(path.read_text())
        if data.get("key") != key:
            return None
        lists = {int(c): [int(i) for i in v] for c, v in data["class_lists"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if set(lists) != set(range(num_classes)):
        return None
    if any(not 0 <= i < size for v in lists.values() for i in v):
        return None
    return lists


def class_image_lists(
    dataset: LabelledDataset,
    cache_path: str | os.PathLike | None = None,
    progress: bool = True,
    workers: int = 1,
) -> dict[int, list[int]]:
    """For each class 0..num_classes-1, the sorted indices of images whose label holds it.

    Read from ``cache_path`` (JSON) when it holds lists for the same ids and number of
    classes; else computed (``workers`` threads decode labels) and written there atomically.
    """
    num_classes, size = int(dataset.num_classes), len(dataset)
    key = dataset_key(dataset)
    cache = Path(cache_path) if cache_path is not None else None
    if cache is not None:
        cached = _load_cache(cache, key, num_classes, size)
        if cached is not None:
            return cached

    def present(index: int) -> list[int]:
        return classes_present(dataset.read_label(index), num_classes)

    lists: dict[int, list[int]] = {c: [] for c in range(num_classes)}
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(present, range(size)) if workers > 1 else map(present, range(size))
        bar = tqdm(results, total=size, desc="class image lists", disable=not progress)
        for index, classes in enumerate(bar):
            for c in classes:
                lists[c].append(index)
    if cache is not None:
        write_json(cache, {
            "key": key, "num_classes": num_classes, "num_images": size,
            "class_lists": {str(c): v for c, v in lists.items()},
        })
    return lists


def draw_class_balanced(class_lists: Mapping[int, Sequence[int]], n: int,
                        generator: torch.Generator) -> list[int]:
    """``n`` image indices: each draws a class uniformly among the classes with at least one
    image, then an image uniformly from that class's list (two draws from ``generator``)."""
    classes = [c for c in sorted(class_lists) if len(class_lists[c])]
    out = []
    for _ in range(n):
        images = class_lists[classes[int(torch.randint(len(classes), (1,), generator=generator))]]
        out.append(int(images[int(torch.randint(len(images), (1,), generator=generator))]))
    return out


class ClassBalancedSampler(Sampler[int]):
    """Yield ``num_samples`` dataset indices: a class uniformly among the classes with at
    least one image, then an image uniformly from that class's list.

    With ``generator`` the draws continue its stream. Otherwise epoch ``e`` (``set_epoch``;
    it advances by one after each full pass) is drawn from a generator seeded with
    (``seed``, ``e``), so a run is deterministic for a seed and resumable at an epoch.
    """

    def __init__(
        self,
        class_lists: Mapping[int, Sequence[int]],
        num_samples: int,
        seed: int = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        if int(num_samples) != num_samples or num_samples <= 0:
            raise RipuError(f"num_samples must be a positive integer, got {num_samples!r}")
        self.classes = sorted(int(c) for c, v in class_lists.items() if len(v) > 0)
        if not self.classes:
            raise RipuError("class-balanced sampling needs at least one class with an image")
        self.class_lists = {int(c): list(v) for c, v in class_lists.items()}
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.generator = generator
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Draw the next pass as epoch ``epoch`` (ignored when a generator was given)."""
        self.epoch = int(epoch)

    def _epoch_generator(self) -> torch.Generator:
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(2, np.uint32)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

    def __iter__(self) -> Iterator[int]:
        gen = self.generator if self.generator is not None else self._epoch_generator()
        self.epoch += 1
        return iter(draw_class_balanced(self.class_lists, self.num_samples, gen))

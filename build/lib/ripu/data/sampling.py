"""Class-balanced sampling of source images: per-class image lists, the draw rules and a
torch Sampler.

Draw rules (``data.class_balance_rule``), one function for the sampler and the trainer's
batches (:func:`draw_class_balanced`):

- ``uniform``: a class uniformly among the classes with an image, then an image uniformly
  from its list.
- ``authors``: the authors' adaptive rule (BIT-DA/RIPU core/datasets/gtav.py:34-57, the same
  in synthia.py:36-59). Draws come in sub-epochs of 3,000 images; within one, class ``c`` is
  drawn with probability proportional to ``1 / log(1.01 + f_c)``, where ``f_c`` is the share
  of class ``c`` among the classes present in the images drawn so far in the sub-epoch (all
  ``f_c = 0`` before the first draw); the image is the next one of the class's list in a
  random order, reshuffled when the list is used up. Classes without images get weight 0
  (the authors' code fails on them), the reshuffle does not skip the first image (their
  ``ind[c] % (len - 1)``, gtav.py:52, does), and every sub-epoch starts each class list in a
  fresh random order instead of carrying the pointer over (so a sub-epoch depends only on
  its own seed and a run resumes at any iteration).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Sampler
from tqdm import tqdm

from ripu.errors import RipuError
from ripu.io import write_json

BALANCE_RULES = ("uniform", "authors")
SUB_EPOCH = 3000  # draws per sub-epoch of the authors' rule (core/datasets/gtav.py:34)


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


def check_balance_rule(rule: str) -> str:
    """Return ``rule`` if it is a known draw rule, else raise RipuError."""
    if rule not in BALANCE_RULES:
        raise RipuError(f"class balance rule {rule!r}: expected one of {', '.join(BALANCE_RULES)}")
    return rule


def adaptive_weights(counts: np.ndarray, available: np.ndarray) -> np.ndarray:
    """The authors' class probabilities: ``1 / log(1.01 + f_c)`` normalised, ``f = counts /
    counts.sum()`` (zeros while ``counts`` is all zero); 0 for classes not ``available``
    (core/datasets/gtav.py:42-47).

    Shape:
        counts: (C,) numbers; available: (C,) bool; returns (C,) float64 summing to 1
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    freq = counts / total if total > 0 else counts
    weights = np.where(available, 1.0 / np.log(1.0 + 1e-2 + freq), 0.0)
    return weights / weights.sum()


def _classes_with_images(class_lists: Mapping[int, Sequence[int]]) -> list[int]:
    classes = [c for c in sorted(class_lists) if len(class_lists[c])]
    if not classes:
        raise RipuError("class-balanced sampling needs at least one class with an image")
    return classes


def _draw_uniform(class_lists: Mapping[int, Sequence[int]], n: int,
                  generator: torch.Generator) -> list[int]:
    classes = _classes_with_images(class_lists)
    out = []
    for _ in range(n):
        images = class_lists[classes[int(torch.randint(len(classes), (1,), generator=generator))]]
        out.append(int(images[int(torch.randint(len(images), (1,), generator=generator))]))
    return out


def _draw_adaptive(class_lists: Mapping[int, Sequence[int]], n: int,
                   generator: torch.Generator) -> list[int]:
    """One sub-epoch of ``n`` draws of the authors' rule (see the module docstring)."""
    _classes_with_images(class_lists)
    size = 1 + max(int(c) for c in class_lists)
    lists = [np.asarray(class_lists.get(c, ()), dtype=np.int64) for c in range(size)]
    available = np.array([len(v) > 0 for v in lists])
    present: dict[int, list[int]] = {}
    for c, images in enumerate(lists):
        for i in images.tolist():
            present.setdefault(i, []).append(c)
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
    counts = np.zeros(size)
    order: dict[int, np.ndarray] = {}
    pointer = np.zeros(size, dtype=np.int64)
    out = []
    for _ in range(n):
        cum = np.cumsum(adaptive_weights(counts, available))
        c = min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), size - 1)
        while not available[c]:  # a float tie at a zero-weight class's edge
            c -= 1
        if c not in order or pointer[c] == len(lists[c]):
            order[c], pointer[c] = rng.permutation(lists[c]), 0
        image = int(order[c][pointer[c]])
        pointer[c] += 1
        out.append(image)
        counts[present[image]] += 1
    return out


def draw_class_balanced(class_lists: Mapping[int, Sequence[int]], n: int,
                        generator: torch.Generator, rule: str = "uniform") -> list[int]:
    """``n`` image indices by ``rule`` (module docstring), every draw from ``generator``.

    ``authors``: consecutive sub-epochs of :data:`SUB_EPOCH` draws (the last one shorter).
    """
    if check_balance_rule(rule) == "uniform":
        return _draw_uniform(class_lists, n, generator)
    out: list[int] = []
    while len(out) < n:
        out += _draw_adaptive(class_lists, min(SUB_EPOCH, n - len(out)), generator)
    return out


class SubEpochDraws:
    """Slot ``j`` (0, 1, ...) of a run under the authors' rule: item ``j % SUB_EPOCH`` of
    sub-epoch ``j // SUB_EPOCH``, whose draws, then shuffled, come from
    ``make_generator(sub_epoch)`` only (so batch ``it`` depends on the seed and ``it``
    alone). The authors shuffle the whole list of draws (``DataLoader(shuffle=True)``,
    BIT-DA/RIPU train.py:68); shuffling within each sub-epoch keeps runs resumable. The
    current sub-epoch is cached.
    """

    def __init__(self, class_lists: Mapping[int, Sequence[int]],
                 make_generator: Callable[[int], torch.Generator]) -> None:
        _classes_with_images(class_lists)
        self.class_lists, self.make_generator = class_lists, make_generator
        self._cached: tuple[int, list[int]] | None = None

    def __call__(self, slot: int) -> int:
        sub, k = divmod(int(slot), SUB_EPOCH)
        if self._cached is None or self._cached[0] != sub:
            g = self.make_generator(sub)
            draws = _draw_adaptive(self.class_lists, SUB_EPOCH, g)
            order = torch.randperm(SUB_EPOCH, generator=g).tolist()
            self._cached = (sub, [draws[i] for i in order])
        return self._cached[1][k]


class ClassBalancedSampler(Sampler[int]):
    """Yield ``num_samples`` dataset indices drawn by ``rule`` (:func:`draw_class_balanced`).

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
        rule: str = "uniform",
    ) -> None:
        self.rule = check_balance_rule(rule)
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
        return iter(draw_class_balanced(self.class_lists, self.num_samples, gen, self.rule))

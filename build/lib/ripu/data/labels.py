"""Label id maps and class names (docs/method.md section 4).

Raw dataset ids are mapped to contiguous class indices through a lookup table (LUT);
every id without a class maps to 255, the ignore index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ripu.errors import DatasetError, RipuError

IGNORE_INDEX = 255

CLASSES_19: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
    "bus", "train", "motorcycle", "bicycle",
)
_NOT_IN_16 = ("terrain", "truck", "train")
CLASSES_16: tuple[str, ...] = tuple(c for c in CLASSES_19 if c not in _NOT_IN_16)
_NOT_IN_13 = ("wall", "fence", "pole")
CLASSES_13: tuple[str, ...] = tuple(c for c in CLASSES_16 if c not in _NOT_IN_13)
MIOU13_IN_16: tuple[int, ...] = tuple(CLASSES_16.index(c) for c in CLASSES_13)

# Cityscapes labelIds (and GTA5 label ids) -> 19 train ids.
CITYSCAPES_TO_TRAIN: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}

# SYNTHIA (RAND_CITYSCAPES) raw ids -> 16-class indices, in CLASSES_16 order. The raw ids
# follow the SYNTHIA README and the RIPU authors' code (core/datasets/synthia.py): 8 car,
# 11 bicycle, 12 motorcycle, 17 rider, 19 bus. (docs/method.md section 4 pairs these five ids
# with the wrong names; the authors' mapping is used.)
SYNTHIA_TO_TRAIN: dict[int, int] = {
    3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 9,
    10: 10, 17: 11, 8: 12, 19: 13, 12: 14, 11: 15,
}

# 19 train ids -> 16-class indices (terrain, truck, train -> 255).
TRAIN19_TO_16: dict[int, int] = {
    i: (CLASSES_16.index(name) if name in CLASSES_16 else IGNORE_INDEX)
    for i, name in enumerate(CLASSES_19)
}

# The raw ids each dataset's label files may hold.
CITYSCAPES_IDS = range(34)
GTA5_IDS = range(35)
SYNTHIA_IDS = range(23)


def class_names(num_classes: int) -> tuple[str, ...]:
    """Class names for the 19- or 16-class setting."""
    if num_classes == 19:
        return CLASSES_19
    if num_classes == 16:
        return CLASSES_16
    raise RipuError(f"num_classes must be 19 or 16, got {num_classes}")


def compose(first: Mapping[int, int], second: Mapping[int, int]) -> dict[int, int]:
    """The mapping ``id -> second[first[id]]``; ids whose image is not in ``second`` -> 255."""
    return {k: second.get(v, IGNORE_INDEX) for k, v in first.items()}


def train_id_mapping(num_classes: int) -> dict[int, int]:
    """Cityscapes / GTA5 label ids -> class indices in the 19- or 16-class setting."""
    if num_classes == 19:
        return dict(CITYSCAPES_TO_TRAIN)
    if num_classes == 16:
        return compose(CITYSCAPES_TO_TRAIN, TRAIN19_TO_16)
    raise RipuError(f"num_classes must be 19 or 16, got {num_classes}")


def lut(mapping: Mapping[int, int], size: int) -> np.ndarray:
    """A uint8 lookup table of ``size`` entries: ``mapping`` where defined, 255 elsewhere.

    Shape:
        returns (size,) uint8
    """
    table = np.full(size, IGNORE_INDEX, dtype=np.uint8)
    for key, value in mapping.items():
        if not 0 <= key < size:
            raise RipuError(f"label id {key} does not fit a lookup table of size {size}")
        if not 0 <= value <= IGNORE_INDEX:
            raise RipuError(f"class index {value} for id {key} is outside 0..255")
        table[key] = value
    return table


def describe_ids(ids: Iterable[int]) -> str:
    """``"0..33"`` for a contiguous set, else the sorted list."""
    ids = sorted(set(ids))
    if ids and ids == list(range(ids[0], ids[-1] + 1)):
        return f"{ids[0]}..{ids[-1]}"
    return str(ids)


def map_labels(
    label: np.ndarray,
    mapping: Mapping[int, int],
    known_ids: Iterable[int],
    source: str = "label",
) -> np.ndarray:
    """Map raw ids to class indices through a LUT, checking every id is known.

    Raises DatasetError naming ``source`` (the file) and the first unexpected id.

    Shape:
        label: (H, W) integer; returns (H, W) uint8 with 255 = ignore
    """
    label = np.asarray(label)
    if label.dtype.kind not in "ui":
        raise DatasetError(f"{source}: label dtype {label.dtype} is not an integer type")
    known_list = sorted(set(known_ids))
    size = known_list[-1] + 1
    known = np.zeros(size, dtype=bool)
    known[known_list] = True
    if label.size:
        low, high = int(label.min()), int(label.max())
        bad = None
        if low < 0:
            bad = low
        elif high >= size:
            bad = high
        else:
            unknown = ~known[label]
            if unknown.any():
                bad = int(label[unknown].min())
        if bad is not None:
            raise DatasetError(
                f"{source}: unexpected label id {bad} (expected ids {describe_ids(known_list)})"
            )
    return lut(mapping, size)[label]

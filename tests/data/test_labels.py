"""Label id maps and class names (docs/method.md section 4), checked against hand-written tables."""

from __future__ import annotations

import numpy as np
import pytest

from ripu.data.labels import (
    CITYSCAPES_IDS,
    CITYSCAPES_TO_TRAIN,
    CLASSES_13,
    CLASSES_16,
    CLASSES_19,
    GTA5_IDS,
    MIOU13_IN_16,
    SYNTHIA_IDS,
    SYNTHIA_TO_TRAIN,
    TRAIN19_TO_16,
    class_names,
    compose,
    lut,
    map_labels,
    train_id_mapping,
)
from ripu.errors import DatasetError, RipuError

X = 255
# Cityscapes label ids 0..33 -> 19 train ids, written out by hand.
EXPECTED_19 = [X, X, X, X, X, X, X, 0, 1, X, X, 2, 3, 4, X, X, X, 5, X, 6, 7, 8, 9, 10, 11, 12,
               13, 14, 15, X, X, 16, 17, 18]
# Cityscapes label ids 0..33 -> 16 classes (terrain 22, truck 27, train 31 ignored).
EXPECTED_16 = [X, X, X, X, X, X, X, 0, 1, X, X, 2, 3, 4, X, X, X, 5, X, 6, 7, 8, X, 9, 10, 11,
               12, X, 13, X, X, X, 14, 15]
# SYNTHIA RAND_CITYSCAPES ids 0..22 -> 16 classes (authors' code, core/datasets/synthia.py).
EXPECTED_SYNTHIA = [X, 9, 2, 0, 1, 4, 8, 5, 12, 7, 10, 15, 14, X, X, 6, X, 11, X, 13, X, 3, X]
# SYNTHIA README names of the raw ids that have a class.
SYNTHIA_NAMES = {
    1: "sky", 2: "building", 3: "road", 4: "sidewalk", 5: "fence", 6: "vegetation", 7: "pole",
    8: "car", 9: "traffic sign", 10: "person", 11: "bicycle", 12: "motorcycle",
    15: "traffic light", 17: "rider", 19: "bus", 21: "wall",
}


def every_id_image(num_ids: int, dtype=np.uint8) -> np.ndarray:
    """An 8x16 label image cycling through ids 0..num_ids-1 (each id appears)."""
    return (np.arange(128) % num_ids).reshape(8, 16).astype(dtype)


def test_class_name_sets():
    assert len(CLASSES_19) == 19 and len(set(CLASSES_19)) == 19
    assert CLASSES_19[:3] == ("road", "sidewalk", "building") and CLASSES_19[-1] == "bicycle"
    assert CLASSES_16 == tuple(c for c in CLASSES_19 if c not in ("terrain", "truck", "train"))
    assert len(CLASSES_16) == 16
    assert CLASSES_13 == (
        "road", "sidewalk", "building", "traffic light", "traffic sign", "vegetation", "sky",
        "person", "rider", "car", "bus", "motorcycle", "bicycle",
    )
    assert MIOU13_IN_16 == (0, 1, 2, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
    assert tuple(CLASSES_16[i] for i in MIOU13_IN_16) == CLASSES_13
    assert class_names(19) == CLASSES_19 and class_names(16) == CLASSES_16
    with pytest.raises(RipuError, match="19 or 16"):
        class_names(13)


def test_cityscapes_every_id_to_19():
    label = every_id_image(34)
    out = map_labels(label, CITYSCAPES_TO_TRAIN, CITYSCAPES_IDS)
    assert out.dtype == np.uint8 and out.shape == (8, 16)
    np.testing.assert_array_equal(out, np.array(EXPECTED_19, dtype=np.uint8)[label])
    assert sorted(set(out.ravel().tolist()) - {255}) == list(range(19))


def test_cityscapes_every_id_to_16():
    label = every_id_image(34)
    out = map_labels(label, train_id_mapping(16), CITYSCAPES_IDS)
    np.testing.assert_array_equal(out, np.array(EXPECTED_16, dtype=np.uint8)[label])
    # The 16-class index of each id names the same class as its 19-class index.
    for raw, cls in CITYSCAPES_TO_TRAIN.items():
        idx16 = EXPECTED_16[raw]
        assert (CLASSES_16[idx16] if idx16 != X else None) == (
            CLASSES_19[cls] if CLASSES_19[cls] in CLASSES_16 else None
        )


def test_train19_to_16():
    assert TRAIN19_TO_16[CLASSES_19.index("terrain")] == 255
    assert TRAIN19_TO_16[CLASSES_19.index("truck")] == 255
    assert TRAIN19_TO_16[CLASSES_19.index("train")] == 255
    assert TRAIN19_TO_16[CLASSES_19.index("sky")] == 9
    assert TRAIN19_TO_16[CLASSES_19.index("bicycle")] == 15
    assert sorted(v for v in TRAIN19_TO_16.values() if v != 255) == list(range(16))


def test_synthia_every_id_to_16_including_16_bit():
    for dtype in (np.uint8, np.uint16):
        label = every_id_image(23, dtype)
        out = map_labels(label, SYNTHIA_TO_TRAIN, SYNTHIA_IDS)
        np.testing.assert_array_equal(out, np.array(EXPECTED_SYNTHIA, dtype=np.uint8)[label])
    for raw, name in SYNTHIA_NAMES.items():
        assert CLASSES_16[SYNTHIA_TO_TRAIN[raw]] == name
    assert sorted(SYNTHIA_TO_TRAIN.values()) == list(range(16))


def test_gta5_accepts_34_as_ignore_and_rejects_35():
    label = every_id_image(35)
    out = map_labels(label, CITYSCAPES_TO_TRAIN, GTA5_IDS)
    assert (out[label == 34] == 255).all()
    with pytest.raises(DatasetError, match=r"labels/00001\.png.*unexpected label id 35"):
        map_labels(label + 1, CITYSCAPES_TO_TRAIN, GTA5_IDS, source="labels/00001.png")


@pytest.mark.parametrize("bad", [34, 200, 255])
def test_unexpected_cityscapes_id_names_file_and_id(bad):
    label = every_id_image(34)
    label[3, 5] = bad
    with pytest.raises(DatasetError, match=rf"x_gtFine_labelIds\.png: unexpected label id {bad}"):
        map_labels(label, CITYSCAPES_TO_TRAIN, CITYSCAPES_IDS, source="x_gtFine_labelIds.png")


def test_unexpected_id_in_a_gap_of_known_ids():
    with pytest.raises(DatasetError, match="unexpected label id 2 "):
        map_labels(np.array([[0, 2, 4]], np.uint8), {0: 0, 4: 1}, [0, 4])


def test_synthia_id_above_22_and_non_integer_labels_rejected():
    with pytest.raises(DatasetError, match="unexpected label id 1000"):
        map_labels(np.array([[3, 1000]], np.uint16), SYNTHIA_TO_TRAIN, SYNTHIA_IDS)
    with pytest.raises(DatasetError, match="unexpected label id -1"):
        map_labels(np.array([[3, -1]], np.int32), SYNTHIA_TO_TRAIN, SYNTHIA_IDS)
    with pytest.raises(DatasetError, match="not an integer"):
        map_labels(np.array([[3.0]]), SYNTHIA_TO_TRAIN, SYNTHIA_IDS)


def test_lut_and_compose():
    table = lut({1: 4, 3: 0}, 5)
    assert table.dtype == np.uint8
    assert table.tolist() == [255, 4, 255, 0, 255]
    with pytest.raises(RipuError, match="does not fit"):
        lut({5: 0}, 5)
    with pytest.raises(RipuError, match="outside 0..255"):
        lut({1: 256}, 5)
    assert compose({1: 0, 2: 1, 3: 7}, {0: 5, 1: 255}) == {1: 5, 2: 255, 3: 255}
    with pytest.raises(RipuError, match="19 or 16"):
        train_id_mapping(13)

"""GTA5, SYNTHIA and Cityscapes readers on tiny fixtures in their exact layouts."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ripu.data import (
    CLASSES_16,
    CLASSES_19,
    IMAGENET_MEAN,
    IMAGENET_STD,
    CityscapesDataset,
    GTA5Dataset,
    SegTransform,
    SynthiaDataset,
    build_dataset,
)
from ripu.engine.batches import IterationBatches
from ripu.errors import DatasetError, RipuError
from tests.data.layouts import (
    image_for,
    truncate,
    write_cityscapes,
    write_gta5,
    write_rgb,
    write_synthia,
)
from tests.data.test_labels import EXPECTED_16, EXPECTED_19, EXPECTED_SYNTHIA, every_id_image


def const(value: int) -> np.ndarray:
    return np.full((8, 16), value, dtype=np.uint8)


def expected_image_tensor(image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1).double() / 255.0
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.double).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.double).view(3, 1, 1)
    return ((x - mean) / std).float()


def check_item(item: dict, label_raw: np.ndarray, table: list[int], image_id: str, index: int):
    assert set(item) == {"image", "label", "id", "index"}
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 8, 16)
    assert item["label"].dtype == torch.int64 and item["label"].shape == (8, 16)
    assert item["id"] == image_id and item["index"] == index
    np.testing.assert_array_equal(item["label"].numpy(), np.array(table)[label_raw])
    torch.testing.assert_close(item["image"], expected_image_tensor(image_for(label_raw)))


# ---------------------------------------------------------------- GTA5


def test_gta5_reads_palette_labels_as_ids(tmp_path):
    labels = [every_id_image(35), const(26), const(7)]
    ids = write_gta5(tmp_path, labels)
    ds = GTA5Dataset(tmp_path)
    assert len(ds) == 3 and ds.ids == ids == ["00001", "00002", "00003"]
    assert ds.num_classes == 19 and ds.class_names == CLASSES_19
    table = EXPECTED_19 + [255]  # id 34 -> ignore
    for i in range(3):
        check_item(ds[i], labels[i], table, ids[i], i)
    label = ds.read_label(1)
    assert label.dtype == np.uint8 and label.shape == (8, 16) and (label == 13).all()
    image = ds.read_image(0)
    assert image.dtype == np.uint8 and image.shape == (8, 16, 3)
    np.testing.assert_array_equal(image, image_for(labels[0]))  # RGB, not BGR


def test_gta5_in_16_classes(tmp_path):
    labels = [every_id_image(34)]
    write_gta5(tmp_path, labels)
    ds = GTA5Dataset(tmp_path, num_classes=16)
    assert ds.class_names == CLASSES_16
    np.testing.assert_array_equal(ds.read_label(0), np.array(EXPECTED_16)[labels[0]])


def test_keep_decoded_reads_each_file_once_and_guards_the_arrays(tmp_path):
    labels = [const(7), const(26)]
    write_gta5(tmp_path, labels)
    ds, uncached = GTA5Dataset(tmp_path), GTA5Dataset(tmp_path)
    ds.keep_decoded()
    first = [ds[i] for i in range(2)]
    for path in [*(tmp_path / "images").iterdir(), *(tmp_path / "labels").iterdir()]:
        path.unlink()  # every later read must come from memory
    for i in range(2):
        torch.testing.assert_close(ds[i]["image"], first[i]["image"])
        assert (ds[i]["label"] == (0 if i == 0 else 13)).all()
        np.testing.assert_array_equal(ds.read_image(i), image_for(labels[i]))
    with pytest.raises(ValueError, match="read-only"):  # a caller cannot change the cache
        ds.read_label(0)[0, 0] = 1
    with pytest.raises(DatasetError, match="cannot read image"):
        uncached.read_image(0)


def test_keep_decoded_keeps_deterministic_items_and_hands_out_copies(tmp_path, monkeypatch):
    write_gta5(tmp_path, [const(7), const(26)])
    calls = []  # the transform of every call
    call = SegTransform.__call__
    monkeypatch.setattr(SegTransform, "__call__",
                        lambda self, *args: calls.append(self) or call(self, *args))
    fixed, flipped = SegTransform(size=(8, 4)), SegTransform(size=(8, 4), flip=True)
    ds = GTA5Dataset(tmp_path, transform=fixed)
    ds.keep_decoded()
    first = ds[1]
    first["label"][:] = 255  # a caller's change does not reach the kept item
    again = ds[1]
    assert calls.count(fixed) == 1  # transformed once
    assert (again["label"] == 13).all() and again["label"].shape == (4, 8)
    torch.testing.assert_close(again["image"], GTA5Dataset(tmp_path, transform=fixed)[1]["image"])
    assert calls.count(fixed) == 2  # and once for the dataset that keeps nothing
    ds.transform = flipped  # random: transformed on every read, never kept
    ds[1], ds[1]
    assert calls.count(flipped) == 2
    assert fixed.deterministic and not flipped.deterministic
    assert not SegTransform(size=(8, 4), crop=(4, 4)).deterministic


def test_source_batches_use_the_kept_items_and_flips_still_draw_from_the_generator(
        tmp_path, monkeypatch):
    write_gta5(tmp_path, [const(7), const(26), const(11)])
    calls = []
    call = SegTransform.__call__
    monkeypatch.setattr(SegTransform, "__call__",
                        lambda self, *args: calls.append(self) or call(self, *args))

    def source_batches(transform, keep):
        ds = GTA5Dataset(tmp_path, transform=transform)
        if keep:
            ds.keep_decoded()
        batches = IterationBatches(5, source=ds, batch_source=2)
        return [batches[it]["source"] for it in range(6)]

    fixed = SegTransform(size=(8, 4))
    kept, fresh = source_batches(fixed, True), source_batches(fixed, False)
    assert calls.count(fixed) == 3 + 12  # each image once when kept; every draw when not
    for a, b in zip(kept, fresh, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    flipped = SegTransform(size=(8, 4), flip=True)  # random: drawn per iteration, never kept
    kept, fresh = source_batches(flipped, True), source_batches(flipped, False)
    assert calls.count(flipped) == 24
    for a, b in zip(kept, fresh, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    images = torch.cat([b["image"] for b in kept])
    assert any(torch.equal(images[i], images[j].flip(-1)) and not torch.equal(images[i], images[j])
               for i in range(len(images)) for j in range(len(images)))  # both sides drawn


def test_transform_is_applied(tmp_path):
    write_gta5(tmp_path, [const(7), const(8)])
    ds = GTA5Dataset(tmp_path, transform=SegTransform(size=(8, 4), normalize=False))
    item = ds[1]
    assert item["image"].shape == (3, 4, 8) and item["label"].shape == (4, 8)
    assert (item["label"] == 1).all()
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0


def test_dataloader_batches_items(tmp_path):
    write_gta5(tmp_path, [const(7), const(8), const(11)])
    loader = torch.utils.data.DataLoader(GTA5Dataset(tmp_path), batch_size=2)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 3, 8, 16) and batch["label"].shape == (2, 8, 16)
    assert batch["id"] == ["00001", "00002"] and batch["index"].tolist() == [0, 1]


# ---------------------------------------------------------------- SYNTHIA


def test_synthia_reads_first_channel_of_16_bit_png(tmp_path):
    labels = [every_id_image(23), const(19)]
    ids = write_synthia(tmp_path, labels)
    raw = cv2.imread(str(tmp_path / "GT" / "LABELS" / "0000000.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.shape == (8, 16, 3)  # the fixture is the real format
    ds = SynthiaDataset(tmp_path)
    assert ds.ids == ids == ["0000000", "0000001"]
    assert ds.num_classes == 16 and ds.class_names == CLASSES_16
    for i in range(2):
        check_item(ds[i], labels[i], EXPECTED_SYNTHIA, ids[i], i)
    assert (ds.read_label(1) == CLASSES_16.index("bus")).all()


def test_synthia_accepts_single_channel_16_bit(tmp_path):
    labels = [every_id_image(23)]
    write_synthia(tmp_path, labels)
    path = tmp_path / "GT" / "LABELS" / "0000000.png"
    assert cv2.imwrite(str(path), labels[0].astype(np.uint16))
    ds = SynthiaDataset(tmp_path)
    np.testing.assert_array_equal(ds.read_label(0), np.array(EXPECTED_SYNTHIA)[labels[0]])


def test_synthia_only_16_classes(tmp_path):
    write_synthia(tmp_path, [const(3)])
    with pytest.raises(RipuError, match="must be 16"):
        SynthiaDataset(tmp_path, num_classes=19)


# ---------------------------------------------------------------- Cityscapes


def test_cityscapes_two_cities(tmp_path):
    labels = {"zurich": [every_id_image(34)], "aachen": [const(23), const(26)]}
    ids = write_cityscapes(tmp_path, "val", labels)
    ds = CityscapesDataset(tmp_path, split="val")
    assert ds.ids == ids == [
        "aachen/aachen_000000_000000", "aachen/aachen_000000_000001", "zurich/zurich_000000_000000",
    ]
    ordered = [labels["aachen"][0], labels["aachen"][1], labels["zurich"][0]]
    for i in range(3):
        check_item(ds[i], ordered[i], EXPECTED_19, ids[i], i)
    ds16 = CityscapesDataset(tmp_path, split="val", num_classes=16)
    np.testing.assert_array_equal(ds16.read_label(2), np.array(EXPECTED_16)[ordered[2]])


def test_cityscapes_splits_are_separate(tmp_path):
    write_cityscapes(tmp_path, "train", {"a": [const(7)] * 3})
    write_cityscapes(tmp_path, "val", {"b": [const(8)]})
    assert len(CityscapesDataset(tmp_path, "train")) == 3
    assert len(CityscapesDataset(tmp_path, "val")) == 1
    with pytest.raises(RipuError, match="unknown split 'test'; expected one of train, val"):
        CityscapesDataset(tmp_path, "test")


# ---------------------------------------------------------------- registry


def test_build_dataset_registry(tmp_path):
    write_gta5(tmp_path / "g", [const(7)])
    write_synthia(tmp_path / "s", [const(3)])
    write_cityscapes(tmp_path / "c", "val", {"a": [const(7)]})
    assert isinstance(build_dataset("gta5", tmp_path / "g"), GTA5Dataset)
    assert isinstance(build_dataset("synthia", tmp_path / "s", num_classes=16), SynthiaDataset)
    city = build_dataset("cityscapes", tmp_path / "c", split="val", num_classes=16)
    assert isinstance(city, CityscapesDataset) and city.num_classes == 16
    with pytest.raises(RipuError, match="unknown dataset 'kitti'; expected one of "
                                        "cityscapes, gta5, synthia"):
        build_dataset("kitti", tmp_path)
    with pytest.raises(RipuError, match="gta5: unknown split 'val'"):
        build_dataset("gta5", tmp_path / "g", split="val")


# ---------------------------------------------------------------- layout failures

WRITERS = {
    "gta5": (lambda root, labels: write_gta5(root, labels), lambda root: GTA5Dataset(root)),
    "synthia": (lambda root, labels: write_synthia(root, labels),
                lambda root: SynthiaDataset(root)),
    "cityscapes": (lambda root, labels: write_cityscapes(root, "train", {"c": labels}),
                   lambda root: CityscapesDataset(root, "train")),
}
# dataset -> (image folder, label folder, image file of the first item, its label file,
# label file of the second item)
PATHS = {
    "gta5": ("images", "labels", "images/00001.png", "labels/00001.png", "labels/00002.png"),
    "synthia": ("RGB", "GT/LABELS", "RGB/0000000.png", "GT/LABELS/0000000.png",
                "GT/LABELS/0000001.png"),
    "cityscapes": ("leftImg8bit/train", "gtFine/train",
                   "leftImg8bit/train/c/c_000000_000000_leftImg8bit.png",
                   "gtFine/train/c/c_000000_000000_gtFine_labelIds.png",
                   "gtFine/train/c/c_000000_000001_gtFine_labelIds.png"),
}
NAMES = pytest.mark.parametrize("name", sorted(WRITERS))


def make(name: str, root: Path, labels=None):
    WRITERS[name][0](root, labels if labels is not None else [const(7), const(8), const(11)])
    return root


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


@NAMES
def test_missing_root(name, tmp_path):
    with pytest.raises(DatasetError, match="root not found") as err:
        WRITERS[name][1](tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in one_line(err)


@NAMES
@pytest.mark.parametrize("which", [0, 1])
def test_missing_subfolder(name, which, tmp_path):
    root = make(name, tmp_path)
    folder = root / PATHS[name][which]
    shutil.rmtree(folder)
    with pytest.raises(DatasetError, match="not found: expected a directory at") as err:
        WRITERS[name][1](root)
    assert str(folder) in one_line(err)


@NAMES
def test_no_images(name, tmp_path):
    root = make(name, tmp_path)
    for f in (root / PATHS[name][0]).rglob("*.png"):
        f.unlink()
    with pytest.raises(DatasetError, match="no images found under") as err:
        WRITERS[name][1](root)
    one_line(err)


@NAMES
def test_count_mismatch(name, tmp_path):
    root = make(name, tmp_path)
    (root / PATHS[name][3]).unlink()
    with pytest.raises(DatasetError, match="3 images under .* but 2 labels under") as err:
        WRITERS[name][1](root)
    one_line(err)


@NAMES
def test_image_without_its_label(name, tmp_path):
    root = make(name, tmp_path)
    label = root / PATHS[name][3]
    label.rename(label.with_name(label.name.replace("0", "9", 1)))  # counts equal, names differ
    with pytest.raises(DatasetError, match="has no label") as err:
        WRITERS[name][1](root)
    assert str(root / PATHS[name][2]) in one_line(err)


@NAMES
@pytest.mark.parametrize("which", [2, 3])
def test_truncated_png(name, which, tmp_path):
    root = make(name, tmp_path, [every_id_image(19), const(8)])
    ds = WRITERS[name][1](root)
    truncate(root / PATHS[name][which])
    with pytest.raises(DatasetError, match="cannot read") as err:
        ds[0]
    assert str(root / PATHS[name][which]) in one_line(err)
    assert ds[1]["label"].shape == (8, 16)  # the other item still loads


@NAMES
def test_unexpected_label_id(name, tmp_path):
    bad = {"gta5": 40, "synthia": 23, "cityscapes": 34}[name]
    label = const(7)
    label[2, 3] = bad
    root = make(name, tmp_path, [const(7), label])
    ds = WRITERS[name][1](root)
    with pytest.raises(DatasetError, match=f"unexpected label id {bad}") as err:
        ds[1]
    assert str(root / PATHS[name][4]) in one_line(err)


def test_image_and_label_of_different_sizes(tmp_path):
    write_gta5(tmp_path, [const(7)])
    write_rgb(tmp_path / "images" / "00001.png", np.zeros((10, 16, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"00001\.png.*image size \(16, 10\) differs"):
        GTA5Dataset(tmp_path)[0]
    resized = GTA5Dataset(tmp_path, transform=SegTransform(size=(16, 8)))[0]
    assert resized["image"].shape == (3, 8, 16) and resized["label"].shape == (8, 16)

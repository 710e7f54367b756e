"""Exporting a round: PNG masks with train ids, overlays, contact sheet."""

import numpy as np
import pytest
import torch
from PIL import Image

from ripu.acquisition import LabelState
from ripu.acquisition.export import contact_sheet, export_round, overlay
from ripu.data.transforms import normalize
from ripu.errors import RipuError

H, W = 12, 20


def dataset(n=3):
    g = torch.Generator().manual_seed(0)
    return [{"image": normalize(torch.rand(3, H, W, generator=g)),
             "label": torch.randint(0, 19, (H, W), generator=g), "id": f"city/img_{i}",
             "index": i} for i in range(n)]


class ReadableDataset(list):
    """Items plus read_label / read_image, as the on-disk datasets have."""

    ids = property(lambda self: [item["id"] for item in self])

    def read_label(self, index):
        return np.full((H, W), 7, dtype=np.uint8)

    def read_image(self, index):
        return np.full((2 * H, 2 * W, 3), 100, dtype=np.uint8)  # another size: resized


def saved_state(tmp_path, data):
    state = LabelState()
    for k, item in enumerate(data):
        labelled = np.zeros((H, W), bool)
        labelled[k:k + 3, 2:5] = True
        state.set_masks(item["id"], labelled, labelled)
    state.round_index = 0
    state.round_stats = [{"round": 0, "strategy": "ripu_region"}]
    return state, state.save(tmp_path / "round_0.npz")


def read_png(path):
    with Image.open(path) as img:
        return np.array(img)


def test_export_writes_masks_with_train_ids_and_255_elsewhere(tmp_path):
    data = dataset()
    state, path = saved_state(tmp_path, data)
    out = export_round(path, data, tmp_path / "export")
    assert out["images"] == 3
    for item in data:
        mask = read_png(tmp_path / "export" / "masks" / f"{item['id'].replace('/', '_')}.png")
        labelled = state.labelled[item["id"]]
        expected = np.where(labelled, item["label"].numpy(), 255).astype(np.uint8)
        assert mask.dtype == np.uint8 and np.array_equal(mask, expected)
        overlay_png = read_png(tmp_path / "export" / "overlays" /
                               f"{item['id'].replace('/', '_')}.png")
        assert overlay_png.shape == (H, W, 3)
    sheet = read_png(tmp_path / "export" / "contact_sheet.png")
    assert sheet.ndim == 3 and sheet.shape[1] > 3 * W
    leftovers = [p for p in (tmp_path / "export").rglob(".*")]
    assert leftovers == []  # atomic writes leave no temporary files


def test_export_prefers_read_label_when_its_size_matches(tmp_path):
    data = ReadableDataset(dataset(2))
    state, path = saved_state(tmp_path, data)
    export_round(path, data, tmp_path / "export", previews=False)
    mask = read_png(tmp_path / "export" / "masks" / "city_img_1.png")
    assert set(np.unique(mask[state.labelled["city/img_1"]])) == {7}
    assert not (tmp_path / "export" / "overlays").exists()
    assert not (tmp_path / "export" / "contact_sheet.png").exists()


def test_export_rejects_ids_missing_from_the_dataset(tmp_path):
    _, path = saved_state(tmp_path, dataset(3))
    with pytest.raises(RipuError, match="not in the dataset"):
        export_round(path, dataset(2), tmp_path / "export")


def test_overlay_highlights_labelled_and_darkens_the_rest():
    image = np.full((2, 2, 3), 100, np.uint8)
    mask = np.array([[True, False], [False, False]])
    out = overlay(image, mask)
    assert out[1, 1].tolist() == [30, 30, 30]
    assert out[0, 0].tolist() == [185, 163, 45]  # 0.45 * 100 + 0.55 * (255, 214, 0)


def test_contact_sheet_shows_at_most_max_images(tmp_path):
    data = ReadableDataset(dataset(5))
    state, _ = saved_state(tmp_path, data)
    two = read_png(contact_sheet(state, data, tmp_path / "two.png", max_images=2, columns=4))
    five = read_png(contact_sheet(state, data, tmp_path / "five.png", max_images=12,
                                  columns=4))
    assert two.shape[1] < five.shape[1]  # 2 columns against 4
    assert five.shape[0] > two.shape[0]  # 2 rows against 1
    with pytest.raises(RipuError, match="max_images"):
        contact_sheet(state, data, tmp_path / "x.png", max_images=0)

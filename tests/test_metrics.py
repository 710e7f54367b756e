"""Confusion matrix, IoU, mIoU / mIoU* against hand-computed values; the confusion figure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from ripu.confusion_image import normalize_confusion
from ripu.data.labels import CLASSES_16, CLASSES_19, MIOU13_IN_16
from ripu.errors import RipuError
from ripu.metrics import (
    confusion_matrix,
    iou_per_class,
    miou,
    pixel_accuracy,
    summarize,
)
from ripu.report.figures import save_figure

# 2x3 maps, one ignore pixel. Counted (gt, pred): (0,0) (1,2) (2,2) (1,1) (0,1).
TARGET = torch.tensor([[0, 1, 2], [255, 1, 0]])
PRED = torch.tensor([[0, 2, 2], [1, 1, 1]])
CONF = torch.tensor([[1, 1, 0], [0, 1, 1], [0, 0, 1]])
# IoU = TP / (row + col - TP): 1/(2+1-1), 1/(2+2-1), 1/(1+2-1)
IOU = [1 / 2, 1 / 3, 1 / 2]


def test_confusion_matrix_hand_computed_with_ignore_pixel():
    conf = confusion_matrix(PRED, TARGET, 3)
    assert conf.dtype == torch.int64
    assert torch.equal(conf, CONF)
    # the ignore pixel's prediction (1) is not counted anywhere
    assert int(conf.sum()) == 5


def test_confusion_matrix_custom_ignore_index_and_batched_shapes():
    target = TARGET.clone()
    target[1, 0] = 7
    assert torch.equal(confusion_matrix(PRED, target, 3, ignore_index=7), CONF)
    batch_pred = torch.stack([PRED, PRED.flip(-1)])
    batch_target = torch.stack([TARGET, TARGET.flip(-1)])
    assert torch.equal(confusion_matrix(batch_pred, batch_target, 3), 2 * CONF)


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(RipuError, match="shape"):
        confusion_matrix(PRED, TARGET[:1], 3)
    with pytest.raises(RipuError, match="outside"):
        confusion_matrix(PRED, TARGET, 2)  # class 2 does not exist
    with pytest.raises(RipuError, match="outside"):
        confusion_matrix(PRED + 5, TARGET, 3)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from([0, 1, 2, 3, 255])),
                min_size=0, max_size=40))
def test_confusion_matrix_matches_a_plain_count(pairs):
    pred = torch.tensor([p for p, _ in pairs], dtype=torch.long)
    target = torch.tensor([t for _, t in pairs], dtype=torch.long)
    expected = torch.zeros(4, 4, dtype=torch.long)
    for p, t in pairs:
        if t != 255:
            expected[t, p] += 1
    assert torch.equal(confusion_matrix(pred, target, 4), expected)


def test_iou_and_miou_hand_computed():
    iou = iou_per_class(CONF)
    assert iou.dtype == torch.float64
    torch.testing.assert_close(iou, torch.tensor(IOU, dtype=torch.float64))
    assert miou(iou) == pytest.approx(4 / 9)
    assert pixel_accuracy(CONF) == pytest.approx(3 / 5)


def test_absent_class_is_nan_and_excluded_from_miou():
    conf = torch.zeros(4, 4, dtype=torch.long)
    conf[:3, :3] = CONF
    iou = iou_per_class(conf)
    assert math.isnan(iou[3])
    assert miou(iou) == pytest.approx(4 / 9)
    # present in the ground truth but never predicted: IoU 0, not NaN
    conf[3, 0] = 2
    iou = iou_per_class(conf)
    assert iou[3] == 0.0
    assert iou[0] == pytest.approx(1 / 4)  # 1 / (2 + 3 - 1)
    assert miou(iou) == pytest.approx((1 / 4 + 1 / 3 + 1 / 2 + 0) / 4)


def test_miou_over_subsets():
    iou = torch.tensor([0.5, 1 / 3, 0.5, float("nan")], dtype=torch.float64)
    assert miou(iou, [0, 2]) == pytest.approx(0.5)
    assert miou(iou, [1]) == pytest.approx(1 / 3)
    assert miou(iou, [1, 3]) == pytest.approx(1 / 3)
    assert math.isnan(miou(iou, [3]))
    with pytest.raises(RipuError, match="outside"):
        miou(iou, [4])


def test_summarize_16_classes_gives_miou13():
    assert [CLASSES_16[i] for i in range(16) if i not in MIOU13_IN_16] == [
        "wall", "fence", "pole"]
    conf = 10 * torch.eye(16, dtype=torch.long)
    for c in (3, 4, 5):  # every wall, fence, pole pixel predicted as road
        conf[c, c] = 0
        conf[c, 0] = 10
    s = summarize(conf, CLASSES_16)
    # road: 10 / (10 + 40 - 10); wall, fence, pole: 0; the other 12: 1
    assert s["iou"]["road"] == pytest.approx(0.25)
    assert s["iou"]["fence"] == 0.0 and s["iou"]["bicycle"] == 1.0
    assert s["miou"] == pytest.approx((0.25 + 12) / 16)
    assert s["miou13"] == pytest.approx((0.25 + 12) / 13)
    assert s["pixel_accuracy"] == pytest.approx(130 / 160)
    assert list(s["iou"]) == list(CLASSES_16)


def test_summarize_19_classes_has_no_miou13_and_checks_names():
    conf = torch.eye(19, dtype=torch.long)
    s = summarize(conf, CLASSES_19)
    assert s["miou"] == 1.0 and "miou13" not in s
    with pytest.raises(RipuError, match="class names"):
        summarize(conf, CLASSES_16)


def test_confusion_is_normalised_by_rows_or_columns():
    np.testing.assert_allclose(
        normalize_confusion(CONF), [[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]]
    )
    np.testing.assert_allclose(normalize_confusion(CONF, "pred"),
                               [[1.0, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 0.5]])
    empty_row = torch.tensor([[0, 0], [1, 1]])
    np.testing.assert_allclose(normalize_confusion(empty_row), [[0, 0], [0.5, 0.5]])
    with pytest.raises(RipuError, match="normalize"):
        normalize_confusion(CONF, "rows")


def test_save_figure_writes_a_png_and_no_temp_file(tmp_path):
    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    out = tmp_path / "figs" / "curve.png"
    save_figure(fig, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["curve.png"]

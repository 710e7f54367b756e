"""evaluate / predict_logits on tiny in-memory datasets with models of known output."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ripu.engine.evaluate import EvalResult, eval_mode, evaluate, predict_logits
from ripu.errors import RipuError
from ripu.models import build_model

NAMES = ["a", "b", "c"]


class RightEdgeBias(nn.Module):
    """Logits = the image's 3 channels, plus ``bias`` on class 0 in the rightmost column.

    Not flip-equivariant (for ``bias != 0``), output stride 1. Records every input shape,
    whether it ran in training mode and whether gradients were enabled.
    """

    def __init__(self, bias: float) -> None:
        super().__init__()
        self.bias = bias
        self.scale = nn.Parameter(torch.ones(()))  # so the model has a device and a mode
        self.calls: list[tuple[tuple[int, ...], bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((tuple(x.shape), self.training, torch.is_grad_enabled()))
        out = x * self.scale
        out[:, 0, :, -1] += self.bias
        return out


def _item(image: torch.Tensor, label: list[list[int]], index: int = 0) -> dict:
    return {"image": image.float(), "label": torch.tensor(label, dtype=torch.long),
            "id": f"img{index}", "index": index}


def _one_hot_image(classes: list[list[int]]) -> torch.Tensor:
    """(3, H, W) image whose channel c is 1 where ``classes`` is c: logit margin 1."""
    return nn.functional.one_hot(torch.tensor(classes), 3).permute(2, 0, 1).float()


# -- horizontal flip -------------------------------------------------------------------------
# One row, true classes [1, 2, 1, 2], bias 1.5 on class 0 at the right edge.
# No flip: the last pixel scores [1.5, 0, 1] -> class 0 (wrong): IoU a 0/1, b 2/2, c 1/2.
# Flip: the mirrored pass puts the bias on the first pixel instead; averaging softmaxes,
#   last pixel  (softmax[1.5,0,1] + softmax[0,0,1]) / 2 = [0.379, 0.167, 0.454] -> c,
#   first pixel (softmax[0,1,0] + softmax[1.5,1,0]) / 2 = [0.379, 0.454, 0.167] -> b.
# All correct: IoU a NaN (absent), b 1, c 1.
FLIP_ROW = [[1, 2, 1, 2]]


def test_flip_tta_hand_computed():
    data = [_item(_one_hot_image(FLIP_ROW), FLIP_ROW)]
    plain = evaluate(RightEdgeBias(1.5), data, 3, class_names=NAMES)
    assert isinstance(plain, EvalResult)
    assert torch.equal(plain.confusion, torch.tensor([[0, 0, 0], [0, 2, 0], [1, 0, 1]]))
    assert plain.miou == pytest.approx((0 + 1 + 0.5) / 3)
    assert plain.summary["iou"] == pytest.approx({"a": 0.0, "b": 1.0, "c": 0.5})

    flipped = evaluate(RightEdgeBias(1.5), data, 3, flip=True, class_names=NAMES)
    assert torch.equal(flipped.confusion, torch.tensor([[0, 0, 0], [0, 2, 0], [0, 0, 2]]))
    assert math.isnan(flipped.iou[0])
    assert flipped.miou == pytest.approx(1.0)


def test_flip_output_is_log_of_averaged_softmax():
    model = RightEdgeBias(1.5)
    x = _one_hot_image(FLIP_ROW)[None]
    out = predict_logits(model, x, (1, 4), flip=True)
    expected_last = (torch.tensor([1.5, 0, 1]).softmax(0) + torch.tensor([0., 0, 1]).softmax(0)) / 2
    torch.testing.assert_close(out.softmax(1)[0, :, 0, 3], expected_last)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(1, 1, 4))
    # a flip-equivariant model gets the same probabilities with and without TTA
    symmetric = RightEdgeBias(0.0)
    torch.testing.assert_close(predict_logits(symmetric, x, (1, 4), flip=True).softmax(1),
                               predict_logits(symmetric, x, (1, 4)).softmax(1))


# -- resizing --------------------------------------------------------------------------------
# Constant image scoring class b with margin 1 everywhere, label (2, 8): b in columns 0-5,
# a in columns 6-7; bias 5 on class a at the model's right edge.
# No resize (model at width 8): a wins only in column 7 ->
#   IoU a = 2 / (4 + 2 - 2) = 1/2, b = 12 / (12 + 14 - 12) = 6/7.
# input_size (4, 1): logits at width 4 upsampled with align_corners=True: output column j
#   reads source x = 3j/7, class-a logit 5 * max(0, x - 2): j=5 -> 0.71 (< 1, b),
#   j=6 -> 2.86 (a), j=7 -> 5 (a): every pixel right, mIoU 1. (With align_corners=False,
#   column 5 would read x = 2.25 -> 1.25 and turn a.)
RESIZE_LABEL = [[1] * 6 + [0] * 2] * 2


def _constant_b_image() -> torch.Tensor:
    image = torch.zeros(3, 2, 8)
    image[1] = 1.0
    return image


def test_resize_and_upsample_hand_computed():
    data = [_item(_constant_b_image(), RESIZE_LABEL)]
    model = RightEdgeBias(5.0)
    full = evaluate(model, data, 3, class_names=NAMES)
    assert model.calls[-1][0] == (1, 3, 2, 8)
    assert full.iou[:2].tolist() == pytest.approx([1 / 2, 6 / 7])
    assert full.miou == pytest.approx((1 / 2 + 6 / 7) / 2)

    small = evaluate(model, data, 3, input_size=(4, 1), class_names=NAMES)
    assert model.calls[-1][0] == (1, 3, 1, 4)
    assert torch.equal(small.confusion, torch.tensor([[4, 0, 0], [0, 12, 0], [0, 0, 0]]))
    assert small.miou == pytest.approx(1.0)
    assert small.summary["pixel_accuracy"] == pytest.approx(1.0)


def test_ignore_pixels_and_batches_of_mixed_sizes():
    flip_item = _item(_one_hot_image(FLIP_ROW), FLIP_ROW, 0)
    resize_item = _item(_constant_b_image(), RESIZE_LABEL, 1)
    ignored = [row[:] for row in RESIZE_LABEL]
    ignored[0][7] = 255  # one class-a pixel (predicted a) leaves the count
    ignore_item = _item(_constant_b_image(), ignored, 2)
    data = [flip_item, resize_item, ignore_item, flip_item]
    one = evaluate(RightEdgeBias(5.0), data, 3, class_names=NAMES)
    model = RightEdgeBias(5.0)
    batched = evaluate(model, data, 3, batch_size=3, class_names=NAMES)
    assert torch.equal(one.confusion, batched.confusion)
    assert int(one.confusion.sum()) == 4 + 16 + 15 + 4
    # items 1 and 2 share a size and run as one batch of 2
    assert [c[0] for c in model.calls] == [(1, 3, 1, 4), (2, 3, 2, 8), (1, 3, 1, 4)]


def test_model_mode_and_grad_state():
    model = RightEdgeBias(0.0)
    model.train()
    evaluate(model, [_item(_one_hot_image(FLIP_ROW), FLIP_ROW)], 3, flip=True,
             class_names=NAMES)
    assert [(training, grad) for _, training, grad in model.calls] == [(False, False)] * 2
    assert model.training  # restored

    net = build_model("small", 3, freeze_bn=True)
    net.train()
    with eval_mode(net):
        assert not any(m.training for m in net.modules())
    assert net.training and not any(bn.training for bn in net.batchnorms())


def test_real_network_counts_every_labelled_pixel():
    net = build_model("small", 3)
    gen = torch.Generator().manual_seed(0)
    label = torch.randint(0, 3, (20, 36), generator=gen)
    label[:2] = 255
    data = [{"image": torch.randn(3, 20, 36, generator=gen), "label": label, "id": "x",
             "index": 0}]
    result = evaluate(net, data, 3, input_size=(24, 16), flip=True, class_names=NAMES)
    assert int(result.confusion.sum()) == 18 * 36
    assert result.summary["miou"] == result.miou
    assert predict_logits(net, data[0]["image"][None], (20, 36)).shape == (1, 3, 20, 36)


def test_bad_arguments():
    data = [_item(_one_hot_image(FLIP_ROW), FLIP_ROW)]
    with pytest.raises(RipuError, match="class names"):
        evaluate(RightEdgeBias(0.0), data, 3, class_names=["a", "b"])
    with pytest.raises(RipuError,
                       match=r"expected logits \(N, 4, h, w\) for 1 images, got \(1, 3, "):
        evaluate(RightEdgeBias(0.0), data, 4, class_names=NAMES + ["d"])
    with pytest.raises(RipuError, match="batch_size"):
        evaluate(RightEdgeBias(0.0), data, 3, batch_size=0, class_names=NAMES)

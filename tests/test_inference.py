"""ripu.inference.predict: order, batching of equally-sized items, eval mode, output sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ripu.errors import RipuError
from ripu.inference import eval_mode, output_size, predict


class Doubler(nn.Module):
    """Logits = 2 x the image (3 classes, output stride 1); records calls."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.calls: list[tuple[int, bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.shape[0], self.training, torch.is_grad_enabled()))
        return 2 * x


def _item(h: int, w: int, index: int, label: bool = True) -> dict:
    image = torch.full((3, h, w), float(index))
    item = {"image": image, "id": f"i{index}", "index": index}
    if label:
        item["label"] = torch.zeros(h, w, dtype=torch.long)
    return item


def test_items_come_back_in_order_batched_by_size():
    data = [_item(2, 4, 0), _item(2, 4, 1), _item(2, 4, 2), _item(4, 4, 3), _item(2, 4, 4)]
    model = Doubler()
    got = list(predict(model, data, batch_size=2))
    # sizes split runs: [0, 1], [2] (next is another size), [3], [4]
    assert [b.positions for b in got] == [[0, 1], [2], [3], [4]]
    assert [c[0] for c in model.calls] == [2, 1, 1, 1]
    for batch in got:
        for pos, logits in zip(batch.positions, batch.logits, strict=True):
            assert torch.equal(logits, torch.full_like(logits, 2.0 * pos))
            assert logits.shape[-2:] == data[pos]["label"].shape


def test_positions_subset_and_upsampling_to_the_label():
    data = [_item(2, 2, 0), _item(2, 2, 1), _item(2, 2, 2)]
    for item in data:
        item["label"] = torch.zeros(4, 6, dtype=torch.long)
    (batch,) = predict(Doubler(), data, [2, 0], batch_size=4)
    assert batch.positions == [2, 0] and batch.logits.shape == (2, 3, 4, 6)
    assert torch.allclose(batch.logits[0], torch.full((3, 4, 6), 4.0))  # constant image


def test_eval_mode_no_grad_and_restored_flags():
    model = Doubler().train()
    model.bn.eval()  # a frozen BatchNorm stays frozen afterwards
    list(predict(model, [_item(2, 2, 0)]))
    assert model.calls == [(1, False, False)]
    assert model.training and not model.bn.training
    early = predict(model, [_item(2, 2, 0), _item(2, 2, 1)], batch_size=1)
    next(early)
    assert not model.training
    early.close()  # a consumer that stops early still gets the flags back
    assert model.training and not model.bn.training


def test_output_size_is_the_image_size_without_a_label():
    item = _item(3, 5, 0, label=False)
    assert output_size(item) == (3, 5)
    (batch,) = predict(Doubler(), [item])
    assert batch.logits.shape == (1, 3, 3, 5)


def test_flip_and_prepare_and_checks():
    data = [_item(2, 4, 1)]
    (batch,) = predict(Doubler(), data, prepare=lambda x: x + 1)
    assert torch.equal(batch.logits, torch.full((1, 3, 2, 4), 4.0))
    (flipped,) = predict(Doubler(), data, flip=True)  # symmetric input: same softmax
    torch.testing.assert_close(flipped.logits.softmax(1), batch.logits.softmax(1))
    with pytest.raises(RipuError, match=r"expected logits \(N, 4, h, w\) for 1 images"):
        list(predict(Doubler(), data, num_classes=4))
    with pytest.raises(RipuError, match="batch_size"):
        list(predict(Doubler(), data, batch_size=0))
    with eval_mode(Doubler()) as m:
        assert not m.training

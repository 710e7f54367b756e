"""One LSE round end to end on a tiny in-memory target set with tiny models."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ripu.errors import DatasetError, RipuError
from ripu.selftrain import (
    PatchDataset,
    build_pseudo_labels,
    full_pseudo_labels,
    image_stats,
    kept_union,
    pseudo_label,
    select_confident,
)
from ripu.selftrain.lse import pixel_maps

C = 3


def make_dataset(n: int = 8, size: int = 8, seed: int = 0) -> list[dict]:
    """Images whose channel c is s * [label == c] with a random strength s per pixel.

    The identity 1x1 convolution then predicts the label exactly, with per-pixel varying
    confidence; a quarter of the ground truth is hidden as 255.
    """
    gen = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        cls = torch.randint(0, C, (size, size), generator=gen)
        strength = 0.5 + 4 * torch.rand(size, size, generator=gen)
        image = F.one_hot(cls, C).permute(2, 0, 1).float() * strength
        label = cls.clone()
        label[torch.rand(size, size, generator=gen) < 0.25] = 255
        items.append({"image": image, "label": label, "id": f"img{i}", "index": i})
    return items


def conv_model(weight: torch.Tensor) -> nn.Module:
    model = nn.Conv2d(C, C, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(weight[:, :, None, None])
    return model


IDENTITY = torch.eye(C)
PERMUTED = torch.eye(C)[[1, 2, 0]]  # predicts class (c + 2) % 3 where the label is c

ARGS = dict(num_classes=C, p_base=1.0, p_step=0.0, progress=False)


def test_round_with_a_perfect_model():
    data = make_dataset()
    model = conv_model(IDENTITY)
    model.train()
    result = build_pseudo_labels(model, data, 0, batch_size=3, **ARGS)
    assert model.training  # restored
    # p = 1.0, C = 3, authors rule: floor(N_c / 3) images per class; every class is in all 8.
    assert all(len(v) == 2 for v in result.kept_per_class.values())
    assert result.kept_images == kept_union(result.kept_per_class)
    assert 2 <= len(result.kept_images) <= 6
    assert result.kept_ids == [f"img{i}" for i in result.kept_images]
    assert result.num_patches == 4 * len(result.kept_images)
    assert result.accuracy == 1.0
    assert 0.0 < result.coverage < 1.0
    diag = result.diagnostics()
    json.dumps(diag)  # JSON-ready
    assert diag["kept_images"] == len(result.kept_images) and len(diag["tau"]) == C
    assert diag["kept_per_class"] == [2, 2, 2]


def test_round_matches_the_building_blocks():
    data = make_dataset(seed=1)
    model = conv_model(IDENTITY + 0.3 * torch.ones(C, C))
    result = build_pseudo_labels(model, data, 0, batch_size=4, **ARGS)
    probs = [model(d["image"][None])[0].softmax(0).detach() for d in data]
    kept, tau = select_confident([image_stats(p) for p in probs], 1.0, C)
    assert result.kept_per_class == kept
    assert torch.allclose(result.tau, tau)
    kept_px = total = 0
    for i in result.kept_images:
        maps = pixel_maps(probs[i])
        _, keep = pseudo_label(maps.pred, maps.norm_entropy, tau)
        kept_px, total = kept_px + int(keep.sum()), total + keep.numel()
    assert result.coverage == pytest.approx(kept_px / total)


def test_round_with_a_wrong_model_has_zero_accuracy():
    result = build_pseudo_labels(conv_model(PERMUTED), make_dataset(), 0, **ARGS)
    assert result.accuracy == 0.0 and result.coverage > 0


def test_round_with_output_stride_and_patch_dataset():
    data = make_dataset(n=6, size=8, seed=2)
    torch.manual_seed(0)
    model = nn.Conv2d(C, C, 3, stride=2, padding=1)  # logits at 4x4, upsampled to 8x8
    model.eval()
    result = build_pseudo_labels(model, data, 0, num_classes=C, p_base=0.5, rule="per_class",
                                 progress=False, n_patches=2, seed=7)
    assert not model.training
    assert 0.0 <= result.coverage <= 1.0
    assert result.accuracy is None or 0.0 <= result.accuracy <= 1.0
    patches = PatchDataset(data, result)
    assert len(patches) == 2 * len(result.kept_images) > 0
    for k in range(len(patches)):
        item = patches[k]
        assert item["image"].shape == (3, 8, 8) and item["image"].dtype == torch.float32
        assert item["label"].shape == (8, 8) and item["label"].dtype == torch.long
        assert set(item["label"].unique().tolist()) <= {0, 1, 2, 255}
        assert item["id"] == f"img{item['index']}"
        assert item["index"] in result.kept_images
    batch = next(iter(torch.utils.data.DataLoader(patches, batch_size=2)))
    assert batch["image"].shape == (2, 3, 8, 8)


def test_round_is_deterministic_and_independent_of_batch_size():
    data = make_dataset(seed=3)
    model = conv_model(IDENTITY + 0.2)
    a = build_pseudo_labels(model, data, 2, seed=1, batch_size=1, **ARGS)
    b = build_pseudo_labels(model, data, 2, seed=1, batch_size=5, **ARGS)
    c = build_pseudo_labels(model, data, 2, seed=2, batch_size=5, **ARGS)
    assert a.kept_images == b.kept_images and torch.equal(a.tau, b.tau)
    for i in a.kept_images:
        assert [p.box for p in a.patches[i]] == [p.box for p in b.patches[i]]
        assert all(torch.equal(x.label, y.label)
                   for x, y in zip(a.patches[i], b.patches[i], strict=True))
    assert any([p.box for p in a.patches[i]] != [p.box for p in c.patches[i]]
               for i in a.kept_images)


def test_full_pseudo_labels():
    data = make_dataset(seed=4)
    model = conv_model(IDENTITY)
    maps = full_pseudo_labels(model, data, 0, batch_size=3, **ARGS)
    assert sorted(maps) == sorted(d["id"] for d in data)
    for d in data:
        m = maps[d["id"]]
        assert m.dtype == torch.uint8 and m.shape == d["label"].shape
        labelled = (m != 255) & (d["label"] != 255)
        # The identity model predicts the ground truth wherever it keeps a label.
        assert torch.equal(m[labelled].long(), d["label"][labelled])
    assert any((m != 255).any() for m in maps.values())
    assert any((m == 255).any() for m in maps.values())
    kept_only = full_pseudo_labels(model, data, 0, only_kept=True, **ARGS)
    result = build_pseudo_labels(model, data, 0, **ARGS)
    assert sorted(kept_only) == sorted(result.kept_ids)
    assert all(torch.equal(kept_only[k], maps[k]) for k in kept_only)


def test_errors():
    model = conv_model(IDENTITY)
    with pytest.raises(DatasetError, match="empty"):
        build_pseudo_labels(model, [], 0, **ARGS)
    with pytest.raises(RipuError, match=r"\(N, 4, h, w\)"):
        build_pseudo_labels(model, make_dataset(n=2), 0, **{**ARGS, "num_classes": 4})
    with pytest.raises(RipuError, match="rule"):
        build_pseudo_labels(model, make_dataset(n=2), 0, **ARGS, rule="best")
    data = make_dataset(n=3)
    for d in data:
        d["label"] = torch.zeros(4, 4, dtype=torch.long)
    with pytest.raises(DatasetError, match="same size"):
        build_pseudo_labels(model, data, 0, **ARGS)

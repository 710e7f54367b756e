"""SegTransform: resize, crop, flip, normalise; seeded determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ripu.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SegTransform,
    denormalize,
    normalize,
    to_tensor,
)
from ripu.errors import RipuError
from tests.data.layouts import image_for


def sample(h: int = 8, w: int = 16) -> tuple[np.ndarray, np.ndarray]:
    label = (np.arange(h * w) % 7).reshape(h, w).astype(np.uint8)
    label[0, 0] = 255
    return image_for(label), label


def test_default_is_to_tensor_and_normalise():
    image, label = sample()
    img, lab = SegTransform()(image, label)
    assert img.dtype == torch.float32 and img.shape == (3, 8, 16)
    assert lab.dtype == torch.int64 and lab.shape == (8, 16)
    np.testing.assert_array_equal(lab.numpy(), label)
    r, c = 5, 9  # one pixel by hand: (v / 255 - mean) / std per channel
    for ch in range(3):
        want = (image[r, c, ch] / 255.0 - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch]
        assert float(img[ch, r, c]) == pytest.approx(want, abs=1e-6)


def test_normalize_denormalize_round_trip():
    image, _ = sample()
    x = normalize(to_tensor(image))
    np.testing.assert_array_equal(denormalize(x), image)
    batch = torch.stack([x, x])
    out = denormalize(batch)
    assert out.shape == (2, 8, 16, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[1], image)
    assert float(normalize(torch.full((3, 1, 1), 0.485))[0]) == pytest.approx(0.0, abs=1e-7)


def test_resize_nearest_keeps_label_values():
    image, label = sample(8, 16)
    img, lab = SegTransform(size=(37, 13), normalize=False)(image, label)
    assert img.shape == (3, 13, 37) and lab.shape == (13, 37)
    assert set(lab.unique().tolist()) <= set(np.unique(label).tolist())
    # Exact doubling: nearest neighbour repeats each pixel 2x2.
    _, lab2 = SegTransform(size=(32, 16))(image, label)
    np.testing.assert_array_equal(lab2.numpy(), label.repeat(2, 0).repeat(2, 1))


def test_resize_image_bilinear():
    image = np.zeros((2, 2, 3), np.uint8)
    image[:, 1] = 200
    img, _ = SegTransform(size=(4, 2), normalize=False)(image, np.zeros((2, 2), np.uint8))
    # Half-pixel-centred bilinear: columns 0..3 sample x = -0.25, 0.25, 0.75, 1.25.
    row = (img[0, 0] * 255).round().tolist()
    assert row == [0.0, 50.0, 150.0, 200.0]


def test_flip_flips_image_and_label_together():
    image, label = sample()
    t = SegTransform(flip=True, normalize=False)
    flipped = 0
    for seed in range(12):
        img, lab = t(image, label, torch.Generator().manual_seed(seed))
        if torch.equal(lab, torch.from_numpy(label[:, ::-1].copy()).long()):
            flipped += 1
            torch.testing.assert_close(img, to_tensor(image[:, ::-1].copy()))
        else:
            np.testing.assert_array_equal(lab.numpy(), label)
            torch.testing.assert_close(img, to_tensor(image))
    assert 0 < flipped < 12


def test_crop_size_and_alignment():
    image, label = sample(8, 16)
    t = SegTransform(crop=(5, 3), normalize=False)
    offsets = set()
    for seed in range(20):
        img, lab = t(image, label, torch.Generator().manual_seed(seed))
        assert img.shape == (3, 3, 5) and lab.shape == (3, 5)
        # The crop window is the same in image and label: R channel encodes the label id.
        red = (img[0] * 255).round().long()
        keep = lab != 255
        assert torch.equal(red[keep], lab[keep])
        matches = [
            (t_, l_) for t_ in range(6) for l_ in range(12)
            if np.array_equal(label[t_:t_ + 3, l_:l_ + 5], lab.numpy())
            and np.array_equal(image[t_:t_ + 3, l_:l_ + 5], denorm_plain(img))
        ]
        assert matches
        offsets.add(matches[0])
    assert len(offsets) > 1


def denorm_plain(img: torch.Tensor) -> np.ndarray:
    return (img * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def test_crop_larger_than_image_pads_label_with_ignore():
    image, label = sample(4, 6)
    img, lab = SegTransform(crop=(8, 5))(image, label, torch.Generator().manual_seed(0))
    assert img.shape == (3, 5, 8) and lab.shape == (5, 8)
    np.testing.assert_array_equal(lab[:4, :6].numpy(), label)
    assert (lab[4:] == 255).all() and (lab[:, 6:] == 255).all()
    assert (img[:, 4:] == 0).all()


def test_seeded_determinism_and_global_rng():
    image, label = sample(16, 16)
    t = SegTransform(size=(20, 20), crop=(7, 7), flip=True)
    a = t(image, label, torch.Generator().manual_seed(3))
    b = t(image, label, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    outs = {t(image, label, torch.Generator().manual_seed(s))[1].numpy().tobytes()
            for s in range(10)}
    assert len(outs) > 1
    torch.manual_seed(11)
    c = t(image, label)
    torch.manual_seed(11)
    d = t(image, label)
    assert torch.equal(c[1], d[1])


def test_bad_arguments():
    with pytest.raises(RipuError, match="crop must be a pair of positive integers"):
        SegTransform(crop=(0, 4))
    with pytest.raises(RipuError, match="size must be a pair"):
        SegTransform(size=(4,))
    with pytest.raises(RipuError, match="differs from label size"):
        SegTransform()(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.uint8))
    with pytest.raises(RipuError, match="expected a uint8"):
        SegTransform()(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))


# ---------------------------------------------------------------- resize rules (data.resize)


def test_pil_bicubic_on_a_hand_computed_row():
    """PIL bicubic (a = -0.5), 4 -> 2 pixels: each output pixel is centred between two input
    pixels, the kernel stretched 2x. Output 1 (centre 3.0) weighs input pixels at distance
    1.25, 0.75, 0.25, 0.25 (in kernel units) by -0.0703125, 0.2265625, 0.8671875, 0.8671875
    (sum 1.890625): for the row 0, 0, 0, 255 that is 0.8671875 * 255 / 1.890625 = 116.96.
    Output 0 is -0.0703125 * 255 / 1.890625 < 0, clipped to 0. OpenCV's INTER_LINEAR takes
    the mean of the two middle pixels instead: 0 and 127.5."""
    row = np.array([[0, 0, 0, 255]], np.uint8)
    image = np.repeat(row[..., None], 3, axis=2)
    label = np.zeros((1, 4), np.uint8)
    img, _ = SegTransform(size=(2, 1), resize="pil_bicubic", normalize=False)(image, label)
    got = (img[0, 0] * 255).round().tolist()
    assert got[0] == 0 and abs(got[1] - 117) <= 1
    img, _ = SegTransform(size=(2, 1), resize="cv2_linear", normalize=False)(image, label)
    assert (img[0, 0] * 255).round().tolist() == [0, 128]


def test_pil_nearest_label_rule_on_a_hand_computed_case():
    """PIL NEAREST reads source column floor((x + 0.5) * scale): 5 -> 2 reads columns 1, 3;
    OpenCV's INTER_NEAREST reads floor(x * scale): columns 0, 2."""
    image = np.zeros((1, 5, 3), np.uint8)
    label = np.array([[10, 11, 12, 13, 14]], np.uint8)
    _, lab = SegTransform(size=(2, 1), resize="pil_bicubic")(image, label)
    assert lab.tolist() == [[11, 13]]
    _, lab = SegTransform(size=(2, 1), resize="cv2_linear")(image, label)
    assert lab.tolist() == [[10, 12]]
    # Bool masks follow the same rule and stay bool.
    mask = np.array([[False, True, False, False, False]])
    out = SegTransform(resize="pil_bicubic").label_to(mask, (2, 1))
    assert out.dtype == bool and out.tolist() == [[True, False]]


def test_resize_label_false_keeps_the_label_size():
    image, label = sample(8, 16)
    img, lab = SegTransform(size=(8, 4), resize="pil_bicubic", resize_label=False)(image, label)
    assert img.shape == (3, 4, 8) and lab.shape == (8, 16)
    np.testing.assert_array_equal(lab.numpy(), label)


def test_unknown_resize_rule_is_refused():
    with pytest.raises(RipuError, match="resize rule 'lanczos'.*cv2_linear, pil_bicubic"):
        SegTransform(size=(8, 4), resize="lanczos")


def test_caffe_bgr_is_the_lse_authors_input():
    """BGR on 0..255 minus the Caffe means in float32, as MNaseerSubhani/LSE
    data/gta5_dataset.py:43-51 computes it, and back to the RGB pixels."""
    from ripu.data.transforms import CAFFE_MEAN_BGR, encode

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    theirs = np.asarray(image, np.float32)[:, :, ::-1] - np.array(CAFFE_MEAN_BGR, np.float32)
    want = torch.from_numpy(theirs.transpose((2, 0, 1)).copy())
    img, _ = SegTransform(size=(7, 5), norm="caffe_bgr")(image, np.zeros((5, 7), np.uint8))
    assert torch.equal(img, want) and torch.equal(encode(image, "caffe_bgr"), want)
    assert float(img[0, 0, 0]) == pytest.approx(float(image[0, 0, 2]) - 104.00698793)  # blue
    np.testing.assert_array_equal(denormalize(img, "caffe_bgr"), image)
    with pytest.raises(RipuError, match="normalisation 'bgr'"):
        SegTransform(norm="bgr")

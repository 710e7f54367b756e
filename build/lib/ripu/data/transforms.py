"""Joint image/label transforms: resize, random crop, random horizontal flip, normalise.

Sizes are given as (W, H), as OpenCV and the papers' configs write them.

Resize rules (``data.resize``; one rule for training, selection and evaluation):

- ``cv2_linear``: OpenCV INTER_LINEAR for images (no antialiasing), INTER_NEAREST for labels.
- ``pil_bicubic``: PIL BICUBIC for images, PIL NEAREST for labels and masks, as the authors'
  ``Resize`` (BIT-DA/RIPU core/datasets/transform.py:63 and :69).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image

from ripu.data.labels import IGNORE_INDEX
from ripu.errors import RipuError
from ripu.names import NORMALIZATIONS

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# The LSE authors' Caffe means, B, G, R order, on 0..255 pixels (MNaseerSubhani/LSE
# data/__init__.py:8, LSE.py:107).
CAFFE_MEAN_BGR: tuple[float, float, float] = (104.00698793, 116.66876762, 122.67891434)
RESIZE_RULES = ("cv2_linear", "pil_bicubic")
# Pixel normalisations (``data.normalize``, :data:`ripu.names.NORMALIZATIONS`): ``imagenet``:
# RGB in [0, 1], minus the ImageNet mean, over its std (torchvision's); ``caffe_bgr``: BGR on
# 0..255 minus the Caffe means (the LSE authors' VGG16-FCN8s input, gta5_dataset.py:49-50,
# cityscapes_dataset.py:39-40).


def check_rule(rule: str) -> str:
    """Return ``rule`` if it is a known resize rule, else raise RipuError."""
    if rule not in RESIZE_RULES:
        raise RipuError(f"resize rule {rule!r}: expected one of {', '.join(RESIZE_RULES)}")
    return rule


def resize_image(image: np.ndarray, size: tuple[int, int], rule: str) -> np.ndarray:
    """Resize an RGB image to ``size`` (W, H) by ``rule`` (returned as is at that size).

    Shape:
        image: (H, W, 3) uint8; returns (size[1], size[0], 3) uint8
    """
    if image.shape[1::-1] == tuple(size):
        return image
    if check_rule(rule) == "pil_bicubic":
        return np.array(Image.fromarray(image).resize(tuple(size), Image.BICUBIC))
    return cv2.resize(image, tuple(size), interpolation=cv2.INTER_LINEAR)


def resize_label(label: np.ndarray, size: tuple[int, int], rule: str) -> np.ndarray:
    """Nearest-neighbour resize of a label map or a bool mask to ``size`` (W, H) by ``rule``
    (PIL NEAREST for ``pil_bicubic``, OpenCV INTER_NEAREST for ``cv2_linear``).

    Shape:
        label: (H, W) uint8 or bool; returns (size[1], size[0]) of the same dtype
    """
    if label.shape[1::-1] == tuple(size):
        return label
    dtype = label.dtype
    data = label.astype(np.uint8) if dtype == np.bool_ else label
    if check_rule(rule) == "pil_bicubic":
        out = np.array(Image.fromarray(data).resize(tuple(size), Image.NEAREST))
    else:
        out = cv2.resize(data, tuple(size), interpolation=cv2.INTER_NEAREST)
    return out.astype(dtype, copy=False)


def _stats(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (3, 1, 1) if image.dim() == 3 else (1, 3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(shape)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(shape)
    return mean, std


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 RGB image -> float tensor in [0, 1].

    Shape:
        image: (H, W, 3) uint8; returns (3, H, W) float32
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise RipuError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


def check_normalization(rule: str) -> str:
    """Return ``rule`` if it is a known pixel normalisation, else raise RipuError."""
    if rule not in NORMALIZATIONS:
        raise RipuError(f"normalisation {rule!r}: expected one of {', '.join(NORMALIZATIONS)}")
    return rule


def normalize(image: torch.Tensor) -> torch.Tensor:
    """(x - ImageNet mean) / std on a [0, 1] image.

    Shape:
        image: (3, H, W) or (N, 3, H, W); returns the same shape
    """
    mean, std = _stats(image)
    return (image - mean) / std


def _caffe_mean(image: torch.Tensor) -> torch.Tensor:
    shape = (3, 1, 1) if image.dim() == 3 else (1, 3, 1, 1)
    return torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float32, device=image.device).view(shape)


def encode(image: np.ndarray, rule: str = "imagenet") -> torch.Tensor:
    """A uint8 RGB image as the network's input under normalisation ``rule``; ``caffe_bgr``
    is computed in float32 from the integer pixels, exactly as the LSE authors'.

    Shape:
        image: (H, W, 3) uint8; returns (3, H, W) float32
    """
    if check_normalization(rule) == "imagenet":
        return normalize(to_tensor(image))
    bgr = torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1))).float()
    return bgr - _caffe_mean(bgr)


def denormalize(image: torch.Tensor, rule: str = "imagenet") -> np.ndarray:
    """Invert the normalisation ``rule`` and return uint8 RGB for figures.

    Shape:
        image: (3, H, W) or (N, 3, H, W); returns (H, W, 3) or (N, H, W, 3) uint8
    """
    image = image.detach().float().cpu()
    if check_normalization(rule) == "caffe_bgr":
        pixels = (image + _caffe_mean(image)).flip(-3).clamp_(0.0, 255.0).round_()
    else:
        mean, std = _stats(image)
        pixels = (image * std + mean).clamp_(0.0, 1.0).mul_(255.0).round_()
    return pixels.to(torch.uint8).movedim(-3, -1).numpy()


def _check_size(value: tuple[int, int] | None, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if len(value) != 2 or any(int(v) != v or v <= 0 for v in value):
        raise RipuError(f"{name} must be a pair of positive integers (W, H), got {value!r}")
    return int(value[0]), int(value[1])


class SegTransform:
    """Resize (by ``resize``, the rule above), random crop, random flip, to tensor, normalise
    (by ``norm``, one of :data:`NORMALIZATIONS`, when ``normalize``).

    With ``resize_label=False`` only the image is resized and the label keeps its own size
    (evaluation, and selection at label resolution); crop and flip then need equal sizes.

    Randomness comes from ``generator``, or torch's global RNG when it is None (so
    DataLoader worker seeding applies). Draw order per call: crop offsets, then flip.
    A crop larger than the (resized) image pads the image with 0 after normalisation
    (the mean colour) and the label with 255.

    Shape:
        image: (H, W, 3) uint8, label: (H, W) uint8 -> (3, h, w) float32, (h, w) int64
    """

    def __init__(
        self,
        size: tuple[int, int] | None = None,
        crop: tuple[int, int] | None = None,
        flip: bool = False,
        normalize: bool = True,
        resize: str = "cv2_linear",
        resize_label: bool = True,
        norm: str = "imagenet",
    ) -> None:
        self.size = _check_size(size, "size")
        self.crop = _check_size(crop, "crop")
        self.flip = bool(flip)
        self.normalize = bool(normalize)
        self.resize = check_rule(resize)
        self.resize_label = bool(resize_label)
        self.norm = check_normalization(norm)

    def __repr__(self) -> str:
        return (f"SegTransform(size={self.size}, crop={self.crop}, flip={self.flip}, "
                f"normalize={self.normalize}, resize={self.resize!r}, "
                f"resize_label={self.resize_label}, norm={self.norm!r})")

    @property
    def deterministic(self) -> bool:
        """Whether a call depends on its inputs alone (no random crop, no flip)."""
        return self.crop is None and not self.flip

    def label_to(self, label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """A label map or bool mask resized to ``size`` (W, H) by this transform's rule.

        Shape:
            label: (H, W) uint8 or bool; returns (size[1], size[0]) of the same dtype
        """
        return resize_label(label, size, self.resize)

    def __call__(
        self,
        image: np.ndarray,
        label: np.ndarray,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.size is not None:
            image = resize_image(image, self.size, self.resize)
            if self.resize_label:
                label = resize_label(label, self.size, self.resize)
        if image.shape[:2] != label.shape[:2] and (self.resize_label or self.crop or self.flip):
            raise RipuError(
                f"image size {image.shape[1::-1]} differs from label size {label.shape[1::-1]} "
                "(W, H); set a resize size to bring both to one size"
            )
        img = encode(image, self.norm) if self.normalize else to_tensor(image)
        lab = torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64))  # a writable copy
        if self.crop is not None:
            img, lab = self._random_crop(img, lab, generator)
        if self.flip and bool(torch.rand(1, generator=generator) < 0.5):
            img, lab = img.flip(-1), lab.flip(-1)
        return img.contiguous(), lab.contiguous()

    def _random_crop(
        self, img: torch.Tensor, lab: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cw, ch = self.crop
        h, w = lab.shape
        if h < ch or w < cw:
            ph, pw = max(ch - h, 0), max(cw - w, 0)
            img = torch.nn.functional.pad(img, (0, pw, 0, ph), value=0.0)
            lab = torch.nn.functional.pad(lab, (0, pw, 0, ph), value=IGNORE_INDEX)
            h, w = lab.shape
        top = int(torch.randint(h - ch + 1, (1,), generator=generator))
        left = int(torch.randint(w - cw + 1, (1,), generator=generator))
        return img[:, top:top + ch, left:left + cw], lab[top:top + ch, left:left + cw]

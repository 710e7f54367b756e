"""The embedded synthetic domain-shift benchmark: generation, on-disk layout, summary.

``generate`` writes a procedurally generated source domain ("synthetic, rendered", GTA5's
layout) and target domain ("real, captured", Cityscapes' layout) so that the real readers
serve it:

    <out>/source/images/00001.png            RGB
    <out>/source/labels/00001.png            8-bit Cityscapes label ids
    <out>/target/leftImg8bit/<split>/<city>/<city>_<seq:06d>_<frame:06d>_leftImg8bit.png
    <out>/target/gtFine/<split>/<city>/<city>_<seq:06d>_<frame:06d>_gtFine_labelIds.png
    <out>/index.json                         seed, sizes, counts, class pixel frequencies
    <out>/samples.png                        a labelled grid of source and target samples

Every image comes from its own RNG seeded by (seed, domain, split, index), so output is
identical run to run and independent of generation order. Scenes and looks are in
``ripu.data.synthetic_scene``.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from ripu.data.labels import CITYSCAPES_TO_TRAIN, CLASSES_19
from ripu.data.synthetic_scene import BENCHMARKS, render
from ripu.errors import RipuError
from ripu.io import write_json

FORMAT = "ripu-synthetic-v1"

# The Cityscapes label ids of the 19 evaluation classes (CLASSES_19), in train-id order.
LABEL_IDS_19: tuple[int, ...] = tuple(sorted(CITYSCAPES_TO_TRAIN, key=CITYSCAPES_TO_TRAIN.get))
# Ids outside the 19 that the generator also writes; readers map them to 255.
EXTRA_LABEL_IDS: tuple[int, ...] = (0, 1, 4, 9)
ALLOWED_LABEL_IDS: frozenset[int] = frozenset(LABEL_IDS_19 + EXTRA_LABEL_IDS)

# Cityscapes colours of the 19 train ids (the official palette).
CITYSCAPES_PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)

TRAIN_CITIES: tuple[str, ...] = ("aachen", "bochum", "bremen")
VAL_CITIES: tuple[str, ...] = ("frankfurt", "lindau", "munster")
FRAME = 19  # Cityscapes' annotated frame number

DOMAIN_CODES = {"source": 0, "target": 1}
SPLIT_CODES = {"train": 0, "val": 1}

MIN_SIDE = 32

# Label id -> train id (255 elsewhere).
_TRAIN_ID = np.full(256, 255, np.uint8)
_TRAIN_ID[list(LABEL_IDS_19)] = np.arange(19, dtype=np.uint8)


def image_rng(seed: int, domain: str, split: str, index: int) -> np.random.Generator:
    """The RNG of one image, seeded by (seed, domain, split, index)."""
    return np.random.default_rng([seed, DOMAIN_CODES[domain], SPLIT_CODES[split], index])


def render_image(
    seed: int, domain: str, split: str, index: int, height: int, width: int,
    target: str = "v5",
) -> tuple[np.ndarray, np.ndarray]:
    """One image and its label, exactly as ``generate`` writes them; ``target`` names the
    benchmark version (``BENCHMARKS``: v5, or v4 with its per-class target palette).

    Shape:
        returns image (height, width, 3) uint8 RGB, label (height, width) uint8 label ids
    """
    style = BENCHMARKS[target][domain != "source"]
    return render(image_rng(seed, domain, split, index), style, height, width)


def source_paths(root: Path, index: int) -> tuple[Path, Path]:
    """(image, label) paths of source image ``index`` (0-based; files count from 00001)."""
    name = f"{index + 1:05d}.png"
    return root / "source" / "images" / name, root / "source" / "labels" / name


def target_paths(root: Path, split: str, index: int) -> tuple[Path, Path]:
    """(image, label) paths of target image ``index`` of ``split`` in Cityscapes' layout;
    images go round-robin over the split's cities."""
    cities = TRAIN_CITIES if split == "train" else VAL_CITIES
    city = cities[index % len(cities)]
    stem = f"{city}_{index // len(cities):06d}_{FRAME:06d}"
    base = root / "target"
    return (
        base / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
        base / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png",
    )


def _write_png(path: Path, array: np.ndarray) -> None:
    """Write an (H, W, 3) RGB or (H, W) 8-bit array as PNG, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, compress_level=3)


def _check_args(
    out_dir: Path, seed: int, counts: dict[str, int], height: int, width: int, target: str
) -> None:
    def is_int(value: Any) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if not is_int(seed) or seed < 0:
        raise RipuError(f"synthetic: seed must be a non-negative integer, got {seed!r}")
    for name, value in counts.items():
        if not is_int(value) or value < 1:
            raise RipuError(f"synthetic: {name} must be a positive integer, got {value!r}")
    for name, value in (("height", height), ("width", width)):
        if not is_int(value) or value < MIN_SIDE:
            raise RipuError(f"synthetic: {name} must be an integer >= {MIN_SIDE}, got {value!r}")
    if target not in BENCHMARKS:
        raise RipuError(f"synthetic: target must be one of {', '.join(BENCHMARKS)}, got "
                        f"{target!r}")
    if out_dir.exists() and not out_dir.is_dir():
        raise RipuError(f"synthetic: output {out_dir} exists and is not a directory")


def _jobs(
    root: Path, counts: dict[str, int]
) -> Iterator[tuple[str, str, int, Path, Path]]:
    """(domain, split, index, image path, label path) of every image to write."""
    for index in range(counts["source_images"]):
        yield ("source", "train", index, *source_paths(root, index))
    for split, key in (("train", "target_train"), ("val", "target_val")):
        for index in range(counts[key]):
            yield ("target", split, index, *target_paths(root, split, index))


def _frequencies(hist: np.ndarray) -> dict[str, float]:
    """Fractions of all pixels per class name (and ``"ignore"``) from a label-id histogram."""
    total = max(int(hist.sum()), 1)
    out = {name: round(float(hist[i]) / total, 6) for i, name in zip(
        LABEL_IDS_19, CLASSES_19, strict=True)}
    out["ignore"] = round(float(total - hist[list(LABEL_IDS_19)].sum()) / total, 6)
    return out


def generate(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    source_images: int = 240,
    target_train: int = 160,
    target_val: int = 60,
    height: int = 128,
    width: int = 256,
    target: str = "v5",
    progress: bool = True,
) -> dict[str, Any]:
    """Generate the benchmark into ``out_dir`` and return its index (also index.json).

    The dataset is written into a temporary sibling folder and renamed onto ``out_dir``
    only when complete; an existing ``out_dir`` is replaced only then, and left untouched
    if anything fails.
    """
    out_dir = Path(out_dir)
    counts = {"source_images": source_images, "target_train": target_train,
              "target_val": target_val}
    _check_args(out_dir, seed, counts, height, width, target)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the dataset is not
        index = _write_all(tmp, seed, counts, height, width, target, progress)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return index


def _write_all(
    root: Path, seed: int, counts: dict[str, int], height: int, width: int, target: str,
    progress: bool,
) -> dict[str, Any]:
    hists = {key: np.zeros(256, np.int64) for key in ("source", "target_train", "target_val")}
    samples: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"source": [], "target": []}
    total = sum(counts.values())
    for domain, split, index, image_path, label_path in tqdm(
        _jobs(root, counts), total=total, disable=not progress, desc="synthetic", unit="img"
    ):
        image, label = render_image(seed, domain, split, index, height, width, target)
        _write_png(image_path, image)
        _write_png(label_path, label)
        key = "source" if domain == "source" else f"target_{split}"
        hists[key] += np.bincount(label.ravel(), minlength=256)
        if split == "train" and len(samples[domain]) < 4:
            samples[domain].append((image, label))
    hists["target"] = hists["target_train"] + hists["target_val"]
    index = {
        "format": FORMAT,
        "seed": int(seed),
        "target": target,
        "height": int(height),
        "width": int(width),
        "counts": {"source": int(counts["source_images"]),
                   "target_train": int(counts["target_train"]),
                   "target_val": int(counts["target_val"])},
        "layout": {"source": "gta5", "target": "cityscapes"},
        "cities": {"train": list(TRAIN_CITIES), "val": list(VAL_CITIES)},
        "classes": list(CLASSES_19),
        "label_ids": list(LABEL_IDS_19),
        "class_frequencies": {
            key: _frequencies(hists[key])
            for key in ("source", "target", "target_train", "target_val")
        },
    }
    write_json(root / "index.json", index)
    sample_grid(samples).save(root / "samples.png")
    return index


def _replace_dir(new: Path, target: Path) -> None:
    """Rename the finished folder ``new`` onto ``target``, replacing an existing one."""
    if not target.exists():
        os.rename(new, target)
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def colorize(label: np.ndarray) -> np.ndarray:
    """Cityscapes colours of a label-id map; ids outside the 19 are black.

    Shape:
        label (H, W) uint8 label ids -> (H, W, 3) uint8
    """
    palette = np.zeros((256, 3), np.uint8)
    palette[:19] = CITYSCAPES_PALETTE
    return palette[_TRAIN_ID[label]]


def overlay(image: np.ndarray, label: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Blend the label colours over the image; ignored pixels show the darkened image.

    Shape:
        image (H, W, 3) uint8, label (H, W) uint8 -> (H, W, 3) uint8
    """
    colours = colorize(label).astype(np.float32)
    out = (1 - alpha) * image.astype(np.float32) + alpha * colours
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def sample_grid(samples: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> Image.Image:
    """A grid for a person: per domain a titled row of images above their label overlays,
    then a colour legend of the 19 classes."""
    font = ImageFont.load_default()
    first = next(iter(s for rows in samples.values() for s in rows))
    h, w = first[1].shape
    zoom = max(1, math.ceil(256 / w))
    th, tw, pad, title = h * zoom, w * zoom, 4, 16
    cols = max(len(rows) for rows in samples.values())
    legend_rows = math.ceil(19 / 4)
    width = cols * (tw + pad) + pad
    height = len(samples) * (title + 2 * (th + pad)) + legend_rows * 14 + 2 * pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    titles = {"source": "source (rendered)", "target": "target (captured)"}
    y = pad
    for domain, rows in samples.items():
        draw.text((pad, y + 2), titles.get(domain, domain), fill=(0, 0, 0), font=font)
        y += title
        for k, (image, label) in enumerate(rows):
            x = pad + k * (tw + pad)
            for r, tile in enumerate((image, overlay(image, label))):
                big = Image.fromarray(tile).resize((tw, th), Image.NEAREST)
                canvas.paste(big, (x, y + r * (th + pad)))
        y += 2 * (th + pad)
    col_w = max(width // 4, 1)
    for i, (name, colour) in enumerate(zip(CLASSES_19, CITYSCAPES_PALETTE, strict=True)):
        x0, y0 = pad + (i % 4) * col_w, y + (i // 4) * 14
        draw.rectangle((x0, y0 + 1, x0 + 10, y0 + 11), fill=colour, outline=(0, 0, 0))
        draw.text((x0 + 14, y0), name, fill=(0, 0, 0), font=font)
    return canvas

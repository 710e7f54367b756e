"""The embedded synthetic benchmark: layout, labels, determinism, the shift, atomicity."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ripu.data import synthetic
from ripu.data import synthetic_scene as scene
from ripu.data.labels import CLASSES_19
from ripu.data.synthetic import (
    ALLOWED_LABEL_IDS,
    LABEL_IDS_19,
    generate,
    render_image,
)
from ripu.errors import RipuError

H, W = 32, 64
SKY, SIDEWALK, BUILDING, VEGETATION, TERRAIN = 23, 8, 11, 21, 22


def _labels(paths: list[Path]) -> list[np.ndarray]:
    return [np.array(Image.open(p)) for p in paths]


def _images(paths: list[Path]) -> list[np.ndarray]:
    return [np.array(Image.open(p)).astype(np.float32) for p in paths]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    """A moderate tiny set: enough images that every class shows up in both domains."""
    root = tmp_path_factory.mktemp("synthetic") / "synth"
    index = generate(root, seed=3, source_images=32, target_train=30, target_val=6,
                     height=H, width=W, progress=False)
    return root, index


def _domain_files(root: Path, domain: str) -> tuple[list[Path], list[Path]]:
    if domain == "source":
        return (sorted((root / "source" / "images").glob("*.png")),
                sorted((root / "source" / "labels").glob("*.png")))
    return (sorted((root / "target" / "leftImg8bit").glob("*/*/*.png")),
            sorted((root / "target" / "gtFine").glob("*/*/*.png")))


def test_exact_file_layout_and_names(tmp_path):
    root = tmp_path / "synth"
    generate(root, seed=0, source_images=2, target_train=4, target_val=2, height=H, width=W,
             progress=False)
    expected = {"index.json", "samples.png",
                "source/images/00001.png", "source/images/00002.png",
                "source/labels/00001.png", "source/labels/00002.png"}
    for split, stems in (
        ("train", ["aachen/aachen_000000_000019", "bochum/bochum_000000_000019",
                   "bremen/bremen_000000_000019", "aachen/aachen_000001_000019"]),
        ("val", ["frankfurt/frankfurt_000000_000019", "lindau/lindau_000000_000019"]),
    ):
        for stem in stems:
            expected.add(f"target/leftImg8bit/{split}/{stem}_leftImg8bit.png")
            expected.add(f"target/gtFine/{split}/{stem}_gtFine_labelIds.png")
    found = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert found == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"]  # no temp folders left
    for rel in expected - {"index.json"}:
        with Image.open(root / rel) as img:
            assert img.format == "PNG"
            if "/labels/" in rel or "gtFine" in rel:
                assert (img.mode, img.size) == ("L", (W, H))
            elif rel.startswith(("source/images", "target/leftImg8bit")):
                assert (img.mode, img.size) == ("RGB", (W, H))
    train_cities = {p.name for p in (root / "target/leftImg8bit/train").iterdir()}
    val_cities = {p.name for p in (root / "target/leftImg8bit/val").iterdir()}
    assert not train_cities & val_cities


def test_labels_hold_only_allowed_ids_and_every_class(dataset):
    root, _ = dataset
    assert len(ALLOWED_LABEL_IDS) == 23
    for domain in ("source", "target"):
        ids = set()
        for label in _labels(_domain_files(root, domain)[1]):
            ids |= set(np.unique(label).tolist())
        assert ids <= ALLOWED_LABEL_IDS, (domain, ids - ALLOWED_LABEL_IDS)
        assert set(LABEL_IDS_19) <= ids, (domain, set(LABEL_IDS_19) - ids)
        # Ids outside the 19 appear too (unlabelled, static; parking or ego somewhere).
        assert {0, 4} <= ids, domain
    target_ids = set().union(*(np.unique(lab).tolist()
                               for lab in _labels(_domain_files(root, "target")[1])))
    assert 1 in target_ids  # the ego vehicle hood is part of the captured look


def test_index_matches_the_files(dataset):
    root, index = dataset
    on_disk = json.loads((root / "index.json").read_text())
    assert on_disk == index
    assert index["seed"] == 3 and (index["height"], index["width"]) == (H, W)
    assert index["counts"] == {"source": 32, "target_train": 30, "target_val": 6}
    assert index["classes"] == list(CLASSES_19)
    labels = _labels(_domain_files(root, "source")[1])
    hist = np.bincount(np.concatenate([lab.ravel() for lab in labels]), minlength=256)
    freq = index["class_frequencies"]["source"]
    for label_id, name in zip(LABEL_IDS_19, CLASSES_19, strict=True):
        assert freq[name] == pytest.approx(hist[label_id] / hist.sum(), abs=1e-6)
    for key in ("source", "target", "target_train", "target_val"):
        assert sum(index["class_frequencies"][key].values()) == pytest.approx(1.0, abs=1e-4)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    kwargs = dict(source_images=2, target_train=2, target_val=1, height=H, width=W,
                  progress=False)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, seed=5, **kwargs)
    generate(b, seed=5, **kwargs)
    generate(c, seed=6, **kwargs)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    labels = [rel for rel in files if str(rel).startswith(("source/labels", "target/gtFine"))]
    assert all((a / rel).read_bytes() != (c / rel).read_bytes() for rel in labels)


def test_each_image_is_independent_of_generation_order_and_count(tmp_path):
    small, large = tmp_path / "small", tmp_path / "large"
    generate(small, seed=1, source_images=1, target_train=1, target_val=1, height=H, width=W,
             progress=False)
    generate(large, seed=1, source_images=3, target_train=2, target_val=2, height=H, width=W,
             progress=False)
    for rel in ("source/images/00001.png", "source/labels/00001.png",
                "target/gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelIds.png"):
        assert (small / rel).read_bytes() == (large / rel).read_bytes()
    image, label = render_image(1, "target", "val", 1, H, W)
    written = large / "target/leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png"
    assert np.array_equal(np.array(Image.open(written)), image)
    written = large / "target/gtFine/val/lindau/lindau_000000_000019_gtFine_labelIds.png"
    assert np.array_equal(np.array(Image.open(written)), label)


def _class_mean(images: list[np.ndarray], labels: list[np.ndarray], label_id: int) -> np.ndarray:
    pixels = np.concatenate([img[lab == label_id] for img, lab in zip(images, labels,
                                                                     strict=True)])
    return pixels.mean(axis=0)


def _flat_area_roughness(images: list[np.ndarray], labels: list[np.ndarray]) -> float:
    """Median |Laplacian| of the grey image over pixels whose 3x3 label window is uniform."""
    values = []
    for img, lab in zip(images, labels, strict=True):
        grey = img.mean(axis=2)
        lap = np.abs(4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1]
                     - grey[1:-1, :-2] - grey[1:-1, 2:])
        flat = np.ones_like(lap, dtype=bool)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                flat &= lab[dy:dy + H - 2, dx:dx + W - 2] == lab[1:-1, 1:-1]
        values.append(lap[flat])
    return float(np.median(np.concatenate(values)))


def test_the_domain_shift_is_real(dataset):
    root, index = dataset
    src_images, src_labels = (f(p) for f, p in zip((_images, _labels),
                                                   _domain_files(root, "source"), strict=True))
    tgt_images, tgt_labels = (f(p) for f, p in zip((_images, _labels),
                                                   _domain_files(root, "target"), strict=True))
    # Per-class palette shift (road is kept close on purpose: its shift is texture and light).
    for label_id in (SIDEWALK, BUILDING, VEGETATION, TERRAIN, SKY):
        gap = np.linalg.norm(_class_mean(src_images, src_labels, label_id)
                             - _class_mean(tgt_images, tgt_labels, label_id))
        assert gap > 25.0, (label_id, gap)
    # Rendered surfaces are flat; captured ones carry texture and sensor noise.
    src_rough = _flat_area_roughness(src_images, src_labels)
    tgt_rough = _flat_area_roughness(tgt_images, tgt_labels)
    assert src_rough < 1.0 and tgt_rough > 3.0, (src_rough, tgt_rough)
    # Another horizon and skyline: much less sky in the target.
    freq = index["class_frequencies"]
    assert freq["source"]["sky"] > 1.5 * freq["target"]["sky"]


def test_small_classes_are_rare_in_pixels(dataset):
    _, index = dataset
    for key in ("source", "target"):
        freq = index["class_frequencies"][key]
        for small in ("pole", "traffic light", "traffic sign", "rider", "motorcycle",
                      "bicycle"):
            assert freq[small] < min(freq["road"], freq["building"]) / 3, (key, small)
        assert freq["road"] > 0.15


def test_failure_midway_leaves_existing_output_untouched(tmp_path, monkeypatch):
    out = tmp_path / "synth"
    out.mkdir()
    (out / "old.txt").write_text("previous dataset")
    real_write = synthetic._write_png
    calls = []

    def failing_write(path, array):
        calls.append(path)
        if len(calls) == 5:
            raise OSError("disk full")
        real_write(path, array)

    monkeypatch.setattr(synthetic, "_write_png", failing_write)
    with pytest.raises(OSError, match="disk full"):
        generate(out, source_images=3, target_train=2, target_val=1, height=H, width=W,
                 progress=False)
    assert len(calls) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert (out / "old.txt").read_text() == "previous dataset"

    monkeypatch.setattr(synthetic, "_write_png", real_write)
    generate(out, source_images=1, target_train=1, target_val=1, height=H, width=W,
             progress=False)
    assert not (out / "old.txt").exists() and (out / "index.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]


@pytest.mark.parametrize("kwargs, word", [
    ({"source_images": 0}, "source_images"),
    ({"target_train": -1}, "target_train"),
    ({"target_val": 1.5}, "target_val"),
    ({"target_val": True}, "target_val"),
    ({"height": 31}, "height"),
    ({"width": 16}, "width"),
    ({"seed": -1}, "seed"),
])
def test_bad_arguments_raise_before_writing(tmp_path, kwargs, word):
    with pytest.raises(RipuError, match=word):
        generate(tmp_path / "synth", progress=False, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_output_path_that_is_a_file_is_rejected(tmp_path):
    target = tmp_path / "synth"
    target.write_text("not a folder")
    with pytest.raises(RipuError, match="not a directory"):
        generate(target, source_images=1, target_train=1, target_val=1, height=H, width=W,
                 progress=False)
    assert target.read_text() == "not a folder"


def test_samples_grid_shows_both_domains_with_overlays(dataset):
    root, _ = dataset
    with Image.open(root / "samples.png") as img:
        grid = np.array(img.convert("RGB"))
    # 4 columns of 256-pixel tiles (the 64-pixel images zoomed 4x) and a legend.
    assert grid.shape[1] == 4 * (256 + 4) + 4
    assert grid.shape[0] > 2 * 2 * 128
    # The overlays blend the Cityscapes road colour (128, 64, 128) into road pixels.
    packed = grid.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    assert len(np.unique(packed)) > 500  # photos, not blank tiles
    assert np.all(grid == (128, 64, 128), axis=-1).any()  # the road swatch of the legend


def test_overlay_blends_cityscapes_colours_by_train_id():
    image = np.full((1, 3, 3), 100, np.uint8)
    label = np.array([[7, 33, 0]], np.uint8)  # road, bicycle, unlabelled
    out = synthetic.overlay(image, label, alpha=0.6)
    assert out[0, 0].tolist() == [117, 78, 117]  # 0.4 * 100 + 0.6 * (128, 64, 128)
    assert out[0, 1].tolist() == [111, 47, 59]  # 0.4 * 100 + 0.6 * (119, 11, 32)
    assert out[0, 2].tolist() == [40, 40, 40]  # ignored: the darkened image


def test_scene_primitives_on_hand_computed_cases():
    canvas = scene.Canvas(6, 8)
    red = np.array([255, 0, 0], np.float32)
    canvas.rect(1.0, 1.0, 3.0, 2.0, 7, red)  # pixel centres 1.5, 2.5 x 1.5
    assert np.argwhere(canvas.label == 7).tolist() == [[1, 1], [1, 2]]
    canvas.rect(5.2, 3.1, 5.3, 3.2, 17, red)  # thinner than a pixel: still one pixel
    assert np.argwhere(canvas.label == 17).tolist() == [[3, 5]]
    canvas = scene.Canvas(4, 4)
    # Triangle with vertices at pixel corners (0,0), (4,0), (0,4): centres with x + y <= 4.
    canvas.polygon(np.array([[0, 0], [4, 0], [0, 4]], np.float32), 11, red)
    assert (canvas.label == 11).sum() == 10  # 4 + 3 + 2 + 1 pixel centres
    hull = scene.convex_hull(np.array([[0, 0], [2, 0], [2, 2], [0, 2], [1, 1]], np.float32))
    assert sorted(map(tuple, hull.tolist())) == [(0, 0), (0, 2), (2, 0), (2, 2)]
    cam = scene.Camera(h=100, w=200, f=100.0, hy=40.0, vx=100.0, height=1.5)
    assert cam.project(2.0, 0.0, 10.0) == (120.0, 55.0)  # ground point 10 m ahead, 2 m right
    assert cam.project(0.0, 1.5, 50.0) == (100.0, 40.0)  # camera height: on the horizon


def test_blur_and_smooth_noise():
    flat = np.full((5, 7, 3), 80.0, np.float32)
    assert np.allclose(scene.gaussian_blur(flat, 1.0), 80.0)
    spike = np.zeros((9, 9, 1), np.float32)
    spike[4, 4] = 1.0
    blurred = scene.gaussian_blur(spike, 1.0)
    assert blurred.sum() == pytest.approx(1.0) and blurred[4, 4, 0] < 0.5
    assert np.allclose(blurred[:, :, 0], blurred[:, :, 0].T)  # isotropic
    noise = scene.smooth_noise(np.random.default_rng(0), 16, 32, (3, 5))
    assert noise.shape == (16, 32)
    assert np.abs(np.diff(noise, axis=1)).max() < 0.5 < np.abs(noise).max()  # smooth, not flat


def test_thin_structures_scale_with_the_style():
    """A pole 10 m ahead at f = 500 px: half-width 0.07 m * thin * 50 px/m."""
    cam = scene.Camera(h=200, w=200, f=500.0, hy=60.0, vx=100.0, height=1.5)
    widths = {}
    for thin in (1.0, 2.0):
        style = replace(scene.TARGET, thin=thin, light=0.0, sign=0.0)
        rng = np.random.default_rng(0)
        pal = scene.Palette(style, rng)
        canvas = scene.Canvas(200, 200)
        scene._pole(0.0, 10.0, pal, rng, style)(canvas, cam)
        row = canvas.label[int(cam.project(0.0, 0.5, 10.0)[1])]  # 0.5 m above the ground
        widths[thin] = int((row == scene.POLE).sum())
    assert widths == {1.0: 7, 2.0: 14}  # 2 * 0.07 * 50 = 7 px, then 14 px


def test_people_widen_with_the_build():
    """A person 10 m ahead at f = 500 px (50 px/m): the shoulder row spans both arms,
    from -0.30 to +0.30 m times ``build`` (30 px, then 60 px); the height is kept."""
    cam = scene.Camera(h=200, w=200, f=500.0, hy=60.0, vx=100.0, height=1.5)
    widths, heights = {}, {}
    for build in (1.0, 2.0):
        rng = np.random.default_rng(0)
        canvas = scene.Canvas(200, 200)
        scene._person(0.0, 10.0, scene.Palette(scene.TARGET, rng), rng, build)(canvas, cam)
        person = canvas.label == scene.PERSON
        rows = np.flatnonzero(person.any(axis=1))
        widths[build] = int(person.sum(axis=1).max())
        heights[build] = int(rows[-1] - rows[0])
    assert widths == {1.0: 30, 2.0: 60} and heights[1.0] == heights[2.0]


def _sample_scene(style: scene.DomainStyle, seed: int):
    """The street and the objects (near depth, draw function) of one scene."""
    rng = np.random.default_rng(seed)
    street = scene.sample_street(rng, style)
    return street, scene.sample_objects(rng, style, street, scene.Palette(style, rng))


def test_crossing_puts_pedestrians_on_the_road():
    """``crossing`` 1 places every pedestrian on the road (between the kerbs), 0 every one
    on a sidewalk (beyond its kerb). Each person's lateral position is read back from the
    centre column of its drawn pixels (the body is symmetric about it)."""
    cam = scene.Camera(h=200, w=2000, f=200.0, hy=100.0, vx=1000.0, height=1.4)
    for crossing in (0.0, 1.0):
        style = replace(scene.TARGET, crossing=crossing, persons=6.0, riders=0.0,
                        bicycles=0.0, motorcycles=0.0, moving_vehicles=0.0, parked_car=0.0,
                        tree_slot=0.0, clutter=0.0, pole_spacing=(100.0, 100.0))
        seen = 0
        for i in range(8):
            street, objects = _sample_scene(style, i)
            left, right = street.sides
            for z, draw in objects:
                canvas = scene.Canvas(cam.h, cam.w)
                draw(canvas, cam)
                cols = np.flatnonzero((canvas.label == scene.PERSON).any(axis=0))
                if cols.size == 0:
                    continue
                x = ((cols[0] + cols[-1] + 1) / 2 - cam.vx) * z / cam.f
                on_road = -left.kerb < x < right.kerb
                assert on_road == (crossing == 1.0), (crossing, x, left.kerb, right.kerb)
                seen += 1
        assert seen >= 20


def test_objects_stay_within_the_styles_reach():
    """Every object's near depth is below its range's far limit scaled by ``reach``."""
    for reach in (0.5, 1.0):
        style = replace(scene.TARGET, reach=reach)
        depths = []
        for i in range(20):
            depths += [z for z, _ in _sample_scene(style, i)[1]]
        assert max(depths) < 80.0 * reach  # the farthest range: poles and trees, 80 m
    assert scene.TARGET.reach < 1.0 and scene.TARGET.thin > 1.0


def test_every_class_covers_target_pixels(dataset):
    """Each of the 19 classes holds a learnable share of the target pixels."""
    _, index = dataset
    freq = index["class_frequencies"]["target"]
    for name in CLASSES_19:
        assert freq[name] >= 0.0005, (name, freq[name])  # 0.05% even at 32x64

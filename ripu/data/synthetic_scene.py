"""Procedural street scenes for the embedded synthetic benchmark: geometry, objects, looks.

A scene is a pinhole camera looking down a straight street. The ground, the facades on
both sides, the low walls and fences, and an optional far facade are planes resolved per
pixel with a depth buffer; everything else (vehicles, people, bicycles, poles, lights,
signs, trees, clutter) is drawn far to near. Sizes are in metres and projected, so every
image size shows the same scene. The look (palette, light, texture, noise, blur) and the
scene statistics (horizon, object scale, class frequencies) come from a ``DomainStyle``:
``SOURCE`` looks rendered, ``TARGET`` looks captured.

Labels are Cityscapes label ids (docs/method.md section 4), including a few ids outside the 19
classes (0 unlabelled, 1 ego vehicle, 4 static, 9 parking) that readers map to 255.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

UNLABELLED, EGO_VEHICLE, STATIC, PARKING = 0, 1, 4, 9
ROAD, SIDEWALK, BUILDING, WALL, FENCE = 7, 8, 11, 12, 13
POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY = 17, 19, 20, 21, 22, 23
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = 24, 25, 26, 27, 28, 31, 32, 33

Colour = tuple[float, float, float]
Range = tuple[float, float]

# Materials: the colour options of each surface. Stuff materials differ per domain (the
# per-class palette shift); instance materials (paint, cloth, skin, signs, lamps) are shared
# and pass through the domain's global colour transform.
SHARED_MATERIALS: dict[str, tuple[Colour, ...]] = {
    "paint": (
        (228, 228, 226), (30, 30, 34), (168, 170, 176), (105, 106, 112), (160, 32, 30),
        (38, 58, 130), (30, 70, 55), (215, 175, 45), (190, 175, 140), (120, 30, 40),
    ),
    "cloth": (
        (30, 30, 35), (60, 60, 70), (200, 200, 195), (140, 40, 40), (40, 60, 120),
        (100, 80, 60), (70, 110, 80), (180, 150, 60), (120, 120, 130), (150, 90, 130),
    ),
    "skin": ((232, 192, 160), (190, 140, 105), (120, 85, 60)),
    "glass": ((38, 46, 60), (60, 72, 90)),
    "tyre": ((24, 24, 24),),
    "sign": ((32, 80, 200), (205, 32, 30), (235, 205, 45), (232, 232, 232)),
    "lamp": ((235, 45, 30), (240, 175, 30), (40, 215, 90)),
    "housing": ((32, 33, 30),),
    "rearlight": ((200, 20, 20),),
    "static": ((80, 80, 78), (55, 90, 60), (120, 100, 70)),
    "void": ((200, 70, 170), (90, 160, 190), (220, 140, 60), (140, 140, 140)),
    "trunk": ((88, 68, 48),),
    "ego": ((22, 22, 26), (40, 42, 48)),
}

SOURCE_MATERIALS: dict[str, tuple[Colour, ...]] = {
    "road": ((84, 84, 90), (98, 96, 100)),
    "marking": ((235, 235, 232), (232, 200, 60)),
    "sidewalk": ((152, 144, 132), (162, 152, 150)),
    "kerb": ((182, 178, 170),),
    "parking": ((108, 98, 104),),
    "building": (
        (168, 132, 100), (150, 150, 144), (182, 162, 130), (122, 92, 80), (200, 190, 170),
    ),
    "window": ((70, 92, 124), (48, 58, 80)),
    "wall": ((178, 166, 144), (140, 136, 130)),
    "fence": ((122, 100, 70), (92, 112, 92)),
    "pole": ((104, 108, 112),),
    "vegetation": ((56, 136, 46), (78, 150, 56)),
    "terrain": ((136, 150, 72), (152, 140, 92)),
    "sky": ((104, 164, 236), (140, 182, 230)),
}

TARGET_MATERIALS: dict[str, tuple[Colour, ...]] = {
    "road": ((96, 92, 100),),
    "marking": ((206, 206, 200),),
    "sidewalk": ((150, 136, 146), (128, 126, 132)),
    "kerb": ((166, 164, 162),),
    "parking": ((122, 110, 118),),
    "building": ((112, 110, 102), (142, 136, 126), (94, 90, 86), (162, 150, 138)),
    "window": ((52, 58, 66), (82, 86, 92)),
    "wall": ((150, 144, 128), (116, 112, 104)),
    "fence": ((104, 110, 100), (140, 128, 108)),
    "pole": ((84, 84, 80),),
    "vegetation": ((62, 116, 40), (84, 124, 54), (56, 98, 36)),
    "terrain": ((124, 128, 84), (140, 130, 96)),
    "sky": ((172, 196, 228), (196, 210, 228)),
}


@dataclass(frozen=True)
class Condition:
    """A scene's light and weather (version 5 target): drawn once per image with weight
    ``weight``; applied to the whole frame before the sensor (global, not per class)."""

    name: str
    weight: float
    gain: Range  # overall exposure
    tint: Colour  # per-channel gain (light colour)
    saturation: float  # 1 keeps, 0 greys
    haze: Range  # fog density per metre: a pixel at distance z keeps exp(-haze z) of itself
    haze_colour: Colour = (200.0, 202.0, 206.0)
    contrast: float = 1.0  # around mid-grey


@dataclass(frozen=True)
class DomainStyle:
    """Look and statistics of one domain. Ranges are (low, high) of a uniform draw;
    rates are Poisson means per image; probabilities are per image or per slot."""

    name: str
    materials: dict[str, tuple[Colour, ...]]
    saturation: float  # global colour transform: 1 keeps, 0 greys
    tint: Colour  # per-channel gain of the global colour transform
    colour_jitter: float  # std of per-image / per-instance colour jitter (0-255 units)
    horizon: Range  # horizon row, fraction of the height
    focal: Range  # focal length, fraction of the width (object scale)
    camera_height: float  # metres
    building_height: Range
    sidewalk: Range  # sidewalk width, metres
    side_kinds: tuple[float, float, float]  # P(building), P(vegetation), P(gap) per segment
    end_wall: float  # P(a far facade closes the street)
    terrain_setback: float  # P(the strip behind the sidewalk is terrain)
    parking_setback: float  # P(it is parking)
    tree_slot: float  # P(a tree at each slot along a sidewalk)
    wall: float  # P(a wall segment) per slot
    fence: float  # P(a fence segment) per slot
    parked_car: float  # P(a parked vehicle) per slot
    moving_vehicles: float
    truck_share: float
    bus_share: float
    train: float
    persons: float
    riders: float
    bicycles: float
    motorcycles: float
    pole_spacing: Range
    light: float  # P(a traffic light on a pole)
    sign: float  # P(a sign on a pole)
    clutter: float
    ego: float  # P(ego vehicle hood at the bottom)
    captured: bool  # apply the camera model (texture, light, blur, vignette, noise)
    texture: float = 0.0
    blur: Range = (0.0, 0.0)
    noise: Range = (0.0, 0.0)
    vignette: Range = (0.0, 0.0)
    light_field: float = 0.0
    gamma: Range = (1.0, 1.0)
    reach: float = 1.0  # scales the far limit of every object's depth range
    thin: float = 1.0  # width of thin structures (poles, lights, signs, two-wheeler frames)
    build: float = 1.0  # width of people (pedestrians and riders)
    crossing: float = 0.15  # P(a pedestrian is on the road rather than a sidewalk)
    conditions: tuple[Condition, ...] = ()  # per-scene light and weather (none: as rendered)


SOURCE = DomainStyle(
    name="source", materials={**SHARED_MATERIALS, **SOURCE_MATERIALS}, saturation=1.0,
    tint=(1.0, 1.0, 1.0), colour_jitter=14.0, horizon=(0.44, 0.52), focal=(1.0, 1.2),
    camera_height=1.6, building_height=(6.0, 20.0), sidewalk=(1.6, 4.0),
    side_kinds=(0.55, 0.15, 0.30),
    end_wall=0.35, terrain_setback=0.5, parking_setback=0.1, tree_slot=0.25, wall=0.3,
    fence=0.2, parked_car=0.3, moving_vehicles=2.0, truck_share=0.25, bus_share=0.12,
    train=0.12, persons=2.0, riders=0.5, bicycles=0.25, motorcycles=0.45,
    pole_spacing=(14.0, 26.0), light=0.35, sign=0.35, clutter=0.8, ego=0.0, captured=False,
    reach=0.5, thin=3.0, build=1.3, crossing=0.3,
)

# Version 4 target (issue 18): another palette and brightness per class, a swap of each
# class's colour that makes whole objects confidently wrong.
TARGET_V4 = DomainStyle(
    name="target", materials={**SHARED_MATERIALS, **TARGET_MATERIALS}, saturation=0.85,
    tint=(0.95, 0.97, 1.04), colour_jitter=12.0, horizon=(0.36, 0.42), focal=(1.37, 1.61),
    camera_height=1.4, building_height=(9.0, 28.0), sidewalk=(2.4, 5.0),
    side_kinds=(0.62, 0.30, 0.08),
    end_wall=0.55, terrain_setback=0.4, parking_setback=0.15, tree_slot=0.5, wall=0.25,
    fence=0.2, parked_car=0.4, moving_vehicles=1.6, truck_share=0.15, bus_share=0.15,
    train=0.25, persons=4.0, riders=1.5, bicycles=1.2, motorcycles=1.0,
    pole_spacing=(9.0, 18.0), light=0.6, sign=0.6, clutter=1.2, ego=0.85, captured=True,
    texture=0.45, blur=(0.5, 0.9), noise=(1.5, 4.0), vignette=(0.15, 0.35), light_field=0.12,
    gamma=(0.9, 1.1), reach=0.5, thin=3.0, build=1.3, crossing=0.3,
)

# Version 5 target: the source's materials (no per-class colour change); the shift is the
# camera (height, horizon, focal length), the class frequencies, texture, sensor noise and
# blur, and each scene's light and weather (CONDITIONS_V5), all global or per scene.
CONDITIONS_V5: tuple[Condition, ...] = (
    Condition("day", 0.4, gain=(0.95, 1.1), tint=(1.0, 1.0, 1.0), saturation=0.9,
              haze=(0.0, 0.0)),
    Condition("overcast", 0.25, gain=(0.8, 0.95), tint=(0.97, 0.99, 1.05), saturation=0.7,
              haze=(0.002, 0.006), contrast=0.85),
    Condition("dusk", 0.2, gain=(0.55, 0.7), tint=(1.12, 0.95, 0.8), saturation=0.85,
              haze=(0.0, 0.003), contrast=0.9),
    Condition("fog", 0.15, gain=(0.9, 1.0), tint=(1.0, 1.0, 1.0), saturation=0.7,
              haze=(0.006, 0.015)),
)

TARGET = replace(  # version 4's camera, layout and sensor, the source's colours, per-scene light
    TARGET_V4, materials={**SHARED_MATERIALS, **SOURCE_MATERIALS}, saturation=1.0,
    tint=(1.0, 1.0, 1.0), colour_jitter=14.0, texture=0.5, blur=(0.5, 1.0),
    noise=(1.5, 4.5), light_field=0.15, conditions=CONDITIONS_V5,
)

# Version 5 source: version 4's plus the rendered light of a game (GTA5 renders times of day
# and weather too): day, overcast and low sun, no fog, no sensor.
SOURCE_CONDITIONS_V5: tuple[Condition, ...] = (
    Condition("day", 0.6, gain=(1.0, 1.1), tint=(1.0, 1.0, 1.0), saturation=1.0,
              haze=(0.0, 0.0)),
    Condition("overcast", 0.2, gain=(0.85, 0.95), tint=(0.98, 1.0, 1.04), saturation=0.75,
              haze=(0.0, 0.002), contrast=0.9),
    Condition("low_sun", 0.2, gain=(0.6, 0.75), tint=(1.15, 0.95, 0.8), saturation=0.9,
              haze=(0.0, 0.0)),
)
SOURCE_V5 = replace(SOURCE, conditions=SOURCE_CONDITIONS_V5)

STYLES: dict[str, DomainStyle] = {"source": SOURCE_V5, "target": TARGET}
# The (source, target) styles of each benchmark version (``synth.target``).
BENCHMARKS: dict[str, tuple[DomainStyle, DomainStyle]] = {
    "v5": (SOURCE_V5, TARGET), "v4": (SOURCE, TARGET_V4)}


# ----------------------------------------------------------------------------------------
# Colours


class Palette:
    """Per-image colours: each material gets one per-image shade; instances vary around it."""

    def __init__(self, style: DomainStyle, rng: np.random.Generator) -> None:
        self.style = style
        self.rng = rng
        self.base: dict[str, np.ndarray] = {}
        for name in sorted(style.materials):
            options = style.materials[name]
            choice = np.asarray(options[int(rng.integers(len(options)))], dtype=np.float32)
            shade = rng.normal(0.0, style.colour_jitter, 3) + rng.normal(0.0, style.colour_jitter)
            self.base[name] = self._transform(choice + shade.astype(np.float32))

    def _transform(self, colour: np.ndarray) -> np.ndarray:
        grey = colour.mean()
        out = grey + self.style.saturation * (colour - grey)
        return np.clip(out * np.asarray(self.style.tint, np.float32), 0, 255).astype(np.float32)

    def __call__(self, name: str) -> np.ndarray:
        """The per-image colour of ``name``."""
        return self.base[name]

    def instance(self, name: str) -> np.ndarray:
        """A fresh instance colour of ``name``: a random option plus jitter."""
        options = self.style.materials[name]
        choice = np.asarray(options[int(self.rng.integers(len(options)))], dtype=np.float32)
        jitter = self.rng.normal(0.0, self.style.colour_jitter, 3).astype(np.float32)
        return self._transform(choice + jitter)


# ----------------------------------------------------------------------------------------
# Camera and canvas


@dataclass(frozen=True)
class Camera:
    """Pinhole camera at height ``height`` (m) looking along +Z; image rows grow downwards."""

    h: int
    w: int
    f: float  # focal length in pixels
    hy: float  # horizon row
    vx: float  # vanishing column
    height: float

    def project(self, x: float, y: float, z: float) -> tuple[float, float]:
        """Image (column, row) of the world point (x lateral, y up, z depth), in metres."""
        return self.vx + self.f * x / z, self.hy + self.f * (self.height - y) / z


class Canvas:
    """A label map and a float RGB image painted together.

    Shape:
        label (H, W) uint8 label ids; rgb (H, W, 3) float32 in 0-255
    """

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.label = np.zeros((h, w), np.uint8)
        self.rgb = np.zeros((h, w, 3), np.float32)

    def _window(self, x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        """Integer pixel bounds (r0, r1, c0, c1) whose centres may lie in the float box."""
        c0, c1 = max(math.floor(x0), 0), min(math.ceil(x1), self.w)
        r0, r1 = max(math.floor(y0), 0), min(math.ceil(y1), self.h)
        return r0, r1, c0, c1

    def _fill(
        self, bounds: tuple[int, int, int, int], mask: np.ndarray, centre: tuple[float, float],
        label: int, colour: np.ndarray,
    ) -> None:
        """Paint ``mask`` at ``bounds``; an empty mask paints the pixel holding ``centre``,
        so that distant small objects never vanish."""
        r0, r1, c0, c1 = bounds
        if mask.any():
            self.label[r0:r1, c0:c1][mask] = label
            self.rgb[r0:r1, c0:c1][mask] = colour
            return
        col, row = math.floor(centre[0]), math.floor(centre[1])
        if 0 <= row < self.h and 0 <= col < self.w:
            self.label[row, col] = label
            self.rgb[row, col] = colour

    def _grid(self, bounds: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        r0, r1, c0, c1 = bounds
        ys = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5
        xs = np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5
        return xs, ys

    def rect(self, x0: float, y0: float, x1: float, y1: float, label: int, colour) -> None:
        """Axis-aligned box, at least one pixel wide and tall."""
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        c0, c1 = math.ceil(x0 - 0.5), math.ceil(x1 - 0.5)
        r0, r1 = math.ceil(y0 - 0.5), math.ceil(y1 - 0.5)
        if c1 <= c0:
            c0 = math.floor(cx)
            c1 = c0 + 1
        if r1 <= r0:
            r0 = math.floor(cy)
            r1 = r0 + 1
        c0, c1, r0, r1 = max(c0, 0), min(c1, self.w), max(r0, 0), min(r1, self.h)
        if c0 < c1 and r0 < r1:
            self.label[r0:r1, c0:c1] = label
            self.rgb[r0:r1, c0:c1] = colour

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, label: int, colour) -> None:
        bounds = self._window(cx - rx, cy - ry, cx + rx, cy + ry)
        if bounds[0] >= bounds[1] or bounds[2] >= bounds[3]:
            return
        xs, ys = self._grid(bounds)
        mask = ((xs - cx) / max(rx, 1e-3)) ** 2 + ((ys - cy) / max(ry, 1e-3)) ** 2 <= 1.0
        self._fill(bounds, mask, (cx, cy), label, colour)

    def ring(
        self, cx: float, cy: float, r: float, width: float, label: int, colour
    ) -> None:
        """Circle outline of radius ``r`` and line width ``width`` (at least one pixel)."""
        width = max(width, 1.0)
        bounds = self._window(cx - r - width, cy - r - width, cx + r + width, cy + r + width)
        if bounds[0] >= bounds[1] or bounds[2] >= bounds[3]:
            return
        xs, ys = self._grid(bounds)
        mask = np.abs(np.hypot(xs - cx, ys - cy) - r) <= width / 2
        self._fill(bounds, mask, (cx, cy), label, colour)

    def polygon(self, points: np.ndarray, label: int, colour) -> None:
        """Filled convex polygon; ``points`` (n, 2) as (column, row) in either orientation."""
        lo, hi = points.min(axis=0), points.max(axis=0)
        bounds = self._window(lo[0], lo[1], hi[0], hi[1])
        if bounds[0] >= bounds[1] or bounds[2] >= bounds[3]:
            return
        xs, ys = self._grid(bounds)
        pts = points.tolist()
        edges = list(zip(pts, pts[1:] + pts[:1], strict=True))
        area = sum(ax * by - bx * ay for (ax, ay), (bx, by) in edges)
        sign = 1.0 if area >= 0 else -1.0
        mask = np.ones((bounds[1] - bounds[0], bounds[3] - bounds[2]), bool)
        for (ax, ay), (bx, by) in edges:
            mask &= sign * ((bx - ax) * (ys - ay) - (by - ay) * (xs - ax)) >= 0
        centre = (sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts))
        self._fill(bounds, mask, centre, label, colour)

    def segment(
        self, x0: float, y0: float, x1: float, y1: float, width: float, label: int, colour
    ) -> None:
        """Thick line from (x0, y0) to (x1, y1), at least one pixel wide."""
        half = max(width, 1.0) / 2
        bounds = self._window(
            min(x0, x1) - half, min(y0, y1) - half, max(x0, x1) + half, max(y0, y1) + half
        )
        if bounds[0] >= bounds[1] or bounds[2] >= bounds[3]:
            return
        xs, ys = self._grid(bounds)
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / max(dx * dx + dy * dy, 1e-6), 0, 1)
        mask = np.hypot(xs - x0 - t * dx, ys - y0 - t * dy) <= half
        self._fill(bounds, mask, ((x0 + x1) / 2, (y0 + y1) / 2), label, colour)


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull (monotone chain) of (n, 2) points, counter-clockwise in (x, y)."""
    pts = sorted({(float(x), float(y)) for x, y in points})
    if len(pts) <= 2:
        return np.asarray(pts, np.float32)

    def half(seq: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for p in seq:
            while len(out) >= 2 and (
                (out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])
            ) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.asarray(lower[:-1] + upper[:-1], np.float32)


def box(
    canvas: Canvas, cam: Camera, x: Range, y: Range, z: Range, label: int, colour
) -> None:
    """Draw the silhouette of a world-aligned box (metres), the hull of its 8 corners."""
    corners = [cam.project(xi, yi, zi) for xi in x for yi in y for zi in z]
    canvas.polygon(convex_hull(np.asarray(corners, np.float32)), label, colour)


def face(
    canvas: Canvas, cam: Camera, x: Range, y: Range, z: float, label: int, colour
) -> None:
    """Draw a rectangle facing the camera at depth ``z`` (metres)."""
    (c0, r1), (c1, r0) = cam.project(x[0], y[0], z), cam.project(x[1], y[1], z)
    canvas.rect(c0, r0, c1, r1, label, colour)


# ----------------------------------------------------------------------------------------
# Street layout


@dataclass(frozen=True)
class Side:
    """One side of the street; ``sign`` -1 is left, +1 right; distances in metres from the
    road centre line."""

    sign: int
    kerb: float  # road edge
    sidewalk: float  # sidewalk width
    setback: float  # width of the strip between sidewalk and facade
    setback_label: int
    segments: tuple[tuple[float, float, int, float, int], ...]  # z0, z1, label, top, material
    barriers: tuple[tuple[float, float, int, float], ...]  # z0, z1, wall/fence, top

    @property
    def facade(self) -> float:
        return self.kerb + self.sidewalk + self.setback


@dataclass(frozen=True)
class Street:
    sides: tuple[Side, Side]
    crossing: Range | None  # depth range of a cross street
    crosswalk: float | None  # depth of a zebra crossing
    end_wall: float | None  # depth of a far facade
    tram: bool


def _slots(rng: np.random.Generator, start: float, stop: float, length: Range) -> list[Range]:
    """Consecutive depth intervals of random length covering [start, stop)."""
    out, z = [], start
    while z < stop:
        step = float(rng.uniform(*length))
        out.append((z, min(z + step, stop)))
        z += step
    return out


def _outside(z0: float, z1: float, gap: Range | None) -> bool:
    return gap is None or z1 <= gap[0] or z0 >= gap[1]


def sample_street(rng: np.random.Generator, style: DomainStyle) -> Street:
    crossing = None
    if rng.random() < 0.35:
        zc = float(rng.uniform(14, 45))
        crossing = (zc, zc + float(rng.uniform(8, 14)))
    sides = []
    p_building, p_vegetation, _ = style.side_kinds
    for sign in (-1, 1):
        u = rng.random()
        if u < style.terrain_setback:
            setback_label = TERRAIN
        elif u < style.terrain_setback + style.parking_setback:
            setback_label = PARKING
        else:
            setback_label = SIDEWALK
        setback = 0.0 if rng.random() < 0.35 else float(rng.uniform(1.0, 5.0))
        segments = []
        for z0, z1 in _slots(rng, 2.0, 160.0, (8.0, 28.0)):
            if not _outside(z0, z1, crossing):
                continue
            kind = rng.random()
            if kind < p_building:
                top = float(rng.uniform(*style.building_height))
                segments.append((z0, z1, BUILDING, top, int(rng.integers(8))))
            elif kind < p_building + p_vegetation:
                segments.append((z0, z1, VEGETATION, float(rng.uniform(3.0, 11.0)), 0))
        barriers = []
        for z0, z1 in _slots(rng, 3.0, 90.0, (5.0, 18.0)):
            if not _outside(z0, z1, crossing):
                continue
            kind = rng.random()
            if kind < style.wall:
                barriers.append((z0, z1, WALL, float(rng.uniform(0.8, 2.4))))
            elif kind < style.wall + style.fence:
                barriers.append((z0, z1, FENCE, float(rng.uniform(1.0, 2.0))))
        sides.append(Side(
            sign=sign, kerb=float(rng.uniform(3.2, 7.0)),
            sidewalk=float(rng.uniform(*style.sidewalk)),
            setback=setback, setback_label=setback_label, segments=tuple(segments),
            barriers=tuple(barriers),
        ))
    end_wall = float(rng.uniform(45, 140)) if rng.random() < style.end_wall else None
    crosswalk = float(rng.uniform(8, 30)) if rng.random() < 0.3 else None
    return Street(
        sides=(sides[0], sides[1]), crossing=crossing, crosswalk=crosswalk, end_wall=end_wall,
        tram=bool(rng.random() < style.train),
    )


class DepthBuffer:
    """Nearest-surface resolution of the planar layout.

    Shape:
        depth (H, W) float32, metres (inf where nothing was drawn)
    """

    def __init__(self, canvas: Canvas) -> None:
        self.canvas = canvas
        self.depth = np.full((canvas.h, canvas.w), np.inf, np.float32)

    def merge(self, hit: np.ndarray, z: np.ndarray, label, colour: np.ndarray) -> None:
        """Keep the surface where it is hit and nearer. ``label`` scalar or (H, W); ``colour``
        (3,) or (H, W, 3)."""
        z = np.broadcast_to(z, hit.shape)
        near = hit & (z < self.depth)
        self.depth[near] = z[near]
        self.canvas.label[near] = label if np.isscalar(label) else label[near]
        if colour.ndim == 1:
            self.canvas.rgb[near] = colour
        else:
            self.canvas.rgb[near] = np.broadcast_to(colour, (*hit.shape, 3))[near]


def _windows(u: np.ndarray, height: np.ndarray, spacing: float, floor: float) -> np.ndarray:
    """Window pattern on a facade: ``u`` horizontal, ``height`` vertical position in metres."""
    return (
        ((u / spacing) % 1.0 > 0.3) & ((u / spacing) % 1.0 < 0.75)
        & ((height / floor) % 1.0 > 0.35) & ((height / floor) % 1.0 < 0.8) & (height > 2.8)
    )


def draw_layout(canvas: Canvas, cam: Camera, street: Street, pal: Palette) -> None:
    """Sky, ground (road, sidewalk, setback strips, markings) and the planar facades."""
    h, w = canvas.h, canvas.w
    buf = DepthBuffer(canvas)
    ys = np.arange(h, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(w, dtype=np.float32)[None, :] + 0.5
    dy = ys - cam.hy  # (H, 1), > 0 below the horizon
    dx = xs - cam.vx  # (1, W)

    # Sky: a vertical gradient.
    t = np.clip(ys / max(cam.hy, 1.0), 0, 1)[..., None]  # (H, 1, 1)
    sky = pal("sky")[None, None, :] * (0.9 + 0.15 * t)
    canvas.label[:] = SKY
    canvas.rgb[:] = np.broadcast_to(sky, (h, 1, 3))

    # Ground plane.
    ground = np.broadcast_to(dy > 0.05, (h, w))
    safe_dy = np.maximum(dy, 0.05)
    zg = cam.f * cam.height / safe_dy  # (H, 1)
    xg = dx * cam.height / safe_dy  # (H, W)
    left, right = street.sides
    kerb = np.where(xg < 0, left.kerb, right.kerb)
    walk = np.where(xg < 0, left.sidewalk, right.sidewalk)
    back = np.where(xg < 0, left.setback, right.setback)
    strip = np.where(xg < 0, left.setback_label, right.setback_label)
    out = np.abs(xg) - kerb  # metres beyond the road edge
    labels = np.select(
        [out < 0, out < walk, out < walk + back], [ROAD, SIDEWALK, strip], default=TERRAIN
    ).astype(np.uint8)
    if street.crossing is not None:
        cross = (zg >= street.crossing[0]) & (zg < street.crossing[1])
        labels = np.where(cross & (out >= 0), ROAD, labels).astype(np.uint8)
    colours = np.empty((h, w, 3), np.float32)
    for lab, material in ((ROAD, "road"), (SIDEWALK, "sidewalk"), (PARKING, "parking"),
                          (TERRAIN, "terrain")):
        colours[labels == lab] = pal(material)
    road = labels == ROAD
    zg_full = np.broadcast_to(zg, (h, w))
    marks = road & (np.abs(xg - (right.kerb - left.kerb) / 2) < 0.08) & ((zg_full % 9.0) < 4.5)
    marks |= road & (np.abs(out + 0.35) < 0.07)
    if street.crosswalk is not None:
        zw = street.crosswalk
        marks |= road & (zg_full > zw) & (zg_full < zw + 3.0) & ((xg % 1.0) < 0.5)
    colours[marks] = pal("marking")
    if street.tram:
        rails = road & (np.abs(np.abs(xg) - 0.72) < 0.04)
        colours[rails] = pal("pole") * 0.6
    colours[(labels == SIDEWALK) & (out < 0.18)] = pal("kerb")
    colours[(labels == PARKING) & ((zg_full % 5.5) < 0.15)] = pal("marking")
    buf.merge(ground, zg, labels, colours)

    # Facades and barriers: vertical planes parallel to the street.
    for side in street.sides:
        _side_planes(buf, cam, side, ys, xs, pal)

    # A far facade across the street.
    if street.end_wall is not None:
        ze = street.end_wall
        xe = dx * ze / cam.f  # (1, W) lateral metres
        ye = cam.height - dy * ze / cam.f  # (H, 1) height in metres
        rng = pal.rng
        edges = np.cumsum(rng.uniform(6, 18, 24)) - 120.0
        tops = rng.uniform(6, 26, 25).astype(np.float32)
        top = tops[np.searchsorted(edges, xe)]  # (1, W)
        hit = (ye >= 0) & (ye < top)
        col = np.broadcast_to(pal("building") * 0.92, (h, w, 3)).copy()
        col[np.broadcast_to(_windows(xe + 100.0, ye, 3.2, 3.0) & (ye < top - 1), (h, w))] = (
            pal("window")
        )
        buf.merge(hit, np.float32(ze), BUILDING, col)


def _side_planes(
    buf: DepthBuffer, cam: Camera, side: Side, ys: np.ndarray, xs: np.ndarray, pal: Palette
) -> None:
    h, w = buf.canvas.h, buf.canvas.w
    lateral = side.sign * (xs - cam.vx)  # (1, W), > 0 on this side of the vanishing point
    shades = (0.78, 0.86, 0.94, 1.0, 1.06, 1.12, 0.9, 1.02)
    for plane, parts, is_facade in (
        (side.facade + 0.2, side.segments, True),
        (side.kerb + side.sidewalk, side.barriers, False),
    ):
        if not parts:
            continue
        # Depth of the plane per column; columns on the other side get a depth beyond all.
        zc = np.where(lateral > 0.05, cam.f * plane / np.maximum(lateral, 0.05), 1e6)
        starts = np.asarray([p[0] for p in parts], np.float32)
        ends = np.asarray([p[1] for p in parts], np.float32)
        idx = np.clip(np.searchsorted(starts, zc, side="right") - 1, 0, len(parts) - 1)
        inside = (zc >= starts[idx]) & (zc < ends[idx])  # (1, W)
        top = np.asarray([p[3] for p in parts], np.float32)[idx]
        labs = np.asarray([p[2] for p in parts], np.uint8)[idx]
        if is_facade:
            bumps = (labs == VEGETATION) * (0.9 * np.sin(zc * 1.7) + 0.6 * np.sin(zc * 0.63 + 1))
            top = top + bumps.astype(np.float32)
        height = cam.height - (ys - cam.hy) * zc / cam.f  # (H, W) metres above ground
        hit = inside & (height >= 0) & (height < top)
        col = np.empty((1, w, 3), np.float32)
        for k, part in enumerate(parts):
            label = part[2]
            if label == BUILDING:
                colour = pal("building") * shades[part[4] % len(shades)]
            elif label == VEGETATION:
                colour = pal("vegetation") * (0.9 + 0.05 * (k % 3))
            else:
                colour = pal("wall" if label == WALL else "fence")
            col[0, idx[0] == k] = colour
        col = np.broadcast_to(col, (h, w, 3)).copy()
        if is_facade:
            win = _windows(zc, height, 4.0, 3.1) & (labs == BUILDING) & (height < top - 1.0)
            col[win] = pal("window")
        else:
            slats = (labs == FENCE) & ((zc * 3.0) % 1.0 < 0.4)
            col[np.broadcast_to(slats, (h, w))] *= 0.75
            col[(height > top - 0.12) & (labs == FENCE)] *= 1.25
        buf.merge(hit, zc, np.broadcast_to(labs, (h, w)), col)


# ----------------------------------------------------------------------------------------
# Objects: each is (near depth, draw function); drawn far to near.

Draw = Callable[[Canvas, Camera], None]


def _vehicle(kind: int, x: float, z: float, pal: Palette) -> Draw:
    """A car, truck, bus or tram seen from behind: boxes with windows, lights, tyres."""
    paint, glass, tyre, rear = (
        pal.instance("paint"), pal.instance("glass"), pal("tyre"), pal.instance("rearlight")
    )
    second = pal.instance("paint")
    if kind == CAR:
        half, length, top = 0.9, 4.3, 1.45
    elif kind == TRUCK:
        half, length, top = 1.25, 8.5, 3.5
    elif kind == BUS:
        half, length, top = 1.27, 12.0, 3.1
    else:
        half, length, top = 1.32, 28.0, 3.6

    def draw(c: Canvas, cam: Camera) -> None:
        for zt in (z + length - 1.2, z + 0.4):
            for sx in (-1, 1):
                xa = x + sx * (half - 0.3)
                box(c, cam, (xa - 0.15, xa + 0.15), (0, 0.6), (zt, zt + 0.7), kind, tyre)
        if kind == CAR:
            box(c, cam, (x - half, x + half), (0.3, 0.95), (z, z + length), kind, paint)
            box(c, cam, (x - 0.75, x + 0.75), (0.9, top), (z + 1.0, z + 3.2), kind, paint)
            face(c, cam, (x - 0.62, x + 0.62), (1.0, top - 0.08), z + 1.0, kind, glass)
            lights_y = (0.7, 0.85)
        elif kind == TRUCK:
            box(c, cam, (x - 1.15, x + 1.15), (0.5, 2.8), (z + 6.0, z + length), kind, second)
            box(c, cam, (x - half, x + half), (0.6, top), (z, z + 6.0), kind, paint)
            face(c, cam, (x - 0.02, x + 0.02), (0.7, top - 0.1), z, kind, paint * 0.6)
            lights_y = (0.65, 0.8)
        else:
            box(c, cam, (x - half, x + half), (0.35, top), (z, z + length), kind, paint)
            face(c, cam, (x - half + 0.15, x + half - 0.15), (1.5, 2.6), z, kind, glass)
            if abs(x) > half:  # the side facing the camera shows a band of windows
                xs = x - math.copysign(half, x)
                corners = [cam.project(xs, yy, zz) for yy in (1.5, 2.6)
                           for zz in (z + 0.3, z + length - 0.3)]
                pts = np.asarray([corners[0], corners[1], corners[3], corners[2]], np.float32)
                c.polygon(pts, kind, glass)
            if kind == TRAIN:
                (u0, v0), (u1, v1) = cam.project(x, top, z + 8), cam.project(x, top + 1.2, z + 10)
                c.segment(u0, v0, u1, v1, 0.08 * cam.f / (z + 9), kind, pal("pole"))
            lights_y = (0.5, 0.7)
        for sx in (-1, 1):
            xa = x + sx * (half - 0.2)
            face(c, cam, (xa - 0.12, xa + 0.12), lights_y, z, kind, rear)

    return draw


def _person(x: float, z: float, pal: Palette, rng: np.random.Generator, build: float = 1.0
            ) -> Draw:
    """A standing or walking person facing the camera or away; ``build`` widens the body."""
    tall = float(rng.uniform(1.55, 1.92))
    stride = float(rng.uniform(0.0, 0.3))
    skin, top, legs = pal.instance("skin"), pal.instance("cloth"), pal.instance("cloth")

    def draw(c: Canvas, cam: Camera) -> None:
        u, v = cam.project(x, 0.0, z)
        s = cam.f / z
        b = build * s  # horizontal scale
        for sx in (-1, 1):
            x0 = u + sx * (stride / 2) * s
            x1 = x0 + sx * 0.15 * b
            c.rect(min(x0, x1), v - 0.5 * tall * s, max(x0, x1), v, PERSON, legs)
            xa = u + sx * 0.25 * b
            c.rect(xa - 0.05 * b, v - 0.8 * tall * s, xa + 0.05 * b, v - 0.45 * tall * s,
                   PERSON, top)
        c.rect(u - 0.21 * b, v - 0.82 * tall * s, u + 0.21 * b, v - 0.47 * tall * s, PERSON, top)
        c.ellipse(u, v - 0.9 * tall * s, 0.1 * b, 0.12 * s, PERSON, skin)

    return draw


def _two_wheeler(
    kind: int, x: float, z: float, pal: Palette, rng: np.random.Generator, ridden: bool,
    thin: float = 1.0, build: float = 1.0,
) -> Draw:
    """A bicycle or motorcycle in side view, optionally with its rider; ``thin`` widens
    the frame and tyres, ``build`` the rider's limbs and body."""
    facing = 1.0 if rng.random() < 0.5 else -1.0
    frame, tyre = pal.instance("paint"), pal("tyre")
    skin, cloth, legs = pal.instance("skin"), pal.instance("cloth"), pal.instance("cloth")
    wheel = 0.34 if kind == BICYCLE else 0.32
    base = 0.53 if kind == BICYCLE else 0.7

    def draw(c: Canvas, cam: Camera) -> None:
        u, v = cam.project(x, 0.0, z)
        s = cam.f / z

        def p(dx: float, up: float) -> tuple[float, float]:
            return u + facing * dx * s, v - up * s

        rear, front = p(-base, wheel), p(base, wheel)
        seat, bar = p(-0.15, 0.9), p(0.42, 1.0)
        if kind == BICYCLE:
            for cx, cy in (rear, front):
                c.ring(cx, cy, wheel * s, 0.07 * thin * s, kind, tyre)
            crank = p(0.0, 0.3)
            for a, b in ((rear, seat), (seat, crank), (crank, rear), (crank, bar), (bar, front),
                         (seat, bar)):
                c.segment(*a, *b, 0.06 * thin * s, kind, frame)
        else:
            for cx, cy in (rear, front):
                c.ellipse(cx, cy, wheel * s, wheel * s, kind, tyre)
            pts = np.asarray([p(-0.55, 0.45), p(0.5, 0.45), p(0.55, 0.85), p(0.0, 0.95),
                              p(-0.6, 0.8)], np.float32)
            c.polygon(pts, kind, frame)
            c.segment(*p(0.45, 0.8), *bar, 0.08 * s, kind, frame)
            c.segment(*bar, *front, 0.07 * s, kind, frame)
        if not ridden:
            return
        hip = seat if kind == BICYCLE else p(-0.2, 0.95)
        shoulder = p(0.15, 1.5)
        b = build * s
        c.segment(*hip, *p(0.05, 0.35), 0.15 * b, RIDER, legs)
        c.segment(*hip, *shoulder, 0.34 * b, RIDER, cloth)
        c.segment(*shoulder, *bar, 0.09 * b, RIDER, cloth)
        head = p(0.22, 1.68)
        c.ellipse(*head, 0.11 * b, 0.13 * b, RIDER, skin if kind == BICYCLE else cloth)

    return draw


def _pole(
    x: float, z: float, pal: Palette, rng: np.random.Generator, style: DomainStyle
) -> Draw:
    """A pole with, sometimes, a traffic light (on top or on an arm) and a sign."""
    tall = float(rng.uniform(3.5, 7.0))
    light = rng.random() < style.light
    arm = light and rng.random() < 0.4
    sign = rng.random() < style.sign
    sign_shape = int(rng.integers(3))
    sign_h = float(rng.uniform(2.0, 2.9))
    lamp = int(rng.integers(3))
    colour, housing, sign_colour = pal("pole"), pal("housing"), pal.instance("sign")
    lamp_colour = pal.instance("lamp")

    def draw(c: Canvas, cam: Camera) -> None:
        s = cam.f / z
        u, v = cam.project(x, 0.0, z)
        t = style.thin * s
        c.rect(u - 0.07 * t, v - tall * s, u + 0.07 * t, v, POLE, colour)
        if light:
            lx = x - np.sign(x) * (2.5 if arm else 0.0)
            if arm:
                (a0, b0), (a1, b1) = cam.project(x, tall - 0.2, z), cam.project(lx, tall - 0.2, z)
                c.segment(a0, b0, a1, b1, 0.1 * t, POLE, colour)
            cu, cv = cam.project(lx, tall - 0.2, z)
            c.rect(cu - 0.17 * t, cv, cu + 0.17 * t, cv + 0.85 * t, LIGHT, housing)
            c.ellipse(cu, cv + (0.16 + 0.27 * lamp) * t, 0.1 * t, 0.1 * t, LIGHT, lamp_colour)
        if sign:
            cu, cv = cam.project(x, sign_h, z)
            r = 0.3 * t
            if sign_shape == 0:
                c.ellipse(cu, cv, r, r, SIGN, sign_colour)
            elif sign_shape == 1:
                c.rect(cu - r, cv - r, cu + r, cv + r, SIGN, sign_colour)
            else:
                pts = np.asarray([(cu - r, cv - 0.6 * r), (cu + r, cv - 0.6 * r),
                                  (cu, cv + 1.1 * r)], np.float32)
                c.polygon(pts, SIGN, sign_colour)

    return draw


def _tree(x: float, z: float, pal: Palette, rng: np.random.Generator) -> Draw:
    """A trunk and a crown of a few overlapping blobs, all vegetation."""
    crown_y = float(rng.uniform(3.0, 6.0))
    radius = float(rng.uniform(1.3, 2.8))
    blobs = [(float(rng.uniform(-0.6, 0.6)), float(rng.uniform(-0.5, 0.7)),
              float(rng.uniform(0.6, 1.0))) for _ in range(3)]
    trunk, leaves = pal("trunk"), pal("vegetation")
    shades = [leaves * float(rng.uniform(0.85, 1.1)) for _ in blobs]

    def draw(c: Canvas, cam: Camera) -> None:
        s = cam.f / z
        u, v = cam.project(x, 0.0, z)
        c.rect(u - 0.15 * s, v - crown_y * s, u + 0.15 * s, v, VEGETATION, trunk)
        for (bx, by, br), shade in zip(blobs, shades, strict=True):
            cu, cv = cam.project(x + bx * radius, crown_y + by * radius, z)
            c.ellipse(cu, cv, br * radius * s, 0.85 * br * radius * s, VEGETATION, shade)

    return draw


def _clutter(x: float, z: float, pal: Palette, rng: np.random.Generator) -> Draw:
    """Street furniture: bins and bollards (static) or unlabelled things (void)."""
    label = STATIC if rng.random() < 0.7 else UNLABELLED
    width, tall = float(rng.uniform(0.2, 0.9)), float(rng.uniform(0.6, 1.6))
    colour = pal.instance("static" if label == STATIC else "void")

    def draw(c: Canvas, cam: Camera) -> None:
        face(c, cam, (x - width / 2, x + width / 2), (0.0, tall), z, label, colour)

    return draw


def sample_objects(
    rng: np.random.Generator, style: DomainStyle, street: Street, pal: Palette
) -> list[tuple[float, Draw]]:
    """Every object of the scene as (near depth in metres, draw function)."""
    objs: list[tuple[float, Draw]] = []
    left, right = street.sides
    far = style.reach

    def walk_x(side: Side) -> float:
        return side.sign * (side.kerb + float(rng.uniform(0.35, max(side.sidewalk - 0.35, 0.4))))

    def lane_x() -> float:
        return float(rng.uniform(-left.kerb + 1.3, right.kerb - 1.3))

    for side in street.sides:
        for z0, _ in _slots(rng, 3.0, 70.0 * far, (5.0, 7.0)):
            if rng.random() < style.parked_car:
                kind = TRUCK if rng.random() < style.truck_share and z0 > 18 else CAR
                objs.append((z0, _vehicle(kind, side.sign * (side.kerb - 1.15), z0, pal)))
        for z0, _ in _slots(rng, 3.0, 80.0 * far, style.pole_spacing):
            objs.append((z0, _pole(side.sign * (side.kerb + 0.35), z0, pal, rng, style)))
        for z0, _ in _slots(rng, 4.0, 80.0 * far, (7.0, 12.0)):
            if rng.random() < style.tree_slot:
                xt = side.sign * (side.kerb + side.sidewalk * float(rng.uniform(0.5, 0.9)))
                objs.append((z0, _tree(xt, z0, pal, rng)))
    for _ in range(rng.poisson(style.moving_vehicles)):
        u = rng.random()
        kind = TRUCK if u < style.truck_share else BUS if u < style.truck_share + style.bus_share \
            else CAR
        z0 = float(rng.uniform(6.0 if kind == CAR else 12.0, 60.0 * far))
        objs.append((z0, _vehicle(kind, lane_x(), z0, pal)))
    if street.tram:
        z0 = float(rng.uniform(8.0, 45.0 * far))
        objs.append((z0, _vehicle(TRAIN, 0.0, z0, pal)))
    for _ in range(rng.poisson(style.persons)):
        z0 = float(rng.uniform(3.5, 45.0 * far))
        side = street.sides[int(rng.integers(2))]
        x = lane_x() if rng.random() < style.crossing else walk_x(side)
        objs.append((z0, _person(x, z0, pal, rng, style.build)))
    for _ in range(rng.poisson(style.riders)):
        z0 = float(rng.uniform(4.0, 40.0 * far))
        side = street.sides[int(rng.integers(2))]
        kind = BICYCLE if rng.random() < 0.65 else MOTORCYCLE
        objs.append((z0, _two_wheeler(kind, side.sign * (side.kerb - 0.8), z0, pal, rng, True,
                                          style.thin, style.build)))
    for kind, rate in ((BICYCLE, style.bicycles), (MOTORCYCLE, style.motorcycles)):
        for _ in range(rng.poisson(rate)):
            z0 = float(rng.uniform(4.0, 35.0 * far))
            side = street.sides[int(rng.integers(2))]
            objs.append((z0, _two_wheeler(kind, walk_x(side), z0, pal, rng, False,
                                              style.thin)))
    for _ in range(rng.poisson(style.clutter)):
        z0 = float(rng.uniform(4.0, 40.0 * far))
        objs.append((z0, _clutter(walk_x(street.sides[int(rng.integers(2))]), z0, pal, rng)))
    return objs


# ----------------------------------------------------------------------------------------
# Camera model (the captured look)


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: tuple[int, int]) -> np.ndarray:
    """Zero-mean, unit-scale low-frequency noise: a (cells) grid bilinearly upsampled.

    Shape:
        returns (h, w) float32
    """
    gh, gw = cells
    grid = rng.standard_normal((gh, gw)).astype(np.float32)

    def interp(n: int, m: int) -> np.ndarray:
        pos = (np.arange(n, dtype=np.float32) + 0.5) * (m - 1) / n
        lo = np.minimum(np.floor(pos).astype(int), m - 2)
        frac = pos - lo
        mat = np.zeros((n, m), np.float32)
        mat[np.arange(n), lo] = 1 - frac
        mat[np.arange(n), lo + 1] = frac
        return mat

    return interp(h, gh) @ grid @ interp(w, gw).T


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with edge padding.

    Shape:
        img (H, W, C) float32 -> (H, W, C) float32
    """
    if sigma <= 0:
        return img
    radius = max(1, math.ceil(2 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).astype(np.float32)
    taps /= taps.sum()
    out = img
    for axis in (0, 1):
        pad = [(0, 0)] * img.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        n = img.shape[axis]
        acc = np.zeros_like(img)
        for k, tap in enumerate(taps):
            acc += tap * np.take(padded, np.arange(k, k + n), axis=axis)
        out = acc
    return out


# Per-class texture amplitude of the captured look (0-255 units), by label id.
TEXTURE = np.full(256, 7.0, np.float32)
for _label, _amp in ((VEGETATION, 26.0), (TERRAIN, 16.0), (ROAD, 9.0), (SIDEWALK, 10.0),
                     (BUILDING, 12.0), (SKY, 3.0), (PARKING, 9.0), (WALL, 12.0)):
    TEXTURE[_label] = _amp


def ground_distance(cam: Camera, max_z: float = 80.0) -> np.ndarray:
    """Distance (m) of the ground seen at each row, ``max_z`` at and above the horizon: the
    depth that fog acts on (objects standing on the ground share their base's haze roughly).

    Shape:
        returns (H, 1) float32
    """
    below = np.arange(cam.h, dtype=np.float32)[:, None] + 0.5 - cam.hy
    with np.errstate(divide="ignore"):
        z = np.where(below > 0, cam.f * cam.height / np.maximum(below, 1e-6), max_z)
    return np.minimum(z, max_z).astype(np.float32)


def pick_condition(rng: np.random.Generator, style: DomainStyle) -> Condition | None:
    """One of the style's conditions by weight (None when it has none)."""
    if not style.conditions:
        return None
    weights = np.asarray([c.weight for c in style.conditions], np.float64)
    return style.conditions[int(rng.choice(len(weights), p=weights / weights.sum()))]


def weather(rgb: np.ndarray, rng: np.random.Generator, cond: Condition, cam: Camera
            ) -> np.ndarray:
    """A scene's light and weather on the whole frame: saturation, contrast, exposure and
    light colour, then fog by distance.

    Shape:
        rgb (H, W, 3) float32 -> (H, W, 3) float32
    """
    grey = rgb.mean(axis=2, keepdims=True)
    rgb = grey + cond.saturation * (rgb - grey)
    rgb = 128.0 + cond.contrast * (rgb - 128.0)
    gain = float(rng.uniform(*cond.gain))
    rgb = rgb * gain * np.asarray(cond.tint, np.float32)
    density = float(rng.uniform(*cond.haze))
    keep = np.exp(-density * ground_distance(cam))[..., None]  # (H, 1, 1)
    fog = np.asarray(cond.haze_colour, np.float32) * gain * np.asarray(cond.tint, np.float32)
    return rgb * keep + fog * (1.0 - keep)


def capture(canvas: Canvas, rng: np.random.Generator, style: DomainStyle,
            cam: Camera | None = None) -> np.ndarray:
    """The camera model: texture, the scene's light and weather (when the style has
    conditions), uneven light, blur, vignetting, gamma, sensor noise.

    Shape:
        returns (H, W, 3) float32 in 0-255 (not yet clipped)
    """
    h, w = canvas.h, canvas.w
    rgb = canvas.rgb
    grain = rng.standard_normal(((h + 1) // 2, (w + 1) // 2)).astype(np.float32)
    grain = np.repeat(np.repeat(grain, 2, axis=0), 2, axis=1)[:h, :w]
    fine = rng.standard_normal((h, w)).astype(np.float32)
    amp = style.texture * TEXTURE[canvas.label]
    rgb = rgb + (amp * (0.7 * grain + 0.5 * fine))[..., None]
    cond = pick_condition(rng, style)
    if cond is not None and cam is not None:
        rgb = weather(rgb, rng, cond, cam)
    light = 1.0 + style.light_field * smooth_noise(rng, h, w, (3, 5))
    slope = rng.uniform(-0.12, 0.12)
    light += slope * (np.arange(w, dtype=np.float32)[None, :] / w - 0.5)
    rgb = rgb * light[..., None]
    rgb = gaussian_blur(rgb, float(rng.uniform(*style.blur)))
    yy = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h - 0.5
    xx = (np.arange(w, dtype=np.float32)[None, :] + 0.5) / w - 0.5
    rgb = rgb * (1.0 - float(rng.uniform(*style.vignette)) * 2.0 * (xx**2 + yy**2))[..., None]
    gamma = float(rng.uniform(*style.gamma))
    rgb = 255.0 * (np.clip(rgb, 0, 255) / 255.0) ** gamma
    return rgb + float(rng.uniform(*style.noise)) * rng.standard_normal((h, w, 3)).astype(
        np.float32
    )


def draw_ego(canvas: Canvas, rng: np.random.Generator, pal: Palette) -> None:
    """The hood of the recording car across the bottom rows (label id 1)."""
    h, w = canvas.h, canvas.w
    depth = h * float(rng.uniform(0.07, 0.12))
    xs = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
    top = h - depth * (1.0 - 1.2 * xs**2)  # (W,)
    ys = np.arange(h, dtype=np.float32)[:, None] + 0.5
    hood = ys >= top[None, :]
    canvas.label[hood] = EGO_VEHICLE
    shade = 1.0 + 0.6 * np.clip(1.0 - np.abs(ys - top[None, :] - 1.5), 0, 1)  # rim highlight
    canvas.rgb[hood] = (pal("ego")[None, None, :] * shade[..., None])[hood]


def render(
    rng: np.random.Generator, style: DomainStyle, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """One scene in the given style.

    Shape:
        returns image (height, width, 3) uint8 RGB, label (height, width) uint8 label ids
    """
    pal = Palette(style, rng)
    cam = Camera(
        h=height, w=width, f=width * float(rng.uniform(*style.focal)),
        hy=height * float(rng.uniform(*style.horizon)),
        vx=width * float(0.5 + rng.uniform(-0.08, 0.08)), height=style.camera_height,
    )
    street = sample_street(rng, style)
    canvas = Canvas(height, width)
    draw_layout(canvas, cam, street, pal)
    objects = sample_objects(rng, style, street, pal)
    for _, draw in sorted(objects, key=lambda item: -item[0]):
        draw(canvas, cam)
    if rng.random() < style.ego:
        draw_ego(canvas, rng, pal)
    if style.captured:
        rgb = capture(canvas, rng, style, cam)
    else:  # rendered: the scene's light alone (when the style has conditions)
        cond = pick_condition(rng, style)
        rgb = canvas.rgb if cond is None else weather(canvas.rgb, rng, cond, cam)
    image = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return image, canvas.label.copy()

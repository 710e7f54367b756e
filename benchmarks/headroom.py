"""Variants of the embedded benchmark tried for room below the supervised bound (docs/results.md,
"Looking for room below the bound"): a target variant's data, and `ripu` with a wider small
network. Exploration only; nothing here is part of the pipeline.

usage:
  python benchmarks/headroom.py data VARIANT OUT        # VARIANT: no_weather | zoom | textures
  python benchmarks/headroom.py wide ripu ARGS...       # `ripu ARGS...` with widths 32-64-128
  python benchmarks/headroom.py wide warmup            # the warm-up stage, into ./models
  python benchmarks/headroom.py wide4 ripu|warmup ...  # the same, 4x wider (64-128-256)

Every variant keeps version 5's source (so version 5's warm-up stays valid for the data
variants) and changes the target only; `ripu train ... -S data.target_root=OUT/target` trains
on it. The wide warm-up runs in a folder holding a copy of params.yaml and links to the
repository's data/ and experiments/, with the repository on PYTHONPATH; its trials take
`--init models/synthetic/source_only.pt` of that folder.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

import ripu.data.synthetic_scene as scene
from ripu.data.synthetic import generate

WIDTHS, DECODER = (16, 32, 64), 32  # version 5's small network


def wider(factor: int) -> dict:
    """The small network's channel widths times ``factor``."""
    return {"widths": tuple(factor * w for w in WIDTHS), "decoder_channels": factor * DECODER}


def textured(capture):
    """``capture`` after recolouring (p = 0.5) and striping (p = 0.5) each 4-connected
    component of every class but road and sky: instance colours and textures drawn from a
    far wider distribution than the source's."""
    import cv2

    def capture_textured(canvas, rng, style, cam=None):
        yy, xx = np.mgrid[0:canvas.h, 0:canvas.w].astype(np.float32)
        for label in np.unique(canvas.label):
            if label in (scene.ROAD, scene.SKY, scene.UNLABELLED):
                continue
            n, parts = cv2.connectedComponents((canvas.label == label).astype(np.uint8),
                                               connectivity=4)
            for i in range(1, n):
                part = parts == i
                if part.sum() < 6:
                    continue
                if rng.random() < 0.5:
                    mean = canvas.rgb[part].mean(0)
                    canvas.rgb[part] = canvas.rgb[part] - mean + rng.uniform(20, 235, 3).astype(
                        np.float32)
                if rng.random() < 0.5:
                    angle, period = rng.uniform(0, np.pi), rng.uniform(3, 10)
                    amp, phase = rng.uniform(15, 40), rng.uniform(0, 6.3)
                    wave = np.sign(np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy)
                                          / period + phase))
                    canvas.rgb[part] += (amp * wave[part])[:, None]
        return capture(canvas, rng, style, cam)
    return capture_textured


VARIANTS = {  # version 5's target with ...
    "no_weather": lambda: replace(scene.TARGET, conditions=()),
    "zoom": lambda: replace(scene.TARGET, conditions=(), focal=(2.0, 2.4)),
    "textures": lambda: replace(scene.TARGET, conditions=()),
}


def data(variant: str, out: str) -> None:
    if variant == "textures":
        scene.capture = textured(scene.capture)
    scene.BENCHMARKS["variant"] = (scene.SOURCE_V5, VARIANTS[variant]())
    generate(out, seed=0, source_images=240, target_train=160, target_val=100, height=128,
             width=256, target="variant", progress=False)


def wide(args: list[str], factor: int) -> int:
    """Run ``ripu`` or the warm-up stage with the small network ``factor`` times wider."""
    import ripu.models.small as small
    defaults = dict(zip(small.SmallSegNet.__init__.__code__.co_varnames[2:6],
                        small.SmallSegNet.__init__.__defaults__, strict=True))
    small.SmallSegNet.__init__.__defaults__ = tuple({**defaults, **wider(factor)}.values())
    if args[0] == "warmup":
        from pipelines.warmup import run
        from ripu.config import load_config
        run(Path("."), load_config("params.yaml"))
        return 0
    from ripu.cli import main
    return main(args[1:])


def main(argv: list[str]) -> int:
    if argv[:1] == ["data"] and len(argv) == 3 and argv[1] in VARIANTS:
        data(argv[1], argv[2])
        return 0
    factors = {"wide": 2, "wide4": 4}
    if argv[:1] and argv[0] in factors and argv[1:2] in (["ripu"], ["warmup"]):
        return wide(argv[1:], factors[argv[0]])
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    print(f"headroom: expected `data VARIANT OUT` (VARIANT: {', '.join(VARIANTS)}) or "
          f"`wide|wide4 ripu ARGS...` or `wide|wide4 warmup`, got "
          f"{' '.join(argv) or 'nothing'}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

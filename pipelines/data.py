"""DVC stage `data`: the embedded synthetic benchmark, or a check of the real datasets.

When data.source_root and data.target_root lie inside synth.out, generate the synthetic
benchmark there (images, labels, index.json, samples.png). Otherwise (GTA5 / SYNTHIA ->
Cityscapes) check both layouts and every split, and write ``<synth.out>/index.json``
describing them: synth.out is the stage's output folder in both cases.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.common import main, show_progress
from ripu.config import Config
from ripu.data.synthetic import generate
from ripu.engine.build import build_datasets
from ripu.io import write_json


def _inside(path: str, folder: str) -> bool:
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def index_real(cfg: Config) -> dict:
    """Open the source and target datasets (their readers check the layouts) and count them."""
    sets = build_datasets(cfg, augment=False)
    return {"format": "ripu-index-v1", "num_classes": cfg.data.num_classes,
            "source": {"layout": cfg.data.source, "root": cfg.data.source_root},
            "target": {"layout": cfg.data.target, "root": cfg.data.target_root},
            "counts": {name: len(ds) for name, ds in sets.items()}}


def run(root: Path, cfg: Config) -> None:
    out = Path(cfg.synth.out)
    if _inside(cfg.data.source_root, cfg.synth.out) and _inside(cfg.data.target_root,
                                                                 cfg.synth.out):
        s = cfg.synth
        index = generate(out, seed=s.seed, source_images=s.source_images,
                         target_train=s.target_train, target_val=s.target_val,
                         height=s.height, width=s.width, progress=show_progress())
        print(f"data: synthetic benchmark in {out.relative_to(root)}: {index['counts']}")
    else:
        index = index_real(cfg)
        write_json(out / "index.json", index)
        print(f"data: checked {cfg.data.source} and {cfg.data.target}: {index['counts']}")


if __name__ == "__main__":
    main(run)

"""DVC stage `data`: the embedded synthetic benchmark, or a check of the real datasets.

When data.source_root and data.target_root lie inside synth.out, generate the synthetic
benchmark there (images, labels, index.json, samples.png). Otherwise (GTA5 / SYNTHIA ->
Cityscapes) check the layouts and every split of each dataset the experiment file
(sweep.experiment) reads, its trials' and warm-ups' data settings, and write
``<synth.out>/index.json`` describing them: synth.out is the stage's output folder in both
cases.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.common import load_experiment_of, main, show_progress
from ripu.config import Config
from ripu.data.build import build_datasets
from ripu.data.synthetic import generate
from ripu.io import write_json


def _inside(path: str, folder: str) -> bool:
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def synthetic(cfg: Config) -> bool:
    """Whether both dataset roots lie inside synth.out: the embedded benchmark, generated."""
    return _inside(cfg.data.source_root, cfg.synth.out) and _inside(cfg.data.target_root,
                                                                     cfg.synth.out)


def index_real(cfg: Config) -> dict:
    """Open the source and target datasets (their readers check the layouts) and count them."""
    sets = build_datasets(cfg, augment=False)
    return {"format": "ripu-index-v1", "num_classes": cfg.data.num_classes,
            "source": {"layout": cfg.data.source, "root": cfg.data.source_root},
            "target": {"layout": cfg.data.target, "root": cfg.data.target_root},
            "counts": {name: len(ds) for name, ds in sets.items()}}


def experiment_data(root: Path, cfg: Config) -> list[Config]:
    """One config per distinct dataset setting (readers, roots, classes) of the experiment's
    trials and warm-ups, in file order."""
    exp = load_experiment_of(root, cfg)
    found: dict[tuple, Config] = {}
    for c in [w.cfg for w in exp.warmups.values()] + [t.cfg for t in exp.trials]:
        d = c.data
        found.setdefault((d.source, d.source_root, d.target, d.target_root, d.num_classes), c)
    return list(found.values())


def run(root: Path, cfg: Config) -> None:
    out = Path(cfg.synth.out)
    if synthetic(cfg):
        s = cfg.synth
        index = generate(out, seed=s.seed, source_images=s.source_images,
                         target_train=s.target_train, target_val=s.target_val,
                         height=s.height, width=s.width, target=s.target,
                         progress=show_progress())
        print(f"data: synthetic benchmark in {out.relative_to(root)}: {index['counts']}")
    else:
        checked = [index_real(c) for c in experiment_data(root, cfg)]
        index = {**checked[0], "datasets": checked} if len(checked) > 1 else checked[0]
        write_json(out / "index.json", index)
        for item in checked:
            print(f"data: checked {item['source']['layout']} {item['source']['root']} and "
                  f"{item['target']['layout']} {item['target']['root']}: {item['counts']}")


if __name__ == "__main__":
    main(run)

"""The `ripu` subcommands: one ``cmd_<name>(args) -> status`` per command line entry.

``ripu.cli`` builds the parser without importing this module (so ``ripu --help`` and ``ripu
config check`` import no torch) and loads it when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ripu.acquisition import LabelState, latest_round
from ripu.acquisition.export import export_round
from ripu.acquisition.state import round_path
from ripu.annotate import WAITING_STATUS, AwaitingLabels
from ripu.config import Config, load_config
from ripu.credentials import use_credentials
from ripu.data.build import build_datasets
from ripu.data.synthetic import generate
from ripu.engine.build import build_model_from, select_device
from ripu.engine.checkpoint import load_weights
from ripu.engine.evaluate import EvalResult, evaluate
from ripu.engine.selection import run_round
from ripu.engine.trainer import run_trial
from ripu.errors import RipuError
from ripu.record_names import MIOU
from ripu.report import build_report
from ripu.sweep import run_sweep


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.params, args.set)


# ----------------------------------------------------------------------------- helpers


def select_cli(cfg: Config, checkpoint: str | Path, masks_dir: Path, round_index: int | None,
               progress: bool = True) -> Path:
    """`ripu select`: the next round file of ``masks_dir`` from a checkpoint."""
    device = select_device(cfg.train.device)
    target = build_datasets(cfg, only=("target",))["target"]
    model = build_model_from(cfg, device)
    load_weights(model, checkpoint)
    last = latest_round(masks_dir)
    state = LabelState.load(last[1]) if last else LabelState()
    if round_index is None:
        round_index = last[0] + 1 if last else 0
    elif last and round_index != last[0] + 1:
        raise RipuError(f"--round {round_index}: the last complete round in {masks_dir} is "
                        f"{last[0]}, expected --round {last[0] + 1}")
    elif not last and round_index != 0:
        raise RipuError(f"--round {round_index}: {masks_dir} has no round file, expected 0")
    state = run_round(cfg, model, target, state, round_index, device=device, progress=progress)
    path = round_path(masks_dir, round_index)
    state.save(path)
    return path


def evaluate_checkpoint(cfg: Config, checkpoint: str | Path, *, flip: bool = False,
                        progress: bool = True) -> EvalResult:
    """`ripu evaluate`: a checkpoint on the target val split at ``data.eval_size``."""
    device = select_device(cfg.train.device)
    val = build_datasets(cfg, only=("val",))["val"]
    model = build_model_from(cfg, device)
    load_weights(model, checkpoint)
    return evaluate(model, val, cfg.data.num_classes, input_size=cfg.data.eval_size,
                    flip=flip, device=device, batch_size=1, progress=progress)


# ----------------------------------------------------------------------------- handlers


def cmd_data_synth(args: argparse.Namespace) -> int:
    cfg = _load(args)
    s = cfg.synth
    out = Path(args.out or s.out)
    summary = generate(out, seed=s.seed, source_images=s.source_images,
                       target_train=s.target_train, target_val=s.target_val,
                       height=s.height, width=s.width, target=s.target,
                       progress=not args.quiet)
    print(f"wrote {out} ({summary.get('counts', summary)})")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    cfg = _load(args)
    sets = build_datasets(cfg, augment=False)
    for name, ds in sets.items():
        for i in range(len(ds)):
            ds.read_label(i)
        print(f"{name}: {len(ds)} images, {ds.num_classes} classes, labels ok")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    cfg = _load(args)
    try:
        result = run_trial(cfg, Path(args.out), init=args.init, resume=args.resume,
                           progress=not args.quiet)
    except AwaitingLabels as waiting:  # not a failure: run again with --resume once labelled
        print(waiting, flush=True)
        return WAITING_STATUS
    print(f"final mIoU {100 * result[MIOU]:.2f} ({args.out})")
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    cfg = _load(args)
    path = select_cli(cfg, checkpoint=args.checkpoint, masks_dir=Path(args.masks),
                      round_index=args.round, progress=not args.quiet)
    print(f"wrote {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    cfg = _load(args)
    target = build_datasets(cfg, augment=False, only=("target",))["target"]
    export_round(Path(args.round_file), target, Path(args.out), previews=not args.no_previews)
    print(f"wrote {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    cfg = _load(args)
    res = evaluate_checkpoint(cfg, args.checkpoint, flip=args.flip, progress=not args.quiet)
    for key, value in res.summary.items():
        if isinstance(value, float):
            print(f"{key}: {100 * value:.2f}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    cfg = _load(args)
    run_sweep(cfg, experiment_file=Path(args.experiment or cfg.sweep.experiment),
              init=args.init, warmups=Path(args.warmups), out_dir=Path(args.out),
              progress=not args.quiet)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    cfg = _load(args)
    out = Path(args.out or cfg.report.out)
    use_credentials(cfg.tracking)
    info = build_report(cfg.tracking.uri, experiment=args.experiment or cfg.tracking.experiment,
                        out_dir=out)
    if info["environments"]:
        print(info["environments"], file=sys.stderr)
    print(f"wrote {out}")
    return 0

"""`ripu` command line: data, config, train, select, export, evaluate, sweep, report.

Every subcommand takes ``--params FILE`` (default params.yaml) and ``-S section.key=value``
overrides. Bad input exits with status 2 and one line on stderr, before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ripu.acquisition import LabelState, latest_round
from ripu.acquisition.export import export_round
from ripu.config import Config, dump_yaml, load_config, params_hash
from ripu.data.synthetic import generate
from ripu.engine.build import build_datasets, build_model_from, select_device
from ripu.engine.checkpoint import load_weights
from ripu.engine.evaluate import EvalResult, evaluate
from ripu.engine.selection import run_round
from ripu.engine.trainer import run_trial
from ripu.errors import RipuError, exit_status
from ripu.report import build_report
from ripu.sweep import run_sweep


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.params, args.set)


def _common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--params", default="params.yaml", metavar="FILE",
                   help="params file (default: params.yaml)")
    p.add_argument("-S", "--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one parameter, as `dvc exp run -S` does (repeatable)")
    return p


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
    path = Path(masks_dir) / f"round_{round_index}.npz"
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


def cmd_config_check(args: argparse.Namespace) -> int:
    cfg = _load(args)
    sys.stdout.write(dump_yaml(cfg))
    print(f"# ok: {args.params} is valid (params hash {params_hash(cfg)})", file=sys.stderr)
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    cfg = _load(args)
    s = cfg.synth
    out = Path(args.out or s.out)
    summary = generate(out, seed=s.seed, source_images=s.source_images,
                       target_train=s.target_train, target_val=s.target_val,
                       height=s.height, width=s.width, progress=not args.quiet)
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
    result = run_trial(cfg, Path(args.out), init=args.init, resume=args.resume,
                       progress=not args.quiet)
    print(f"final mIoU {100 * result['miou']:.2f} ({args.out})")
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
    build_report(cfg.tracking.uri, experiment=args.experiment or cfg.tracking.experiment,
                 out_dir=out)
    print(f"wrote {out}")
    return 0


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ripu",
        description="Active domain adaptation for semantic segmentation (RIPU, LSE): data, "
                    "training, selection rounds, sweeps and reports.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(parent, name: str, func: Callable, help: str) -> argparse.ArgumentParser:
        p = _common(parent.add_parser(name, help=help, description=help))
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        p.set_defaults(func=func)
        return p

    config = sub.add_parser("config", help="validate and print the resolved configuration")
    config_sub = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    add(config_sub, "check", cmd_config_check, "validate a params file, print the resolved config")

    data = sub.add_parser("data", help="generate or check datasets")
    data_sub = data.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = add(data_sub, "synth", cmd_data_synth,
            "generate the embedded synthetic domain-shift benchmark (section synth)")
    p.add_argument("--out", help="output folder (default: synth.out)")
    add(data_sub, "check", cmd_data_check,
        "check the source and target dataset layouts and every label file")

    p = add(sub, "train", cmd_train, "run one trial end to end (train.kind, active.*)")
    p.add_argument("--out", required=True, help="trial folder: checkpoints, masks, results")
    p.add_argument("--init",
                   help="checkpoint to start from (e.g. models/synthetic/source_only.pt)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the trial folder's last checkpoint")

    p = add(sub, "select", cmd_select, "run one selection round from a checkpoint")
    p.add_argument("--checkpoint", required=True, help="model checkpoint (.pt)")
    p.add_argument("--masks", required=True, help="folder of round_<r>.npz files")
    p.add_argument("--round", type=int, default=None,
                   help="round index (default: one after the last complete round)")

    p = add(sub, "export", cmd_export, "turn a round file into PNG masks, overlays, contact sheet")
    p.add_argument("round_file", help="a round_<r>.npz file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-previews", action="store_true", help="masks only")

    p = add(sub, "evaluate", cmd_evaluate, "evaluate a checkpoint on the target val split")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--flip", action="store_true", help="horizontal-flip test-time augmentation")

    p = add(sub, "sweep", cmd_sweep, "run an experiment file's trials with Ray Tune")
    p.add_argument("--experiment", help="experiment YAML (default: sweep.experiment)")
    p.add_argument("--init", help="checkpoint every trial starts from, instead of the init "
                                  "each row declares")
    p.add_argument("--warmups", default="models",
                   help="folder of the declared warm-ups, <experiment>/<name>.pt (default: "
                        "models)")
    p.add_argument("--out", default="runs", help="trial folders root (default: runs)")

    p = add(sub, "report", cmd_report, "tables and figures from the MLflow runs")
    p.add_argument("--experiment", help="MLflow experiment (default: tracking.experiment)")
    p.add_argument("--out", help="output folder (default: report.out)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_status(args.func, args)


if __name__ == "__main__":
    sys.exit(main())

"""`ripu` command line: data, config, train, select, export, evaluate, sweep, report.

Every subcommand takes ``--params FILE`` (default params.yaml) and ``-S section.key=value``
overrides. Bad input exits with status 2 and one line on stderr, before anything is written.
The parser and ``config check`` import no torch; the other handlers (``ripu.commands``) are
imported when their command runs, so ``ripu --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ripu.config import dump_yaml, load_config, params_hash
from ripu.errors import exit_status

COMMANDS = "ripu.commands"  # the handlers that need torch


def _common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--params", default="params.yaml", metavar="FILE",
                   help="params file (default: params.yaml)")
    p.add_argument("-S", "--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one parameter, as `dvc exp run -S` does (repeatable)")
    return p


# ----------------------------------------------------------------------------- handlers


def cmd_config_check(args: argparse.Namespace) -> int:
    cfg = load_config(args.params, args.set)
    sys.stdout.write(dump_yaml(cfg))
    print(f"# ok: {args.params} is valid (params hash {params_hash(cfg)})", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ripu",
        description="Active domain adaptation for semantic segmentation (RIPU, LSE): data, "
                    "training, selection rounds, sweeps and reports.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(parent, name: str, handler: str, help: str) -> argparse.ArgumentParser:
        """A subcommand whose handler is ``module:function``, imported when it runs."""
        p = _common(parent.add_parser(name, help=help, description=help))
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        p.set_defaults(handler=handler)
        return p

    config = sub.add_parser("config", help="validate and print the resolved configuration")
    config_sub = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    add(config_sub, "check", "ripu.cli:cmd_config_check", "validate a params file, print the resolved config")

    data = sub.add_parser("data", help="generate or check datasets")
    data_sub = data.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = add(data_sub, "synth", f"{COMMANDS}:cmd_data_synth",
            "generate the embedded synthetic domain-shift benchmark (section synth)")
    p.add_argument("--out", help="output folder (default: synth.out)")
    add(data_sub, "check", f"{COMMANDS}:cmd_data_check",
        "check the source and target dataset layouts and every label file")

    p = add(sub, "train", f"{COMMANDS}:cmd_train", "run one trial end to end (train.kind, active.*)")
    p.add_argument("--out", required=True, help="trial folder: checkpoints, masks, results")
    p.add_argument("--init",
                   help="checkpoint to start from (e.g. models/synthetic/source_only.pt)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the trial folder's last checkpoint")

    p = add(sub, "select", f"{COMMANDS}:cmd_select", "run one selection round from a checkpoint")
    p.add_argument("--checkpoint", required=True, help="model checkpoint (.pt)")
    p.add_argument("--masks", required=True, help="folder of round_<r>.npz files")
    p.add_argument("--round", type=int, default=None,
                   help="round index (default: one after the last complete round)")

    p = add(sub, "export", f"{COMMANDS}:cmd_export", "turn a round file into PNG masks, overlays, contact sheet")
    p.add_argument("round_file", help="a round_<r>.npz file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-previews", action="store_true", help="masks only")

    p = add(sub, "evaluate", f"{COMMANDS}:cmd_evaluate", "evaluate a checkpoint on the target val split")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--flip", action="store_true", help="horizontal-flip test-time augmentation")

    p = add(sub, "sweep", f"{COMMANDS}:cmd_sweep", "run an experiment file's trials with Ray Tune")
    p.add_argument("--experiment", help="experiment YAML (default: sweep.experiment)")
    p.add_argument("--init", help="checkpoint every trial starts from, instead of the init "
                                  "each row declares")
    p.add_argument("--warmups", default="models",
                   help="folder of the declared warm-ups, <experiment>/<name>.pt (default: "
                        "models)")
    p.add_argument("--out", default="runs", help="trial folders root (default: runs)")

    p = add(sub, "report", f"{COMMANDS}:cmd_report", "tables and figures from the MLflow runs")
    p.add_argument("--experiment", help="MLflow experiment (default: tracking.experiment)")
    p.add_argument("--out", help="output folder (default: report.out)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module, name = args.handler.split(":")
    handler = getattr(importlib.import_module(module), name)
    return exit_status(handler, args)


if __name__ == "__main__":
    sys.exit(main())

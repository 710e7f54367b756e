"""GPU smoke test: every trial kind on CUDA, selection at full size, data-parallel over NCCL.

    python -m benchmarks.gpu_smoke [--json FILE]          # make gpu-smoke
    python -m benchmarks.gpu_smoke --device cpu --arch small --size 64x32 --iters 4

Without a CUDA device it says so in one line and exits 0. With one, it runs, stopping at the
first failure with one line (exit 1):

1. every trial kind that needs no server (``people`` needs Label Studio) for ``--iters``
   iterations of DeepLab-v2/ResNet-101 (random weights) at 512 x 256 on a small synthetic
   set, in fp32 and under bf16 autocast (``train.amp``), selection rounds and the final
   evaluation included: seconds per iteration (all in) and peak GPU memory;
2. one RIPU region round (scores + greedy selection, 2.2% over 5 rounds) on 19 x 1024 x 2048
   logits, Cityscapes' label size, on the GPU: seconds and peak memory;
3. with 2 or more visible GPUs, an active trial data-parallel over 2 GPUs (NCCL, Ray Train).

The table goes to stdout and, with every figure, to ``--json`` (default
``reports/gpu_smoke.json``). ``--device cpu`` runs the same cases on the CPU (the tests do,
with the small network), so the code path is checked on machines without a GPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks import REPO, scratch

KIND_CASES = ("source_only", "supervised", "active", "source_free", "hybrid", "lse")
LABEL_SIZE = (1024, 2048)  # (H, W) Cityscapes labels


class SmokeFailed(Exception):
    """A case failed; the message is the one line printed."""


def trial_overrides(data: Path, tmp: Path, arch: str, size: tuple[int, int], iters: int,
                    device: str) -> dict[str, Any]:
    """A short trial of every kind: 2 selection rounds (or 2 LSE rounds), no tracking."""
    w, h = size
    return {"data.source_root": str(data / "source"), "data.target_root": str(data / "target"),
            "data.source_size": [w, h], "data.target_size": [w, h], "data.eval_size": [w, h],
            "model.arch": arch, "model.backbone": "resnet101", "model.pretrained": None,
            "model.freeze_bn": True, "optim.iters": iters, "optim.poly_iters": iters,
            "active.round_at": [0.0, 0.5], "active.rounds": 2, "active.budget": 0.022,
            "active.batch_size": 4, "lse.rounds": 2,
            "train.device": device, "train.checkpoint_every": iters, "train.threads": 2,
            "tracking.uri": f"sqlite:///{tmp / 'mlflow.db'}"}


def measured(device: torch.device, fn: Callable[[], Any]) -> tuple[float, float]:
    """(seconds, peak MiB allocated on ``device``; NaN on the CPU) of ``fn()``."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else float("nan")
    return seconds, peak


def kind_cases(args: argparse.Namespace, data: Path, tmp: Path) -> list[dict[str, Any]]:
    from ripu.config import Config, apply_overrides
    from ripu.engine.trainer import run_trial

    rows = []
    base = trial_overrides(data, tmp, args.arch, args.size, args.iters, args.device)
    for kind in KIND_CASES:
        for precision, amp in (("fp32", False), ("bf16", True)):
            name = f"{kind} {precision}"
            out = tmp / f"{kind}-{precision}"
            try:
                cfg = apply_overrides(Config(), base | {"train.kind": kind, "train.amp": amp})
                seconds, peak = measured(torch.device(args.device),
                                         lambda: run_trial(cfg, out, progress=False,  # noqa: B023
                                                           callbacks=[]))
            except Exception as exc:
                raise SmokeFailed(f"{name}: {type(exc).__name__}: {exc}") from exc
            rows.append({"case": name, "s_per_iter": seconds / args.iters, "seconds": seconds,
                         "peak_mib": peak})
            print(_line(rows[-1]), flush=True)
    return rows


def selection_case(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.acquisition import fast_round, realistic_logits
    from ripu.acquisition.budget import Budget, units_for_round

    device = torch.device(args.device)
    height, width = args.label_size
    logits = realistic_logits(19, height, width, seed=0, device=device)
    n = units_for_round(Budget("region", 0.022, 0, 5, 1), height, width, 0)
    try:
        seconds, peak = measured(device, lambda: fast_round(logits, n, 1))
    except Exception as exc:
        raise SmokeFailed(f"selection at {height}x{width}: {type(exc).__name__}: {exc}") from exc
    return {"case": f"RA round at {width}x{height}", "s_per_iter": float("nan"),
            "seconds": seconds, "peak_mib": peak}


def ddp_case(args: argparse.Namespace, data: Path, tmp: Path) -> dict[str, Any]:
    from ripu.config import Config, apply_overrides
    from ripu.engine.distributed import run_trial_distributed

    base = trial_overrides(data, tmp, args.arch, args.size, args.iters, args.device)
    try:
        cfg = apply_overrides(Config(), base | {"train.kind": "active", "train.amp": True})
        seconds, _ = measured(torch.device("cpu"), lambda: run_trial_distributed(
            cfg, tmp / "ddp", num_workers=2, use_gpu=True, progress=False, callbacks=[]))
    except Exception as exc:
        raise SmokeFailed(f"data-parallel over 2 GPUs: {type(exc).__name__}: {exc}") from exc
    return {"case": "active bf16, 2 GPUs (NCCL)", "s_per_iter": seconds / args.iters,
            "seconds": seconds, "peak_mib": float("nan")}


def _line(row: dict[str, Any]) -> str:
    def f(x: float, spec: str) -> str:
        return "-" if x != x else format(x, spec)
    return (f"| {row['case']} | {f(row['s_per_iter'], '.3f')} | {f(row['seconds'], '.1f')} "
            f"| {f(row['peak_mib'], '.0f')} |")


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--arch", default="deeplabv2", help="network (default deeplabv2)")
    parser.add_argument("--size", type=_size, default=(512, 256), metavar="WxH",
                        help="training size (default 512x256)")
    parser.add_argument("--label-size", type=lambda t: _size(t)[::-1], default=LABEL_SIZE,
                        metavar="WxH", help="selection size (default 2048x1024)")
    parser.add_argument("--iters", type=int, default=10, help="iterations per trial")
    parser.add_argument("--json", type=Path, default=REPO / "reports" / "gpu_smoke.json")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu-smoke: no CUDA device visible (torch {torch.__version__}); nothing run")
        return 0
    from ripu.data.synthetic import generate
    from ripu.io import write_json

    rows: list[dict[str, Any]] = []
    print("| case | s/iteration | seconds | peak GPU MiB |\n|:--|--:|--:|--:|", flush=True)
    try:
        with scratch("gpu-smoke") as tmp_name:
            tmp = Path(tmp_name)
            w, h = args.size
            generate(tmp / "data", seed=0, progress=False, source_images=8, target_train=8,
                     target_val=4, height=h * 2, width=w * 2)  # labels at twice the input
            rows += kind_cases(args, tmp / "data", tmp)
            rows.append(selection_case(args))
            print(_line(rows[-1]), flush=True)
            if args.device == "cuda" and torch.cuda.device_count() >= 2:
                rows.append(ddp_case(args, tmp / "data", tmp))
                print(_line(rows[-1]), flush=True)
    except SmokeFailed as exc:
        print(f"gpu-smoke: FAILED at {exc}", file=sys.stderr)
        return 1
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    write_json(args.json, {"device": device, "torch": torch.__version__,
                           "gpus": torch.cuda.device_count(), "arch": args.arch,
                           "size": list(args.size), "iters": args.iters,
                           "rows": [{k: None if v != v else v for k, v in r.items()}
                                    for r in rows]})
    print(f"gpu-smoke: every case passed on {device} -> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

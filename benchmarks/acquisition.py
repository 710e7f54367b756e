"""Benchmark: one RIPU region-acquisition round, straightforward vs fast, in one process.

    python benchmarks/acquisition.py                      # 19 x 1024 x 2048, radius 1
    python benchmarks/acquisition.py --size 256 512 --json out.json

Workload: seeded smooth random logits shaped like a segmentation network's output (fields
at 1/64 and 1/16 of the image plus a class prior, produced at output stride 8 and upsampled
bilinearly, align_corners=True), one RA round of ``ceil(H*W*fraction/rounds/9)`` regions
(2.2% over 5 rounds: 1026 regions at full resolution).

Compared: ``naive`` = ripu.acquisition.naive (F.conv2d one-hot box sums, one full-image
argmax per region, -inf writes) vs ``fast`` = ripu.acquisition (window sums by shifted adds,
impurity only where a window holds two or more classes, one k-th value threshold + sort of
the candidates, a host scan over them). Timed: scores + selection, from logits to masks.
The two score implementations are independent code following one numerical contract
(ripu/acquisition/scores.py: sums over classes in class order, window sums in float64, one
rounding to float32), so their scores are compared bit for bit (``scores_identical``); each
selection runs on its own implementation's scores and the masks are compared.
Reported: naive time (one run), fast time (median of ``--repeats`` after a warm-up), their
ratio, mask identity and the peak memory of one round (resident-set growth over the logits already in
memory, sampled every 2 ms after returning freed heap memory to the OS; on CUDA the peak
allocated memory).

On a shared machine, OpenMP's default active waiting makes many-op code very slow whenever
another process takes a core (each parallel region waits a time slice for a descheduled
thread); ``OMP_WAIT_POLICY=PASSIVE`` avoids that. The policy and the load are reported.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ripu.acquisition import region_scores, select_regions
from ripu.acquisition.budget import Budget, units_for_round
from ripu.acquisition.naive import naive_region_scores, naive_select_regions
from ripu.io import write_json


def realistic_logits(num_classes: int, height: int, width: int, seed: int,
                     device: torch.device) -> torch.Tensor:
    """Smooth seeded logits like an upsampled stride-8 network output. Shape: (C, H, W)."""
    g = torch.Generator().manual_seed(seed)
    h8, w8 = max(2, height // 8), max(2, width // 8)

    def field(div: int) -> torch.Tensor:
        low = torch.randn(1, num_classes, max(2, height // div), max(2, width // div), generator=g)
        return F.interpolate(low, size=(h8, w8), mode="bicubic", align_corners=True)

    prior = torch.linspace(1.5, -1.5, num_classes)[torch.randperm(num_classes, generator=g)]
    stride8 = 3.0 * field(64) + 1.5 * field(16) + 0.3 * torch.randn(1, num_classes, h8, w8,
                                                                     generator=g)
    stride8 = stride8 + prior.view(1, -1, 1, 1)
    full = F.interpolate(stride8, size=(height, width), mode="bilinear", align_corners=True)
    return full[0].contiguous().to(device)


def fast_round(logits: torch.Tensor, n: int, radius: int):
    return select_regions(region_scores(logits, radius).score, n, radius)


def naive_round(logits: torch.Tensor, n: int, radius: int):
    return naive_select_regions(naive_region_scores(logits, radius).score, n, radius)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device):
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def _trim_heap() -> None:
    """Return freed heap memory to the OS so the next call's growth shows in the RSS."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def peak_memory_mb(fn, device: torch.device) -> float:
    """Peak memory one call of ``fn`` adds above what is in use before it, in MiB."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    gc.collect()
    _trim_heap()
    base = _rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    fn()
    done.set()
    thread.join()
    peak[0] = max(peak[0], _rss_bytes())
    return (peak[0] - base) / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", nargs=2, type=int, default=(1024, 2048), metavar=("H", "W"))
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--radius", type=int, default=1)
    parser.add_argument("--fraction", type=float, default=0.022)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5, help="fast runs (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    height, width = args.size
    budget = Budget("region", args.fraction, 0, args.rounds, args.radius)
    n = units_for_round(budget, height, width, 0)
    logits = realistic_logits(args.classes, height, width, args.seed, device)
    print(f"logits {args.classes} x {height} x {width} float32 on {device}, radius "
          f"{args.radius}, {n} regions; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')!r}, "
          f"load average {os.getloadavg()[0]:.1f}")

    fast_round(logits, n, args.radius)  # warm-up
    fast_times, fast_masks = [], None
    for _ in range(args.repeats):
        seconds, fast_masks = timed(lambda: fast_round(logits, n, args.radius), device)
        fast_times.append(seconds)
    fast_seconds = statistics.median(fast_times)
    naive_seconds, naive_masks = timed(lambda: naive_round(logits, n, args.radius), device)

    fast_scores = region_scores(logits, args.radius)
    naive_scores = naive_region_scores(logits, args.radius)
    scores_identical = all(torch.equal(a, b) for a, b in zip(fast_scores, naive_scores, strict=True))
    masks_identical = all(torch.equal(a, b) for a, b in zip(fast_masks, naive_masks, strict=True))
    del fast_scores, naive_scores
    fast_peak = peak_memory_mb(lambda: fast_round(logits, n, args.radius), device)
    naive_peak = peak_memory_mb(lambda: naive_round(logits, n, args.radius), device)

    speedup = naive_seconds / fast_seconds
    print(f"naive: {naive_seconds:.3f} s   peak +{naive_peak:.0f} MiB")
    print(f"fast:  {fast_seconds:.3f} s (median of {args.repeats}: "
          f"{', '.join(f'{t:.3f}' for t in fast_times)})   peak +{fast_peak:.0f} MiB")
    print(f"speed-up {speedup:.1f}x; scores identical: {scores_identical}; masks identical: "
          f"{masks_identical}; selected pixels {int(fast_masks[0].sum())}")
    if args.json is not None:
        write_json(args.json, {
            "acquisition_speedup": round(speedup, 2), "naive_seconds": round(naive_seconds, 4),
            "fast_seconds": round(fast_seconds, 4), "masks_identical": masks_identical,
            "scores_identical": scores_identical, "peak_memory_mb": round(fast_peak, 1),
            "naive_peak_memory_mb": round(naive_peak, 1), "size": [height, width],
            "classes": args.classes, "radius": args.radius, "regions": n,
            "device": str(device), "threads": torch.get_num_threads(),
            "fast_seconds_all": [round(t, 4) for t in fast_times],
            "load_average": round(os.getloadavg()[0], 2),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        })
    return 0 if masks_identical else 1


if __name__ == "__main__":
    sys.exit(main())

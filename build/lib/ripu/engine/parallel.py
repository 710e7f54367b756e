"""The trainer's view of data parallelism: which rank it is and the few collective steps.

A single-process trial uses ``DistContext()`` (rank 0 of 1): every method is then the
identity or free. ``ripu.engine.distributed`` gives each rank of a data-parallel trial its
own ``DistContext(rank, world_size)`` once ``torch.distributed`` is initialised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ripu.errors import RipuError


@dataclass(frozen=True)
class DistContext:
    """Rank ``rank`` of ``world_size`` processes training one trial."""

    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise RipuError(f"rank {self.rank} of {self.world_size} workers: expected "
                            f"0 <= rank < world_size")

    @property
    def is_main(self) -> bool:
        """Only the main rank writes files and runs the trial's own callbacks."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The module training forward passes go through: ``model`` itself in one process,
        a ``DistributedDataParallel`` wrapper of it otherwise (trainable BatchNorm becomes
        SyncBatchNorm on GPUs, in place: ``model`` stays the bare module that checkpoints,
        selection and evaluation use)."""
        if not self.parallel:
            return model
        from torch.nn.parallel import DistributedDataParallel

        if device.type == "cuda" and not getattr(model, "bn_frozen", False):
            # Batch statistics over the global batch, as in a single process.
            converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            if converted is not model:
                raise RipuError("SyncBatchNorm conversion replaced the model; expected a "
                                "model that is not itself a BatchNorm layer")
        return DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    def slice(self, batch: dict[str, Any]) -> dict[str, Any]:
        """This rank's equal share of a batch ``{"source": {...} | None, "target": ...}``.

        Shape:
            every tensor ``(N, ...) -> (N / world_size, ...)``, rows
            ``rank * N / world_size ..`` of the global batch.
        """
        if not self.parallel:
            return batch
        out: dict[str, Any] = {}
        for part, items in batch.items():
            if items is None:
                out[part] = None
                continue
            n = next(iter(items.values())).shape[0]
            if n % self.world_size:
                raise RipuError(f"{part} batch of {n} does not divide among "
                                f"{self.world_size} workers")
            k = n // self.world_size
            out[part] = {key: value[self.rank * k:(self.rank + 1) * k]
                         for key, value in items.items()}
        return out

    def mean(self, metrics: Mapping[str, float], device: torch.device) -> dict[str, float]:
        """``metrics`` averaged over ranks (every rank calls it with the same keys)."""
        if not self.parallel:
            return dict(metrics)
        import torch.distributed as dist

        keys = sorted(metrics)
        values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64,
                              device=device)
        dist.all_reduce(values)
        values /= self.world_size
        return {**metrics, **dict(zip(keys, values.tolist(), strict=True))}

    def all_true(self, flag: bool, device: torch.device) -> bool:
        """True when ``flag`` holds on every rank (so that all ranks decide alike)."""
        if not self.parallel:
            return flag
        import torch.distributed as dist

        value = torch.tensor([int(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item())

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.parallel:
            import torch.distributed as dist

            dist.barrier()

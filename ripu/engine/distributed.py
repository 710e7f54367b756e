"""Data-parallel trials: one trial over several processes, through Ray Train's TorchTrainer.

Each worker builds the same :class:`~ripu.engine.trainer.Trainer` (same seed, data and
initial weights), wraps its model in ``DistributedDataParallel`` and trains on its rank's
slice of every deterministic batch, so the global batch is the single-process batch
(``optim.batch_source`` and ``optim.batch_target`` must divide by the number of workers).
DDP averages the ranks' gradients: with losses that are means over equally many pixels
per rank, a step equals the single-process step on the whole batch (tests check this);
where ranks hold different numbers of labelled pixels (ignore pixels, selected regions),
each rank's mean counts equally, the usual DDP convention.

Selection rounds, LSE pseudo-labels and evaluations run on every rank: their inputs and
the model replicas are identical, so every rank computes the same label state (no
broadcast needed). Only rank 0 writes files (checkpoints, round files, results.json) and
runs the trial's callbacks (MLflow); callbacks with ``all_ranks = True`` run on every rank
(:class:`RayReport` feeds Ray Train's reports, which are collective). Each rank's trainer
is given a :class:`~ripu.engine.parallel.DistContext`: it trains on its rank's slice of
every batch through a DDP wrapper of its model and logs metrics averaged over ranks. The trial folder must be on storage every node
sees (as for resumable sweeps): every rank reads the checkpoint when resuming.

Backends: ``gloo`` on CPU (tests: 2 CPU workers), ``nccl`` on GPUs (one GPU per worker,
``use_gpu=True``); trainable BatchNorm becomes SyncBatchNorm on GPUs. In a sweep,
``sweep.workers_per_trial: 2`` with ``sweep.gpus_per_trial: 2`` runs every trial on two GPUs
over NCCL, with ``sweep.gpus_per_trial: 0`` on two CPU workers over gloo; the trial's
``cpus_per_trial`` and ``gpus_per_trial`` are shared equally among its workers.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ripu.config import Config, SweepConfig
from ripu.credentials import Credentials
from ripu.engine.callbacks import Callback, CallbackList, TrackingCallback
from ripu.engine.parallel import DistContext
from ripu.engine.trainer import Trainer, train_trial
from ripu.engine.trial_dir import TrialDir
from ripu.errors import RipuError
from ripu.kinds import get_kind
from ripu.ray_cluster import start_ray
from ripu.record_names import ITERATION, VAL
from ripu.tracking import Tracker, check_tracking
from ripu.trial import miou_metrics

BACKENDS = ("gloo", "nccl")


# ----------------------------------------------------------------------------- batches


def check_divisible(cfg: Config, world_size: int) -> None:
    """Each rank takes an equal slice of the global batch: the batch sizes must divide."""
    if world_size < 1:
        raise RipuError(f"num_workers: expected a positive integer, got {world_size}")
    kind = get_kind(cfg.train.kind)
    used = {"optim.batch_source": cfg.optim.batch_source} if kind.uses_source else {}
    if kind.uses_target:
        used["optim.batch_target"] = cfg.optim.batch_target
    for key, size in used.items():
        if size % world_size:
            raise RipuError(f"{key}: {size} does not divide among {world_size} workers, "
                            f"expected a multiple of sweep.workers_per_trial")


# ----------------------------------------------------------------------------- callbacks


class RayReport(Callback):
    """Hand logged and evaluation metrics, each with ``iteration`` (the trainer's step, the
    time attribute of ASHA), to Ray Tune: with ``ray.tune.report`` from a trial's own
    process, or (``train``) with ``ray.train.report`` from every rank of a data-parallel
    trial, whose reports are collective (``TuneReportCallback`` relays them to Tune)."""

    def __init__(self, train: bool = False) -> None:
        self.all_ranks = train

    def _report(self, metrics: dict[str, float]) -> None:
        if self.all_ranks:
            import ray.train

            ray.train.report(metrics)
        else:
            from ray import tune

            tune.report(metrics)

    def on_log(self, trainer, metrics: dict[str, float], step: int) -> None:
        self._report({**metrics, ITERATION: step})

    def on_eval(self, trainer, result, step: int) -> None:
        self._report({**{f"{VAL}{k}": v for k, v in miou_metrics(result.summary).items()},
                      ITERATION: step})


@dataclasses.dataclass(frozen=True)
class _ReopenRun:
    """A TrackingCallback shipped to rank 0 as (uri, run id): MLflow clients do not pickle.
    ``credentials``: a Ray object reference to this process's tracking user, if any (only
    the reference travels in Ray Train's config)."""

    uri: str
    run_id: str
    credentials: Any = None

    def open(self) -> Callback:
        if self.credentials is not None:
            import ray

            ray.get(self.credentials).apply()
        return TrackingCallback(Tracker(self.uri, "", run_id=self.run_id))


def _shared_credentials() -> Any:
    """This process's tracking user in Ray's object store (a reference), or None."""
    import ray

    found = Credentials.from_env()
    return ray.put(found) if found is not None and ray.is_initialized() else None


def _portable(callbacks: Sequence[Callback] | None) -> list[Any] | None:
    if callbacks is None:
        return None
    return [_ReopenRun(cb.tracker.uri, cb.tracker.run_id, _shared_credentials())
            if isinstance(cb, TrackingCallback) else cb for cb in callbacks]


# ----------------------------------------------------------------------------- worker side


def train_worker(cfg: Config, out_dir: str | Path, dist: DistContext, *,
                 init: str | Path | None = None, resume: bool = False, progress: bool = True,
                 callbacks: Sequence[Any] | None = None,
                 device: torch.device | None = None) -> dict[str, Any] | None:
    """One rank (``dist``) of a data-parallel trial; ``torch.distributed`` must be initialised.

    ``callbacks``: as :func:`ripu.engine.trainer.run_trial`'s (None: MLflow tracking of
    ``cfg.tracking``, opened on rank 0), given to rank 0; those with ``all_ranks`` run on
    every rank. Returns the results on rank 0, None elsewhere.
    """
    trial = TrialDir(out_dir)
    check_divisible(cfg, dist.world_size)
    run_cfg = cfg
    if device is not None:  # this worker's device (Ray Train: cuda:<local rank>)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        run_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train,
                                                                     device=str(device)))
    trainer = Trainer(run_cfg, trial.root, init=init, progress=progress and dist.is_main,
                      dist=dist)
    # All ranks decide alike, before rank 0 may delete a stale checkpoint below.
    resume = dist.all_true(resume and trial.checkpoint.is_file(), trainer.device)
    if resume:
        trainer.load_checkpoint()
    dist.barrier()
    if dist.is_main:
        trial.prepare(cfg, resume, trainer.labels.kept_files)
    shared = [cb for cb in callbacks or () if getattr(cb, "all_ranks", False)]
    own: list[Callback] = []
    if dist.is_main:
        if callbacks is None:
            own = [TrackingCallback.for_trial(cfg, trial.root, resume=resume)]
        else:
            own = [cb.open() if isinstance(cb, _ReopenRun) else cb for cb in callbacks
                   if not getattr(cb, "all_ranks", False)]
    trainer.callbacks = CallbackList([*shared, *own])
    results = train_trial(trainer)
    return results if dist.is_main else None


def _ray_worker(config: dict[str, Any]) -> None:
    """Ray Train's ``train_loop_per_worker``: rank and device from the train context."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    device = ray.train.torch.get_device() if config["use_gpu"] else torch.device("cpu")
    train_worker(config["cfg"], config["out_dir"],
                 DistContext(rank=ctx.get_world_rank(), world_size=ctx.get_world_size()),
                 init=config["init"],
                 resume=config["resume"], progress=config["progress"],
                 callbacks=config["callbacks"], device=device)


# ----------------------------------------------------------------------------- sweeps

# A data-parallel trial's own Tune process only waits for its workers: it asks for no CPU
# (Ray Tune refuses an empty request, hence a token MiB of memory), so the workers get
# exactly the trial's CPUs and the local-cluster arithmetic of ripu.sweep holds.
DRIVER_RESOURCES = {"cpu": 0.0, "gpu": 0.0, "memory": float(2**20)}


def sweep_scaling(s: SweepConfig) -> dict[str, Any]:
    """``run_trial_distributed`` arguments for a sweep's data-parallel trials: the trial's
    ``cpus_per_trial`` and ``gpus_per_trial`` shared equally among ``workers_per_trial``
    workers (``gpus_per_trial: 2, workers_per_trial: 2``: one GPU each)."""
    w = s.workers_per_trial
    if s.gpus_per_trial and s.gpus_per_trial < w:
        raise RipuError(f"sweep.gpus_per_trial: {s.gpus_per_trial:g} GPUs for {w} workers; "
                        f"expected at least one GPU per worker (sweep.workers_per_trial), "
                        f"NCCL cannot share a GPU between ranks")
    resources = {"CPU": s.cpus_per_trial / w}
    if s.gpus_per_trial:
        resources["GPU"] = s.gpus_per_trial / w
    return {"num_workers": w, "use_gpu": bool(s.gpus_per_trial),
            "resources_per_worker": resources}


def trial_resources(s: SweepConfig) -> dict[str, float]:
    """Ray Tune resources of one trial's own process: all the trial's resources for a
    single-process trial, :data:`DRIVER_RESOURCES` for a data-parallel one (its Ray Train
    workers request the trial's resources, see :func:`sweep_scaling`)."""
    if s.workers_per_trial == 1:
        return {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial}
    sweep_scaling(s)  # fail early on an impossible split
    return dict(DRIVER_RESOURCES)


# ----------------------------------------------------------------------------- driver side


def _check_cluster(num_workers: int, resources: dict[str, float]) -> None:
    import ray

    have = ray.cluster_resources()
    for key, each in resources.items():
        need = num_workers * each
        if need > have.get(key, 0.0):
            raise RipuError(f"sweep.{key.lower()}s_per_trial: {num_workers} workers need "
                            f"{need:g} {key} in all, the Ray cluster has "
                            f"{have.get(key, 0.0):g}; expected a cluster that fits one trial")


def _root_error(exc: BaseException) -> str:
    """The last line of the first worker's error (Ray wraps it in several layers)."""
    text = str(exc).strip()
    for attr in ("worker_failures", "_worker_failures"):
        failures = getattr(exc, attr, None)
        if isinstance(failures, dict) and failures:
            text = str(next(iter(failures.values()))).strip()
            break
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


def run_trial_distributed(cfg: Config, out_dir: str | Path, *, init: str | Path | None = None,
                          resume: bool = False, num_workers: int = 2, use_gpu: bool = False,
                          resources_per_worker: dict[str, float] | None = None,
                          backend: str | None = None, progress: bool = True,
                          callbacks: Sequence[Callback] | None = None,
                          report_to_tune: bool = False,
                          storage: str | Path | None = None) -> dict[str, Any]:
    """Run one trial data-parallel over ``num_workers`` Ray Train workers; its results.

    Same folder layout, resume and callbacks as :func:`ripu.engine.trainer.run_trial`
    (callbacks must pickle; a TrackingCallback continues its MLflow run on rank 0).
    ``backend``: ``gloo`` (default on CPU) or ``nccl`` (default with ``use_gpu``).
    ``resources_per_worker``: Ray resources of each worker (default 1 CPU, plus 1 GPU with
    ``use_gpu``). ``report_to_tune``: inside a Ray Tune trial, forward logged metrics to
    Tune. ``storage``: Ray Train's own run folder (default: a temporary folder, removed).
    Connects to RAY_ADDRESS, or starts (and stops) a local Ray when none is running.
    """
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    backend = backend or ("nccl" if use_gpu else "gloo")
    if backend not in BACKENDS:
        raise RipuError(f"backend: unknown {backend!r}, expected one of {', '.join(BACKENDS)}")
    if backend == "nccl" and not use_gpu:
        raise RipuError("backend: nccl needs GPUs (use_gpu=True), expected gloo on CPU")
    check_divisible(cfg, num_workers)
    if init is not None and not Path(init).is_file():
        raise RipuError(f"--init: {init} not found, expected a checkpoint (.pt)")
    if callbacks is None:
        check_tracking(cfg.tracking)
    resources = dict(resources_per_worker or {"CPU": 1.0, **({"GPU": 1.0} if use_gpu else {})})
    out_dir = Path(out_dir).resolve()
    all_ranks = [RayReport(train=True)] if report_to_tune else []
    config = {"cfg": cfg, "out_dir": str(out_dir), "init": str(init) if init else None,
              "resume": resume, "progress": progress, "use_gpu": use_gpu,
              "callbacks": None if callbacks is None and not all_ranks
              else [*all_ranks, *(_portable(callbacks) or [])]}
    if callbacks is None and all_ranks:  # default tracking plus the Tune reports
        tracking = TrackingCallback.for_trial(cfg, out_dir, resume=resume)
        config["callbacks"] = [*all_ranks, *_portable([tracking])]

    started = start_ray(num_workers * resources.get("CPU", 1.0))
    own_storage = storage is None
    store = Path(tempfile.mkdtemp(prefix="ripu-train-") if own_storage else storage).resolve()
    try:
        _check_cluster(num_workers, resources)
        run_callbacks = []
        if report_to_tune:
            from ray.tune.integration.ray_train import TuneReportCallback

            run_callbacks.append(TuneReportCallback())
        trainer = TorchTrainer(
            _ray_worker, train_loop_config=config,
            torch_config=TorchConfig(backend=backend),
            scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                         resources_per_worker=resources),
            run_config=RunConfig(name=f"ripu-{out_dir.name}", storage_path=str(store),
                                 callbacks=run_callbacks))
        try:
            trainer.fit()
        except ray.exceptions.RayError as exc:
            raise RipuError(f"data-parallel trial {out_dir.name} failed: "
                            f"{_root_error(exc)}") from exc
        except Exception as exc:  # noqa: BLE001 - Ray Train's failure types vary by version
            if type(exc).__module__.startswith("ray."):
                raise RipuError(f"data-parallel trial {out_dir.name} failed: "
                                f"{_root_error(exc)}") from exc
            raise
    finally:
        if own_storage:
            shutil.rmtree(store, ignore_errors=True)
        if started:
            ray.shutdown()
    path = TrialDir(out_dir).results_file
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RipuError(f"data-parallel trial {out_dir.name}: rank 0 wrote no readable "
                        f"{path} ({exc}); expected the trial folder on storage the driver "
                        f"sees") from None

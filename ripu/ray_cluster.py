"""The one Ray start-up: join a cluster (with token authentication when a token exists) or
start a local Ray just big enough. Sweeps (``ripu.sweep.session``) and data-parallel trials
(``ripu.engine.distributed``) both start Ray here.
"""

from __future__ import annotations

import math
import os
import signal
import threading

from ripu.trial import revision

# Environment of every Ray worker (and of the driver, for the keys it does not set itself).
# Quiet Ray: classic (terse) output engine, no usage stats; ASHA reads metrics that only some
# reports carry (evaluation steps), so missing ones must not be an error.
RAY_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # idle OpenMP threads sleep instead of spinning: concurrent trials share few cores
    "OMP_WAIT_POLICY": "PASSIVE",
}


def _token_auth_if_available() -> None:
    """Use token authentication to join a cluster when a Ray token exists, as `ray start`
    does (Ray's drivers only do so with RAY_AUTH_MODE=token)."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # another Ray version: RAY_AUTH_MODE decides
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def start_ray(cpus: float, address: str | None = None) -> bool:
    """Connect to ``address`` (or RAY_ADDRESS), or start a local Ray with ``ceil(cpus)``
    CPUs (at least 1), no dashboard. Workers get :data:`RAY_ENV` and the git revision.

    Returns True when this call initialised Ray (the caller calls ``ray.shutdown()``), False
    when Ray was already initialised in this process.
    """
    import ray

    if ray.is_initialized():
        return False
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    address = address or os.environ.get("RAY_ADDRESS")
    # ray.init replaces the driver's SIGTERM handler (with sys.exit); keep one the caller set
    sigterm = signal.getsignal(signal.SIGTERM) if _main_thread() else None
    common = {"runtime_env": {"env_vars": {"RIPU_GIT_REVISION": revision(), **RAY_ENV}},
              "logging_level": "WARNING", "configure_logging": True}
    if address:
        _token_auth_if_available()
        ray.init(address=address, **common)
    else:
        ray.init(address="local", num_cpus=max(1, math.ceil(cpus)), include_dashboard=False,
                 dashboard_host="127.0.0.1", **common)
    if callable(sigterm):
        signal.signal(signal.SIGTERM, sigterm)
    return True


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()

"""SIGTERM (preemption: SLURM, Kubernetes, spot instances) handled as Ctrl-C.

A cluster's scheduler sends SIGTERM, then SIGKILL after a grace period (often 30 s). While
:func:`sigterm_as_interrupt` is active, SIGTERM raises :class:`Terminated`, a
KeyboardInterrupt: the sweep stops as on Ctrl-C (parent run KILLED, Ray and the tracking
server shut down, within seconds) and the command exits with status 143 (128 + SIGTERM).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop as on Ctrl-C; the command's exit status is 143."""

    exit_status = 128 + signal.SIGTERM
    message = "terminated (SIGTERM)"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Raise :class:`Terminated` on SIGTERM while the block (or decorated function) runs
    (main thread only; Python runs signal handlers there), then restore the previous
    handler. Ray's blocking calls turn an interrupt into a plain KeyboardInterrupt; one
    that leaves the block after a SIGTERM leaves it as :class:`Terminated`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def terminate(signum, frame) -> None:
        received.append(signum)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except KeyboardInterrupt as exc:
        if received and not isinstance(exc, Terminated):
            raise Terminated() from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)

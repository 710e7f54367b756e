"""The retry policy of every call to a tracking store: SQLite's "database is locked" is
retried a few times; an unreachable server (one restarting) is waited for, up to
``tracking.retry_seconds`` per process (:func:`retry_for`), with one line on stderr when the
wait starts and one when the store answers again; a server that refuses the user fails at
once (:func:`ripu.credentials.refusal`)."""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ripu.credentials import USER_ENV, refusal
from ripu.errors import RipuError

T = TypeVar("T")

RETRY_SECONDS = 300.0  # how long calls wait for an unreachable store (tracking.retry_seconds)
_LOCKED = ("locked", "busy", "temporarily")  # SQLite: retried a few times
_UNREACHABLE = ("connection", "timed out", "503", "502", "504")  # waited for (_Outage)
_BOUND = {"seconds": RETRY_SECONDS}  # this process's tracking.retry_seconds (retry_for)
_REFUSED = {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403}  # MLflow's codes of a refusal


class _Outage:
    """How long the calls to one store wait for it while it is unreachable (a restarting
    tracking server): from the first failed call, up to the process's bound
    (:func:`retry_for`), each retried with a backoff; a line on stderr when the wait starts
    and when the store answers again. Once a wait has run out, every later call to the store
    fails at once (the store is gone)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.since: float | None = None
        self.gone: str | None = None
        self.lock = threading.Lock()

    def failed(self, exc: Exception) -> float:
        """Note a failed call; the seconds left to wait (raises once they have run out)."""
        reason, bound = " ".join(str(exc).split())[:160], _BOUND["seconds"]
        with self.lock:
            now = time.monotonic()
            if self.since is None and self.gone is None:
                self.since = now
                _say(f"{_where(self.uri)} unreachable ({reason}); retrying for up to "
                     f"{bound:g} s (tracking.retry_seconds)")
            if self.gone is None and now - self.since >= bound:
                self.gone = (f"tracking.uri: {_where(self.uri)} unreachable for "
                             f"{bound:g} s ({reason}); expected the MLflow server back "
                             f"within tracking.retry_seconds")
            if self.gone is not None:
                raise RipuError(self.gone) from None
            return bound - (now - self.since)

    def answered(self) -> None:
        with self.lock:
            if self.since is not None and self.gone is None:
                _say(f"{_where(self.uri)} answers again after "
                     f"{time.monotonic() - self.since:.1f} s")
                self.since = None


_OUTAGES: dict[str, _Outage] = {}


def _outage(uri: str) -> _Outage:
    """The process's :class:`_Outage` of ``uri``."""
    return _OUTAGES.setdefault(uri, _Outage(uri))


def retry_for(seconds: float) -> None:
    """Let this process's calls to any tracking store wait up to ``seconds`` while it is
    unreachable (``tracking.retry_seconds``; :data:`RETRY_SECONDS` until set)."""
    _BOUND["seconds"] = seconds


def _where(uri: str) -> str:
    return uri if uri.startswith(("http://", "https://")) else "the tracking store " + uri


def _say(text: str) -> None:
    print(f"ripu: tracking: {text}", file=sys.stderr, flush=True)


def retry_call(fn: Callable[[], T], uri: str, attempts: int = 30, delay: float = 0.1) -> T:
    """Call ``fn`` against the store at ``uri``, retrying transient errors: SQLite locks
    ``attempts`` times, an unreachable server for as long as its :class:`_Outage` allows."""
    for i in itertools.count():
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - mlflow wraps driver errors inconsistently
            code = _REFUSED.get(getattr(exc, "error_code", ""))
            if code is not None:  # the server refuses this user: waiting will not help
                raise RipuError(refusal(uri, code, os.environ.get(USER_ENV))) from None
            text = str(exc).lower()
            if any(s in text for s in _UNREACHABLE):
                left = _outage(uri).failed(exc)
                time.sleep(min(delay * 2 ** min(i, 6), 5.0, max(left, 0.1)))
                continue
            if not any(s in text for s in _LOCKED) or i >= attempts - 1:
                raise
            time.sleep(delay * min(2 ** i, 20))
            continue
        _outage(uri).answered()
        return result
    raise AssertionError("unreachable")

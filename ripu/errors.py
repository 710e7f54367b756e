"""Errors the command line turns into one line on stderr and exit status 2
(:func:`exit_status`, the one place that does it)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


class RipuError(ValueError):
    """Bad input: the message says what is wrong and what was expected."""


class ConfigError(RipuError):
    """A params file or override is invalid."""


class TrainingDiverged(RipuError):
    """A loss turned non-finite: the message names the iteration and the learning rate."""


class DatasetError(RipuError):
    """A dataset root is missing, incomplete or holds unreadable or unexpected files."""


class Waiting(Exception):  # noqa: N818 (a state, not an error)
    """A trial stopped at a checkpoint until something outside it is done (people labelling
    a round: ripu.annotate.AwaitingLabels); no failure."""


def exit_status(fn: Callable[..., int | None], *args: Any, **kwargs: Any) -> int:
    """Run ``fn(*args, **kwargs)`` as a command: its status (None counts as 0); 2 after one
    ``ripu: error: ...`` line on stderr for bad input (a RipuError); 130 after Ctrl-C, or
    the interrupt's own ``exit_status`` (143 after SIGTERM, see ripu.sweep.preempt)."""
    try:
        return fn(*args, **kwargs) or 0
    except RipuError as exc:
        print(f"ripu: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"ripu: {getattr(exc, 'message', 'interrupted')}", file=sys.stderr)
        return getattr(exc, "exit_status", 130)

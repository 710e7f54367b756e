"""SIGTERM handled as Ctrl-C (ripu.sweep.preempt), with the conventional exit status 143."""

from __future__ import annotations

import os
import signal

import pytest

from ripu.errors import exit_status
from ripu.sweep.preempt import Terminated, sigterm_as_interrupt


def test_sigterm_raises_an_interrupt_only_inside_the_block(capsys):
    before = signal.getsignal(signal.SIGTERM)

    def preempted():
        with sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0)  # let the handler run
        raise AssertionError("SIGTERM did not interrupt")

    assert exit_status(preempted) == 143
    assert capsys.readouterr().err == "ripu: terminated (SIGTERM)\n"
    assert signal.getsignal(signal.SIGTERM) is before
    with pytest.raises(KeyboardInterrupt):  # every Ctrl-C handler sees it
        raise Terminated()

    def ctrl_c():
        raise KeyboardInterrupt

    assert exit_status(ctrl_c) == 130
    assert capsys.readouterr().err == "ripu: interrupted\n"


def test_an_interrupt_rewrapped_after_sigterm_still_leaves_as_terminated():
    """Ray's blocking calls re-raise any interrupt as a plain KeyboardInterrupt."""
    with pytest.raises(Terminated), sigterm_as_interrupt():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0)
        except KeyboardInterrupt:
            raise KeyboardInterrupt from None
    with pytest.raises(KeyboardInterrupt) as info, sigterm_as_interrupt():
        raise KeyboardInterrupt  # Ctrl-C stays Ctrl-C
    assert not isinstance(info.value, Terminated)

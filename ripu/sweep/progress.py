"""The sweep's log (driver side): a line per finished trial, whatever stdout is.

``[12/36] active-ripu_region-b0.022-s0: mIoU 18.87%, 54.2 s`` goes to stdout (flushed, so
``make repro > log`` shows it at once): the count includes trials finished by earlier
sweeps, the time is the trial's own training time. On a terminal a tqdm bar follows too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ripu.record_names import FINAL_MIOU, FINAL_SECONDS, SKIPPED


def start_line(name: str, counts: dict[str, int]) -> str:
    """``sweep NAME: 36 trials, 10 finished earlier, 2 to resume, 24 to start``."""
    total = sum(counts.values())
    parts = [f"{n} {what}" for what, n in counts.items() if n]
    return f"sweep {name}: {total} trials" + (", " + ", ".join(parts) if parts else "")


def trial_line(done: int, total: int, trial: str, result: dict[str, Any],
               error: str | None = None) -> str:
    """One finished (or failed) trial: its name, mIoU, time, and trials done of total."""
    head = f"[{done}/{total}] {trial}:"
    if error is not None:
        return f"{head} failed ({error})"
    miou, seconds = result.get(FINAL_MIOU), result.get(FINAL_SECONDS)
    text = f"{head} mIoU {100 * miou:.2f}%" if miou is not None else f"{head} stopped"
    if seconds is not None:
        text += f", {seconds:.1f} s"
    return text + (" (finished earlier)" if result.get(SKIPPED) else "")


def trial_log(total: int, done_before: int, bar: bool):
    """A Ray Tune callback that prints :func:`trial_line` as trials end (and a tqdm bar on
    a terminal when ``bar``)."""
    from ray.tune import Callback as TuneCallback
    from tqdm.auto import tqdm

    class TrialLog(TuneCallback):
        def __init__(self) -> None:
            self.done = done_before
            self.bar = tqdm(total=total, initial=done_before, desc="trials", disable=not bar,
                            dynamic_ncols=True)

        def _line(self, text: str) -> None:
            self.bar.update(1)
            if self.bar.disable:
                print(text, flush=True)
            else:
                self.bar.write(text, file=sys.stdout)

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self.done += 1
            self._line(trial_line(self.done, total, trial.config["trial"],
                                  trial.last_result or {}))

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self.done += 1
            lines = _error_text(trial).strip().splitlines()
            self._line(trial_line(self.done, total, trial.config["trial"], {},
                                  error=lines[-1][:200] if lines else "see the Ray log"))

        def on_experiment_end(self, trials, **info) -> None:
            self.bar.close()

    return TrialLog()


def _error_text(trial) -> str:
    """A failed Ray Tune trial's traceback: from its storage, or (not synced there yet) from
    its local folder."""
    text = trial.get_error()
    if text is None and trial.error_file and os.path.isfile(trial.error_file):
        text = Path(trial.error_file).read_text()
    return str(text or "")

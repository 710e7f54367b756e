"""A round's ledger, ``tasks_<r>.json``: the task pushed for each image of round ``r``, and
the annotations refused because they changed after the round closed (each reported once).

JSON ``{"tasks": {image id: task id}, "refused": {annotation id: its updated_at}}``,
written atomically; a ledger of the earlier form (the image -> task mapping alone) reads as
its tasks with nothing refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ripu.errors import RipuError
from ripu.io import write_json


@dataclass
class Ledger:
    tasks: dict[str, int] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)


def ledger_path(masks_dir: Path, round_index: int) -> Path:
    return Path(masks_dir) / f"tasks_{round_index}.json"


def read_ledger(path: Path) -> Ledger:
    """The ledger at ``path`` (empty when there is none); RipuError when unreadable."""
    try:
        raw = json.loads(path.read_text())
        if "tasks" not in raw:  # the earlier form
            raw = {"tasks": raw}
        return Ledger({str(k): int(v) for k, v in raw["tasks"].items()},
                      {str(k): str(v) for k, v in raw.get("refused", {}).items()})
    except FileNotFoundError:
        return Ledger()
    except (OSError, ValueError, AttributeError, TypeError) as err:
        raise RipuError(f"{path}: unreadable task ledger ({err}); expected JSON written by "
                        f"ripu") from err


def write_ledger(path: Path, ledger: Ledger) -> None:
    write_json(path, {"tasks": ledger.tasks, "refused": ledger.refused})

"""Label state: which target pixels are labelled and blocked, per image, round by round.

One round's state for every image is one compressed ``.npz`` (``round_<r>.npz``): masks as
packed bits, plus ids, shapes and a JSON header (``schema_version``, round index, per-round
stats). Files are written atomically, so a run interrupted mid-write leaves only a temporary
file, which :func:`latest_round` ignores: a resumed run continues from the last complete
round. Masks are kept packed in memory too (1 bit per pixel) and unpacked on access.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ripu.errors import RipuError
from ripu.io import atomic_path

SCHEMA_VERSION = 1
ROUND_FILE = re.compile(r"round_(\d+)\.npz")
_KEYS = {"header", "ids", "shapes", "labelled", "blocked"}


def round_path(masks_dir: str | os.PathLike, round_index: int) -> Path:
    """Where the label state after round ``round_index`` lives: ``round_<r>.npz``."""
    return Path(masks_dir) / f"round_{round_index}.npz"


def _check_mask(mask: Any, name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != np.bool_ or mask.ndim != 2:
        raise RipuError(f"{name}: expected a bool (H, W) mask, got {mask.dtype} {mask.shape}")
    return mask


class _Masks(Mapping):
    """Read-only id -> bool (H, W) view over packed masks (unpacked on each access)."""

    def __init__(self, packed: dict[str, np.ndarray], shapes: dict[str, tuple[int, int]]):
        self._packed, self._shapes = packed, shapes

    def __getitem__(self, image_id: str) -> np.ndarray:
        shape = self._shapes[image_id]
        bits = np.unpackbits(self._packed[image_id], count=shape[0] * shape[1])
        return bits.view(bool).reshape(shape)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._packed

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._packed))

    def __len__(self) -> int:
        return len(self._packed)


class _LabelledFor(Mapping):
    """Labelled masks for given ids; ids never seen map to a 0-d False (nothing labelled)."""

    def __init__(self, masks: _Masks, ids: Iterable[str]):
        self._masks, self._ids = masks, list(dict.fromkeys(ids))
        self._known = set(self._ids)

    def __getitem__(self, image_id: str) -> np.ndarray:
        if image_id not in self._known:
            raise KeyError(image_id)
        if image_id in self._masks:
            return self._masks[image_id]
        return np.zeros((), dtype=bool)

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


class LabelState:
    """Per image id: ``labelled`` and ``blocked`` bool (H, W) masks; the last round's index
    (-1 before the first) and one stats dict per round."""

    def __init__(self) -> None:
        self._shapes: dict[str, tuple[int, int]] = {}
        self._labelled: dict[str, np.ndarray] = {}
        self._blocked: dict[str, np.ndarray] = {}
        self._labelled_count: dict[str, int] = {}
        self.round_index = -1
        self.round_stats: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ access

    @property
    def ids(self) -> list[str]:
        return sorted(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._shapes

    def __repr__(self) -> str:
        return (f"LabelState({len(self)} images, round {self.round_index}, "
                f"{100 * self.labelled_fraction():.3f}% labelled)")

    def shape(self, image_id: str) -> tuple[int, int]:
        return self._shapes[image_id]

    @property
    def labelled(self) -> Mapping[str, np.ndarray]:
        """id -> labelled bool (H, W) (a fresh array per access)."""
        return _Masks(self._labelled, self._shapes)

    @property
    def blocked(self) -> Mapping[str, np.ndarray]:
        """id -> blocked bool (H, W) (a fresh array per access)."""
        return _Masks(self._blocked, self._shapes)

    def masks_for(self, ids: Iterable[str]) -> Mapping[str, np.ndarray]:
        """Labelled masks for ``ids``, unpacked lazily; an id without a mask yet maps to a 0-d
        False array (broadcasts to "nothing labelled")."""
        return _LabelledFor(self.labelled, ids)

    def labelled_pixels(self) -> int:
        return sum(self._labelled_count.values())

    def total_pixels(self) -> int:
        return sum(h * w for h, w in self._shapes.values())

    def labelled_fraction(self) -> float:
        """Labelled pixels over all pixels of the images in the state (0.0 when empty)."""
        total = self.total_pixels()
        return self.labelled_pixels() / total if total else 0.0

    # ------------------------------------------------------------------ updates

    def copy(self) -> LabelState:
        new = LabelState()
        new._shapes = dict(self._shapes)
        new._labelled = dict(self._labelled)  # packed arrays are never modified in place
        new._blocked = dict(self._blocked)
        new._labelled_count = dict(self._labelled_count)
        new.round_index = self.round_index
        new.round_stats = [dict(s) for s in self.round_stats]
        return new

    def set_masks(self, image_id: str, labelled: np.ndarray, blocked: np.ndarray) -> None:
        """Store the masks of ``image_id`` (bool (H, W), same shape; copied, packed)."""
        if not isinstance(image_id, str) or not image_id:
            raise RipuError(f"image id: expected a non-empty string, got {image_id!r}")
        labelled = _check_mask(labelled, f"labelled mask of {image_id}")
        blocked = _check_mask(blocked, f"blocked mask of {image_id}")
        if labelled.shape != blocked.shape:
            raise RipuError(f"masks of {image_id}: labelled {labelled.shape} and blocked "
                            f"{blocked.shape} differ in shape")
        if image_id in self._shapes and self._shapes[image_id] != labelled.shape:
            raise RipuError(f"masks of {image_id}: shape {labelled.shape}, expected "
                            f"{self._shapes[image_id]} as in earlier rounds")
        self._shapes[image_id] = (int(labelled.shape[0]), int(labelled.shape[1]))
        self._labelled[image_id] = np.packbits(labelled, axis=None)
        self._blocked[image_id] = np.packbits(blocked, axis=None)
        self._labelled_count[image_id] = int(np.count_nonzero(labelled))

    def labelled_count(self, image_id: str) -> int:
        return self._labelled_count[image_id]

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike) -> Path:
        """Write the state to ``path`` (one compressed .npz) atomically; returns ``path``."""
        path = Path(path)
        ids = self.ids
        header = {"schema_version": SCHEMA_VERSION, "round_index": self.round_index,
                  "round_stats": self.round_stats, "num_images": len(ids)}
        empty = np.zeros(0, dtype=np.uint8)
        arrays = {
            "header": np.array(json.dumps(header, sort_keys=True)),
            "ids": np.array(ids, dtype=str) if ids else np.zeros(0, dtype="<U1"),
            "shapes": np.array([self._shapes[i] for i in ids], dtype=np.int64).reshape(-1, 2),
            "labelled": np.concatenate([self._labelled[i] for i in ids]) if ids else empty,
            "blocked": np.concatenate([self._blocked[i] for i in ids]) if ids else empty,
        }
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> LabelState:
        """Read a state written by :meth:`save`, bit-exactly; RipuError if it is not one."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                if set(data.files) != _KEYS:
                    raise RipuError(f"{path}: not a round file (arrays {sorted(data.files)}, "
                                    f"expected {sorted(_KEYS)})")
                header = _parse_header(path, data["header"])
                ids = [str(i) for i in data["ids"]]
                shapes = data["shapes"]
                labelled, blocked = data["labelled"], data["blocked"]
        except RipuError:
            raise
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
            raise RipuError(f"{path}: cannot read round file ({err}); expected a round_<r>.npz "
                            f"written by ripu") from err
        return cls._from_arrays(path, header, ids, shapes, labelled, blocked)

    @classmethod
    def _from_arrays(cls, path: Path, header: dict, ids: list[str], shapes: np.ndarray,
                     labelled: np.ndarray, blocked: np.ndarray) -> LabelState:
        bad = f"{path}: corrupt round file"
        if (header.get("num_images") != len(ids) or shapes.shape != (len(ids), 2)
                or len(set(ids)) != len(ids) or (shapes < 1).any()
                or labelled.dtype != np.uint8 or blocked.dtype != np.uint8):
            raise RipuError(f"{bad} (ids, shapes and header disagree)")
        sizes = [(int(h) * int(w) + 7) // 8 for h, w in shapes]
        if labelled.shape != (sum(sizes),) or blocked.shape != (sum(sizes),):
            raise RipuError(f"{bad} (mask bits do not match the shapes)")
        state = cls()
        offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        for k, image_id in enumerate(ids):
            shape = (int(shapes[k, 0]), int(shapes[k, 1]))
            lo, hi = offsets[k], offsets[k + 1]
            state._shapes[image_id] = shape
            state._labelled[image_id] = labelled[lo:hi].copy()
            state._blocked[image_id] = blocked[lo:hi].copy()
            state._labelled_count[image_id] = int(
                np.unpackbits(state._labelled[image_id], count=shape[0] * shape[1]).sum())
        state.round_index = int(header["round_index"])
        state.round_stats = list(header["round_stats"])
        return state


def _parse_header(path: Path, raw: np.ndarray) -> dict[str, Any]:
    try:
        header = json.loads(str(raw))
    except json.JSONDecodeError as err:
        raise RipuError(f"{path}: corrupt round file header ({err})") from err
    if not isinstance(header, dict):
        raise RipuError(f"{path}: corrupt round file header (not a JSON object)")
    version = header.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RipuError(f"{path}: round file schema_version {version!r}, expected "
                        f"{SCHEMA_VERSION} (written by another version of ripu)")
    if not isinstance(header.get("round_index"), int) or not isinstance(
            header.get("round_stats"), list):
        raise RipuError(f"{path}: corrupt round file header (round_index, round_stats)")
    return header


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a round file (schema checked) without reading its masks."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "header" not in data.files:
                raise RipuError(f"{path}: not a round file (no header)")
            return _parse_header(path, data["header"])
    except RipuError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise RipuError(f"{path}: cannot read round file ({err}); expected a round_<r>.npz "
                        f"written by ripu") from err


def latest_round(masks_dir: str | os.PathLike) -> tuple[int, Path] | None:
    """``(round_index, path)`` of the last complete ``round_<r>.npz`` in ``masks_dir``.

    Only exact ``round_<r>.npz`` names count (temporary files of an interrupted write are
    named differently), and a file counts only if its header reads and names round ``r``.
    None when there is no complete round.
    """
    folder = Path(masks_dir)
    if not folder.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in folder.iterdir()
                    if p.is_file() and (m := ROUND_FILE.fullmatch(p.name))), reverse=True)
    for round_index, path in found:
        try:
            header = read_header(path)
        except RipuError:
            continue
        if header["round_index"] == round_index:
            return round_index, path
    return None

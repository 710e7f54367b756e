"""Confusion-matrix figure. Figures are built with ``matplotlib.figure.Figure`` directly, so
no pyplot backend is selected or needed."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ripu.errors import RipuError
from ripu.io import atomic_path

_NORMALIZE = ("true", "pred", "all", "none")


def normalize_confusion(conf: torch.Tensor | np.ndarray, normalize: str = "true") -> np.ndarray:
    """Normalise a confusion matrix: ``"true"`` rows (recall per class), ``"pred"`` columns
    (precision), ``"all"`` the total, ``"none"`` raw counts. Empty rows/columns give 0.

    Shape:
        ``(C, C)`` -> ``(C, C)`` float64
    """
    if normalize not in _NORMALIZE:
        raise RipuError(f"normalize must be one of {list(_NORMALIZE)}, got {normalize!r}")
    m = (conf.cpu().numpy() if isinstance(conf, torch.Tensor) else np.asarray(conf))
    m = m.astype(np.float64)
    if normalize == "none":
        return m
    denom = {"true": m.sum(1, keepdims=True), "pred": m.sum(0, keepdims=True),
             "all": np.array(m.sum())}[normalize]
    return np.divide(m, denom, out=np.zeros_like(m), where=denom > 0)


def confusion_figure(
    conf: torch.Tensor | np.ndarray, class_names: Sequence[str], normalize: str = "true",
    title: str | None = None,
) -> Figure:
    """Heat map of a confusion matrix (rows = ground truth, columns = prediction), cells
    annotated with their value, normalised by :func:`normalize_confusion`.

    Shape:
        conf ``(C, C)``
    """
    m = normalize_confusion(conf, normalize)
    n = m.shape[0]
    if m.shape != (n, n) or len(class_names) != n:
        raise RipuError(f"confusion_figure: matrix of shape {m.shape} with {len(class_names)} "
                        "class names; expected a square (C, C) matrix and C names")
    side = max(4.0, 0.45 * n + 2.0)
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.add_subplot()
    vmax = 1.0 if normalize != "none" else max(float(m.max()), 1.0)
    image = ax.imshow(m, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(n), labels=list(class_names), rotation=90)
    ax.set_yticks(range(n), labels=list(class_names))
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(title or f"confusion matrix (normalised: {normalize})")
    fmt = "{:.0f}" if normalize == "none" else "{:.2f}"
    for (i, j), value in np.ndenumerate(m):
        if value > 0:
            ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=6,
                    color="white" if value > 0.5 * vmax else "black")
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 150) -> None:
    """Write ``fig`` to ``path`` atomically (format from the suffix)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)

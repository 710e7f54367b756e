"""The confusion image trials log: cell colours from the normalised matrix, layout, errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ripu.confusion_image import (
    CELL,
    HIGH,
    LOW,
    cell_colours,
    confusion_image,
    save_confusion_image,
)
from ripu.errors import RipuError


def test_cell_colours_blend_linearly_and_clip():
    m = np.array([[0.0, 0.5], [1.0, 2.0]])
    got = cell_colours(m, vmax=1.0)
    assert got[0, 0].tolist() == [247, 251, 255] and got[1, 0].tolist() == [8, 48, 107]
    assert got[1, 1].tolist() == got[1, 0].tolist()  # clipped at vmax
    assert got[0, 1].tolist() == [128, 150, 181]  # (247+8)/2=127.5 -> 128, 149.5 -> 150, 181


def test_cells_show_the_row_normalised_matrix(tmp_path):
    conf = np.array([[3, 1], [0, 0]])  # row 0: 0.75, 0.25; row 1 empty: 0, 0
    image = confusion_image(conf, ["a", "bb"])
    path = tmp_path / "c.png"
    save_confusion_image(conf, ["a", "bb"], path)
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), image)
    # the grid's top-left corner: the first pixel with the colour of cell (0, 0)
    want = np.rint(LOW + 0.75 * (HIGH - LOW)).astype(np.uint8)
    ys, xs = np.nonzero((image == want).all(-1))
    top, left = ys.min(), xs.min()
    corner = lambda i, j: image[top + i * CELL + 1, left + j * CELL + 1].tolist()  # noqa: E731
    assert corner(0, 0) == want.tolist()
    assert corner(0, 1) == np.rint(LOW + 0.25 * (HIGH - LOW)).astype(np.uint8).tolist()
    assert corner(1, 0) == corner(1, 1) == LOW.astype(np.uint8).tolist()
    assert image.dtype == np.uint8 and image.shape[2] == 3


def test_bad_matrix_is_refused():
    with pytest.raises(RipuError, match="expected a square"):
        confusion_image(np.zeros((2, 2)), ["only one"])

"""People in a real Chromium (Playwright, ``browser.py``) against a real Label Studio server:
the task as annotators see it, a class painted with the mouse, a blank second annotation."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from ripu.annotate.client import Studio
from ripu.annotate.display import downscale, scale
from ripu.annotate.interface import hotkey
from ripu.annotate.people import round_selection
from ripu.annotate.pull import regions_of
from ripu.annotate.rle import decode_mask
from ripu.annotate.round_labels import labels_path, load_round_labels
from ripu.engine.trial_dir import TrialDir
from tests.annotate.conftest import REPO, annotate, python_in_ls
from tests.annotate.test_label_studio import first_round, tasks_of, waiting_round

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BROWSER = Path(__file__).with_name("browser.py")


def in_chromium(server, project: int, task: int, shot: Path, action: dict | None = None
                ) -> dict:
    """What browser.py saw (and did) on ``task``, as the annotator."""
    args = [str(BROWSER), server.url, str(project), str(task), str(shot)]
    done = python_in_ls(*args, *([json.dumps(action)] if action else []),
                        env={**os.environ, "LS_EMAIL": server.email,
                             "LS_PASSWORD": server.password})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def to_docs(shot: Path, name: str) -> None:
    """``RIPU_SCREENSHOT_TO_DOCS=1``: keep the screenshot as docs/<name> (the README's)."""
    if os.environ.get("RIPU_SCREENSHOT_TO_DOCS"):
        (REPO / "docs" / name).write_bytes(shot.read_bytes())


def draft_of(server, task: dict, shape: tuple[int, int], names) -> np.ndarray:
    """The task's draft at the label state's size: uint8 (H, W), 255 off the regions."""
    prediction = Studio(server.url, server.token).call(
        "GET", f"/api/predictions/{task['predictions'][0]}")
    out = np.full(shape, 255, np.uint8)
    for r in prediction["result"]:
        if r["from_name"] == "label":
            h, w = r["original_height"], r["original_width"]
            out[downscale(decode_mask(r["value"]["rle"], h, w), w // shape[1])] = \
                names.index(r["value"]["brushlabels"][0])
    return out


def strokes_over(region: np.ndarray, k: int) -> list[list[list[int]]]:
    """Mouse drags that paint ``region`` bool (H, W) on the task image (each label pixel a
    k x k square), in task-image pixels: one per row and run of the region, through the
    middle of the row, from a quarter pixel inside the run's left edge to a quarter inside
    its right. A round brush of width d, k/2 <= d < 3k/2 (Label Studio's default, 15 screen
    pixels, is about 20 of a 1024-wide image shown 769 wide; k = 16 here), covers at least
    half of each pixel of the region, and less than half of any other pixel."""
    strokes = []
    for y in range(region.shape[0]):
        row = np.r_[False, region[y], False].astype(np.int8)
        starts, ends = np.flatnonzero(np.diff(row) == 1), np.flatnonzero(np.diff(row) == -1)
        strokes += [[[a * k + k // 4, y * k + k // 2], [b * k - 1 - k // 4, y * k + k // 2]]
                    for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
    return strokes


def regions_clear_of_the_tools(selected: np.ndarray) -> list[np.ndarray]:
    """The regions of ``selected`` bool (H, W) in the image's left 7/8, largest first, each
    bool (H, W): Label Studio's tool bar floats over the right edge of the image (browser.py)."""
    n, components = regions_of(selected)
    regions = [components == i for i in range(1, n + 1)]
    return sorted((r for r in regions if np.flatnonzero(r.any(0)).max() < r.shape[1] * 7 // 8),
                  key=lambda r: -r.sum())


def test_annotate_task_in_chromium_shows_regions_and_classes(label_studio, tiny_data, tmp_path):
    """A real browser logs in as the annotator, opens a task: the image, the regions layer,
    the draft and every class are shown."""
    cfg, out, names, truth, project = first_round(label_studio, tiny_data, tmp_path)
    task = tasks_of(label_studio, project)[0]["id"]
    shot = tmp_path / "task.png"
    seen = in_chromium(label_studio, project, task, shot)
    assert "to label" in seen["labels"]
    assert set(names) <= set(seen["labels"])
    assert seen["regions"] >= 2  # the regions layer and at least one class of the draft
    assert seen["image_loaded"]
    assert shot.stat().st_size > 10_000


def test_annotate_paint_in_chromium_labels_exactly_the_painted_region(label_studio, tiny_data,
                                                                      tmp_path):
    """The annotator picks a class by its hotkey and paints the largest region clear of the
    tool bar (of the first task that has one) with the mouse on the upscaled image, then
    submits: the pull gets that class on exactly the region's pixels and the draft on the
    task's other regions."""
    cfg, out, names, truth, project = first_round(label_studio, tiny_data, tmp_path)
    selection = round_selection(TrialDir(out).masks_dir, 0)
    task = next(t for t in sorted(tasks_of(label_studio, project), key=lambda t: t["id"])
                if regions_clear_of_the_tools(selection[t["data"]["ripu_image"]]))
    image_id = task["data"]["ripu_image"]
    selected = selection[image_id]
    draft = draft_of(label_studio, task, selected.shape, names)
    np.testing.assert_array_equal(draft != 255, selected)  # the draft covers every region
    region = regions_clear_of_the_tools(selected)[0]
    c = next(i for i in range(len(names)) if i not in draft[region])
    shot = tmp_path / "paint.png"
    strokes = strokes_over(region, scale(selected.shape))
    seen = in_chromium(label_studio, project, task["id"], shot,
                       {"paint": {"key": hotkey(c), "strokes": strokes}})
    assert seen["paint"]["status"] == 201
    to_docs(shot, "annotate_task.png")
    annotate(label_studio, project, 0, truth, names, tmp_path)  # the other tasks
    assert waiting_round(cfg, out) == 1
    labels, header = load_round_labels(labels_path(TrialDir(out).masks_dir, 0))
    want = np.where(region, c, draft)
    np.testing.assert_array_equal(labels[image_id], want)
    assert header["pixels_outside"] == 0 and image_id not in header["empty"]


def test_annotate_blank_second_annotation_in_chromium_keeps_the_first_answer(
        label_studio, tiny_data, tmp_path, capsys):
    """After a task is answered, a second annotation opened with "+" starts with the regions
    layer and the draft; emptied (Ctrl+Backspace) and submitted, it is newer than the answer
    and is ignored: the round keeps the first answer and the pull counts it."""
    cfg, out, names, truth, project = first_round(label_studio, tiny_data, tmp_path)
    annotate(label_studio, project, 0, truth, names, tmp_path)
    selection = round_selection(TrialDir(out).masks_dir, 0)
    task = next(t for t in sorted(tasks_of(label_studio, project), key=lambda t: t["id"])
                if (truth[i := t["data"]["ripu_image"]][selection[i]] != 255).any())
    image_id = task["data"]["ripu_image"]  # a task whose answer painted something
    shot = tmp_path / "blank.png"
    seen = in_chromium(label_studio, project, task["id"], shot, {"blank": True})
    assert seen["blank"]["started_with"] >= 2  # the regions layer and the draft
    assert seen["blank"]["left"] == 0 and seen["blank"]["status"] == 201
    after = next(t for t in tasks_of(label_studio, project) if t["id"] == task["id"])
    assert len(after["annotations"]) == 2
    assert waiting_round(cfg, out) == 1
    labels, header = load_round_labels(labels_path(TrialDir(out).masks_dir, 0))
    selected = selection[image_id]
    np.testing.assert_array_equal(labels[image_id], np.where(selected, truth[image_id], 255))
    assert header["empty"].count(image_id) == 1
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("round 0"))
    assert re.search(rf"\d+ empty annotations? ignored \([^)]*{re.escape(image_id)}", line)

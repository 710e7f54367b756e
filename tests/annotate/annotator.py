"""A simulated annotator: answers a round's tasks in Label Studio from the ground truth.

Runs in Label Studio's environment: it reads each task's draft (the prediction's ``label``
strokes, which cover exactly the pixels to label) with Label Studio's converter
(``decode_rle``) as the frontend shows it, and paints the true class of every pixel inside
the regions as one brush stroke per class on the upscaled task image (each label pixel a
k x k square), encoded by the converter's ``encode_rle`` (the frontend's code), then
submits through the API with the user's token ($LABEL_STUDIO_TOKEN).

usage: annotator.py URL PROJECT ROUND TRUTH.npz [--outside N] [--rename OLD=NEW]
                    [--size WxH] [--skip IMAGE] [--only IMAGE] [--wrong IMAGE] [--edit]

--outside N   also paint N true pixels outside the regions (the pull ignores them)
--rename      call class OLD by the name NEW (an unknown class)
--size        claim another image size (labels outside the image)
--skip IMAGE  skip (cancel) the task of IMAGE; --only IMAGE: answer only that task
--wrong IMAGE label that task's regions with class 0 everywhere
--edit        change existing annotations (PATCH) instead of leaving answered tasks alone
Prints a JSON summary on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.request

import numpy as np
from label_studio_sdk.converter.brush import decode_rle, encode_rle


def call(url: str, method: str, path: str, body=None):
    request = urllib.request.Request(
        url + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Token {os.environ['LABEL_STUDIO_TOKEN']}",
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        text = answer.read()
    return json.loads(text) if text else None


def stroke(mask: np.ndarray, name: str, size: tuple[int, int], k: int) -> dict:
    """``mask`` (label pixels) painted on the task image, k times larger."""
    big = np.repeat(np.repeat(mask, k, axis=0), k, axis=1)
    rgba = np.repeat(big[..., None], 4, axis=2).astype(np.uint8) * 255
    return {"from_name": "label", "to_name": "image", "type": "brushlabels",
            "original_width": size[0], "original_height": size[1], "image_rotation": 0,
            "value": {"format": "rle", "rle": encode_rle(rgba.ravel()), "brushlabels": [name]}}


def regions_of(task: dict, url: str, h: int, w: int) -> tuple[np.ndarray, int]:
    """The pixels to label (bool (h, w)) and the task image's scale k."""
    prediction = call(url, "GET", f"/api/predictions/{task['predictions'][0]}")
    draft = [r for r in prediction["result"] if r["from_name"] == "label"]
    k = draft[0]["original_width"] // w
    inside = np.zeros((k * h, k * w), bool)
    for r in draft:
        inside |= decode_rle(r["value"]["rle"]).reshape(k * h, k * w, 4)[..., 3] > 0
    return inside.reshape(h, k, w, k).all(axis=(1, 3)), k


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("project", type=int)
    p.add_argument("round", type=int)
    p.add_argument("truth")
    p.add_argument("--outside", type=int, default=0)
    p.add_argument("--rename", default=None)
    p.add_argument("--size", default=None)
    p.add_argument("--skip", action="append", default=[])
    p.add_argument("--only", default=None)
    p.add_argument("--wrong", action="append", default=[])
    p.add_argument("--edit", action="store_true")
    a = p.parse_args()
    with np.load(a.truth) as f:
        ids, names = [str(i) for i in f["ids"]], [str(n) for n in f["names"]]
        truth = {i: f[f"m{k}"] for k, i in enumerate(ids)}
    if a.rename:
        old, new = a.rename.split("=")
        names = [new if n == old else n for n in names]
    tasks = call(a.url, "GET", f"/api/projects/{a.project}/export?exportType=JSON"
                                "&download_all_tasks=true")
    done = {"answered": 0, "skipped": 0, "edited": 0, "outside": 0}
    for task in tasks:
        image_id = task["data"]["ripu_image"]
        if task["data"]["ripu_round"] != a.round or (a.only and image_id != a.only):
            continue
        if task["annotations"] and not a.edit:
            continue
        gt = truth[image_id]
        h, w = gt.shape
        if image_id in a.skip:
            call(a.url, "POST", f"/api/tasks/{task['id']}/annotations",
                 {"result": [], "was_cancelled": True})
            done["skipped"] += 1
            continue
        inside, k = regions_of(task, a.url, h, w)
        size = tuple(int(v) for v in a.size.split("x")) if a.size else (k * w, k * h)
        answer = np.where(inside, 0 if image_id in a.wrong else gt, 255)
        if a.outside:
            out = np.flatnonzero(~inside & (gt != 255))[:a.outside]
            answer.flat[out] = gt.flat[out]
            done["outside"] += len(out)
        result = [stroke(answer == c, names[c], size, k) for c in np.unique(answer) if c != 255]
        if task["annotations"]:
            newest = max(task["annotations"], key=lambda x: (x["updated_at"], x["id"]))
            call(a.url, "PATCH", f"/api/annotations/{newest['id']}", {"result": result})
            done["edited"] += 1
        else:
            call(a.url, "POST", f"/api/tasks/{task['id']}/annotations", {"result": result})
            done["answered"] += 1
    print(json.dumps(done))


if __name__ == "__main__":
    main()

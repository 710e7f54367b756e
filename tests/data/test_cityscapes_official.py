"""Cross-check against the official Cityscapes tools (the ``cityscapesscripts`` package):
our label-id -> train-id map is its ``labels`` table, and our evaluation gives the mIoU of
its pixel-level evaluation on the same predictions and label files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official
from cityscapesscripts.helpers.labels import labels as official_labels
from cityscapesscripts.helpers.labels import trainId2label
from PIL import Image

from ripu.data import CITYSCAPES_TO_TRAIN, CLASSES_19, CityscapesDataset
from ripu.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ripu.engine.evaluate import evaluate
from tests.data.layouts import write_cityscapes

STEP = 12  # a prediction is written into the image's red channel as train id x STEP


def test_label_map_is_the_official_labels_table():
    official_map = {lab.id: lab.trainId for lab in official_labels
                    if lab.id >= 0 and lab.trainId not in (255, -1)}
    assert CITYSCAPES_TO_TRAIN == official_map
    names = [trainId2label[t].name for t in range(19)]
    assert len(CLASSES_19) == 19 and len(names) == 19
    # Same order: each of our class names is the official name of that train id
    # ("traffic light" / "traffic_light" spellings aside).
    for ours, theirs in zip(CLASSES_19, names, strict=True):
        assert ours.replace("_", " ") == theirs


class ImageCodedModel(torch.nn.Module):
    """Logits whose argmax is the train id written in the red channel (see STEP)."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = (x[:, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255.0
        pred = torch.round(red / STEP).long().clamp(0, 18)
        return torch.nn.functional.one_hot(pred, 19).permute(0, 3, 1, 2).float() + self.anchor


def _scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A label in Cityscapes ids (every id 0..33, void ones included) and a prediction in
    train ids that agrees with it on about half of the evaluated pixels."""
    label = rng.integers(0, 34, size=(h, w)).astype(np.uint8)
    truth = np.vectorize(lambda i: CITYSCAPES_TO_TRAIN.get(int(i), 255))(label)
    noise = rng.integers(0, 19, size=(h, w))
    pred = np.where((truth != 255) & (rng.random((h, w)) < 0.5), truth, noise)
    return label, pred.astype(np.uint8)


def test_miou_equals_the_official_pixel_level_evaluation(tmp_path: Path):
    rng = np.random.default_rng(3)
    labels, preds = {"aachen": [], "bonn": []}, []
    for city in labels:
        for _ in range(2):
            label, pred = _scene(rng, 24, 48)
            labels[city].append(label)
            preds.append(pred)
    images = {city: [] for city in labels}
    k = 0
    for city in labels:
        for label in labels[city]:
            image = np.zeros(label.shape + (3,), np.uint8)
            image[..., 0] = preds[k] * STEP
            images[city].append(image)
            k += 1
    ids = write_cityscapes(tmp_path / "cs", "val", labels, images)

    # Ours: the reader, the label map, evaluate() and the metrics.
    dataset = CityscapesDataset(tmp_path / "cs", split="val")
    ours = evaluate(ImageCodedModel(), dataset, 19)

    # Official: predictions saved as label-id PNGs in the Cityscapes results layout.
    to_id = np.array([trainId2label[t].id for t in range(19)], dtype=np.uint8)
    gts, results = [], []
    for image_id, pred in zip(ids, preds, strict=True):
        city, name = image_id.split("/")
        gts.append(str(tmp_path / "cs" / "gtFine" / "val" / city / f"{name}_gtFine_labelIds.png"))
        out = tmp_path / "results" / f"{name}_pred.png"
        out.parent.mkdir(exist_ok=True)
        Image.fromarray(to_id[pred]).save(out)
        results.append(str(out))
    args = official.args
    args.evalInstLevelScore = False
    args.JSONOutput = False
    args.quiet = True
    theirs = official.evaluateImgLists(results, gts, args)

    assert ours.miou == pytest.approx(theirs["averageScoreClasses"], abs=1e-12)
    for t, name in enumerate(CLASSES_19):
        official_iou = theirs["classScores"][trainId2label[t].name]
        assert float(ours.iou[t]) == pytest.approx(official_iou, abs=1e-12), name
    # Pixels counted: every pixel whose id maps to a train id.
    counted = sum(int(np.isin(lab, list(CITYSCAPES_TO_TRAIN)).sum())
                  for city in labels for lab in labels[city])
    assert int(ours.confusion.sum()) == counted

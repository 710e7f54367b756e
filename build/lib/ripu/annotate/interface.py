"""What annotators see: the labelling interface and one task per image of a round.

The interface shows the image, a brush layer ``regions`` (the round's selected regions or
points, one label, yellow) and a brush control ``label`` with the experiment's classes in
the Cityscapes colours. A task carries the image (a PNG data URI at the label state's
file on the server), ripu's keys (``ripu_trial``,
``ripu_round``, ``ripu_image``) and one prediction: the regions layer plus the model's
prediction inside the regions, per class, as a draft to correct. The image is uploaded to
the server first (a PNG at the label state's resolution, so one painted pixel is one label
pixel) and the task refers to the server's copy.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
from PIL import Image

from ripu.annotate.rle import encode_mask
from ripu.data.labels import CLASSES_19
from ripu.data.synthetic import CITYSCAPES_PALETTE

IMAGE, REGIONS, LABEL = "image", "regions", "label"
REGION_LABEL = "to label"
REGION_COLOUR = "#ffd400"
MODEL_VERSION = "ripu"
COLOURS = dict(zip(CLASSES_19, CITYSCAPES_PALETTE, strict=True))


def label_config(class_names: Sequence[str]) -> str:
    """The Label Studio labelling interface (XML) for ``class_names``."""
    labels = "\n".join(
        f'    <Label value={quoteattr(name)} background="#{"".join(f"{c:02x}" for c in COLOURS[name])}"/>'
        for name in class_names)
    return f"""<View>
  <Header value="Paint the pixels inside the yellow regions: pixels painted outside them are ignored."/>
  <Image name="{IMAGE}" value="$image" zoom="true" zoomControl="true" smoothing="false"/>
  <BrushLabels name="{REGIONS}" toName="{IMAGE}">
    <Label value="{REGION_LABEL}" background="{REGION_COLOUR}"/>
  </BrushLabels>
  <BrushLabels name="{LABEL}" toName="{IMAGE}">
{labels}
  </BrushLabels>
</View>"""


def png(image: np.ndarray, size: tuple[int, int]) -> bytes:
    """``image`` (h, w, 3) uint8 resized (bilinear) to ``size`` (H, W), as PNG bytes."""
    pil = Image.fromarray(image)
    if pil.size != (size[1], size[0]):
        pil = pil.resize((size[1], size[0]), Image.BILINEAR)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def brush(control: str, name: str, mask: np.ndarray) -> dict[str, Any]:
    """One brush result: ``mask`` bool (H, W) painted with label ``name`` of ``control``."""
    h, w = mask.shape
    return {"from_name": control, "to_name": IMAGE, "type": "brushlabels",
            "original_width": int(w), "original_height": int(h), "image_rotation": 0,
            "value": {"format": "rle", "rle": encode_mask(mask), "brushlabels": [name]}}


def task(trial: str, round_index: int, image_id: str, image_url: str,
         selected: np.ndarray, predicted: np.ndarray, class_names: Sequence[str]
         ) -> dict[str, Any]:
    """The task of ``image_id`` in round ``round_index``, its image at ``image_url``.

    Shape: ``selected`` bool (H, W) and ``predicted`` int (H, W) class indices at the label
    state's resolution.
    """
    draft = [brush(LABEL, class_names[c], selected & (predicted == c))
             for c in np.unique(predicted[selected]).tolist()]
    return {"data": {IMAGE: image_url, "ripu_trial": trial,
                     "ripu_round": round_index, "ripu_image": image_id},
            "predictions": [{"model_version": MODEL_VERSION,
                             "result": [brush(REGIONS, REGION_LABEL, selected), *draft]}]}

"""What annotators see: the labelling interface and one task per image of a round.

The interface shows the image, a brush layer ``regions`` (the outlines of the round's
selected regions or points, one label, cyan) and a brush control ``label`` with the
experiment's classes in the Cityscapes colours, each with its hotkey. A task carries the
image (uploaded to the server first; the task refers to the server's copy), ripu's keys
(``ripu_trial``, ``ripu_round``, ``ripu_image``) and one prediction: the regions layer plus
the model's prediction inside the regions, per class, as a draft to correct: every new
annotation starts from it, the first and any opened with "+" alike. The image is
the label state's pixels upscaled (nearest, :mod:`ripu.annotate.display`) with the regions'
outlines drawn into it, so they show in every annotation, a blank one too; the outlines lie
outside the regions and hide neither the draft nor the pixels to paint.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
from PIL import Image

from ripu.annotate.display import outline, scale, task_image, upscale
from ripu.annotate.rle import encode_mask
from ripu.data.labels import CLASSES_19
from ripu.data.synthetic import CITYSCAPES_PALETTE

IMAGE, REGIONS, LABEL = "image", "regions", "label"
REGION_LABEL = "to label"
REGION_RGB = (0, 255, 255)  # cyan: at least 161 (RGB distance) from every class colour
REGION_COLOUR = "#00ffff"
MODEL_VERSION = "ripu"
COLOURS = dict(zip(CLASSES_19, CITYSCAPES_PALETTE, strict=True))
# A class's hotkey by its position in the experiment's list: Label Studio's own keys for
# labels, less those its tools and regions use (B, E, H, K, M, O, P, R, U, V, W).
HOTKEYS = "1234567890qtasdfgyijl"


def hotkey(index: int) -> str:
    """The key that picks the ``index``-th class of the interface."""
    return HOTKEYS[index]


def label_config(class_names: Sequence[str]) -> str:
    """The Label Studio labelling interface (XML) for ``class_names``."""
    labels = "\n".join(
        f'    <Label value={quoteattr(name)} hotkey="{hotkey(i)}" '
        f'background="#{"".join(f"{c:02x}" for c in COLOURS[name])}"/>'
        for i, name in enumerate(class_names))
    return f"""<View>
  <Header value="Paint the pixels inside the cyan outlines (pick a class with its key): pixels painted outside them are ignored."/>
  <Image name="{IMAGE}" value="$image" zoom="true" zoomControl="true" smoothing="false"/>
  <BrushLabels name="{REGIONS}" toName="{IMAGE}">
    <Label value="{REGION_LABEL}" background="{REGION_COLOUR}" hotkey="{HOTKEYS[-1]}"/>
  </BrushLabels>
  <BrushLabels name="{LABEL}" toName="{IMAGE}">
{labels}
  </BrushLabels>
</View>"""


def png(image: np.ndarray, selected: np.ndarray) -> bytes:
    """The task image of ``image`` (h, w, 3) uint8: resized (bilinear) to the size (H, W)
    of ``selected`` bool (H, W), then upscaled with the regions outlined
    (:func:`ripu.annotate.display.task_image`), as PNG bytes."""
    h, w = selected.shape
    pil = Image.fromarray(image)
    if pil.size != (w, h):
        pil = pil.resize((w, h), Image.BILINEAR)
    buf = io.BytesIO()
    Image.fromarray(task_image(np.asarray(pil), selected, REGION_RGB)).save(buf, format="PNG")
    return buf.getvalue()


def brush(control: str, name: str, mask: np.ndarray) -> dict[str, Any]:
    """One brush result: ``mask`` bool (H, W) (the task image's size) painted with label
    ``name`` of ``control``."""
    h, w = mask.shape
    return {"from_name": control, "to_name": IMAGE, "type": "brushlabels",
            "original_width": int(w), "original_height": int(h), "image_rotation": 0,
            "value": {"format": "rle", "rle": encode_mask(mask), "brushlabels": [name]}}


def task(trial: str, round_index: int, image_id: str, image_url: str,
         selected: np.ndarray, predicted: np.ndarray, class_names: Sequence[str]
         ) -> dict[str, Any]:
    """The task of ``image_id`` in round ``round_index``, its image at ``image_url``.

    Shape: ``selected`` bool (H, W) and ``predicted`` int (H, W) class indices at the label
    state's resolution; the prediction's masks are upscaled to the task image's size.
    """
    k = scale(selected.shape)
    draft = [brush(LABEL, class_names[c], upscale(selected & (predicted == c), k))
             for c in np.unique(predicted[selected]).tolist()]
    result = [brush(REGIONS, REGION_LABEL, outline(selected, k)), *draft]
    # non-interactive results are copied into every annotation Label Studio creates, a
    # second one opened with "+" too (its createAnnotation), not only into the first
    return {"data": {IMAGE: image_url, "ripu_trial": trial,
                     "ripu_round": round_index, "ripu_image": image_id},
            "predictions": [{"model_version": MODEL_VERSION,
                             "result": [{**r, "interactive_mode": False} for r in result]}]}

"""One selection round over the target dataset (docs/method.md section 1, "Rounds", "Oracle").

Batched inference (:func:`ripu.inference.predict`: logits upsampled bilinearly,
``align_corners=True``, to each label's size, by default through the input size first as the
authors do), the strategy per image (or over the dataset for ``full_image``), and the new label
state with the round's stats. Selected pixels take their ground-truth label later (the
trainer reads it); ignore pixels (255) inside a region count against the budget, since the
masks include them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ripu.acquisition.budget import Budget, pixel_cap, units_for_round
from ripu.acquisition.state import LabelState
from ripu.acquisition.strategies import (
    Strategy,
    get_strategy,
    round_generator,
    select_full_images,
)
from ripu.errors import RipuError
from ripu.inference import predict


def _check(state: LabelState, strategy: Strategy, budget: Budget, round_index: int,
           dataset: Sequence, batch_size: int) -> None:
    if strategy.mode != budget.mode:
        raise RipuError(f"strategy {strategy.name!r} selects in {strategy.mode} mode but the "
                        f"budget is in {budget.mode} mode; expected the same mode")
    budget.check_round(round_index)
    if round_index != state.round_index + 1:
        raise RipuError(f"round_index: got {round_index}, expected {state.round_index + 1} "
                        f"(the label state holds rounds up to {state.round_index})")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise RipuError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if len(dataset) == 0:
        raise RipuError("dataset: no target images to select from")


def _image_masks(state: LabelState, image_id: str, shape: tuple[int, int]
                 ) -> tuple[np.ndarray, np.ndarray]:
    if image_id in state:
        if state.shape(image_id) != shape:
            raise RipuError(f"image {image_id}: label size {shape}, expected "
                            f"{state.shape(image_id)} as in earlier rounds")
        return state.labelled[image_id], state.blocked[image_id]
    return np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)


def _per_image_round(model: torch.nn.Module | None, dataset: Sequence, state: LabelState,
                     strategy: Strategy, budget: Budget, round_index: int, seed: int,
                     device: torch.device, batch_size: int, bar: tqdm, two_step: bool) -> int:
    """Apply ``strategy`` to every image, updating ``state``; returns the units requested.
    Logits (C, H, W) at each label's size come from :func:`ripu.inference.predict` when the
    strategy needs them."""
    requested = 0
    seen: set[str] = set()
    for position, item, image_logits in _with_logits(model, dataset, device, batch_size,
                                                     two_step):
        image_id = str(item["id"])
        if image_id in seen:
            raise RipuError(f"dataset: image id {image_id!r} occurs twice; expected "
                            f"unique ids")
        seen.add(image_id)
        shape = tuple(int(s) for s in item["label"].shape[-2:])
        labelled, blocked = _image_masks(state, image_id, shape)
        n = units_for_round(budget, shape[0], shape[1], round_index,
                            input_area=int(item["image"].shape[-2] * item["image"].shape[-1]))
        generator = round_generator(seed, round_index, int(item.get("index", position)))
        label = item["label"].to(device) if strategy.uses_ground_truth else None
        selected, new_blocked = strategy(
            image_logits, torch.from_numpy(blocked).to(device), n, budget.radius,
            generator, label)
        state.set_masks(image_id, labelled | selected.cpu().numpy(),
                        new_blocked.cpu().numpy())
        requested += n
        bar.update(1)
    return requested


def _with_logits(model: torch.nn.Module | None, dataset: Sequence, device: torch.device,
                 batch_size: int, two_step: bool
                 ) -> Iterator[tuple[int, dict[str, Any], torch.Tensor | None]]:
    """``(position, item, logits (C, H, W) | None)`` per image, in dataset order."""
    if model is None:
        for position in range(len(dataset)):
            yield position, dataset[position], None
        return
    for batch in predict(model, dataset, device=device, batch_size=batch_size,
                         two_step=two_step):
        yield from zip(batch.positions, batch.items, batch.logits, strict=True)


def _full_image_round(dataset: Sequence, state: LabelState, budget: Budget, round_index: int,
                      seed: int, bar: tqdm) -> int:
    """Label whole images up to the cumulative pixel cap (budget.py); returns the number of
    images chosen. An image's cost is its not-yet-labelled pixels."""
    ids: list[str] = []
    ids_seen: set[str] = set()
    shapes: list[tuple[int, ...]] = []
    for i in range(len(dataset)):
        item = dataset[i]
        image_id = str(item["id"])
        if image_id in ids_seen:
            raise RipuError(f"dataset: image id {image_id!r} occurs twice; expected unique ids")
        shape = tuple(int(s) for s in item["label"].shape[-2:])
        labelled, blocked = _image_masks(state, image_id, shape)
        state.set_masks(image_id, labelled, blocked)
        ids.append(image_id)
        ids_seen.add(image_id)
        shapes.append(shape)
        bar.update(1)
    total = sum(h * w for h, w in shapes)
    done = sum(state.labelled_count(i) for i in ids)
    # Cost of an image: its pixels not yet labelled (None: nothing left to label).
    costs = [h * w - state.labelled_count(image_id) or None
             for image_id, (h, w) in zip(ids, shapes, strict=True)]
    allowance = max(0, pixel_cap(budget, total, round_index) - done)
    chosen = select_full_images(costs, allowance, round_generator(seed, round_index))
    for k in chosen:
        full = np.ones(shapes[k], dtype=bool)
        state.set_masks(ids[k], full, full)
    return len(chosen)


def select_round(model: torch.nn.Module | None, dataset: Sequence, state: LabelState,
                 strategy: str, budget: Budget, round_index: int, *, seed: int,
                 device: torch.device | str = "cpu", batch_size: int = 4,
                 progress: bool = True, upsample: str = "two_step") -> LabelState:
    """Run selection round ``round_index`` and return the new label state.

    ``dataset[i]`` is a dict ``{"image": (3, H, W) float normalised, "label": (H, W) int64,
    "id": str, "index": int}``; ``model(x)`` returns logits (N, C, h, w) (any output stride).
    The model runs in eval mode under ``no_grad`` and its mode is restored afterwards; it is
    not called for strategies that need no logits. ``upsample``: ``two_step`` brings the
    logits to the label size through the input size (the authors'), ``one_step`` directly
    (:func:`ripu.inference.upsample`). Random draws come from a generator seeded
    by ``(seed, round_index, image index)``, so results do not depend on batching. The input
    ``state`` is not modified.
    """
    chosen = get_strategy(strategy)
    _check(state, chosen, budget, round_index, dataset, batch_size)
    if chosen.needs_logits and model is None:
        raise RipuError(f"strategy {strategy!r} needs a model for its logits, got None")
    if upsample not in ("two_step", "one_step"):
        raise RipuError(f"upsample: expected two_step or one_step, got {upsample!r}")
    device = torch.device(device)
    new = state.copy()
    before = sum(new.labelled_count(i) for i in new.ids)
    bar = tqdm(total=len(dataset), desc=f"select round {round_index} ({strategy})",
               unit="img", disable=not progress, leave=False)
    try:
        if chosen.mode == "image":
            units = _full_image_round(dataset, new, budget, round_index, seed, bar)
        else:
            units = _per_image_round(model if chosen.needs_logits else None, dataset, new,
                                     chosen, budget, round_index, seed, device, batch_size, bar,
                                     upsample == "two_step")
    finally:
        bar.close()
    labelled, total = new.labelled_pixels(), new.total_pixels()
    new.round_index = round_index
    new.round_stats.append({
        "round": round_index, "strategy": strategy, "mode": chosen.mode,
        "images": len(new), "units": units, "selected_pixels": labelled - before,
        "labelled_pixels": labelled, "total_pixels": total,
        "round_fraction": (labelled - before) / total, "labelled_fraction": labelled / total,
    })
    return new

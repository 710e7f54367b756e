"""The objective: each kind's terms, weights and their sum, against direct loss calls."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ripu import losses
from ripu.config import LossConfig
from ripu.engine.objective import Objective, loss_weights
from ripu.kinds import KINDS, get_kind


def _batch(with_source: bool = True) -> dict:
    g = torch.Generator().manual_seed(0)
    part = lambda: {"image": torch.randn(2, 3, 4, 4, generator=g),  # noqa: E731
                    "label": torch.randint(0, 3, (2, 4, 4), generator=g),
                    "pseudo": torch.randint(0, 3, (2, 4, 4), generator=g)}
    return {"source": part() if with_source else None, "target": part()}


def _forward(images, size):
    """Logits = the image's channels (3 classes), already at label size."""
    assert tuple(images.shape[-2:]) == tuple(size)
    return images.clone()


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_kind_computes_exactly_its_terms(name):
    kind = get_kind(name)
    batch = _batch(with_source=kind.uses_source)
    terms = Objective(kind.terms, LossConfig()).terms(batch, _forward, torch.device("cpu"))
    assert set(terms) == set(kind.terms)


def test_terms_equal_the_loss_functions_and_the_sum_uses_the_weights():
    loss = LossConfig(source_ce=0.5, target_ce=2.0, lc=0.1, nl=3.0, focal=0.25)
    batch = _batch()
    objective = Objective(get_kind("hybrid").terms, loss)
    terms = objective.terms(batch, _forward, torch.device("cpu"))
    src, tgt = batch["source"], batch["target"]
    assert torch.equal(terms["src"], losses.cross_entropy(src["image"], src["label"]))
    assert torch.equal(terms["lc"], losses.local_consistency(src["image"].softmax(1),
                                                             src["label"]))
    assert torch.equal(terms["nl"], losses.negative_learning(tgt["image"].softmax(1), 0.05))
    assert torch.equal(terms["pseudo_focal"], losses.focal_loss(tgt["image"], tgt["pseudo"],
                                                                3.0))
    expected = (0.5 * terms["src"] + 0.1 * terms["lc"] + 2.0 * terms["tgt"]
                + 3.0 * terms["nl"] + 2.0 * terms["pseudo"] + 0.25 * terms["pseudo_focal"])
    torch.testing.assert_close(objective.total(terms), expected)
    assert objective.logged_total({k: v.item() for k, v in terms.items()}) == pytest.approx(
        float(expected))
    assert loss_weights(loss)["tgt_focal"] == 0.25


def test_zero_weighted_regularisers_are_not_computed():
    loss = dataclasses.replace(LossConfig(), lc=0.0, nl=0.0)
    terms = Objective(get_kind("active").terms, loss).terms(_batch(), _forward,
                                                            torch.device("cpu"))
    assert set(terms) == {"src", "tgt"}
    assert Objective((), loss).total({}) == 0

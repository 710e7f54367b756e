"""The trial-kind registry: one description per kind, helpful errors."""

import pytest

from ripu.errors import ConfigError
from ripu.kinds import KINDS, LOSS_TERMS, get_kind, kind_names


def test_selection_kinds_are_those_with_selection_rounds():
    assert {k.name for k in KINDS.values() if k.selects} == {"active", "source_free", "hybrid"}


def test_source_free_uses_no_source_batches_and_no_source_terms():
    kind = get_kind("source_free")
    assert not kind.uses_source
    assert not {"src", "lc"} & set(kind.terms)


def test_fixed_labelled_fraction_follows_target_labels():
    assert get_kind("supervised").labelled_fraction_fixed == 1.0
    assert get_kind("source_only").labelled_fraction_fixed == 0.0
    assert get_kind("lse").labelled_fraction_fixed == 0.0
    assert get_kind("active").labelled_fraction_fixed is None


def test_every_kind_uses_known_terms_and_orders_are_distinct():
    assert all(set(k.terms) <= set(LOSS_TERMS) for k in KINDS.values())
    assert len({k.order for k in KINDS.values()}) == len(KINDS)
    assert kind_names()[0] == "source_only" and kind_names()[-1] == "supervised"


def test_unknown_kind_lists_the_valid_names():
    with pytest.raises(ConfigError, match=r"unknown trial kind 'activ', expected one of "
                                          r"active, hybrid, lse, source_free, source_only, "
                                          r"supervised"):
        get_kind("activ")

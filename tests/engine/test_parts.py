"""A trial kind is a composition: a schedule and a target-label source, each in a registry.
The engine runs them and knows none by name: it imports neither LSE nor people-labelling
code (not even for types) and no string of it names a kind, schedule or label source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ripu.errors import ConfigError
from ripu.kinds import KINDS, LOSS_TERMS, get_kind
from ripu.parts import LABEL_SOURCES, SCHEDULES, label_source, unregistered
from ripu.registry import Registry

ENGINE = Path(__file__).resolve().parents[2] / "ripu" / "engine"


def _trees():
    for path in sorted(ENGINE.glob("*.py")):
        yield path.name, ast.parse(path.read_text())


def test_the_engine_imports_neither_lse_nor_people_labelling():
    found = []
    for name, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            found += [(name, m) for m in modules
                      if m.startswith(("ripu.selftrain", "ripu.annotate"))]
    assert found == []


def test_the_engine_names_no_file_of_lse_or_people_labelling():
    """The trial folder's layout is generic: people's files are the label source's kept
    files (ripu.annotate names them), LSE's cache is its part's round cache."""
    from ripu.annotate import PEOPLE_FILES
    from ripu.selftrain.train import PART

    prefixes = tuple(p.split("*")[0] for p in PEOPLE_FILES)  # labels_, tasks_
    named = [(name, node.value) for name, tree in _trees() for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and (node.value.startswith(prefixes) or f"{PART}/" in node.value
                  or node.value == PART)]
    assert named == []


def test_the_engine_names_no_kind_schedule_or_label_source():
    """No string of the engine is a kind's name, and none that names a schedule or a label
    source is compared with anything (but as a loss term: "pseudo" is also one)."""
    parts = {*SCHEDULES, *LABEL_SOURCES} - set(LOSS_TERMS)
    kinds = [(name, node.value) for name, tree in _trees() for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and node.value in KINDS]
    compared = [(name, node.lineno) for name, tree in _trees() for node in ast.walk(tree)
                if isinstance(node, ast.Compare) and any(
                    isinstance(c, ast.Constant) and c.value in parts
                    for c in [node.left, *node.comparators])]
    assert kinds == [] and compared == []
    from ripu.engine.callbacks import Callback
    hooks = [m for m in dir(Callback) if m.startswith("on_")]
    assert not [h for h in hooks if any(n in h for n in ("lse", "people", "pseudo"))]


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_composes_registered_parts(kind, tmp_path):
    from ripu.config import Config, apply_overrides
    from ripu.engine.trial_dir import TrialDir

    k = get_kind(kind)
    assert unregistered() == []
    assert callable(SCHEDULES[k.schedule].run)
    cfg = apply_overrides(Config(), {"train.kind": kind})
    source = label_source(k, cfg, TrialDir(tmp_path))
    assert source.state_dict() == {} or set(source.state_dict()) == {"pseudo"}


def test_the_registry_names_the_valid_entries_and_loads_lazily():
    reg = Registry("widget", {"a": 1, "b": "ripu.kinds:get_kind"})
    assert reg["a"] == 1 and reg["b"] is get_kind and "b" in reg and "c" not in reg
    assert reg.get("c") is None and list(reg) == ["a", "b"]
    with pytest.raises(ConfigError, match=r"^unknown widget 'c', expected one of a, b$"):
        reg["c"]
    with pytest.raises(ValueError, match="registered already"):
        reg.register("a", 2)


def test_strategies_kinds_and_architectures_share_the_helper():
    from ripu.acquisition import get_strategy
    from ripu.errors import RipuError
    from ripu.models import build_model

    with pytest.raises(RipuError, match=r"^unknown acquisition strategy 'x', expected one of "
                                        r"entropy_region, full_image, "):
        get_strategy("x")
    with pytest.raises(RipuError, match=r"^unknown model arch 'x', expected one of deeplabv2, "
                                        r"deeplabv3plus, small, vgg16_fcn8s$"):
        build_model("x", 19)
    with pytest.raises(ConfigError, match=r"^unknown trial kind 'x', expected one of active, "):
        get_kind("x")

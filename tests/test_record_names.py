"""Tag and metric names have one home, ripu.record_names: no other module of ripu/ or
pipelines/ spells a tag or a metric name (or prefix) as a string."""

from __future__ import annotations

import ast

from ripu import record_names
from tests.test_imports import REPO, module_files


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                          | ast.AsyncFunctionDef)
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}


def test_no_module_spells_a_tag_or_metric_name():
    # the names with a namespace ("ripu.kind", "final/miou", "val/"): "miou" and
    # "iteration" are also results' and checkpoints' keys
    names = {v for k, v in vars(record_names).items() if k.isupper() and isinstance(v, str)
             and ("." in v or "/" in v)}
    assert {"ripu.kind", "final/miou", "val/", "people/", "lse/"} <= names
    found = []
    for module, path in module_files(REPO).items():
        if module == "ripu.record_names":
            continue
        tree = ast.parse(path.read_text())
        docs = _docstrings(tree)
        found += [(module, node.lineno, node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and node.value in names
                  and id(node) not in docs]
    assert found == []

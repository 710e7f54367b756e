"""The package's import graph: no cycle, and no import of our own modules inside a function.

Every module of ``ripu/`` and ``pipelines/`` is parsed (not imported). An edge ``a -> b``
is any import of ``b`` by ``a``, at module level or inside a function; ``import x.y.z``
also imports the packages ``x`` and ``x.y`` (except the importer's own packages, which
Python has already started). Imports under ``if TYPE_CHECKING:`` never run and are skipped.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ripu", "pipelines")


def module_files(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of ``packages`` under ``root``."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imports(tree: ast.AST):
    """``(node, inside a function)`` for every import statement that can run."""
    def walk(node: ast.AST, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                for sub in child.orelse:
                    yield from walk(ast.Module(body=[sub], type_ignores=[]), in_function)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, in_function
            yield from walk(child, in_function or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))
    yield from walk(tree, False)


LOCATION = re.compile(r"^((?:ripu|pipelines)(?:\.\w+)+):\w+$")
# Records whose location is data until their loader imports it (a lookup reads the record's
# traits and imports nothing): record type -> the module whose code loads it.
# ripu.archs.Arch: its class is imported by ripu.models.build_model (Arch.model_class).
LOADED_BY = {"Arch": "ripu.models"}


def _record_locations(tree: ast.AST) -> dict[int, str]:
    """``{id(string node): loader}`` of the locations given to a :data:`LOADED_BY` record."""
    return {id(arg): LOADED_BY[node.func.id] for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in LOADED_BY
            for arg in [*node.args, *(k.value for k in node.keywords)]}


def lazy_edges(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    """``{module: modules it names as registry locations}`` (``"ripu.schedules:ITERATIONS"``,
    :mod:`ripu.registry`): imported when first looked up, so code the module runs too. A
    location a :data:`LOADED_BY` record holds is its loader's edge instead."""
    modules = module_files(root, packages)
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        records = _record_locations(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and (m := LOCATION.match(node.value)) and m.group(1) in modules:
                edges.setdefault(records.get(id(node), name), set()).add(m.group(1))
    return edges


def import_graph(root: Path, packages=PACKAGES):
    """``(edges {module: set of modules}, in_function [(module, line, target)])``."""
    modules = module_files(root, packages)
    edges: dict[str, set[str]] = {name: set() for name in modules}
    in_function: list[tuple[str, int, str]] = []
    for name, path in modules.items():
        own_package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node, inside in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                named = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative import
                    anchor = own_package.split(".")[:len(own_package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                named = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                         for a in node.names]
            for target in named:
                if target.split(".")[0] not in packages:
                    continue
                parts = target.split(".")
                for k in range(1, len(parts) + 1):
                    dep = ".".join(parts[:k])
                    is_own_ancestor = name == dep or name.startswith(dep + ".")
                    if dep in modules and (k == len(parts) or not is_own_ancestor):
                        edges[name].add(dep)
                if inside:
                    in_function.append((name, node.lineno, target))
    return edges, in_function


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt == node:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


# ----------------------------------------------------------------------------- the checker


def _package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
    root = _package(tmp_path, {
        "ripu/__init__.py": "",
        "ripu/a.py": "from ripu.b import f\n",
        "ripu/b.py": "import torch\n\ndef f():\n    from ripu.a import g\n    import numpy\n",
        "ripu/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    from ripu.a import g\n",
        "pipelines/__init__.py": "",
    })
    edges, inside = import_graph(root)
    assert edges["ripu.a"] == {"ripu.b"} and edges["ripu.b"] == {"ripu.a"}
    assert edges["ripu.c"] == set()  # TYPE_CHECKING: never runs
    assert inside == [("ripu.b", 4, "ripu.a")]  # torch and numpy are not ours
    assert find_cycle(edges) == ["ripu.a", "ripu.b", "ripu.a"]


def test_checker_allows_a_package_importing_its_own_modules(tmp_path):
    root = _package(tmp_path, {
        "ripu/__init__.py": "",
        "ripu/acq/__init__.py": "from ripu.acq.runner import run\n",
        "ripu/acq/runner.py": "from ripu.acq.budget import Budget\n",
        "ripu/acq/budget.py": "",
        "ripu/engine.py": "from ripu.acq import run\nfrom ripu import acq\n",
        "pipelines/__init__.py": "",
    })
    edges, inside = import_graph(root)
    assert edges["ripu.acq.runner"] == {"ripu.acq.budget"}
    assert edges["ripu.engine"] == {"ripu.acq"}  # ripu: its own, already started
    assert find_cycle(edges) is None and inside == []
    (root / "ripu/acq/budget.py").write_text("from ripu.engine import x\n")
    assert find_cycle(import_graph(root)[0]) is not None


# ----------------------------------------------------------------------------- the package


def test_the_package_has_no_import_cycle():
    edges, _ = import_graph(REPO)
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def test_no_module_imports_our_own_modules_inside_a_function():
    _, inside = import_graph(REPO)
    assert inside == [], "\n".join(f"{m}:{line} imports {t}" for m, line, t in inside)


def test_an_architectures_class_is_loaded_by_its_loader_alone():
    """The lazy edges of :data:`LOADED_BY` hold: only ``ripu.models`` calls
    ``Arch.model_class``, so a module that looks up an architecture's traits (a config, the
    data stage) does not depend on its class."""
    calls = [(name, node.lineno) for name, path in module_files(REPO).items()
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
             and node.func.attr == "model_class"]
    assert calls and {name for name, _ in calls} == {LOADED_BY["Arch"]}, calls
    edges = lazy_edges(REPO)
    assert "ripu.models.small" in edges["ripu.models"] and not edges["ripu.archs"]

"""The package's shape: no import cycle anywhere in ``src/convzoo``, the CLI at the edge, every module importable.

The import graph is read from the source (``ast``), so a cycle hidden inside a function (imported late to
dodge the error at import time) counts as much as one at the top of a module: it is still two modules that
each need the other. Imports under ``if TYPE_CHECKING:`` are left out (they never run).
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "convzoo"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _imports_in(child))
            continue
        yield from _imports_in(node)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
        return
    if isinstance(node, ast.If) and _is_type_checking(node):
        for child in node.orelse:
            yield from _imports_in(child)
        return
    for child in ast.iter_child_nodes(node):
        yield from _imports_in(child)


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def dependencies(module: str) -> set[str]:
    """The convzoo modules ``module`` imports, anywhere in its body (``from pkg import sub`` counts as sub)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            source = _resolve(module, node)
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]
        found |= {t for t in targets if t in MODULES and t != module}
    return found


GRAPH = {name: dependencies(name) for name in MODULES}


def _cycle() -> list[str] | None:
    """One import cycle of GRAPH, as the list of modules around it, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(GRAPH):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_graph_sees_imports_inside_functions():
    """The checker itself: a late import (inside a function) is an edge, a TYPE_CHECKING one is not."""
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import convzoo.a\n"
                     "def f():\n    import convzoo.b\n")
    names = [alias.name for node in _imports(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert names == ["convzoo.b"]


def test_no_import_cycle():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_library_modules_never_import_the_cli():
    offenders = {m: sorted(d for d in deps if d == "convzoo.cli" or d.startswith("convzoo.cli."))
                 for m, deps in GRAPH.items() if not (m == "convzoo.cli" or m.startswith("convzoo.cli.")
                                                      or m == "convzoo.__main__")}
    assert {m: d for m, d in offenders.items() if d} == {}


def test_every_module_imports():
    """Every module of the package loads (the graph above is read from the source; this runs it)."""
    for module in sorted(set(MODULES) - {"convzoo.__main__"}):
        importlib.import_module(module)


# ---- docs/architecture.md is kept true: its module list names every module, its import order holds ---------

ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
GROUPS = {"convzoo.models": "the model families", "convzoo.cli": "the command modules"}  # (named as a group)


def _module_list() -> list[str]:
    """The paths the doc's module list names, first word of each line of its first code block."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    block = text.split("## The package, one line per module", 1)[1].split("```", 2)[1]
    return [line.split()[0] for line in block.splitlines()[1:] if line.strip()]


def _import_order() -> dict[str, int]:
    """Each module the doc's import order names, with its place in the order (a group's modules share one)."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("## Import order, from the bottom up", 1)[1].split("\n## ", 1)[0]
    order: dict[str, int] = {}
    for line in section.splitlines():
        if not line[:1].isdigit():
            continue
        line = re.sub(r"\([^)]*\)", "", line)  # (an aside names modules it does not place)
        for i, part in enumerate(line.split("`")):
            if i % 2:
                order["convzoo" if part == "convzoo" else f"convzoo.{part}"] = len(order)
                continue
            for package, group in GROUPS.items():
                if group in part:
                    place = len(order)
                    order.update({m: place for m in MODULES if m.startswith(package + ".") and m not in order
                                  and m.count(".") == 2})
                    order[group] = place
    return {m: p for m, p in order.items() if m in MODULES}


def test_the_module_list_names_every_module():
    paths = _module_list()
    listed = {p.removesuffix(".py").replace("/", ".").removesuffix(".__init__") for p in paths if "<" not in p}
    folders = [p.rstrip("/").replace("/", ".") for p in paths if p.endswith("/")]
    families = [p.split("<")[0].replace("/", ".") for p in paths if "<" in p]  # models/<family>.py, cli/<command>.py
    missing = [m for m in MODULES if m not in listed
               and not any(m == f or m.startswith(f + ".") for f in folders)
               and not any(m.startswith(f) for f in families)]
    assert missing == [], f"docs/architecture.md's module list lacks {missing}"
    assert [p for p in listed if p not in MODULES and p.rstrip(".") not in MODULES] == []


def test_every_module_imports_only_modules_before_it_in_the_documented_order():
    order = _import_order()
    unplaced = sorted(m for m in MODULES if m not in order)
    assert unplaced == [], f"docs/architecture.md's import order does not place {unplaced}"
    late = {m: sorted(d for d in GRAPH[m] if d in order and order[d] > order[m]) for m in order}
    assert {m: d for m, d in late.items() if d} == {}, "imports of modules the doc places later"


TRAIN_MODULE_LINES = 400  # "no module of train/ over about 400 lines" (one concept each)


def test_train_modules_hold_one_concept_each():
    long = {m: n for m, p in MODULES.items() if m.startswith("convzoo.train.")
            and (n := len(p.read_text(encoding="utf-8").splitlines())) > TRAIN_MODULE_LINES}
    assert long == {}, "split these modules by concept (docs/architecture.md)"

"""The package layout, checked statically from the source (``ast`` only, nothing imported): no
file over 400 lines, every import inside a function body marked ``# lazy: <why>``, and no import
cycle among the package's modules through their module-level imports."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "clvsmim"
MAX_LINES = 400
LAZY_MARK = "# lazy:"


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = ("clvsmim", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in _sources()}


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported: outside every function body, not under
    ``if TYPE_CHECKING``; class bodies, ``try`` and plain ``if`` blocks are included."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit(getattr(node, field, None) or [])

    visit(tree.body)
    return found


def _function_body_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement anywhere inside a function or method body."""
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for stmt in fn.body:
                found += [n for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))]
    return list({id(n): n for n in found}.values())  # nested functions are walked twice


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module of a (possibly relative) ``from … import``."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _with_packages(target: str, module: str) -> set[str]:
    """``target`` and the packages Python runs first to import it (``clvsmim.a.b`` runs
    ``clvsmim.a``'s ``__init__``), except the importing module's own packages, which are
    already loading when it runs."""
    parts = target.split(".")
    own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)}
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} - own - {module}


def _targets(node: ast.Import | ast.ImportFrom, module: str, path: Path) -> set[str]:
    """The clvsmim modules an import statement loads: ``from clvsmim.x import y`` is ``x.y``
    when ``y`` is a submodule, else ``x``; plus the packages above it (:func:`_with_packages`)."""
    if isinstance(node, ast.Import):
        found = {a.name for a in node.names if a.name in MODULES}
    else:
        source = _absolute(node, module, path.name == "__init__.py")
        found = set()
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            if sub in MODULES:
                found.add(sub)
            elif source in MODULES:
                found.add(source)
    return {m for t in found for m in _with_packages(t, module) if m in MODULES}


def _import_graph() -> dict[str, dict[str, int]]:
    """module → {imported module: line of the first import}, module-level imports only."""
    graph: dict[str, dict[str, int]] = {}
    for module, path in MODULES.items():
        edges: dict[str, int] = {}
        for node in _module_level_imports(_parse(path)):
            for target in _targets(node, module, path):
                if target != module:
                    edges.setdefault(target, node.lineno)
        graph[module] = edges
    return graph


def _find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle as a closed path ``[a, b, …, a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for root in sorted(graph):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, {}))))
    return None


def test_sources_are_found():
    assert len(MODULES) > 50 and "clvsmim.train.trainer" in MODULES and "clvsmim" in MODULES


def test_no_source_file_over_400_lines():
    long = []
    for path in _sources():
        rel = path.relative_to(PACKAGE).as_posix()
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES:
            long.append(f"src/clvsmim/{rel}: {n} lines (limit {MAX_LINES})")
    assert not long, "files over the limit, split them along their seams:\n" + "\n".join(long)


def test_every_function_body_import_says_why_it_is_lazy():
    unmarked = []
    for path in _sources():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in _function_body_imports(_parse(path)):
            statement = lines[node.lineno - 1:node.end_lineno]
            if not any(LAZY_MARK in line for line in statement):
                unmarked.append(f"src/clvsmim/{path.relative_to(PACKAGE).as_posix()}:{node.lineno}: "
                                f"{lines[node.lineno - 1].strip()}")
    assert not unmarked, (f"imports inside function bodies without a '{LAZY_MARK} <why>' comment "
                          "(hoist them to the top, or say why they are lazy):\n" + "\n".join(unmarked))


def test_no_import_cycle_among_package_modules():
    graph = _import_graph()
    cycle = _find_cycle(graph)
    if cycle:
        steps = [f"{a} (src/clvsmim/{MODULES[a].relative_to(PACKAGE).as_posix()}:{graph[a][b]}) imports {b}"
                 for a, b in zip(cycle, cycle[1:])]
        pytest.fail("import cycle " + " -> ".join(cycle) + ":\n" + "\n".join(steps))


def _graph_of(sources: dict[str, str]) -> dict[str, dict[str, int]]:
    """The import graph of a made-up package, to test the cycle finder itself."""
    graph = {}
    for module, text in sources.items():
        edges = {}
        for node in _module_level_imports(ast.parse(text)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            edges.update({n: node.lineno for n in names if n in sources})
        graph[module] = edges
    return graph


def test_the_cycle_finder_finds_a_cycle_and_only_module_level_ones():
    cyclic = _graph_of({"a": "import b\n", "b": "import c\n", "c": "import a\n", "d": "import a\n"})
    assert _find_cycle(cyclic) == ["a", "b", "c", "a"]
    lazy = _graph_of({"a": "import b\n", "b": "def f():\n    import a  # lazy: test\n",
                      "c": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\n"})
    assert _find_cycle(lazy) is None
    assert _with_packages("clvsmim.claims.rules", "clvsmim.uncertainty") == {"clvsmim.claims", "clvsmim.claims.rules"}
    assert _with_packages("clvsmim.claims.verdict", "clvsmim.claims.rules") == {"clvsmim.claims.verdict"}
    tree = ast.parse("class K:\n    def m(self):\n        def g():\n            import os\n"
                     "try:\n    import json\nexcept ImportError:\n    pass\n")
    assert [n.lineno for n in _function_body_imports(tree)] == [4]
    assert [n.lineno for n in _module_level_imports(tree)] == [6]

"""Import hygiene of the package, read from the source with ``ast`` (nothing is imported):

* no import cycles between the modules of ``blackbox_xai``: first among module-level imports (those inside
  functions and under ``if TYPE_CHECKING:`` do not count, since they run after every module has loaded), then
  counting the imports inside functions too (a module that imports one that imports it back, however late);
* no module over 500 lines;
* onnxruntime is imported only under ``blackbox_xai/model/`` (anywhere in a file, inside functions included).

The checker itself is tested first on small synthetic packages, so that a pass on the real one means something.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "blackbox_xai"
MAX_LINES = 500
ONNXRUNTIME_HOME = "blackbox_xai.model"  # the only package allowed to import onnxruntime


# ---------------------------------------------------------------------------------------------------------------
# The checker
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. blackbox_xai.graph.analysis (a package is named by its __init__)
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        """The package relative imports start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def find_modules(root: Path, package: str) -> dict[str, Module]:
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = Module(".".join(parts), path, is_package)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_level_imports(tree: ast.Module, deferred: bool = False,
                         type_checking: bool = False) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: not inside a function, not under ``if TYPE_CHECKING:``.
    (Class bodies, ``try``, ``with`` and other ``if`` blocks run at import time and count.) ``deferred=True`` adds
    the imports inside functions; ``type_checking=True`` also those under ``if TYPE_CHECKING:`` (which never run,
    but a pair of modules naming each other there is still one concern split in two files)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(statements: list[ast.stmt]) -> None:
        for statement in statements:
            if isinstance(statement, (ast.Import, ast.ImportFrom)):
                found.append(statement)
            elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)) and not deferred:
                continue
            elif isinstance(statement, ast.If) and _is_type_checking(statement.test):
                visit(statement.orelse)
                if type_checking:
                    visit(statement.body)
            else:
                for child in ast.iter_child_nodes(statement):
                    if isinstance(child, ast.stmt):
                        visit([child])
                    elif isinstance(child, (ast.ExceptHandler, ast.match_case)):
                        visit(child.body)

    visit(tree.body)
    return found


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_edges(module: Module, modules: dict[str, Module], deferred: bool = False,
                 type_checking: bool = False) -> dict[str, int]:
    """Internal modules that importing ``module`` imports directly: {module name: line of the import}.

    ``from pkg import sub`` imports the submodule ``pkg.sub`` when there is one, else a name of ``pkg``'s
    ``__init__``; importing ``a.b.c`` also runs the packages ``a.b`` and ``a`` first, except those that contain
    ``module`` (they are already being imported when it runs).
    """
    tree = ast.parse(module.path.read_text(encoding="utf-8"), str(module.path))
    own_packages = set(_ancestors(module.name)) | ({module.name} if module.is_package else set())
    edges: dict[str, int] = {}

    def add(target: str, line: int, named: bool) -> None:
        if target not in modules or target == module.name:
            return
        if named or target not in own_packages:
            edges.setdefault(target, line)
        for ancestor in _ancestors(target):
            if ancestor not in own_packages:
                edges.setdefault(ancestor, line)

    for node in module_level_imports(tree, deferred, type_checking):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno, named=True)
            continue
        if node.level:
            base_parts = module.package.split(".")
            base_parts = base_parts[:len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if submodule in modules:
                add(submodule, node.lineno, named=True)
                add(base, node.lineno, named=False)
            else:
                add(base, node.lineno, named=True)
    return edges


def import_graph(root: Path, package: str, deferred: bool = False,
                 type_checking: bool = False) -> dict[str, dict[str, int]]:
    modules = find_modules(root, package)
    return {name: import_edges(module, modules, deferred, type_checking) for name, module in modules.items()}


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (a list of modules, the first repeated at the end) per strongly connected component that has one
    (Tarjan's algorithm), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, {})):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, {}):
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(_cycle_in(component, graph) for component in components)


def _cycle_in(component: list[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first search inside the component)."""
    members = set(component)
    start = component[0]
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node]):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if nxt in members and nxt not in parents:
                    parents[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle found in {component}")  # pragma: no cover - Tarjan found one


def describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    steps = [cycle[0]] + [f"{b} (line {graph[a][b]} of {a})" for a, b in zip(cycle, cycle[1:])]
    return " -> ".join(steps)


def onnxruntime_imports(path: Path) -> list[int]:
    """Lines of ``path`` that import onnxruntime: import statements anywhere (functions and TYPE_CHECKING blocks
    included) and ``importlib.import_module("onnxruntime...")`` / ``__import__("onnxruntime...")`` calls."""
    def is_ort(name: str | None) -> bool:
        return bool(name) and (name == "onnxruntime" or name.startswith("onnxruntime."))

    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import) and any(is_ort(alias.name) for alias in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and not node.level and is_ort(node.module):
            lines.append(node.lineno)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
            if called in ("import_module", "__import__") and is_ort(str(node.args[0].value)):
                lines.append(node.lineno)
    return sorted(lines)


# ---------------------------------------------------------------------------------------------------------------
# The checker on synthetic packages
# ---------------------------------------------------------------------------------------------------------------


def make_package(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_checker_finds_a_cycle_and_names_it(tmp_path: Path) -> None:
    make_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from .b import x\n",
        "pkg/b.py": "import os\n\nfrom . import c\nx = 1\n",
        "pkg/c.py": "from pkg.a import y\n",
        "pkg/d.py": "from . import a\n",
    })
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.b": 1} and graph["pkg.b"] == {"pkg.c": 3} and graph["pkg.d"] == {"pkg.a": 1}
    cycles = find_cycles(graph)
    assert cycles == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert describe(cycles[0], graph) == (
        "pkg.a -> pkg.b (line 1 of pkg.a) -> pkg.c (line 3 of pkg.b) -> pkg.a (line 1 of pkg.c)")


def test_checker_ignores_function_and_type_checking_imports(tmp_path: Path) -> None:
    make_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": """
            from typing import TYPE_CHECKING
            import typing
            from . import b
            if TYPE_CHECKING:
                from .c import C
            if typing.TYPE_CHECKING:
                from . import c
            else:
                from . import d
        """,
        "pkg/b.py": """
            def late():
                from .a import thing
            class K:
                def method(self):
                    from . import a
        """,
        "pkg/c.py": "from .a import A\n",
        "pkg/d.py": "",
    })
    graph = import_graph(tmp_path, "pkg")
    assert set(graph["pkg.a"]) == {"pkg.b", "pkg.d"} and graph["pkg.b"] == {}
    assert find_cycles(graph) == []
    # counting the imports inside functions too, b imports a back (TYPE_CHECKING imports still never count)
    graph = import_graph(tmp_path, "pkg", deferred=True)
    assert set(graph["pkg.a"]) == {"pkg.b", "pkg.d"} and graph["pkg.b"] == {"pkg.a": 3}
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]
    # counting the TYPE_CHECKING imports as well, a names c, which imports a
    graph = import_graph(tmp_path, "pkg", type_checking=True)
    assert set(graph["pkg.a"]) == {"pkg.b", "pkg.c", "pkg.d"}
    assert find_cycles(graph) == [["pkg.a", "pkg.c", "pkg.a"]]


def test_checker_counts_class_bodies_try_blocks_and_package_inits(tmp_path: Path) -> None:
    make_package(tmp_path, {
        "pkg/__init__.py": "from .sub import helper\n",
        "pkg/sub/__init__.py": "from .leaf import helper\n",
        "pkg/sub/leaf.py": "try:\n    from ..top import T\nexcept ImportError:\n    T = None\nhelper = 1\n",
        "pkg/top.py": "class K:\n    from .sub.leaf import helper\n",
        "pkg/other.py": "from . import helper\n",  # a name of pkg/__init__.py
    })
    graph = import_graph(tmp_path, "pkg")
    # importing pkg.sub.leaf from pkg.top also runs pkg/sub/__init__.py
    assert set(graph["pkg.top"]) == {"pkg.sub", "pkg.sub.leaf"}
    assert graph["pkg.other"] == {"pkg": 1}
    assert find_cycles(graph) == [["pkg.sub", "pkg.sub.leaf", "pkg.top", "pkg.sub"]]


def test_checker_finds_onnxruntime_anywhere(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text(textwrap.dedent("""
        import importlib
        import onnxruntime_extensions
        def f():
            import onnxruntime as ort
        def g():
            from onnxruntime.capi import _pybind_state
        def h():
            return importlib.import_module("onnxruntime")
    """))
    assert onnxruntime_imports(path) == [5, 7, 9]


# ---------------------------------------------------------------------------------------------------------------
# The package
# ---------------------------------------------------------------------------------------------------------------


def test_no_import_cycles() -> None:
    graph = import_graph(ROOT, PACKAGE)
    assert "blackbox_xai.graph.analysis" in graph and graph["blackbox_xai.zoo.cache"]  # the walk sees the package
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(describe(cycle, graph) for cycle in cycles)


def test_no_import_cycles_through_deferred_imports() -> None:
    """No module imports one that imports it back, even inside a function: such a pair is one concern split in
    two files (or two concerns tangled), whatever the order in which they happen to load."""
    graph = import_graph(ROOT, PACKAGE, deferred=True)
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (counting imports inside functions):\n" + "\n".join(
        describe(cycle, graph) for cycle in cycles)


def test_no_import_cycles_counting_every_import() -> None:
    """Not even through annotations: two modules that name each other under ``if TYPE_CHECKING:`` are one concern
    split in two files (the project's own check counts them)."""
    graph = import_graph(ROOT, PACKAGE, deferred=True, type_checking=True)
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (counting every import):\n" + "\n".join(
        describe(cycle, graph) for cycle in cycles)


def test_no_module_over_500_lines() -> None:
    modules = find_modules(ROOT, PACKAGE)
    assert len(modules) > 50
    long = {name: len(module.path.read_text(encoding="utf-8").splitlines()) for name, module in modules.items()}
    long = {name: count for name, count in long.items() if count > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: " + ", ".join(f"{n} ({c})" for n, c in sorted(long.items()))


def test_onnxruntime_only_in_model_package() -> None:
    offenders = []
    for name, module in find_modules(ROOT, PACKAGE).items():
        if name == ONNXRUNTIME_HOME or name.startswith(ONNXRUNTIME_HOME + "."):
            continue
        offenders += [f"{name} (line {line})" for line in onnxruntime_imports(module.path)]
    assert not offenders, "onnxruntime imported outside blackbox_xai/model/: " + ", ".join(offenders)


def test_the_model_package_does_import_onnxruntime() -> None:
    # the check above is not vacuous: the adapter's own imports of onnxruntime are found
    found = [name for name, module in find_modules(ROOT, PACKAGE).items()
             if name.startswith(ONNXRUNTIME_HOME + ".") and onnxruntime_imports(module.path)]
    assert found

"""No import cycle among the package's modules, type-only imports included.

A cycle makes the import order matter and the layers meaningless: two modules that import each
other are one module in two files. The check is static, with `ast`, as the core's boundary check
is (their walker is shared): every `import` and `from ... import` is followed wherever it stands,
under `if TYPE_CHECKING:` and in functions too. Importing a submodule runs its parent packages'
`__init__` first, so an import of `a.b.c` is an edge to `a.b` and to `a.b.c`; an edge from a
module to a package it lives in is left out, since that package is already being imported when
the module runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from test_core_boundary import (
    PACKAGE,
    PACKAGE_DIR,
    SourceOf,
    fake_sources,
    imports_of,
    source_in_package,
    with_parents,
)


def package_modules() -> list[str]:
    """Every module of the package, its root and each subpackage's `__init__` included."""
    names = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def import_graph(modules: Iterable[str], source_of: SourceOf) -> dict[str, set[str]]:
    """For each module, the modules of the package its import statements make Python run."""
    graph: dict[str, set[str]] = {}
    for name in modules:
        source = source_of(name)
        assert source is not None, name
        ancestors = set(with_parents(name)[:-1])
        graph[name] = set()
        for imported in imports_of(name, source, source_of):
            if imported == PACKAGE:
                # `from pleo_export_async import X` needs the root's names: an edge, though the
                # root is being imported already.
                graph[name].add(PACKAGE)
                continue
            graph[name].update(
                module
                for module in with_parents(imported)
                if module != name and module not in ancestors and source_of(module) is not None
            )
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each
    sorted, plus any module that imports itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle() -> None:
    """No two modules of the package reach each other through their imports."""
    modules = package_modules()
    graph = import_graph(modules, source_in_package)
    assert f"{PACKAGE}._job" in graph[f"{PACKAGE}._client"]  # the graph holds real edges
    assert cycles(graph) == []


# -- the check can fail ----------------------------------------------------------------------------


def test_a_type_only_cycle_is_found() -> None:
    """Three modules in a ring, one link of it under TYPE_CHECKING, are one cycle."""
    source_of = fake_sources(
        {
            f"{PACKAGE}.": "",
            f"{PACKAGE}._a": "from ._b import B\n",
            f"{PACKAGE}._b": "from . import _c\n",
            f"{PACKAGE}._c": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._a import A\n"
            ),
            f"{PACKAGE}._d": "from ._a import A\n",
        }
    )
    modules = [f"{PACKAGE}._a", f"{PACKAGE}._b", f"{PACKAGE}._c", f"{PACKAGE}._d"]
    assert cycles(import_graph(modules, source_of)) == [
        [f"{PACKAGE}._a", f"{PACKAGE}._b", f"{PACKAGE}._c"]
    ]


def test_a_cycle_through_a_subpackage_init_is_found() -> None:
    """A module importing a subpackage whose `__init__` imports it back is a cycle."""
    source_of = fake_sources(
        {
            f"{PACKAGE}.": "",
            f"{PACKAGE}._sub.": "from .._top import T\n",
            f"{PACKAGE}._sub._leaf": "X = 1\n",
            f"{PACKAGE}._top": "from ._sub._leaf import X\n",
        }
    )
    modules = [f"{PACKAGE}._sub", f"{PACKAGE}._sub._leaf", f"{PACKAGE}._top"]
    assert cycles(import_graph(modules, source_of)) == [[f"{PACKAGE}._sub", f"{PACKAGE}._top"]]


def test_an_import_of_the_root_by_a_module_the_root_imports_is_a_cycle() -> None:
    """`from pleo_export_async import X` in a module that the root's `__init__` imports is a
    cycle: X may not be defined yet when the module runs."""
    source_of = fake_sources(
        {
            f"{PACKAGE}.": "from ._client import Client\n",
            f"{PACKAGE}._client": f"from {PACKAGE} import ItemUpdate\n",
        }
    )
    assert cycles(import_graph([PACKAGE, f"{PACKAGE}._client"], source_of)) == [
        [PACKAGE, f"{PACKAGE}._client"]
    ]


def test_a_module_importing_its_own_package_is_no_cycle() -> None:
    """`from . import sibling` in a subpackage's module is not a cycle with that subpackage."""
    source_of = fake_sources(
        {
            f"{PACKAGE}.": "",
            f"{PACKAGE}._sub.": "from . import _leaf\n",
            f"{PACKAGE}._sub._leaf": "from . import _other\n",
            f"{PACKAGE}._sub._other": "Y = 2\n",
        }
    )
    modules = [f"{PACKAGE}._sub", f"{PACKAGE}._sub._leaf", f"{PACKAGE}._sub._other"]
    assert cycles(import_graph(modules, source_of)) == []

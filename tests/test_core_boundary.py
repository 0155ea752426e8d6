"""The core does no I/O (the Core layer, docs/architecture.md): no module of
`pleo_export_async._core` imports, directly or through other modules of the package, the network,
sqlite, threads or the layers above it.

The check is static: importing a core module in-process would run the package's `__init__`, which
imports everything. Each module's source is parsed and every `import` and `from ... import` in it
is followed, wherever it stands (in a function, under `if TYPE_CHECKING:`): a type-only import of
an upper layer is a dependency on it all the same. Modules of the package are read from their
files and walked in turn, with the `__init__` of each subpackage they live in (the root package's
`__init__` is left out: Python runs it for any submodule, and it is the public surface that
imports every layer). Other modules are only checked against the forbidden names.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs

PACKAGE = "pleo_export_async"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / PACKAGE
CORE = f"{PACKAGE}._core"

FORBIDDEN = frozenset(
    {
        "aiohttp",
        "asyncio",
        "sqlite3",
        "socket",
        "selectors",
        "ssl",
        "concurrent",
        "threading",
        f"{PACKAGE}._transport",
        f"{PACKAGE}._job",
        f"{PACKAGE}._client",
        f"{PACKAGE}._ledger",
        f"{PACKAGE}._sqlite_ledger",
    }
)


@attrs.frozen
class Source:
    """A module's text, and whether it is a package (`__init__.py`), which relative imports need."""

    text: str
    is_package: bool


SourceOf = Callable[[str], Source | None]


def source_in_package(name: str) -> Source | None:
    """The source of a module of this package from its file, or None if there is no such file."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    path = PACKAGE_DIR.joinpath(*name.split(".")[1:])
    if (path / "__init__.py").is_file():
        return Source((path / "__init__.py").read_text(encoding="utf-8"), True)
    module = path.with_suffix(".py")
    if module.is_file():
        return Source(module.read_text(encoding="utf-8"), False)
    return None


def imports_of(name: str, source: Source, source_of: SourceOf) -> Iterator[str]:
    """Every module an import statement of `name` names, relative imports resolved.

    `from X import y` names `X.y` when that is a module of the package, else `X` itself (where `y`
    is defined): `from . import _batches` does not walk the package's `__init__` for nothing,
    `from pleo_export_async import ItemUpdate` walks the root `__init__`, as Python runs it.
    """
    package = name if source.is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source.text, filename=name)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level > 1:
                    parts = parts[: -(node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            else:
                assert node.module is not None
                base = node.module
            names_base = False
            for alias in node.names:
                if alias.name != "*" and source_of(f"{base}.{alias.name}") is not None:
                    yield f"{base}.{alias.name}"
                else:
                    names_base = True
            if names_base:
                yield base


def with_parents(name: str) -> list[str]:
    """A module of the package after the subpackages it lives in (their `__init__` runs first),
    the root package aside; any other module as it is."""
    if not name.startswith(PACKAGE + "."):
        return [name]
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(2, len(parts) + 1)]


def forbidden_name(module: str) -> str | None:
    """The forbidden name `module` is or lives in, if any."""
    for name in FORBIDDEN:
        if module == name or module.startswith(name + "."):
            return name
    return None


def forbidden_chains(start: str, source_of: SourceOf = source_in_package) -> list[list[str]]:
    """Import chains from `start` to a forbidden module, one for each forbidden module reached
    (the first path found to it), following the modules `source_of` has a source for."""
    chains: list[list[str]] = []
    seen = {start}
    stack: list[list[str]] = [[start]]
    while stack:
        chain = stack.pop()
        source = source_of(chain[-1])
        if source is None:
            continue
        for imported in imports_of(chain[-1], source, source_of):
            for module in with_parents(imported):
                if module in seen:
                    continue
                seen.add(module)
                if forbidden_name(module) is not None:
                    chains.append([*chain, module])
                else:
                    stack.append([*chain, module])
    return chains


def core_modules() -> list[str]:
    """Every module of the core package, its `__init__` and any subpackage included."""
    names = []
    for path in sorted((PACKAGE_DIR / "_core").rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


# -- the check -------------------------------------------------------------------------------------


def test_core_imports_no_io_nor_upper_layers() -> None:
    """No core module reaches aiohttp, asyncio, sqlite3, sockets, threads or the transport, job,
    client and ledger modules through any chain of imports."""
    modules = core_modules()
    assert f"{CORE}._tracker" in modules
    assert f"{CORE}._batches" in modules
    problems = [
        f"{module} imports {chain[-1]}: {' -> '.join(chain)}"
        for module in modules
        for chain in forbidden_chains(module)
    ]
    assert not problems, "the core must do no I/O:\n" + "\n".join(problems)


def test_the_walker_follows_the_package() -> None:
    """The walker reaches the package modules the core really uses, so it walks real imports."""
    reached: set[str] = set()

    def recording(name: str) -> Source | None:
        reached.add(name)
        return source_in_package(name)

    assert forbidden_chains(f"{CORE}._tracker", recording) == []
    assert {
        f"{CORE}._acknowledgements",
        f"{CORE}._batches",
        f"{CORE}._classify",
        f"{PACKAGE}._models",
        f"{PACKAGE}._checks",
        f"{PACKAGE}._errors",
    } <= reached
    assert PACKAGE not in reached  # the root `__init__` is never walked
    assert forbidden_chains(f"{PACKAGE}._transport") != []  # it does import aiohttp


# -- the check can fail ----------------------------------------------------------------------------


def fake_sources(sources: dict[str, str]) -> SourceOf:
    """A `SourceOf` over made-up modules: a name given with a trailing dot is a package."""

    def source_of(name: str) -> Source | None:
        if name + "." in sources:
            return Source(sources[name + "."], True)
        if name in sources:
            return Source(sources[name], False)
        return None

    return source_of


def test_a_direct_forbidden_import_is_flagged() -> None:
    """A core module with `import asyncio` is reported, with the chain that reaches it."""
    source_of = fake_sources({f"{CORE}.": "", f"{CORE}._fake": "import enum\nimport asyncio\n"})
    assert forbidden_chains(f"{CORE}._fake", source_of) == [[f"{CORE}._fake", "asyncio"]]


def test_a_transitive_forbidden_import_is_flagged() -> None:
    """An import reached through relative imports of other package modules is reported with its
    chain, also when it stands in a function or under TYPE_CHECKING."""
    source_of = fake_sources(
        {
            f"{CORE}.": "",
            f"{CORE}._fake": "from . import _helper\n",
            f"{CORE}._helper": "from .._util import thing\n",
            f"{PACKAGE}._util": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from ._job import JobRun\n"
                "def later():\n"
                "    from concurrent.futures import Future\n"
            ),
            f"{PACKAGE}._job": "import aiohttp\n",
        }
    )
    via = [f"{CORE}._fake", f"{CORE}._helper", f"{PACKAGE}._util"]
    assert sorted(forbidden_chains(f"{CORE}._fake", source_of)) == sorted(
        [[*via, f"{PACKAGE}._job"], [*via, "concurrent.futures"]]
    )


def test_an_import_from_the_root_package_is_followed() -> None:
    """A core module importing a name from the package root reaches what the root imports."""
    source_of = fake_sources(
        {
            f"{PACKAGE}.": "from ._client import PleoExportClient\n",
            f"{PACKAGE}._client": "import aiohttp\n",
            f"{CORE}.": "",
            f"{CORE}._fake": f"from {PACKAGE} import PleoExportClient\n",
        }
    )
    assert forbidden_chains(f"{CORE}._fake", source_of) == [
        [f"{CORE}._fake", PACKAGE, f"{PACKAGE}._client"]
    ]


def test_a_clean_fake_module_is_not_flagged() -> None:
    """Standard-library imports that do no I/O, and package modules that import none, pass."""
    source_of = fake_sources(
        {
            f"{CORE}.": "",
            f"{CORE}._fake": "import enum\nfrom collections import deque\nfrom .. import _enums\n",
            f"{PACKAGE}._enums": "from enum import StrEnum\n",
        }
    )
    assert forbidden_chains(f"{CORE}._fake", source_of) == []

"""docs/reference/logs.md lists every log record the package writes, as its source writes it.

The records are read from the source with `ast`: each call of a logging method (`info`,
`warning`, `exception`, `log`, ...) on a name bound to `logging.getLogger(...)`, with its level,
its message and the keys of its `extra=`. A message or an `extra` that is not written out at the
call is followed: a local variable to what is assigned to it, a parameter to the arguments the
module's calls of that function pass, an attribute (`call.log_extra`) to the keyword arguments
of that name anywhere in the package. What cannot be followed fails the test, so that a new
kind of call is taught to it rather than missed.

On the page, a record is a table row `| LEVEL | `message` | `field`, ... | when |`, with a
placeholder `{name}` wherever the message is formatted (`%s`, `%d`, ... in the source); a field
is a row `| `name` | meaning |` of the fields table.
"""

from __future__ import annotations

import ast
import functools
import re
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = REPO_ROOT / "pleo_export_async"
PAGE = REPO_ROOT / "docs" / "reference" / "logs.md"

LEVEL_OF_METHOD = {
    "debug": "DEBUG",
    "info": "INFO",
    "warning": "WARNING",
    "warn": "WARNING",
    "error": "ERROR",
    "exception": "ERROR",
    "critical": "CRITICAL",
    "fatal": "CRITICAL",
    "log": None,  # the level is the first argument
}
LEVEL_NAMES = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "FATAL", "WARN"}
#: Fields a filter puts on the records, not any call's `extra`: the page must explain them too.
FILTER_FIELDS = {"trace_id", "span_id"}

#: Where the page shows a placeholder, and where the source has a %-conversion.
HOLE = "\x00"
PERCENT_SPEC = re.compile(
    r"%(?:\([^)]*\))?[#0\- +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[diouxXeEfFgGcrsa%]"
)
PAGE_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
RECORD_ROW = re.compile(
    r"^\|\s*(?P<level>[A-Z]+(?:\s+or\s+[A-Z]+)*)\s*\|\s*`(?P<message>[^`]+)`\s*\|"
    r"(?P<fields>[^|]*)\|",
    flags=re.MULTILINE,
)
FIELD_ROW = re.compile(r"^\|\s*`(?P<name>\w+)`\s*\|", flags=re.MULTILINE)


T = TypeVar("T")


class Unresolved(Exception):
    """A message, level or `extra` the collector cannot follow to its source."""


@dataclass(frozen=True)
class Record:
    """A log record the source writes: one message a call can write (a call whose message is a
    parameter gives one record per message its callers pass)."""

    where: str
    logger: str
    levels: frozenset[str]
    message: str  # the source's text, with HOLE for each %-conversion or f-string value
    extra: frozenset[str]


@dataclass(frozen=True)
class Row:
    """A record as the page lists it."""

    levels: frozenset[str]
    message: str  # the page's text, with HOLE for each {placeholder}
    shown: str  # as the page writes it
    fields: frozenset[str]


@dataclass
class Collected:
    records: list[Record] = field(default_factory=list)
    loggers: set[str] = field(default_factory=set)
    unresolved: list[str] = field(default_factory=list)


def _template(text: str) -> str:
    """A %-format string with HOLE for each conversion (and `%%` read as `%`)."""
    return PERCENT_SPEC.sub(lambda match: "%" if match.group() == "%%" else HOLE, text)


class _Module:
    def __init__(self, path: Path, package: _Package) -> None:
        self.path = path
        self.package = package
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        #: Module-level string constants (`NAME = "..."`, `NAME: Final = "..."`).
        self.constants = {
            target.id: node.value.value
            for node in self.tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)
        }
        self.unresolved: list[str] = []
        #: Names bound to a logger anywhere in the module, and that logger's name.
        self.loggers: dict[str, str] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign) and self._is_get_logger(node.value):
                assert isinstance(node.value, ast.Call)
                try:
                    name = self._logger_name(node.value)
                except Unresolved as unresolved:
                    self.unresolved.append(str(unresolved))
                    continue
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.loggers[target.id] = name

    def where(self, node: ast.AST) -> str:
        relative = self.path.relative_to(self.package.root.parent)
        return f"{relative}:{getattr(node, 'lineno', '?')}"

    @staticmethod
    def _is_get_logger(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "getLogger"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "logging"
        )

    def _logger_name(self, call: ast.Call) -> str:
        if not call.args:
            return "root"
        argument = call.args[0]
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            return argument.value
        if isinstance(argument, ast.Name) and argument.id in self.constants:
            return self.constants[argument.id]
        if isinstance(argument, ast.Name) and argument.id == "__name__":
            return ".".join(self.path.relative_to(self.package.root.parent).with_suffix("").parts)
        raise Unresolved(f"{self.where(call)}: logger name {ast.unparse(argument)}")

    def function_of(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return node
        return None

    # -- the log calls ---------------------------------------------------------------------

    def log_calls(self) -> Iterator[tuple[ast.Call, str, str]]:
        """Each logging call: the call, its logger's name and its method."""
        for node in ast.walk(self.tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LEVEL_OF_METHOD
            ):
                continue
            target = node.func.value
            if isinstance(target, ast.Name) and target.id in self.loggers:
                yield node, self.loggers[target.id], node.func.attr
            elif self._is_get_logger(target):
                assert isinstance(target, ast.Call)
                yield node, self._logger_name(target), node.func.attr
            elif isinstance(target, ast.Name) and target.id == "logging":
                yield node, "root", node.func.attr  # logging.info(...): the root logger

    def records(self) -> Iterator[Record]:
        for call, logger, method in self.log_calls():
            scope = self.function_of(call)
            arguments = list(call.args)
            level = LEVEL_OF_METHOD[method]
            if level is None:
                if not arguments:
                    raise Unresolved(f"{self.where(call)}: log() without a level")
                levels = frozenset(self.levels(arguments.pop(0), scope))
            else:
                levels = frozenset({level})
            message = arguments[0] if arguments else _keyword(call, "msg")
            if message is None:
                raise Unresolved(f"{self.where(call)}: no message")
            extra = _keyword(call, "extra")
            keys = frozenset(self.keys(extra, scope)) if extra is not None else frozenset()
            for text in sorted(set(self.messages(message, scope))):
                yield Record(self.where(call), logger, levels, text, keys)

    # -- following values to their source ----------------------------------------------------

    def levels(self, node: ast.expr, scope: ast.AST | None) -> set[str]:
        if isinstance(node, ast.Attribute) and node.attr in LEVEL_NAMES:
            return {"WARNING" if node.attr == "WARN" else node.attr}
        if isinstance(node, ast.IfExp):
            return self.levels(node.body, scope) | self.levels(node.orelse, scope)
        return self._follow(node, scope, self.levels, "level")

    def messages(self, node: ast.expr, scope: ast.AST | None) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {_template(node.value)}
        if isinstance(node, ast.JoinedStr):
            return {
                "".join(
                    str(part.value) if isinstance(part, ast.Constant) else HOLE
                    for part in node.values
                )
            }
        if isinstance(node, ast.IfExp):
            return self.messages(node.body, scope) | self.messages(node.orelse, scope)
        return self._follow(node, scope, self.messages, "message")

    def keys(self, node: ast.expr, scope: ast.AST | None) -> set[str]:
        if isinstance(node, ast.Constant) and node.value is None:
            return set()
        if isinstance(node, ast.Dict):
            found: set[str] = set()
            for key, value in zip(node.keys, node.values, strict=True):
                if key is None:
                    found |= self.keys(value, scope)
                elif isinstance(key, ast.Constant) and isinstance(key.value, str):
                    found.add(key.value)
                else:
                    raise Unresolved(f"{self.where(node)}: extra key {ast.unparse(key)}")
            return found
        if isinstance(node, ast.IfExp):
            return self.keys(node.body, scope) | self.keys(node.orelse, scope)
        if isinstance(node, ast.Attribute):
            # `call.log_extra`: whatever is passed as `log_extra=` anywhere in the package.
            return self.package.keyword_keys(node.attr, self.where(node))
        return self._follow(node, scope, self.keys, "extra")

    def _follow(
        self,
        node: ast.expr,
        scope: ast.AST | None,
        resolve: Callable[[ast.expr, ast.AST | None], set[T]],
        what: str,
    ) -> set[T]:
        """A local variable's assigned values, or a parameter's arguments at the calls of its
        function in this module, resolved with `resolve`."""
        if not isinstance(node, ast.Name):
            raise Unresolved(f"{self.where(node)}: {what} {ast.unparse(node)}")
        if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
            assigned = [
                statement.value
                for statement in ast.walk(scope)
                if isinstance(statement, ast.Assign | ast.AnnAssign)
                and statement.value is not None
                and any(
                    isinstance(target, ast.Name) and target.id == node.id
                    for target in (
                        statement.targets
                        if isinstance(statement, ast.Assign)
                        else [statement.target]
                    )
                )
            ]
            if assigned:
                return {found for value in assigned for found in resolve(value, scope)}
            if node.id in _parameters(scope):
                found: set[T] = set()
                calls = list(self._calls_of(scope))
                if not calls:
                    raise Unresolved(
                        f"{self.where(node)}: {what} {node.id}: no calls of {scope.name}"
                    )
                for call in calls:
                    argument = _argument(call, scope, node.id)
                    if argument is None:
                        raise Unresolved(f"{self.where(call)}: {what} {node.id} not passed")
                    found |= resolve(argument, self.function_of(call))
                return found
        raise Unresolved(f"{self.where(node)}: {what} {node.id}")

    def _calls_of(self, function: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.Call]:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call) and (
                (isinstance(node.func, ast.Name) and node.func.id == function.name)
                or (isinstance(node.func, ast.Attribute) and node.func.attr == function.name)
            ):
                yield node


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((keyword.value for keyword in call.keywords if keyword.arg == name), None)


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    arguments = function.args
    return [
        argument.arg
        for argument in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    ]


def _argument(
    call: ast.Call, function: ast.FunctionDef | ast.AsyncFunctionDef, name: str
) -> ast.expr | None:
    """The expression `call` passes for `function`'s parameter `name`."""
    keyword = _keyword(call, name)
    if keyword is not None:
        return keyword
    positional = [argument.arg for argument in [*function.args.posonlyargs, *function.args.args]]
    if isinstance(call.func, ast.Attribute) and positional[:1] in (["self"], ["cls"]):
        positional = positional[1:]  # self.method(...): self is not among the arguments
    if name in positional and positional.index(name) < len(call.args):
        return call.args[positional.index(name)]
    return None


class _Package:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules = [_Module(path, self) for path in sorted(root.rglob("*.py"))]

    def keyword_keys(self, name: str, where: str) -> set[str]:
        """The `extra` keys of every mapping passed as the keyword argument `name`."""
        found: set[str] = set()
        passed = False
        for module in self.modules:
            for node in ast.walk(module.tree):
                if isinstance(node, ast.Call):
                    value = _keyword(node, name)
                    if value is not None:
                        passed = True
                        found |= module.keys(value, module.function_of(node))
        if not passed:
            raise Unresolved(f"{where}: extra {name}: never passed as {name}=")
        return found

    def collect(self) -> Collected:
        collected = Collected()
        for module in self.modules:
            collected.loggers |= set(module.loggers.values())
            collected.unresolved += module.unresolved
            try:
                collected.records += module.records()
            except Unresolved as unresolved:
                collected.unresolved.append(str(unresolved))
        return collected


def collect(root: Path = PACKAGE) -> Collected:
    """Every log record the package at `root` writes."""
    return _Package(root).collect()


@functools.cache
def _package_records() -> Collected:
    return collect()


def page_rows(text: str) -> list[Row]:
    return [
        Row(
            levels=frozenset(re.split(r"\s+or\s+", match["level"])),
            message=PAGE_PLACEHOLDER.sub(HOLE, match["message"]),
            shown=match["message"],
            fields=frozenset(re.findall(r"`(\w+)`", match["fields"])),
        )
        for match in RECORD_ROW.finditer(text)
    ]


def undocumented(records: Iterable[Record], rows: Iterable[Row]) -> list[str]:
    """What the page gets wrong about `records`: a message it lacks, another level, a field it
    does not list for that record."""
    by_message = {row.message: row for row in rows}
    wanted: dict[str, tuple[set[str], set[str], list[str]]] = defaultdict(
        lambda: (set(), set(), [])
    )
    for record in records:
        levels, keys, where = wanted[record.message]
        levels |= record.levels
        keys |= record.extra
        where.append(record.where)
    problems = []
    for message, (levels, keys, where) in sorted(wanted.items()):
        shown = message.replace(HOLE, "{…}")
        row = by_message.get(message)
        if row is None:
            problems.append(f"{where[0]}: {shown!r} is not on the page")
            continue
        if row.levels != levels:
            problems.append(
                f"{where[0]}: {shown!r} is {sorted(levels)}, the page says {sorted(row.levels)}"
            )
        if keys - row.fields:
            problems.append(f"{where[0]}: {shown!r} lacks the fields {sorted(keys - row.fields)}")
    return problems


# -- the tests ------------------------------------------------------------------------------------


def test_every_log_call_of_the_package_is_understood() -> None:
    """Every logging call's message, level and `extra` keys are followed to their source."""
    collected = _package_records()
    assert collected.unresolved == []
    assert len(collected.records) >= 30
    assert collected.loggers == {"pleo_export_async"}


def test_every_record_is_on_the_page_with_its_level_and_fields() -> None:
    """Each message the package logs is a row of the page, at its level, listing each `extra` key
    the call passes."""
    assert undocumented(_package_records().records, page_rows(PAGE.read_text())) == []


def test_the_page_lists_no_record_the_package_does_not_write() -> None:
    """Each row of the page is a message the package still logs, listed once."""
    rows = page_rows(PAGE.read_text())
    written = {record.message for record in _package_records().records}
    assert [row.shown for row in rows if row.message not in written] == []
    messages = [row.message for row in rows]
    assert len(messages) == len(set(messages)), "a record is listed twice"


def test_every_field_has_a_meaning_on_the_page() -> None:
    """Each `extra` key, each field a row lists and the trace fields are explained in the fields
    table."""
    text = PAGE.read_text()
    explained = set(FIELD_ROW.findall(text))
    keys = {key for record in _package_records().records for key in record.extra}
    listed = {name for row in page_rows(text) for name in row.fields}
    assert sorted((keys | listed | FILTER_FIELDS) - explained) == []


def test_every_logger_is_named_on_the_page() -> None:
    """The page names each logger the package writes to."""
    text = PAGE.read_text()
    assert [name for name in _package_records().loggers if f"`{name}`" not in text] == []


def test_an_undocumented_log_call_is_caught(tmp_path: Path) -> None:
    """A copy of the package with one more log call, or one more `extra` key, does not match the
    page: adding either without documenting it fails the tests above."""
    rows = page_rows(PAGE.read_text())
    copy = tmp_path / "pleo_export_async"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    source = copy / "_process_job.py"
    text = source.read_text()
    documented = '"stopped before completing the job", extra={"job_id": job_id}'
    assert documented in text
    source.write_text(
        text.replace(
            documented,
            '"stopped before completing the job", extra={"job_id": job_id, "new_key": 1}',
        )
        + '\n\ndef _new() -> None:\n    logger.warning("a new record: %s", "undocumented")\n'
    )
    problems = undocumented(collect(copy).records, rows)
    assert len(problems) == 2, problems
    assert "'a new record: {…}' is not on the page" in problems[0] + problems[1]
    assert "lacks the fields ['new_key']" in problems[0] + problems[1]

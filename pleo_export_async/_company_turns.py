"""Whose turn it is at a company's export jobs (rule R19): Pleo asks for one job of a company in
progress at a time, the oldest open one first. One worker at a time holds a company's turn, and
works its jobs one after another; the workers of other companies go on in parallel.

`PostgresLedger` keeps the turn in the database, as a lease (`company_turn`), so it holds across
every process that shares the ledger. Any other ledger keeps it in this process: the workers that
share the ledger object take turns.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable


class CompanyBusy(Exception):
    """Another worker holds the company's turn: its jobs are left to that worker."""

    def __init__(self, company_id: str, holder: str) -> None:
        super().__init__(f"company {company_id} is worked by {holder}")
        self.company_id = company_id
        self.holder = holder


class CompanyTurn(Protocol):
    """A company's turn, while a worker holds it."""

    @property
    def held(self) -> bool:
        """False once the turn may have passed to another worker (a lease that ran out): the
        worker finishes the job in hand, held by its own lease, and takes no other."""
        ...


@runtime_checkable
class CompanyTurns(Protocol):
    """A ledger that keeps companies' turns itself, across the processes that share it."""

    def company_turn(self, company_id: str) -> AbstractAsyncContextManager[CompanyTurn]:
        """Held while a worker works the company's jobs; raises `CompanyBusy` at once if
        another worker holds it."""
        ...


class _HeldHere:
    held = True


class LocalCompanyTurns:
    """Companies' turns among the workers of one process."""

    def __init__(self) -> None:
        self._busy: set[str] = set()

    @contextlib.asynccontextmanager
    async def company_turn(self, company_id: str) -> AsyncIterator[CompanyTurn]:
        if company_id in self._busy:
            raise CompanyBusy(company_id, "another worker of this process")
        self._busy.add(company_id)
        try:
            yield _HeldHere()
        finally:
            self._busy.discard(company_id)


_LOCAL: weakref.WeakKeyDictionary[object, LocalCompanyTurns] = weakref.WeakKeyDictionary()


def company_turns_of(owner: object) -> CompanyTurns:
    """The turns of the workers that share `owner`: the ledger's own if it keeps them (across
    processes), or else one set per ledger object (or client, for its default ledger)."""
    if isinstance(owner, CompanyTurns):
        return owner
    turns = _LOCAL.get(owner)
    if turns is None:
        turns = _LOCAL[owner] = LocalCompanyTurns()
    return turns

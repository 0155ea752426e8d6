"""A hostile Pleo: a small aiohttp server on loopback that forwards every request to a FakePleo
and, for the requests it is told to, answers with something broken instead of the fake's answer.

The fake still does the work (commits the items, applies the events) and keeps its journal, so
what landed is known; this proxy keeps what each PUT asked for and what its answer, as the client
got it, rightly acknowledged: only IDs listed in `data` for this job and this request, and not
also in `errors`, of a 200 whose body is a JSON object.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
from aiohttp import web

from pleo_export_async.testing import FakePleo

_ITEMS: Final = re.compile(r"^/v3/export-jobs/([^/]+)/items$")
_JOB: Final = re.compile(r"^/v3/export-jobs/([^/]+)$")
OTHER_JOB: Final = "0b7c4a52-6f0e-4d3a-9d2b-2f6f8a1c9e11"
STRANGER: Final = "5d1e9b0c-3a7f-4c2e-8b6d-7e4f1a2b3c4d"
HTML: Final = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"

#: Broken answers to PUT items (each replaces a 200 the fake gave).
PUT_MODES: Final = (
    "html_page",
    "empty_body",
    "truncated_json",
    "invalid_utf8",
    "json_array",
    "data_missing",
    "data_null",
    "data_object",
    "other_job_items",
    "ids_not_in_request",
    "id_in_data_and_errors",
    "wrong_types",
    "no_errors_key",
    "uppercase_ids",
    "status_204",
    "status_299",
    "status_418",
    "status_520",
    "huge_body",
    "slow_trickle",
    "connection_reset",
    "refused_rewrite",
)
#: Broken answers to the reads and the events a workflow makes.
OTHER_MODES: Final = (
    "html_page",
    "empty_body",
    "truncated_json",
    "invalid_utf8",
    "json_array",
    "data_missing",
    "data_null",
    "wrong_types",
    "status_299",
    "status_418",
    "status_520",
    "huge_body",
    "slow_trickle",
    "connection_reset",
)
#: Which requests a mode may be aimed at, besides PUT items.
ROUTES: Final = ("put", "job", "items", "export_items", "event")


@dataclass
class Exchange:
    """One PUT items as the proxy passed it on: the IDs asked for, and those rightly
    acknowledged by the answer the client got."""

    job_id: str
    sent: list[dict[str, Any]]
    received_at: float
    rightful: set[str] = field(default_factory=set)
    answered_at: float | None = None


def route_of(method: str, path: str) -> str | None:
    if method == "PUT" and _ITEMS.match(path):
        return "put"
    if method == "GET" and _ITEMS.match(path):
        return "items"
    if method == "GET" and _JOB.match(path):
        return "job"
    if method == "GET" and path == "/v3/export-items":
        return "export_items"
    if method == "POST" and path == "/v3/export-job-events":
        return "event"
    return None


def rightly_acknowledged(status: int, body: bytes, job_id: str, asked: set[str]) -> set[str]:
    """The IDs an answer acknowledges by the API's rules (R3), read as strictly as possible."""
    if status != 200:
        return set()
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return set()
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        return set()
    errors = payload.get("errors")
    refused = {
        error["accountingEntryId"].lower()
        for error in (errors if isinstance(errors, list) else [])
        if isinstance(error, dict) and isinstance(error.get("accountingEntryId"), str)
    }
    found = set()
    for item in payload["data"]:
        if not isinstance(item, dict) or not isinstance(item.get("accountingEntryId"), str):
            continue
        item_job = item.get("exportJobId")
        if item_job is not None and (not isinstance(item_job, str) or item_job.lower() != job_id):
            continue
        entry_id = item["accountingEntryId"].lower()
        if entry_id in asked and entry_id not in refused:
            found.add(entry_id)
    return found


def _mangle_put(mode: str, body: bytes, job_id: str) -> tuple[int, bytes, str]:
    """(status, body, content type) of the broken answer for a PUT the fake answered `body`."""
    payload = json.loads(body)
    data = payload.get("data", [])
    as_json = "application/json"
    if mode == "json_array":
        return 200, json.dumps(data).encode(), as_json
    if mode == "data_missing":
        return 200, json.dumps({"errors": payload.get("errors", [])}).encode(), as_json
    if mode == "data_null":
        return 200, json.dumps({"data": None, "errors": []}).encode(), as_json
    if mode == "data_object":
        first = data[0] if data else {}
        return 200, json.dumps({"data": first, "errors": []}).encode(), as_json
    if mode == "other_job_items":
        moved = [{**item, "exportJobId": OTHER_JOB} for item in data]
        return 200, json.dumps({"data": moved, "errors": []}).encode(), as_json
    if mode == "ids_not_in_request":
        strangers = [
            {**item, "accountingEntryId": STRANGER if n % 2 else item["accountingEntryId"][::-1]}
            for n, item in enumerate(data)
        ]
        return 200, json.dumps({"data": strangers, "errors": []}).encode(), as_json
    if mode == "id_in_data_and_errors":
        errors = [
            {
                "accountingEntryId": item["accountingEntryId"],
                "type": "ACCOUNTING_ENTRY_DOES_NOT_EXIST",
                "message": "and yet it is in data",
            }
            for item in data[::2]
        ]
        return 200, json.dumps({"data": data, "errors": errors}).encode(), as_json
    if mode == "wrong_types":
        broken: list[Any] = [
            7,
            "an item",
            None,
            {"accountingEntryId": 12345, "exportJobId": job_id},
            {"accountingEntryId": None},
            {"accountingEntryId": ["a"], "status": 3},
        ]
        errors_of: Any = [{"accountingEntryId": 5, "type": 1, "message": []}, "error"]
        return 200, json.dumps({"data": broken, "errors": errors_of}).encode(), as_json
    if mode == "no_errors_key":
        return 200, json.dumps({"data": data}).encode(), as_json
    if mode == "uppercase_ids":
        upper = [{**item, "accountingEntryId": item["accountingEntryId"].upper()} for item in data]
        return (
            200,
            json.dumps({"data": upper, "errors": payload.get("errors", [])}).encode(),
            as_json,
        )
    raise AssertionError(f"not a body mode: {mode}")


def _mangle_any(mode: str, status: int, body: bytes) -> tuple[int, bytes, str]:
    """Broken answers that do not depend on the endpoint."""
    as_json = "application/json"
    if mode == "html_page":
        return status, HTML, "text/html"
    if mode == "empty_body":
        return status, b"", as_json
    if mode == "truncated_json":
        return status, body[: max(1, len(body) // 2)], as_json
    if mode == "invalid_utf8":
        return status, b'{"data": "\xff\xfe\xfa"}', as_json
    if mode == "json_array":
        return status, b"[1, 2, 3]", as_json
    if mode == "data_missing":
        return status, b'{"pagination": {}}', as_json
    if mode == "data_null":
        return status, b'{"data": null}', as_json
    if mode == "wrong_types":
        return status, b'{"data": {"id": 5, "status": [], "items": "x"}, "pagination": 3}', as_json
    if mode.startswith("status_"):
        return int(mode.removeprefix("status_")), body, as_json
    raise AssertionError(f"not a mode: {mode}")


class HostileProxy:
    """Forwards to `fake`; the requests of `route` for which `aim(n)` holds (n counts that
    route's requests from 1) get the `mode` answer instead of the fake's."""

    def __init__(self, fake: FakePleo, mode: str, route: str, aim: Callable[[int], bool]) -> None:
        self.fake = fake
        self.mode = mode
        self.route = route
        self.aim = aim
        self.seen: Counter[str] = Counter()
        self.mangled = 0
        self.exchanges: list[Exchange] = []
        self._committed: set[str] = set()  # IDs the fake committed, for `refused_rewrite`
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> HostileProxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in ("authorization", "content-type", "accept")
        }
        route = route_of(request.method, request.path)
        exchange = None
        if route == "put":
            match = _ITEMS.match(request.path)
            assert match is not None
            sent = json.loads(body) if body else []
            exchange = Exchange(
                match.group(1).lower(),
                sent if isinstance(sent, list) else [],
                asyncio.get_running_loop().time(),
            )
            self.exchanges.append(exchange)
        async with self._session.request(
            request.method,
            self.fake.base_url + request.path_qs,
            data=body or None,
            headers=headers,
        ) as upstream:
            status, answer = upstream.status, await upstream.read()
            content_type = upstream.headers.get("Content-Type", "application/json")
            retry_after = upstream.headers.get("Retry-After")
        aimed = False
        if route is not None:
            self.seen[route] += 1
            aimed = route == self.route and self.aim(self.seen[route])
        if route == "put" and self.mode == "refused_rewrite" and status == 200:
            assert exchange is not None
            answer = self._refuse_rewrites(answer, aimed)
            self.mangled += aimed
        elif aimed and self.mode == "connection_reset":
            self.mangled += 1
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        elif aimed and self.mode in ("slow_trickle", "huge_body"):
            self.mangled += 1
            if self.mode == "huge_body":
                answer = _padded(answer)
            return await self._trickle(request, exchange, status, answer, content_type)
        elif aimed and status < 300:
            self.mangled += 1
            if route == "put" and self.mode in _PUT_BODY_MODES:
                assert exchange is not None
                status, answer, content_type = _mangle_put(self.mode, answer, exchange.job_id)
            else:
                status, answer, content_type = _mangle_any(self.mode, status, answer)
        response = web.Response(status=status, body=answer, content_type=content_type.split(";")[0])
        if retry_after is not None:
            response.headers["Retry-After"] = retry_after
        if exchange is not None:
            self._answered(exchange, status, answer)
        return response

    def _refuse_rewrites(self, answer: bytes, aimed: bool) -> bytes:
        """Pleo's optional strictness (docs/pleo-api.md#open-questions): an item already successful
        is refused when written again, even with the same update; an aimed answer lists nothing
        in `data` although the fake committed it all."""
        payload = json.loads(answer)
        data, errors = payload.get("data", []), payload.get("errors", [])
        kept = []
        for item in data:
            entry_id = item["accountingEntryId"].lower()
            if entry_id in self._committed:
                errors.append(
                    {
                        "accountingEntryId": item["accountingEntryId"],
                        "type": "EXPORT_ENTRY_STATUS_UPDATE_FAILED",
                        "message": "Export entry was already exported successfully.",
                    }
                )
            else:
                kept.append(item)
            if item.get("status") == "successful":
                self._committed.add(entry_id)
        return json.dumps({"data": [] if aimed else kept, "errors": errors}).encode()

    def _answered(self, exchange: Exchange, status: int, answer: bytes) -> None:
        asked = {
            str(item.get("accountingEntryId", "")).lower()
            for item in exchange.sent
            if isinstance(item, dict)
        }
        exchange.rightful = rightly_acknowledged(status, answer, exchange.job_id, asked)
        exchange.answered_at = asyncio.get_running_loop().time()

    async def _trickle(
        self,
        request: web.Request,
        exchange: Exchange | None,
        status: int,
        answer: bytes,
        content_type: str,
    ) -> web.StreamResponse:
        """The answer in small pieces with pauses between them (well inside the timeout)."""
        response = web.StreamResponse(status=status)
        response.content_type = content_type.split(";")[0]
        response.content_length = len(answer)
        await response.prepare(request)
        pieces = 12
        step = max(1, len(answer) // pieces + 1)
        for start in range(0, len(answer), step):
            await response.write(answer[start : start + step])
            await asyncio.sleep(0.02 if self.mode == "slow_trickle" else 0)
        await response.write_eof()
        if exchange is not None:
            self._answered(exchange, status, answer)
        return response

    # -- what the client rightly knew ----------------------------------------------------------

    def rightful(self, job_id: str) -> set[str]:
        """Every ID some answer rightly acknowledged to the client, for this job."""
        return {
            entry_id
            for exchange in self.exchanges
            if exchange.job_id == job_id.lower()
            for entry_id in exchange.rightful
        }

    def resent_after_rightful_ack(self, job_id: str) -> dict[str, int]:
        """Per ID, the sends that left after an answer the client got had rightly acknowledged
        the same update (or any successful one) for it."""
        acks: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        resent: Counter[str] = Counter()
        for exchange in sorted(self.exchanges, key=lambda e: e.received_at):
            if exchange.job_id != job_id.lower():
                continue
            for item in exchange.sent:
                entry_id = str(item.get("accountingEntryId", "")).lower()
                if any(
                    at < exchange.received_at
                    and (acked.get("status") == "successful" or acked == item)
                    for at, acked in acks.get(entry_id, ())
                ):
                    resent[entry_id] += 1
            if exchange.answered_at is not None:
                for item in exchange.sent:
                    entry_id = str(item.get("accountingEntryId", "")).lower()
                    if entry_id in exchange.rightful:
                        acks.setdefault(entry_id, []).append((exchange.answered_at, item))
        return dict(resent)


_PUT_BODY_MODES: Final = frozenset(
    {
        "json_array",
        "data_missing",
        "data_null",
        "data_object",
        "other_job_items",
        "ids_not_in_request",
        "id_in_data_and_errors",
        "wrong_types",
        "no_errors_key",
        "uppercase_ids",
    }
)


def _padded(answer: bytes) -> bytes:
    """The same JSON object with a 4 MB field more (or 4 MB of spaces after another body)."""
    try:
        payload = json.loads(answer)
    except ValueError:
        return answer + b" " * 4_000_000
    if isinstance(payload, dict):
        payload["padding"] = "x" * 4_000_000
        return json.dumps(payload).encode()
    return answer + b" " * 4_000_000

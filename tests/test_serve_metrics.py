"""`pleo-export serve --metrics`: `/metrics` in Prometheus's format, parsed with
`prometheus_client`'s own parser, and scraped by a real Prometheus server whose HTTP API then
gives the job's counts (issue 21)."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import parser
from prometheus_client.openmetrics import parser as openmetrics
from test_serve import Served, completed, serving

import prometheus_server
from helpers import wait_until
from pleo_export_async.testing import FakePleo, Faults, FaultSpec

ITEMS = "pleo_export_items_total"
JOBS = "pleo_export_jobs_total"
RETRIES = "pleo_export_retries_total"
HTTP_DURATION = "http_client_request_duration_seconds"


async def scrape(served: Served, accept: str = "") -> tuple[str, str]:
    headers = {"Accept": accept} if accept else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(served.url + "/metrics", headers=headers) as answer,
    ):
        assert answer.status == 200
        return await answer.text(), answer.headers["Content-Type"]


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of `name` in the scrape, by their labels (sorted pairs)."""
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def by_outcome(text: str) -> dict[str, float]:
    outcomes: dict[str, float] = {}
    for labels, value in samples(text, ITEMS).items():
        outcome = dict(labels)["outcome"]
        outcomes[outcome] = outcomes.get(outcome, 0) + value
    return outcomes


def acknowledged_by_pleo(fake: FakePleo, job_id: str) -> tuple[int, int]:
    """From the fake's journal: how many items of the job Pleo acknowledged, and how many it
    refused and never acknowledged."""
    acknowledged: set[str] = set()
    refused: set[str] = set()
    for put in fake.journal.puts(job_id):
        acknowledged |= put.acknowledged_ids
        refused |= set(put.rejected)
    return len(acknowledged), len(refused - acknowledged)


async def prometheus_query(url: str, query: str) -> list[dict[str, Any]]:
    address = f"{url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    async with aiohttp.ClientSession() as session, session.get(address) as answer:
        body = await answer.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def test_metrics_parse_and_count_what_pleo_acknowledged() -> None:
    """After a job whose first PUT gets a 503, `/metrics` parses with prometheus_client's
    parser; its items counter says every item was acknowledged, as the fake's journal does, with
    none rejected; its jobs counter has the one final event, its retries counter the 503, and
    HTTP durations are there by method."""
    async with FakePleo(seed=61, strict=True) as fake:
        job = fake.create_job(items=250, status="pending")
        first_put = 1 + len(fake.journal.requests) + 5  # after the listing and the job's reads
        fake.faults = Faults(server_error=FaultSpec(at={first_put}))
        async with serving(fake, "--metrics", "--poll-interval", "0.2") as served:
            await wait_until(lambda: completed(fake, job.id), 60, what="the job closed")
            text, content_type = await scrape(served)
            assert await served.signal_and_wait() == 0
    assert content_type.startswith("text/plain")
    acknowledged, refused = acknowledged_by_pleo(fake, job.id)
    assert (acknowledged, refused) == (250, 0)
    outcomes = by_outcome(text)
    assert outcomes.get("acknowledged") == acknowledged
    assert outcomes.get("rejected", 0) == 0
    assert sum(samples(text, JOBS).values()) == 1
    retries = sum(samples(text, RETRIES).values())
    assert retries >= 1
    assert retries == sum(1 for entry in fake.journal.requests if entry.status == 503)
    durations = samples(text, HTTP_DURATION + "_count")
    methods = {dict(labels).get("http_request_method") for labels in durations}
    assert {"GET", "PUT", "POST"} <= methods
    assert any("/metrics" in line for line in served.lines)


async def test_an_openmetrics_scraper_gets_openmetrics() -> None:
    """A scraper that asks for OpenMetrics (as Prometheus does) gets it, and it parses."""
    async with FakePleo(seed=62) as fake, serving(fake, "--metrics") as served:
        text, content_type = await scrape(served, "application/openmetrics-text; version=1.0.0")
        assert await served.signal_and_wait() == 0
    assert content_type.startswith("application/openmetrics-text")

    assert list(openmetrics.text_string_to_metric_families(text))  # type: ignore[no-untyped-call]


async def test_a_real_prometheus_scrapes_serve_and_its_api_gives_the_jobs_count(
    prometheus: tuple[str, Path],
) -> None:
    """A Prometheus server scraping a running `serve --metrics` every second: its query API
    returns the items counter equal to the count of items Pleo acknowledged in the job."""
    url, targets = prometheus
    async with FakePleo(seed=63, strict=True) as fake:
        job = fake.create_job(items=300, status="pending")
        async with serving(fake, "--metrics", "--poll-interval", "0.2") as served:
            await wait_until(lambda: completed(fake, job.id), 60, what="the job closed")
            address = served.url.removeprefix("http://")
            prometheus_server.write_targets(targets, [address])
            acknowledged, _ = acknowledged_by_pleo(fake, job.id)
            query = f'sum({ITEMS}{{outcome="acknowledged",instance="{address}"}})'
            seen: list[float] = []

            async def scraped() -> bool:
                result = await prometheus_query(url, query)
                seen[:] = [float(item["value"][1]) for item in result]
                return seen == [float(acknowledged)]

            for _ in range(300):
                if await scraped():
                    break
                await asyncio.sleep(0.2)
            assert seen == [float(acknowledged)], json.dumps(
                await prometheus_query(url, f"{ITEMS}")
            )
            assert await served.signal_and_wait() == 0
    assert acknowledged == 300

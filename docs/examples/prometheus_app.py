"""The library's metrics on /metrics of your own aiohttp app, for Prometheus."""

import asyncio

import aiohttp
from aiohttp import web

# --8<-- [start:metrics]
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from pleo_export_async import (
    ApiKeyAuth,
    ExportItem,
    ItemUpdate,
    PleoExportClient,
)

# The reader hands every OpenTelemetry metric to prometheus_client's registry.
meter_provider = MeterProvider(metric_readers=[PrometheusMetricReader()])


async def metrics(request: web.Request) -> web.Response:
    """Prometheus's text format, or OpenMetrics when the scraper asks for it."""
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = web.Response(body=encode(REGISTRY))
    response.headers["Content-Type"] = content_type
    return response


def connector_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


async def book(item: ExportItem) -> ItemUpdate:
    return ItemUpdate.successful(item.accounting_entry_id, external_id="JE-1")


async def export(base_url: str, api_key: str, job_id: str) -> None:
    auth = ApiKeyAuth(api_key)
    # For this client only; without it, the global meter provider is used.
    async with PleoExportClient(
        base_url, auth=auth, meter_provider=meter_provider
    ) as client:
        await client.process_job(job_id, book)


# --8<-- [end:metrics]
async def main() -> None:
    from pleo_export_async.testing import FakePleo

    runner = web.AppRunner(connector_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with FakePleo(seed=3) as pleo:
            job = pleo.create_job(items=150, status="pending")
            await export(pleo.base_url, pleo.api_key, job.id)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as answer,
        ):
            scraped = await answer.text()
    finally:
        await runner.cleanup()
    for line in scraped.splitlines():
        if line.startswith(
            ("pleo_export_items_total", "pleo_export_jobs_total")
        ):
            print(line.split("{")[0], line.rsplit(" ", 1)[1])


if __name__ == "__main__":
    asyncio.run(main())

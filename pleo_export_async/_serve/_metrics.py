"""`GET /metrics` of `pleo-export serve --metrics`: the library's OpenTelemetry metrics, and the
process's own, in Prometheus's text format (docs/how-to/observe.md).

The library records its metrics once, through the OpenTelemetry API. Here the OpenTelemetry
SDK's `PrometheusMetricReader` (from `opentelemetry-exporter-prometheus`) turns them into
`prometheus_client` collectors, so that there is one instrumentation, not a second one written
for Prometheus. The meter provider is made the process's global one: the handler's own
OpenTelemetry metrics are served as well.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

METRICS_PATH: Final = "/metrics"


class PrometheusMetrics:
    """A meter provider whose metrics `GET /metrics` renders for a Prometheus scrape.

    Raises `ImportError` naming the extra when the OpenTelemetry SDK or its Prometheus
    exporter is not installed."""

    def __init__(self, service_name: str = "pleo-export") -> None:
        try:
            import prometheus_client
            import prometheus_client.exposition
            from opentelemetry import metrics
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.resources import Resource
        except ImportError as missing:
            raise ImportError(
                f"--metrics needs the OpenTelemetry SDK and its Prometheus exporter "
                f"(pip install 'pleo-export-async[serve]'): {missing}"
            ) from None
        self._prometheus = prometheus_client
        self._reader = PrometheusMetricReader()
        self.meter_provider: Any = MeterProvider(
            metric_readers=[self._reader],
            resource=Resource.create({"service.name": service_name}),
        )
        metrics.set_meter_provider(self.meter_provider)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """Every metric, and its content type: OpenMetrics when `accept` (the scraper's Accept
        header) asks for it, else Prometheus's text format."""
        encode, content_type = self._prometheus.exposition.choose_encoder(accept)
        rendered: bytes = encode(self._prometheus.REGISTRY)
        return rendered, content_type

    async def handle(self, request: web.Request) -> web.Response:
        body, content_type = self.render(request.headers.get("Accept", ""))
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    def shutdown(self) -> None:
        self.meter_provider.shutdown()

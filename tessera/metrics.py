"""Prometheus metrics without touching prometheus-client on the hot path.

The gateway and pgserver client loops keep plain ints, dicts and `Histogram` lists that
they update anyway (a dict increment per command, a bisect per read batch); a
`ScrapeCollector` turns them into metric families only when /metrics is scraped. Each
server gets its own `CollectorRegistry` (never the global one), so several servers in one
process (tests) do not collide. `serve_metrics` answers GET /metrics with the tiny trio
HTTP server, in a task of the caller's nursery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from tessera.gcstats import GC_PAUSES
from tessera.histogram import LATENCY_BUCKETS_S, Histogram
from tessera.http import HttpError, Request, Response, serve_http

__all__ = [
    "LATENCY_BUCKETS_S",
    "CounterMetricFamily",
    "GaugeMetricFamily",
    "Histogram",
    "HistogramMetricFamily",
    "Metric",
    "ScrapeCollector",
    "by_command",
    "new_registry",
    "per_command",
    "serve_metrics",
]


def by_command(counts: Mapping[bytes, int]) -> dict[str, int]:
    """Counters kept per command name as sent (`SET`, `set`) merged per lowercase name."""
    merged: dict[str, int] = {}
    for raw, count in counts.items():
        name = raw.decode("utf-8", "replace").lower()
        merged[name] = merged.get(name, 0) + count
    return merged


def per_command(name: str, text: str, counts: Mapping[str, int]) -> CounterMetricFamily:
    """A counter family labelled by command, one sample per command name."""
    family = CounterMetricFamily(name, text, labels=["command"])
    for command, count in sorted(counts.items()):
        family.add_metric([command], count)
    return family


class ScrapeCollector:
    """A registry collector that builds its families by calling `produce` at scrape time."""

    def __init__(self, produce: Callable[[], Iterable[Metric]]) -> None:
        self._produce = produce

    def collect(self) -> Iterable[Metric]:
        return list(self._produce())


def new_registry(*produce: Callable[[], Iterable[Metric]]) -> CollectorRegistry:
    """A registry of this server's own collectors plus the process's CPU, memory, fds and
    cycle-collector pauses."""
    registry = CollectorRegistry(auto_describe=False)
    for function in produce:
        registry.register(ScrapeCollector(function))
    GC_PAUSES.install()
    registry.register(ScrapeCollector(GC_PAUSES.metrics))
    ProcessCollector(registry=registry)
    return registry


async def serve_metrics(
    registry: CollectorRegistry,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve GET /metrics (Prometheus text format) until cancelled; reports the bound port."""

    async def handle(request: Request) -> Response:
        return metrics_response(registry, request)

    await serve_http(handle, host, port, task_status=task_status)


def metrics_response(registry: CollectorRegistry, request: Request) -> Response:
    """The reply to GET /metrics; HttpError for anything else."""
    if request.path != "/metrics":
        raise HttpError(404, f"no such endpoint: {request.path} (try /metrics)")
    if request.method != "GET":
        raise HttpError(405, "GET /metrics only")
    return Response(200, generate_latest(registry), CONTENT_TYPE_LATEST)

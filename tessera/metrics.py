"""Prometheus metrics without touching prometheus-client on the hot path.

The gateway and pgserver client loops keep plain ints, dicts and `Histogram` lists that
they update anyway (a dict increment per command, a bisect per read batch); a
`ScrapeCollector` turns them into metric families only when /metrics is scraped. Each
server gets its own `CollectorRegistry` (never the global one), so several servers in one
process (tests) do not collide. `serve_metrics` answers GET /metrics with the tiny trio
HTTP server, in a task of the caller's nursery.
"""

from __future__ import annotations

from bisect import bisect_left
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
from tessera.http import HttpError, Request, Response, serve_http

# Request latencies: 50 us (a pipelined batch on a pgserver) to 10 s (a held request).
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

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


class Histogram:
    """Samples counted into fixed buckets: `observe` is one bisect and two additions.

    `counts[i]` holds the samples with bounds[i-1] < value <= bounds[i] (Prometheus `le`);
    the last slot those above every bound (+Inf).
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Iterable[float] = LATENCY_BUCKETS_S) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0  # sum of the samples

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, samples <= le) pairs ending with +Inf, as HistogramMetricFamily takes them."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((_le(bound), running))
        out.append(("+Inf", running + self.counts[-1]))
        return out

    def family(
        self, name: str, documentation: str, labels: Mapping[str, str] | None = None
    ) -> HistogramMetricFamily:
        labels = dict(labels or {})
        family = HistogramMetricFamily(name, documentation, labels=list(labels))
        family.add_metric(list(labels.values()), self.cumulative(), self.total)
        return family


def _le(bound: float) -> str:
    return repr(float(bound))


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

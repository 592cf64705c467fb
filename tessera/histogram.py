"""Latency histograms that the hot paths update on every read batch.

Its own module so that it can be compiled with mypyc (tessera/compiled.py): an
interpreted `observe` call per reply cost the pgserver ~1.4 % of its CPU without
pipelining. Turned into a Prometheus family only when /metrics is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping

from prometheus_client.core import HistogramMetricFamily

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

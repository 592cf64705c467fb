"""Pauses of Python's cycle collector, measured in every Tessera process.

A collection runs inside whatever code allocated last, so while it walks the heap the
event loop serves nobody. One such walk over a million keys once stalled every client of
a pgserver for ~100 ms; these numbers (INFO's `gc_*` fields and the `tessera_gc_*`
metrics) let an operator see a pause like that instead of guessing. The cost is two
`perf_counter` calls per collection, nothing per request.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

GENERATIONS = (0, 1, 2)


class GcPauses:
    """Count, total and longest pause of the cycle collector, per generation."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.total_s = [0.0, 0.0, 0.0]
        self.longest_s = [0.0, 0.0, 0.0]
        self._started = 0.0

    def install(self) -> None:
        """Start measuring (idempotent: several servers in one process share it)."""
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        pause = time.perf_counter() - self._started
        self.collections[generation] += 1
        self.total_s[generation] += pause
        if pause > self.longest_s[generation]:
            self.longest_s[generation] = pause

    def info_fields(self) -> list[tuple[str, object]]:
        """INFO fields: full collections and the longest pause of any generation."""
        return [
            ("gc_collections", sum(self.collections)),
            ("gc_full_collections", self.collections[2]),
            ("gc_pause_total_ms", f"{sum(self.total_s) * 1000:.3f}"),
            ("gc_pause_max_ms", f"{max(self.longest_s) * 1000:.3f}"),
        ]

    def metrics(self) -> Iterator[Metric]:
        collections = CounterMetricFamily(
            "tessera_gc_collections",
            "Cycle-collector runs of this process, per generation (2 = full).",
            labels=["generation"],
        )
        total = CounterMetricFamily(
            "tessera_gc_pause_seconds",
            "Time this process spent in the cycle collector (the event loop stands still).",
            labels=["generation"],
        )
        longest = GaugeMetricFamily(
            "tessera_gc_pause_max_seconds",
            "The longest single cycle-collector pause since start, per generation.",
            labels=["generation"],
        )
        for generation in GENERATIONS:
            label = [str(generation)]
            collections.add_metric(label, self.collections[generation])
            total.add_metric(label, self.total_s[generation])
            longest.add_metric(label, self.longest_s[generation])
        yield collections
        yield total
        yield longest


GC_PAUSES = GcPauses()


def freeze_startup_heap(*pinned: dict[Any, Any]) -> None:
    """Hide everything alive now from future collections (`gc.freeze`, as CPython's docs
    suggest for servers), so a full collection walks only what the process made while
    serving: a service's ~40k startup objects (modules, classes, functions), and a
    pgserver's keyspace with its million keys.

    Each `pinned` dict is made tracked just before the freeze, so it is frozen too. A dict
    holding only bytes is untracked; storing the first container in it later would track it
    again, in the youngest generation, and every full collection would then walk all its
    entries. Called once by a service that has finished starting, before it serves.
    Anything frozen that later becomes garbage in a reference cycle is never freed:
    startup objects and keyspace values do not form cycles.
    """
    gc.collect()
    for mapping in pinned:
        sentinel = object()
        mapping[sentinel] = []  # a container value: the dict is tracked from now on
        del mapping[sentinel]
    gc.freeze()

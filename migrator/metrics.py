"""Metrics of running movers, from their progress snapshots at scrape time.

The confmaster leader exposes its in-process movers (labels cluster, job) on its /metrics;
the standalone `migrator --metrics-port` exposes its one mover (no labels).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, get_args

from migrator.mover_state import Phase
from tessera.metrics import GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from migrator.mover import RangeMover

P = "tessera_migrator_"
PHASES: tuple[str, ...] = get_args(Phase)

_GAUGES = {
    "keys_loaded": "Keys of the dump loaded into the target.",
    "bytes_loaded": "Bytes of the dump loaded into the target.",
    "bytes_to_load": "Size of the dump (its estimate until it is written).",
    "load_bytes_per_second": "Measured load rate.",
    "applied_lsn": "Source log position the target has applied up to.",
    "lag_bytes": "Source log bytes not yet applied on the target (absent until known).",
    "lag_records": "Log frames delivered by the tail and not yet applied.",
    "commands_applied": "Commands applied from the source's log tail.",
    "redos": "Times the load was started again (its dump could not be finished).",
}


def collect_movers(
    movers: Iterable[tuple[list[str], RangeMover]], label_names: list[str]
) -> Iterator[Metric]:
    """Families for `movers`, each given with its label values (in `label_names` order)."""
    phase = GaugeMetricFamily(
        P + "phase", "1 for the phase the mover is in.", labels=[*label_names, "phase"]
    )
    gauges = {
        name: GaugeMetricFamily(P + name, text, labels=label_names)
        for name, text in _GAUGES.items()
    }
    for labels, mover in movers:
        progress = mover.progress
        for each in PHASES:
            phase.add_metric([*labels, each], int(progress.phase == each))
        total = progress.dump_bytes if progress.dump_bytes is not None else progress.bytes_estimate
        values: dict[str, float | None] = {
            "keys_loaded": progress.keys_loaded,
            "bytes_loaded": progress.bytes_loaded,
            "bytes_to_load": total,
            "load_bytes_per_second": None
            if progress.load_mb_s is None
            else progress.load_mb_s * 2**20,
            "applied_lsn": progress.applied_lsn,
            "lag_bytes": progress.lag_bytes,
            "lag_records": progress.lag_records,
            "commands_applied": progress.commands_applied,
            "redos": progress.redo_count,
        }
        for name, value in values.items():
            if value is not None:
                gauges[name].add_metric(labels, value)
    yield phase
    yield from gauges.values()

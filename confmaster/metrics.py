"""The confmaster's /metrics (served on its API port): leadership, failovers, migration jobs
and their movers.

Counters live in `ConfmasterMetrics`, which outlives leadership terms; gauges are read at
scrape time from the failover machines and the running jobs of the current term. Every
number is this process's own: after a leader change the new leader's counters start at 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from migrator.metrics import collect_movers
from tessera.layout import MigrationPhase
from tessera.metrics import CounterMetricFamily, GaugeMetricFamily, Histogram, Metric

if TYPE_CHECKING:
    from confmaster.server import Confmaster

P = "tessera_confmaster_"
M = "tessera_migration_"
PHASES: tuple[MigrationPhase, ...] = (
    "prepare",
    "copy",
    "catchup",
    "cutover",
    "committed",
    "cancelling",
    "done",
    "cancelled",
    "failed",
)
# A cutover's block time: a budget of a few seconds at most.
BLOCK_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class ConfmasterMetrics:
    """Counters kept by the leader's drivers (per process, across leadership terms)."""

    leaderships: int = 0
    failovers: dict[tuple[str, int], int] = field(default_factory=dict)
    failover_last_s: dict[tuple[str, int], float] = field(default_factory=dict)
    jobs_ended: dict[str, int] = field(default_factory=dict)  # phase -> jobs
    block_s: dict[str, Histogram] = field(default_factory=dict)  # outcome -> block times

    def failover_done(self, key: tuple[str, int], seconds: float) -> None:
        self.failovers[key] = self.failovers.get(key, 0) + 1
        self.failover_last_s[key] = seconds

    def job_ended(self, phase: str) -> None:
        self.jobs_ended[phase] = self.jobs_ended.get(phase, 0) + 1

    def cutover_block(self, outcome: str, seconds: float) -> None:
        histogram = self.block_s.get(outcome)
        if histogram is None:
            histogram = self.block_s[outcome] = Histogram(BLOCK_BUCKETS_S)
        histogram.observe(seconds)


def collect(confmaster: Confmaster) -> Iterator[Metric]:
    counters = confmaster.metrics
    yield GaugeMetricFamily(
        P + "leader", "1 while this confmaster is the leader.", int(confmaster.is_leader)
    )
    yield GaugeMetricFamily(
        P + "leader_epoch",
        "Leadership epoch of this confmaster (0 unless leading).",
        confmaster.epoch if confmaster.is_leader else 0,
    )
    yield CounterMetricFamily(
        P + "leaderships_total", "Times this confmaster became the leader.", counters.leaderships
    )
    yield from _failover(confmaster)
    yield from _migration(confmaster)


def _failover(confmaster: Confmaster) -> Iterator[Metric]:
    counters = confmaster.metrics
    labels = ["cluster", "pg"]
    failovers = CounterMetricFamily(
        P + "failovers_total",
        "Master failovers (automatic or manual) completed by this confmaster, per PG.",
        labels=labels,
    )
    for (cluster, pg), count in sorted(counters.failovers.items()):
        failovers.add_metric([cluster, str(pg)], count)
    yield failovers
    last = GaugeMetricFamily(
        P + "failover_last_duration_seconds",
        "Last failover of the PG: from the old master's last good heartbeat (or the manual "
        "request) to the new master applying its role.",
        labels=labels,
    )
    for (cluster, pg), seconds in sorted(counters.failover_last_s.items()):
        last.add_metric([cluster, str(pg)], seconds)
    yield last
    driver = confmaster.driver
    if driver is None:
        return
    epoch = GaugeMetricFamily(P + "pg_epoch", "The PG's epoch (leader's view).", labels=labels)
    up = GaugeMetricFamily(
        P + "pgserver_up",
        "1 while the member answers heartbeats (leader's view).",
        labels=[*labels, "pgserver"],
    )
    lsn = GaugeMetricFamily(
        P + "pgserver_log_end_lsn",
        "Member's log end from its last heartbeat (leader's view).",
        labels=[*labels, "pgserver"],
    )
    for (cluster, pg), machine in sorted(driver.machines.items()):
        if machine.pg is None:
            continue
        epoch.add_metric([cluster, str(pg)], machine.pg.epoch)
        for member, view in sorted(machine.views.items()):
            up.add_metric([cluster, str(pg), member], int(machine.alive(member)))
            lsn.add_metric([cluster, str(pg), member], view.lsn)
    yield epoch
    yield up
    yield lsn


def _migration(confmaster: Confmaster) -> Iterator[Metric]:
    counters = confmaster.metrics
    ended = CounterMetricFamily(
        M + "jobs_ended_total",
        "Migration jobs this confmaster saw end, by final phase.",
        labels=["phase"],
    )
    for final, count in sorted(counters.jobs_ended.items()):
        ended.add_metric([final], count)
    yield ended
    for outcome, histogram in sorted(counters.block_s.items()):
        yield histogram.family(
            M + "cutover_block_seconds",
            "Client-visible block time of each cutover attempt (gateways blocked and source "
            "fenced, until the redirect or the rollback).",
            {"outcome": outcome},
        )
    jobs = confmaster.jobs
    if jobs is None:
        return
    labels = ["cluster", "job"]
    phases = GaugeMetricFamily(
        M + "phase", "1 for the phase each running job is in.", labels=[*labels, "phase"]
    )
    gauges = {
        "keys_total": "Keys to move (counted at the start).",
        "keys_copied": "Keys loaded into the target.",
        "bytes_total": "Bytes to move (counted at the start).",
        "bytes_copied": "Bytes loaded into the target.",
        "lag_bytes": "Source log bytes the target has not applied yet.",
        "lag_records": "Log records delivered to the mover and not applied yet.",
        "cutover_attempts": "Cutover attempts so far.",
        "last_block_seconds": "Block time of the job's last cutover attempt.",
    }
    values: dict[str, list[tuple[list[str], float]]] = {name: [] for name in gauges}
    for (cluster, job_id), runner in sorted(jobs.runners.items()):
        job = runner.job
        key = [cluster, job_id]
        for each in PHASES:
            phases.add_metric([*key, each], int(job.phase == each))
        values["keys_total"].append((key, job.keys_total))
        values["keys_copied"].append((key, job.keys_copied))
        values["bytes_total"].append((key, job.bytes_total))
        values["bytes_copied"].append((key, job.bytes_copied))
        values["lag_bytes"].append((key, job.lag_bytes))
        values["lag_records"].append((key, job.lag_records))
        values["cutover_attempts"].append((key, job.attempts))
        if job.block_ms:
            values["last_block_seconds"].append((key, job.block_ms[-1] / 1000))
    yield phases
    for name, text in gauges.items():
        family = GaugeMetricFamily(M + name, text, labels=labels)
        for key, value in values[name]:
            family.add_metric(key, value)
        yield family
    movers = [
        ([cluster, job_id], runner.mover)
        for (cluster, job_id), runner in sorted(jobs.runners.items())
        if runner.mover is not None
    ]
    yield from collect_movers(movers, labels)

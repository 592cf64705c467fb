"""The pgserver's /metrics: built at scrape time from counters the client loop keeps anyway.

Nothing here runs per request; see tessera.metrics and docs/operations.md ("Metrics and
logs") for the list.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tessera.metrics import CounterMetricFamily, GaugeMetricFamily, Metric, per_command

if TYPE_CHECKING:
    from pgserver.server import PgServer

P = "tessera_pgserver_"
ROLES = ("master", "slave", "none")


def collect(server: PgServer) -> Iterator[Metric]:
    yield per_command(
        P + "commands_total",
        "Commands executed for clients, per command (unknown names count as 'unknown').",
        server.command_calls,
    )
    yield per_command(
        P + "command_errors_total",
        "Client commands answered with an error, per command.",
        server.command_errors,
    )
    yield per_command(
        P + "applied_commands_total",
        "Commands applied from the log: replayed at start, or replicated from the master.",
        server.applied_calls,
    )
    yield server.latency.family(
        P + "request_latency_seconds",
        "Per client read batch (not per command): from the read of the requests to the "
        "send of their replies, including the wait for the commit.",
    )
    yield server.commit_latency.family(
        P + "commit_latency_seconds",
        "Per group commit: from the writes being logged to their replies being allowed "
        "out (durable by the fsync policy and acknowledged by the replication quorum).",
    )
    yield GaugeMetricFamily(P + "connections", "Client connections open.", len(server.clients))
    yield CounterMetricFamily(
        P + "connections_received_total", "Connections accepted.", server.connections_received
    )
    yield CounterMetricFamily(
        P + "connections_rejected_total",
        "Connections refused because max_clients was reached.",
        server.rejected_connections,
    )
    yield GaugeMetricFamily(P + "keys", "Keys in the keyspace.", len(server.keyspace))
    yield GaugeMetricFamily(
        P + "fenced_partitions",
        "Partitions fenced here (being moved away, or moved away).",
        len(server.keyspace.fenced),
    )
    yield from _replication(server)
    yield from _log(server)


def _replication(server: PgServer) -> Iterator[Metric]:
    replication = server.replication
    role = GaugeMetricFamily(P + "role", "1 for the role this pgserver has now.", labels=["role"])
    for name in ROLES:
        role.add_metric([name], 1 if replication.role == name else 0)
    yield role
    yield GaugeMetricFamily(P + "epoch", "Replication epoch of its role.", replication.epoch)
    end = server.durability.log.end_lsn
    if replication.role == "master":
        yield GaugeMetricFamily(
            P + "commit_lsn",
            "Log position acknowledged by the replication quorum.",
            replication.commit_lsn(end),
        )
        yield GaugeMetricFamily(
            P + "connected_slaves", "Slaves streaming the log.", len(replication.replicas)
        )
        acked = GaugeMetricFamily(
            P + "slave_acked_lsn",
            "Log position each slave has logged and applied (master's view).",
            labels=["slave"],
        )
        lag = GaugeMetricFamily(
            P + "slave_lag_bytes",
            "Log bytes each slave is behind this master (end LSN minus its acked LSN).",
            labels=["slave"],
        )
        for replica in replication.replicas.values():
            name = replica.member_id or replica.conn.ctx.addr
            acked.add_metric([name], replica.acked_lsn)
            lag.add_metric([name], max(end - replica.acked_lsn, 0))
        yield acked
        yield lag
        yield GaugeMetricFamily(
            P + "held_replies",
            "Client replies waiting for their writes to commit.",
            server.held_replies(),
        )
    elif replication.role == "slave":
        yield GaugeMetricFamily(
            P + "applied_lsn",
            "Log position this slave has applied from its master's stream.",
            replication.slave_applied_lsn,
        )
        yield GaugeMetricFamily(
            P + "master_link_up",
            "1 while the replication stream from the master is up.",
            1 if replication.slave_state == "streaming" else 0,
        )


def _log(server: PgServer) -> Iterator[Metric]:
    durability = server.durability
    log = durability.log
    yield GaugeMetricFamily(P + "log_end_lsn", "Log end (byte offset).", log.end_lsn)
    yield GaugeMetricFamily(P + "log_durable_lsn", "Log fsynced up to here.", log.durable_lsn)
    yield GaugeMetricFamily(P + "log_first_lsn", "Oldest log position kept.", log.first_lsn)
    yield GaugeMetricFamily(
        P + "log_size_bytes", "Log kept on disk (end minus first LSN).", log.size_bytes()
    )
    yield GaugeMetricFamily(P + "log_segments", "Log segment files.", len(log.segments))
    yield GaugeMetricFamily(
        P + "checkpoint_lsn", "LSN of the newest checkpoint.", durability.checkpoint_lsn
    )
    if durability.checkpoint_time:
        yield GaugeMetricFamily(
            P + "checkpoint_age_seconds",
            "Seconds since the newest checkpoint was written (absent: none yet).",
            max(time.time() - durability.checkpoint_time, 0.0),
        )
    yield GaugeMetricFamily(
        P + "checkpoint_in_progress",
        "1 while a checkpoint is being written.",
        int(durability.checkpoint_job is not None),
    )
    yield GaugeMetricFamily(
        P + "checkpoint_last_duration_seconds",
        "How long the last checkpoint took.",
        durability.last_checkpoint_seconds,
    )
    yield GaugeMetricFamily(
        P + "checkpoint_failed",
        "1 if the last checkpoint failed.",
        int(durability.checkpoint_status != "ok"),
    )

"""The gateway's /metrics: built at scrape time from the counters the reactor keeps anyway.

Nothing here runs per request; see tessera.metrics and docs/operations.md ("Metrics and
logs") for the list.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from tessera.metrics import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    by_command,
    per_command,
)

if TYPE_CHECKING:
    from gateway.server import GatewayServer

P = "tessera_gateway_"

# stats key -> (metric name, help)
_STAT_COUNTERS = {
    "connections_received": ("connections_received_total", "Client connections accepted."),
    "rejected_connections": (
        "connections_rejected_total",
        "Client connections refused because max_clients was reached.",
    ),
    "backend_errors": (
        "backend_errors_total",
        "Requests answered 'backend unavailable' (connection refused, lost or timed out).",
    ),
    "held_requests": (
        "held_requests_total",
        "Requests held because their partition was blocked by a migration cutover.",
    ),
    "expired_holds": (
        "held_expired_total",
        "Held requests answered TRYAGAIN because the hold deadline passed.",
    ),
    "moved_replies": (
        "moved_replies_total",
        "TRYAGAIN partition replies from backends (fenced, moving partitions), not forwarded.",
    ),
    "moved_retries": ("moved_retries_total", "Requests sent again after such a reply."),
    "moved_timeouts": (
        "moved_timeouts_total",
        "Clients answered TRYAGAIN because a moving partition's hold deadline passed.",
    ),
    "moved_overflows": (
        "moved_overflows_total",
        "Clients answered TRYAGAIN because too many requests were held.",
    ),
    "map_refreshes": ("map_refreshes_total", "Explicit re-reads of the partition map."),
    "map_refresh_updates": (
        "map_refresh_updates_total",
        "Re-reads of the partition map that found a newer map.",
    ),
}


def collect(server: GatewayServer) -> Iterator[Metric]:
    yield per_command(
        P + "commands_total",
        "Commands received, per command (unknown names count as 'unknown').",
        by_command(server.calls),
    )
    yield per_command(
        P + "command_errors_total",
        "Commands answered with an error (by the gateway or a backend), per command.",
        by_command(server.errors),
    )
    yield server.latency.family(
        P + "request_latency_seconds",
        "Per client read batch (not per command): from the read of the requests to the "
        "send of the last of their replies.",
    )
    yield GaugeMetricFamily(P + "connections", "Client connections open.", len(server.clients))
    for key, (name, text) in _STAT_COUNTERS.items():
        yield CounterMetricFamily(P + name, text, server.stats[key])
    yield CounterMetricFamily(
        P + "commands_processed_total",
        "Commands parsed from clients, including unknown and refused ones.",
        server.stats["commands_processed"],
    )
    yield GaugeMetricFamily(
        P + "held_requests",
        "Requests held now for blocked partitions (a migration cutover).",
        server.blocks.held_count,
    )
    yield GaugeMetricFamily(
        P + "moving_held_requests",
        "Requests held now after a TRYAGAIN partition reply, waiting to be sent again.",
        server.moving.count,
    )
    yield GaugeMetricFamily(
        P + "blocked_jobs",
        "Migration jobs that block partitions here now.",
        len(server.blocks.jobs),
    )
    yield GaugeMetricFamily(
        P + "inflight_requests",
        "Requests forwarded to backends and not answered yet, counted once per partition "
        "they touch.",
        sum(server.inflight),
    )
    yield GaugeMetricFamily(
        P + "backend_connections",
        "Open connections to backends (pgservers).",
        server.backend_connections(),
    )
    yield GaugeMetricFamily(
        P + "map_version", "Version of the partition map in use.", server.map.version
    )

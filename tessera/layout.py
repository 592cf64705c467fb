"""The ZooKeeper layout: paths and JSON payloads (a public interface; docs/zk-layout.md).

Every payload carries "schema" (its format version). Dashboards may read every node; only
the confmaster leader writes, except the gateways' and confmasters' own ephemeral nodes.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tessera.partition import PARTITIONS

SCHEMA = 1
ROOT = "/tessera"


def cluster_path(cluster: str) -> str:
    return f"{ROOT}/clusters/{cluster}"


def map_path(cluster: str) -> str:
    return f"{cluster_path(cluster)}/map"


def route_path(cluster: str) -> str:
    return f"{cluster_path(cluster)}/route"


def pgs_path(cluster: str) -> str:
    return f"{cluster_path(cluster)}/pgs"


def pg_path(cluster: str, pg: int) -> str:
    return f"{pgs_path(cluster)}/{pg}"


def pgservers_path(cluster: str) -> str:
    return f"{cluster_path(cluster)}/pgservers"


def pgserver_path(cluster: str, pgs_id: str) -> str:
    return f"{pgservers_path(cluster)}/{pgs_id}"


def gateways_path(cluster: str) -> str:
    return f"{cluster_path(cluster)}/gateways"


def gateway_path(cluster: str, gw_id: str) -> str:
    return f"{gateways_path(cluster)}/{gw_id}"


def live_gateways_path(cluster: str) -> str:
    return f"{cluster_path(cluster)}/gateways_live"


def migrations_path(cluster: str) -> str:
    return f"{cluster_path(cluster)}/migrations"


def migration_path(cluster: str, job_id: str) -> str:
    return f"{migrations_path(cluster)}/{job_id}"


CONFMASTER = f"{ROOT}/confmaster"
ELECTION = f"{CONFMASTER}/election"
LEADER = f"{CONFMASTER}/leader"


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_: int = Field(default=SCHEMA, alias="schema")

    def to_json(self) -> bytes:
        return json.dumps(
            self.model_dump(by_alias=True), separators=(",", ":"), sort_keys=True
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Any:
        return cls.model_validate_json(raw)


class ClusterMeta(Payload):
    name: str
    partitions: int = PARTITIONS
    created_ms: int


class PartitionMapPayload(Payload):
    """PN -> PG, as compact inclusive ranges [first, last, pg], with a version that only grows."""

    version: int
    ranges: list[tuple[int, int, int]]


class RoutePayload(Payload):
    """What gateways follow: PN ranges -> the current master's address of the owning PG.

    Rewritten by the leader whenever the map or a PG's master changes; `version` only grows.
    """

    version: int
    map_version: int
    ranges: list[tuple[int, int, str]]


class PgPayload(Payload):
    id: int
    members: list[str] = []
    master: str | None = None
    epoch: int = 0
    quorum: int = 0
    min_copies: int = 1


class PgServerPayload(Payload):
    id: str
    pg: int
    host: str
    port: int
    role: Literal["master", "slave", "none"] = "none"
    state: Literal["up", "down", "unknown"] = "unknown"
    last_lsn: int = 0
    heartbeat_ms: int = 0


class GatewayPayload(Payload):
    id: str
    host: str
    port: int
    admin_port: int
    state: Literal["up", "down", "unknown"] = "unknown"
    heartbeat_ms: int = 0


class LeaderPayload(Payload):
    id: str
    api: str
    epoch: int
    since_ms: int


MigrationPhase = Literal[
    "prepare",  # target marks the ranges importing
    "copy",  # dump of the source at L0 loaded into the target
    "catchup",  # source log tail from L0 applied to the target
    "cutover",  # gateways blocked, source fenced, waiting for the target to reach L1
    "committed",  # the new map is written (the commit point): rolling forward
    "done",
    "cancelling",  # rolling back: the target is being cleaned
    "cancelled",
    "failed",  # rolled back after an error or too many cutover attempts
]


class MigrationJobPayload(Payload):
    """`…/migrations/<id>`: one job moving `ranges` from `source_pg` to `target_pg`.

    The phase is written before the confmaster acts on it, and the commit point — the new
    map — is written in the same ZooKeeper transaction as `phase: committed`, so a new
    leader reading this node knows whether to roll back (before) or forward (after).
    """

    id: str
    source_pg: int
    target_pg: int
    ranges: list[tuple[int, int]]
    phase: MigrationPhase = "prepare"
    rate_mb_s: float = 0.0  # 0: unthrottled
    block_budget_ms: int = 3000
    max_attempts: int = 5
    attempts: int = 0  # cutover attempts so far
    block_ms: list[int] = []  # measured client-visible block time of each attempt
    l0: int | None = None  # the dump's LSN on the source
    l1: int | None = None  # the source's log end when fenced (current attempt)
    applied_lsn: int = 0  # source LSN the target has applied up to
    lag_bytes: int = 0
    lag_records: int = 0  # frames delivered by the tail, not yet applied
    keys_total: int = 0
    bytes_total: int = 0
    keys_copied: int = 0
    bytes_copied: int = 0
    mover: dict[str, Any] = {}  # the migrator's resume state
    last_error: str = ""
    created_ms: int = 0
    updated_ms: int = 0
    finished_ms: int = 0

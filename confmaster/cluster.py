"""Cluster metadata changes as pure functions: current state in, ZooKeeper writes out.

The confmaster leader reads a ClusterState from ZooKeeper, asks one of these functions for
the resulting node writes, and applies them in one ZooKeeper transaction fenced by its
leader epoch. Nothing here does I/O, so every rule is unit-tested directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tessera.errors import TesseraError
from tessera.layout import (
    ClusterMeta,
    GatewayPayload,
    MigrationJobPayload,
    PartitionMapPayload,
    Payload,
    PgPayload,
    PgServerPayload,
    RoutePayload,
    cluster_path,
    gateway_path,
    map_path,
    migration_path,
    pg_path,
    pgserver_path,
    route_path,
)
from tessera.partition import PARTITIONS


class ClusterError(TesseraError):
    """An operator request that cannot be applied (unknown cluster, overlapping ranges...)."""


Change = tuple[str, Payload | None]  # node path -> new payload, or None to delete it


@dataclass
class ClusterState:
    meta: ClusterMeta
    map: PartitionMapPayload
    pgs: dict[int, PgPayload] = field(default_factory=dict)
    pgservers: dict[str, PgServerPayload] = field(default_factory=dict)
    gateways: dict[str, GatewayPayload] = field(default_factory=dict)
    route: RoutePayload | None = None

    def apply(self, changes: list[Change]) -> ClusterState:
        """The state after `changes` (used to chain several pure steps)."""
        state = ClusterState(
            self.meta,
            self.map,
            dict(self.pgs),
            dict(self.pgservers),
            dict(self.gateways),
            self.route,
        )
        name = self.meta.name
        for path, payload in changes:
            if path == map_path(name):
                assert isinstance(payload, PartitionMapPayload)
                state.map = payload
            elif path == route_path(name):
                state.route = payload if isinstance(payload, RoutePayload) else None
            elif isinstance(payload, PgPayload) or path.startswith(f"{cluster_path(name)}/pgs/"):
                pg = int(path.rsplit("/", 1)[1])
                _put(state.pgs, pg, payload)
            elif isinstance(payload, PgServerPayload) or "/pgservers/" in path:
                _put(state.pgservers, path.rsplit("/", 1)[1], payload)
            elif isinstance(payload, GatewayPayload) or "/gateways/" in path:
                _put(state.gateways, path.rsplit("/", 1)[1], payload)
        return state


def _put(table: dict, key: object, payload: Payload | None) -> None:  # type: ignore[type-arg]
    if payload is None:
        table.pop(key, None)
    else:
        table[key] = payload


# ---------------------------------------------------------------------- partition ranges


def even_split(pg_ids: list[int], partitions: int = PARTITIONS) -> list[tuple[int, int, int]]:
    """Contiguous, as-equal-as-possible ranges, one per PG, in PG order."""
    if not pg_ids:
        raise ClusterError("a cluster needs at least one partition group")
    ranges = []
    start = 0
    for i, pg in enumerate(sorted(pg_ids)):
        end = (partitions * (i + 1)) // len(pg_ids) - 1
        ranges.append((start, end, pg))
        start = end + 1
    return ranges


def owners(ranges: list[tuple[int, int, int]], partitions: int = PARTITIONS) -> list[int]:
    """pn -> pg; ClusterError unless the ranges cover every partition exactly once."""
    owner = [-1] * partitions
    for first, last, pg in ranges:
        if not 0 <= first <= last < partitions:
            raise ClusterError(f"partition range {first}-{last} is not within 0-{partitions - 1}")
        for pn in range(first, last + 1):
            if owner[pn] != -1:
                raise ClusterError(f"partition {pn} is assigned to both PG {owner[pn]} and PG {pg}")
            owner[pn] = pg
    if -1 in owner:
        raise ClusterError(f"partition {owner.index(-1)} is not assigned to any PG")
    return owner


def compact(owner: list[int]) -> list[tuple[int, int, int]]:
    ranges: list[tuple[int, int, int]] = []
    start = 0
    for pn in range(1, len(owner) + 1):
        if pn == len(owner) or owner[pn] != owner[start]:
            ranges.append((start, pn - 1, owner[start]))
            start = pn
    return ranges


def reassign(
    ranges: list[tuple[int, int, int]], moves: list[tuple[int, int, int]]
) -> list[tuple[int, int, int]]:
    """The map after giving each (first, last) of `moves` to its PG."""
    owner = owners(ranges)
    for first, last, pg in moves:
        for pn in range(first, last + 1):
            owner[pn] = pg
    return compact(owner)


# ---------------------------------------------------------------------- operations


def create_cluster(name: str, pg_count: int, now_ms: int) -> list[Change]:
    if not name or "/" in name or name.startswith("."):
        raise ClusterError(f"bad cluster name {name!r}")
    if not 1 <= pg_count <= 1024:
        raise ClusterError("--pgs must be between 1 and 1024")
    pg_ids = list(range(pg_count))
    changes: list[Change] = [
        (cluster_path(name), ClusterMeta(name=name, created_ms=now_ms)),
        (map_path(name), PartitionMapPayload(version=1, ranges=even_split(pg_ids))),
    ]
    changes += [(pg_path(name, pg), PgPayload(id=pg)) for pg in pg_ids]
    return changes


def add_pg(state: ClusterState, pg: int | None = None) -> list[Change]:
    if pg is None:
        pg = max(state.pgs, default=-1) + 1
    if pg in state.pgs:
        raise ClusterError(f"PG {pg} already exists")
    if pg < 0:
        raise ClusterError("PG ids are 0, 1, 2, ...")
    return [(pg_path(state.meta.name, pg), PgPayload(id=pg))]


def remove_pg(state: ClusterState, pg: int) -> list[Change]:
    if pg not in state.pgs:
        raise ClusterError(f"PG {pg} does not exist")
    if any(owner == pg for _a, _b, owner in state.map.ranges):
        raise ClusterError(f"PG {pg} still owns partitions; migrate them away first")
    if state.pgs[pg].members:
        raise ClusterError(f"PG {pg} still has pgservers; remove them first")
    return [(pg_path(state.meta.name, pg), None)]


def register_pgserver(state: ClusterState, pg: int, host: str, port: int) -> list[Change]:
    """The pgserver's node; the PG's failover machine then makes it a member."""
    if pg not in state.pgs:
        raise ClusterError(f"PG {pg} does not exist")
    pgs_id = f"{host}:{port}"
    if pgs_id in state.pgservers:
        raise ClusterError(
            f"pgserver {pgs_id} is already registered (PG {state.pgservers[pgs_id].pg})"
        )
    return [
        (
            pgserver_path(state.meta.name, pgs_id),
            PgServerPayload(id=pgs_id, pg=pg, host=host, port=port),
        )
    ]


def unregister_pgserver(state: ClusterState, pgs_id: str) -> list[Change]:
    """Drop the node of a pgserver that is no longer a member of its PG."""
    server = state.pgservers.get(pgs_id)
    if server is None:
        raise ClusterError(f"pgserver {pgs_id} is not registered")
    group = state.pgs.get(server.pg)
    if group is not None and pgs_id in group.members:
        raise ClusterError(f"pgserver {pgs_id} is still a member of PG {server.pg}")
    return [(pgserver_path(state.meta.name, pgs_id), None)]


def pg_record_changes(state: ClusterState, pg: PgPayload) -> list[Change]:
    """Writing a PG record: the record, its members' roles, and the route if it changed."""
    if pg.id not in state.pgs:
        raise ClusterError(f"PG {pg.id} does not exist")
    name = state.meta.name
    changes: list[Change] = [(pg_path(name, pg.id), pg)]
    for member in pg.members:
        server = state.pgservers.get(member)
        role = "master" if member == pg.master else "slave"
        if server is not None and server.role != role:
            changes.append((pgserver_path(name, member), server.model_copy(update={"role": role})))
    return changes + route_changes(state.apply(changes))


def add_gateway(state: ClusterState, host: str, port: int, admin_port: int) -> list[Change]:
    gw_id = f"{host}:{port}"
    if gw_id in state.gateways:
        raise ClusterError(f"gateway {gw_id} is already registered")
    return [
        (
            gateway_path(state.meta.name, gw_id),
            GatewayPayload(id=gw_id, host=host, port=port, admin_port=admin_port),
        )
    ]


def remove_gateway(state: ClusterState, gw_id: str) -> list[Change]:
    if gw_id not in state.gateways:
        raise ClusterError(f"gateway {gw_id} is not registered")
    return [(gateway_path(state.meta.name, gw_id), None)]


def set_map(state: ClusterState, ranges: list[tuple[int, int, int]]) -> list[Change]:
    """Replace the whole PN -> PG assignment (no migration: only for empty PGs / setup)."""
    owners(ranges)
    for _a, _b, pg in ranges:
        if pg not in state.pgs:
            raise ClusterError(f"PG {pg} does not exist")
    new_map = PartitionMapPayload(version=state.map.version + 1, ranges=compact(owners(ranges)))
    changes: list[Change] = [(map_path(state.meta.name), new_map)]
    return changes + route_changes(state.apply(changes))


def route_changes(state: ClusterState) -> list[Change]:
    """A new route node when the map or a PG master changed and every PG has a master."""
    ranges: list[tuple[int, int, str]] = []
    for first, last, pg in state.map.ranges:
        group = state.pgs.get(pg)
        if group is None or group.master is None:
            return []
        master = state.pgservers.get(group.master)
        if master is None:
            return []
        ranges.append((first, last, f"{master.host}:{master.port}"))
    current = state.route
    if (
        current is not None
        and current.ranges == ranges
        and current.map_version == state.map.version
    ):
        return []
    version = (current.version if current is not None else 0) + 1
    route = RoutePayload(version=version, map_version=state.map.version, ranges=ranges)
    return [(route_path(state.meta.name), route)]


def mark_pgserver(
    state: ClusterState, pgs_id: str, up: bool, now_ms: int, last_lsn: int | None = None
) -> list[Change]:
    server = state.pgservers.get(pgs_id)
    if server is None:
        return []
    new_state = "up" if up else "down"
    update: dict[str, object] = {"state": new_state}
    if up:
        update["heartbeat_ms"] = now_ms
    if last_lsn is not None:
        update["last_lsn"] = last_lsn
    if server.state == new_state and not up:
        return []
    return [(pgserver_path(state.meta.name, pgs_id), server.model_copy(update=update))]


def mark_gateway(state: ClusterState, gw_id: str, up: bool, now_ms: int) -> list[Change]:
    gateway = state.gateways.get(gw_id)
    if gateway is None:
        return []
    new_state = "up" if up else "down"
    if gateway.state == new_state and not up:
        return []
    update: dict[str, object] = {"state": new_state}
    if up:
        update["heartbeat_ms"] = now_ms
    return [(gateway_path(state.meta.name, gw_id), gateway.model_copy(update=update))]


# ---------------------------------------------------------------------- migrations


def plan_migration(
    state: ClusterState,
    moves: list[tuple[int, int, int]],
    running: list[MigrationJobPayload],
    job_id: Callable[[int], str],
    now_ms: int,
    *,
    rate_mb_s: float = 0.0,
    block_budget_ms: int = 3000,
) -> list[MigrationJobPayload]:
    """Jobs for `moves` ([first, last, target PG]), checked up front: one job per
    (source PG, target PG), since a requested range may span several current owners.

    Refused: ranges outside 0-8191 or overlapping each other, unknown or masterless target
    PGs, partitions the target already owns, partitions in another running job.
    """
    requested: set[int] = set()
    for first, last, target in moves:
        if not 0 <= first <= last < PARTITIONS:
            raise ClusterError(f"range {first}-{last} is not within 0-{PARTITIONS - 1}")
        if target not in state.pgs:
            raise ClusterError(f"PG {target} does not exist")
        if state.pgs[target].master is None:
            raise ClusterError(f"PG {target} has no master; add pgservers first")
        span = set(range(first, last + 1))
        if span & requested:
            raise ClusterError(f"range {first}-{last} overlaps another requested range")
        requested |= span
    busy: dict[int, str] = {}
    for job in running:
        for first, last in job.ranges:
            for pn in range(first, last + 1):
                busy[pn] = job.id
    owner = owners(state.map.ranges)
    groups: dict[tuple[int, int], list[int]] = {}
    for first, last, target in moves:
        for pn in range(first, last + 1):
            if owner[pn] == target:
                raise ClusterError(f"partition {pn} already belongs to PG {target}")
            if pn in busy:
                raise ClusterError(f"partition {pn} is in running job {busy[pn]}")
            groups.setdefault((owner[pn], target), []).append(pn)
    jobs = []
    for n, ((source, target), pns) in enumerate(sorted(groups.items())):
        ranges = runs_of(pns)
        jobs.append(
            MigrationJobPayload(
                id=job_id(n),
                source_pg=source,
                target_pg=target,
                ranges=ranges,
                rate_mb_s=rate_mb_s,
                block_budget_ms=block_budget_ms,
                created_ms=now_ms,
                updated_ms=now_ms,
            )
        )
    return jobs


def commit_migration(state: ClusterState, job: MigrationJobPayload) -> list[Change]:
    """The commit point of a job: its ranges go to the target in a new map version and
    route, written together with the job record (phase committed).

    Refused unless every partition still belongs to the source (or, repeated, already to
    the target).
    """
    owner = owners(state.map.ranges)
    for first, last in job.ranges:
        for pn in range(first, last + 1):
            if owner[pn] not in (job.source_pg, job.target_pg):
                raise ClusterError(
                    f"partition {pn} belongs to PG {owner[pn]}, not to source PG {job.source_pg}"
                )
    moves = [(first, last, job.target_pg) for first, last in job.ranges]
    new_map = PartitionMapPayload(
        version=state.map.version + 1, ranges=reassign(state.map.ranges, moves)
    )
    changes: list[Change] = [(map_path(state.meta.name), new_map)]
    changes += route_changes(state.apply(changes))
    return [*changes, (migration_path(state.meta.name, job.id), job)]


def runs_of(pns: list[int]) -> list[tuple[int, int]]:
    """Partition numbers as sorted inclusive (first, last) runs."""
    runs: list[tuple[int, int]] = []
    for pn in sorted(pns):
        if runs and runs[-1][1] == pn - 1:
            runs[-1] = (runs[-1][0], pn)
        else:
            runs.append((pn, pn))
    return runs

"""Cluster metadata rules of the confmaster, without ZooKeeper."""

from __future__ import annotations

import pytest

from confmaster.cluster import (
    ClusterError,
    ClusterState,
    add_gateway,
    add_pg,
    create_cluster,
    even_split,
    owners,
    pg_record_changes,
    plan_migration,
    reassign,
    register_pgserver,
    remove_pg,
    set_map,
    unregister_pgserver,
)
from tessera.layout import ClusterMeta, PartitionMapPayload, PgPayload, RoutePayload


def new_cluster(pgs: int = 2) -> ClusterState:
    changes = create_cluster("default", pgs, now_ms=1)
    meta = changes[0][1]
    mapping = changes[1][1]
    assert isinstance(meta, ClusterMeta)
    assert isinstance(mapping, PartitionMapPayload)
    state = ClusterState(meta, mapping)
    return state.apply(changes[2:])


def test_even_split_covers_everything_once() -> None:
    for count in (1, 2, 3, 7, 8192):
        ranges = even_split(list(range(count)))
        owner = owners(ranges)
        sizes = [last - first + 1 for first, last, _pg in ranges]
        assert max(sizes) - min(sizes) <= 1
        assert set(owner) == set(range(count))
    assert even_split([0, 1]) == [(0, 4095, 0), (4096, 8191, 1)]


def test_owners_rejects_gaps_and_overlaps() -> None:
    with pytest.raises(ClusterError, match="not assigned"):
        owners([(0, 100, 0)])
    with pytest.raises(ClusterError, match="both PG 0 and PG 1"):
        owners([(0, 4096, 0), (4096, 8191, 1)])
    with pytest.raises(ClusterError, match="not within"):
        owners([(0, 8192, 0)])


def join(state: ClusterState, pg: int, host: str, port: int) -> ClusterState:
    """Register a pgserver and make it a member, as the failover machine does: the first
    member of a PG becomes its master at a new epoch."""
    state = state.apply(register_pgserver(state, pg, host, port))
    group = state.pgs[pg]
    pgs_id = f"{host}:{port}"
    update: dict[str, object] = {"members": [*group.members, pgs_id]}
    if group.master is None:
        update.update(master=pgs_id, epoch=group.epoch + 1)
    return state.apply(pg_record_changes(state, group.model_copy(update=update)))


def test_route_appears_once_every_pg_has_a_master() -> None:
    state = new_cluster()
    state = state.apply(register_pgserver(state, 0, "127.0.0.1", 7000))
    assert state.pgs[0].members == []  # registered, not yet a member
    assert state.pgservers["127.0.0.1:7000"].role == "none"
    state = join(new_cluster(), 0, "127.0.0.1", 7000)
    assert state.pgs[0].master == "127.0.0.1:7000"
    assert state.pgservers["127.0.0.1:7000"].role == "master"
    assert state.route is None  # PG 1 has no master yet
    state = join(state, 1, "127.0.0.1", 7001)
    assert isinstance(state.route, RoutePayload)
    assert state.route.ranges == [(0, 4095, "127.0.0.1:7000"), (4096, 8191, "127.0.0.1:7001")]
    assert state.route.version == 1
    state = join(state, 1, "127.0.0.1", 7002)
    assert state.pgs[1].members == ["127.0.0.1:7001", "127.0.0.1:7002"]
    assert state.pgservers["127.0.0.1:7002"].role == "slave"
    assert isinstance(state.route, RoutePayload)
    assert state.route.version == 1  # a slave does not change routing
    failover = state.pgs[1].model_copy(update={"master": "127.0.0.1:7002", "epoch": 2})
    state = state.apply(pg_record_changes(state, failover))
    assert state.route is not None
    assert state.route.version == 2
    assert state.route.ranges[1] == (4096, 8191, "127.0.0.1:7002")
    assert state.pgservers["127.0.0.1:7001"].role == "slave"


def test_map_changes_bump_versions_and_route() -> None:
    state = join(join(new_cluster(), 0, "h", 1), 1, "h", 2)
    assert state.route is not None
    state = state.apply(set_map(state, reassign(state.map.ranges, [(0, 2047, 1)])))
    assert state.map.version == 2
    assert state.route is not None
    assert state.map.ranges == [(0, 2047, 1), (2048, 4095, 0), (4096, 8191, 1)]
    assert state.route.version == 2
    assert state.route.ranges[0] == (0, 2047, "h:2")


def test_removals_are_guarded() -> None:
    state = new_cluster()
    state = state.apply(add_pg(state))
    assert set(state.pgs) == {0, 1, 2}
    with pytest.raises(ClusterError, match="still owns partitions"):
        remove_pg(state, 0)
    state = state.apply(remove_pg(state, 2))
    assert set(state.pgs) == {0, 1}
    state = join(join(state, 0, "h", 1), 0, "h", 2)
    with pytest.raises(ClusterError, match="still a member"):
        unregister_pgserver(state, "h:2")
    unowned = state.apply(set_map(state, [(0, 8191, 1)]))
    with pytest.raises(ClusterError, match="still has pgservers"):
        remove_pg(unowned, 0)
    left = state.pgs[0].model_copy(update={"members": ["h:1"]})
    state = state.apply(pg_record_changes(state, left))
    state = state.apply(unregister_pgserver(state, "h:2"))
    assert "h:2" not in state.pgservers
    with pytest.raises(ClusterError, match="already registered"):
        register_pgserver(state, 1, "h", 1)
    with pytest.raises(ClusterError, match="does not exist"):
        register_pgserver(state, 9, "h", 3)


def test_gateways_and_bad_names() -> None:
    state = new_cluster()
    state = state.apply(add_gateway(state, "127.0.0.1", 6000, 6001))
    assert state.gateways["127.0.0.1:6000"].admin_port == 6001
    with pytest.raises(ClusterError):
        add_gateway(state, "127.0.0.1", 6000, 6001)
    with pytest.raises(ClusterError, match="bad cluster name"):
        create_cluster("a/b", 2, 0)
    with pytest.raises(ClusterError):
        create_cluster("x", 0, 0)
    assert (
        PgPayload(id=1).to_json()
        == b'{"epoch":0,"id":1,"master":null,"members":[],"min_copies":1,"quorum":0,"schema":1}'
    )


def test_migration_plans_are_checked_up_front() -> None:
    state = join(join(join(new_cluster(3), 0, "h", 1), 1, "h", 2), 2, "h", 3)
    assert state.map.ranges == [(0, 2729, 0), (2730, 5460, 1), (5461, 8191, 2)]

    def ids(n: int) -> str:
        return f"job-{n}"

    jobs = plan_migration(state, [(2000, 3000, 2), (100, 199, 1)], [], ids, now_ms=5)
    summary = [(j.id, j.source_pg, j.target_pg, j.ranges) for j in jobs]
    assert summary == [
        ("job-0", 0, 1, [(100, 199)]),
        ("job-1", 0, 2, [(2000, 2729)]),  # one requested range, two current owners
        ("job-2", 1, 2, [(2730, 3000)]),
    ]
    assert all(j.phase == "prepare" and j.created_ms == 5 for j in jobs)
    refusals = [
        ([(0, 8192, 1)], [], "not within 0-8191"),
        ([(0, 10, 7)], [], "PG 7 does not exist"),
        ([(0, 10, 1), (5, 20, 2)], [], "overlaps"),
        ([(2700, 2800, 1)], [], "partition 2730 already belongs to PG 1"),
        ([(150, 160, 2)], [jobs[0]], "partition 150 is in running job job-0"),
    ]
    for moves, running, message in refusals:
        with pytest.raises(ClusterError, match=message):
            plan_migration(state, moves, running, ids, now_ms=5)
    masterless = state.apply(add_pg(state))
    with pytest.raises(ClusterError, match="PG 3 has no master"):
        plan_migration(masterless, [(0, 1, 3)], [], ids, now_ms=5)

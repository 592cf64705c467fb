"""A few rounds of the chaos suite on every `make test`.

`TESSERA_CHAOS_ROUNDS` sets the rounds (default 4, under a minute on 2 cores),
`TESSERA_CHAOS_SEED` replays a run; `make chaos ROUNDS=N SEED=S` is the long version.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tessera.partition import pn
from tessera.zkserver import ZooKeeperServer
from tests.chaos.cluster import ChaosCluster
from tests.chaos.history import encode
from tests.chaos.load import Load, RawClient
from tests.chaos.runner import ChaosConfig, run_chaos, verify
from tests.cluster_fixtures import wait_until
from tests.zk_fixtures import zk_chroot, zk_server

__all__ = ["zk_chroot", "zk_server"]


@pytest.fixture
def cluster(zk_server: ZooKeeperServer, zk_chroot: str, tmp_path: Path) -> Iterator[ChaosCluster]:
    local = ChaosCluster(zk_server, zk_chroot, tmp_path)
    try:
        yield local.start()
    finally:
        local.stop()
        if not zk_server.running:  # a round was restarting it when it failed
            zk_server.start()


def test_random_faults_lose_no_acknowledged_write(cluster: ChaosCluster) -> None:
    rounds = int(os.environ.get("TESSERA_CHAOS_ROUNDS", "4"))
    seed = int(os.environ.get("TESSERA_CHAOS_SEED", str(random.randrange(1 << 30))))
    result = run_chaos(cluster, ChaosConfig(rounds=rounds, seed=seed, rate_per_writer=50.0))
    print(result.report())
    assert result.ok, f"process logs in {cluster.tmp_path}\n{result.report()}"
    assert len(result.rounds) == rounds
    assert result.totals.acks > 0


def test_the_verification_finds_lost_duplicated_and_doubly_owned_writes(
    cluster: ChaosCluster,
) -> None:
    """The checks are not vacuous: damage done behind the load's back is reported."""
    load = Load(cluster.gateway_ports, writers=2, keys_per_writer=4, rate_per_writer=200, seed=7)
    load.start()
    wait_until(lambda: min(h.acked for h in load.histories()) >= 3, 30, "3 writes per key")
    load.stop()
    histories = load.histories()
    assert verify(cluster, histories, settle_s=1) == []
    string = next(h for h in histories if h.kind == "string")
    listed = next(h for h in histories if h.kind == "list")
    older = encode(string.acked - 1, *string.sent[string.acked - 2])
    last = encode(listed.acked, *listed.sent[listed.acked - 1])
    owner = {pg: cluster.pg(pg)["master"] for pg in range(cluster.pgs)}
    stray = next(h for h in histories if h is not string and h.kind == "string")
    owned_by = next(pg for a, b, pg in cluster.owner_map() if a <= pn(stray.key.encode()) <= b)
    with RawClient(cluster.gateway_ports[0], 5) as gateway:
        assert gateway.call("SET", string.key, older) == b"OK"  # a resurrected older value
        assert gateway.call("RPUSH", listed.key, last) == listed.acked + 1  # a duplicate
    with RawClient(cluster.members[owner[1 - owned_by]].port, 5) as other:
        assert other.call("SET", stray.key, "stray") == b"OK"  # behind the gateway's back
    problems = "\n".join(verify(cluster, histories, settle_s=1))
    assert f"{string.key}: LOST — holds write {string.acked - 1}" in problems
    assert f"{listed.key}: DUPLICATE or REORDERED" in problems
    assert f"TWO OWNERS: {stray.key} is readable on PG {1 - owned_by}" in problems
    assert f"PG {1 - owned_by} keeps keys of partitions it does not own" in problems

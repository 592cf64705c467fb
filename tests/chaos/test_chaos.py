"""A few rounds of the chaos suite on every `make test`.

`TESSERA_CHAOS_ROUNDS` sets the rounds (default 3, about a minute on 2 cores),
`TESSERA_CHAOS_SEED` replays a run; `make chaos ROUNDS=N SEED=S` is the long version.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tessera.zkserver import ZooKeeperServer
from tests.chaos.cluster import ChaosCluster
from tests.chaos.runner import ChaosConfig, run_chaos
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
    rounds = int(os.environ.get("TESSERA_CHAOS_ROUNDS", "3"))
    seed = int(os.environ.get("TESSERA_CHAOS_SEED", str(random.randrange(1 << 30))))
    result = run_chaos(cluster, ChaosConfig(rounds=rounds, seed=seed, rate_per_writer=50.0))
    print(result.report())
    assert result.ok, f"process logs in {cluster.tmp_path}\n{result.report()}"
    assert len(result.rounds) == rounds
    assert result.totals.acks > 0

"""The confmaster leader rides out ZooKeeper connection drops (a real ZooKeeper, in-process
confmaster).

Found by the chaos suite (restart-zookeeper): a heartbeat round whose first read was in
flight when the connection dropped raised ConnectionLossError out of the leader's nursery,
and the whole confmaster process exited.
"""

from __future__ import annotations

import trio

from confmaster.server import Confmaster, ConfmasterConfig
from tessera.zkserver import ZooKeeperServer
from tests.zk_fixtures import zk_chroot, zk_server

__all__ = ["zk_chroot", "zk_server"]


async def wait_leader(server: Confmaster, timeout_s: float = 30) -> None:
    for _ in range(int(timeout_s / 0.02)):  # `is_leader` is a plain attribute: poll it
        if server.is_leader:
            return
        await trio.sleep(0.02)
    raise AssertionError(f"no leadership after {timeout_s}s")


async def test_the_leader_survives_connection_drops(
    zk_server: ZooKeeperServer, zk_chroot: str
) -> None:
    if not zk_server.running:
        zk_server.start()
    config = ConfmasterConfig(
        zk=zk_server.address, zk_chroot=zk_chroot, port=0, heartbeat_interval_ms=10
    )
    server = Confmaster(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        await wait_leader(server)
        for _ in range(40):  # heartbeats read ZooKeeper every 10 ms: some drops hit one
            await server.zk.drop_connection()
            await trio.sleep(0.05)
        await wait_leader(server)
        assert await server.clusters() == []
        nursery.cancel_scope.cancel()

"""Real-ZooKeeper fixtures: one private server per test session, a fresh chroot per test.

Use with `from tests.zk_fixtures import zk, zk_chroot, zk_factory, zk_server` (conftest.py is
shared and stays untouched). A fresh chroot isolates tests without restarting ZooKeeper, which
is what makes a real server cheap enough for every test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from tessera.zk import ZkClient
from tessera.zkserver import ZooKeeperServer
from tests.procs import free_port

__all__ = ["ZkFactory", "zk", "zk_chroot", "zk_factory", "zk_server"]

ZkFactory = Callable[..., Awaitable[ZkClient]]


@pytest.fixture(scope="session")
def zk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    """A standalone ZooKeeper on a free port; tests may stop, kill or restart it."""
    server = ZooKeeperServer(tmp_path_factory.mktemp("zookeeper"), port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def zk_chroot() -> str:
    return f"/test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def zk_factory(zk_server: ZooKeeperServer, zk_chroot: str) -> AsyncIterator[ZkFactory]:
    """Make more started clients (separate sessions) on the test's chroot; all are stopped
    afterwards."""
    if not zk_server.running:  # a previous test killed it
        zk_server.start()
    clients: list[ZkClient] = []

    async def make(timeout_s: float = 10.0) -> ZkClient:
        client = ZkClient(zk_server.address, zk_chroot, timeout_s=timeout_s)
        await client.start()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.stop()


@pytest.fixture
async def zk(zk_factory: ZkFactory) -> ZkClient:
    """A started client on the test's own chroot."""
    return await zk_factory()

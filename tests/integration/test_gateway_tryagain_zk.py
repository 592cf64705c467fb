"""A ZooKeeper-following gateway meets a fenced source: the held request ends on the new owner.

Real ZooKeeper, confmaster, two pgservers and a gateway process. The test plays the
migrator: it fences the partition on the source, copies the key to the target by hand and
moves the partition in the map (PUT /clusters/default/map); it never sends BLOCK/REDIRECT,
so the gateway learns of the move only from the refusal and from ZooKeeper.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import trio

from gateway.config import GatewayConfig
from gateway.routing import PartitionMap
from gateway.server import GatewayServer
from gateway.zk_source import ZkMapSource
from tessera.layout import RoutePayload, live_gateways_path, route_path
from tessera.partition import pn
from tessera.zk import ZkClient
from tessera.zkserver import ZooKeeperServer
from tests.integration.test_confmaster import cli, confmaster
from tests.integration.test_gateway_tryagain import Raw
from tests.procs import REPO, free_port, start_pgserver, stop, wait_for_port
from tests.zk_fixtures import zk, zk_chroot, zk_factory, zk_server

__all__ = ["confmaster", "zk", "zk_chroot", "zk_factory", "zk_server"]


async def eventually(condition: Callable[[], bool], timeout_s: float = 5) -> None:
    with trio.fail_after(timeout_s):
        while True:
            if condition():
                return
            await trio.sleep(0.005)


async def test_a_refresh_request_re_reads_the_route_node_without_any_watch(
    zk: ZkClient, zk_server: ZooKeeperServer, zk_chroot: str
) -> None:
    """The explicit re-read alone (no watch registered at all) brings a newer map in; an
    older or equal one is left alone; a burst of requests is coalesced into few reads."""
    path = route_path("default")
    newer = RoutePayload(version=3, map_version=1, ranges=[(0, 8191, "127.0.0.1:7001")])
    await zk.create(path, newer.to_json(), makepath=True)
    old_map = PartitionMap.from_assignments([("0-8191", "127.0.0.1:7000")], version=2)
    gateway = GatewayServer(GatewayConfig(), old_map)
    source = ZkMapSource(zk_server.address, zk_chroot, "default")
    await source.zk.start()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(source._refresher, gateway)
            for _ in range(20):
                source.request_refresh()
            await eventually(lambda: gateway.map.version == 3)
            assert gateway.map.backend_of(0).port == 7001
            older = RoutePayload(version=1, map_version=1, ranges=[(0, 8191, "127.0.0.1:7000")])
            await zk.set(path, older.to_json())
            await trio.sleep(0.1)
            source.request_refresh()
            await eventually(lambda: gateway.stats["map_refreshes"] == 2)
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
    finally:
        await source.close()
    assert gateway.map.version == 3
    assert gateway.stats["map_refreshes"] == 2  # 20 requests at once: one read
    assert gateway.stats["map_refresh_updates"] == 1


def test_held_request_completes_on_the_new_owner_after_the_map_moves(
    confmaster: int, zk_server: ZooKeeperServer, zk_chroot: str, tmp_path: Path
) -> None:
    pg_a, port_a = start_pgserver(tmp_path / "a")
    pg_b, port_b = start_pgserver(tmp_path / "b")
    gw_port = free_port()
    gateway = None
    raw = None
    try:
        cli(confmaster, "cluster", "create", "default", "--pgs", "2")
        cli(confmaster, "pgs", "add", "--pg", "0", f"127.0.0.1:{port_a}")
        cli(confmaster, "pgs", "add", "--pg", "1", f"127.0.0.1:{port_b}")
        gateway = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "--port",
                str(gw_port),
                "--admin-port",
                "0",
                "--zk",
                zk_server.address,
                "--zk-chroot",
                zk_chroot,
                "--log-level",
                "warning",
            ],
            cwd=REPO,
        )
        wait_for_port(gw_port, gateway)
        key = next(f"k{i}" for i in range(10_000) if pn(f"k{i}".encode()) < 4096)
        key_pn = pn(key.encode())
        client = redis.Redis(port=gw_port)
        source, target = redis.Redis(port=port_a), redis.Redis(port=port_b)
        assert client.set(key, "before")
        assert source.get(key) == b"before"

        source.execute_command("TSR.FENCE", "ADD", str(key_pn))  # type: ignore[no-untyped-call]
        target.set(key, "before")  # the migrator's copy
        raw = Raw(gw_port)
        raw.send(("GET", key), ("SET", key, "after"), ("GET", key))
        assert raw.nothing_within(0.5)
        stats = client.info("stats")
        assert stats["moved_replies"] >= 1
        assert stats["map_refreshes"] >= 1  # the route node was read again on the refusal

        body = json.dumps({"ranges": [[0, 8191, 1]]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{confmaster}/clusters/default/map", data=body, method="PUT"
        )
        moved = time.monotonic()
        urllib.request.urlopen(request, timeout=10).read()
        assert raw.replies(3, timeout=5) == [b"before", b"OK", b"after"]
        assert time.monotonic() - moved < 2.0
        assert target.get(key) == b"after"
        source.execute_command("TSR.FENCE", "DEL", str(key_pn))  # type: ignore[no-untyped-call]
        assert source.get(key) == b"before"  # the old owner got no write after the fence
        stats = client.info()
        assert stats["moving_held_requests"] == 0
        assert stats["moved_timeouts"] == 0
        assert stats["moved_retries"] >= 1
    finally:
        if raw is not None:
            raw.close()
        if gateway is not None:
            stop(gateway)
        stop(pg_a)
        stop(pg_b)


async def test_a_restarted_gateway_takes_over_the_registration_its_old_self_left(
    zk_factory: Callable[..., Any], zk_server: ZooKeeperServer, zk_chroot: str
) -> None:
    """Found by the chaos suite: a gateway killed and restarted on the same port found its
    old live node (old admin port, the dead session not yet expired), took it for its own,
    and was unregistered for good when that session expired: migrations stopped BLOCKing it."""
    gateway = GatewayServer(
        GatewayConfig(), PartitionMap.from_assignments([("0-8191", "127.0.0.1:7000")], version=1)
    )
    gateway.port, gateway.admin_port = 6100, 6101
    path = f"{live_gateways_path('default')}/{gateway.config.bind}:{gateway.port}"
    old_self = await zk_factory()
    await old_self.create(
        path, b'{"admin_port": 5999, "pid_port": 6100}', ephemeral=True, makepath=True
    )
    source = ZkMapSource(zk_server.address, zk_chroot, "default")
    await source.zk.start()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(source._register, gateway)
            await trio.sleep(0.5)
            _data, stat = await source.zk.get(path)
            assert stat.ephemeral_owner == old_self.session_id  # not stolen from the living
            await old_self.stop()  # the old session ends, as its expiry would
            with trio.fail_after(10):
                while True:
                    stat_now = await source.zk.exists(path)
                    if stat_now is not None and stat_now.ephemeral_owner == source.zk.session_id:
                        break
                    await trio.sleep(0.05)
            assert json.loads((await source.zk.get(path))[0])["admin_port"] == 6101
            nursery.cancel_scope.cancel()
    finally:
        await source.close()


def test_every_worker_of_a_gateway_registers_with_its_own_admin_port(
    confmaster: int, zk_server: ZooKeeperServer, zk_chroot: str, tmp_path: Path
) -> None:
    """A --workers gateway shares its client port, not its admin port: the cutover has to
    block each worker, so each must be found in gateways_live."""
    pg, pg_port = start_pgserver(tmp_path / "pg")
    gw_port = free_port()
    gateway = None
    try:
        cli(confmaster, "cluster", "create", "default", "--pgs", "1")
        cli(confmaster, "pgs", "add", "--pg", "0", f"127.0.0.1:{pg_port}")
        gateway = subprocess.Popen(
            [
                *(sys.executable, "-m", "gateway", "--port", str(gw_port)),
                *("--admin-port", "0", "--workers", "2", "--log-level", "warning"),
                *("--zk", zk_server.address, "--zk-chroot", zk_chroot),
            ],
            cwd=REPO,
        )
        wait_for_port(gw_port, gateway)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{confmaster}/clusters/default", timeout=10
        ) as reply:
            assert reply.status == 200

        async def registered() -> dict[str, int]:
            zk = ZkClient(zk_server.address, chroot=zk_chroot)
            await zk.start()
            try:
                live = live_gateways_path("default")
                with trio.fail_after(20):
                    while True:
                        children = await zk.children(live) if await zk.exists(live) else []
                        if len(children) >= 2:
                            break
                        await trio.sleep(0.05)
                return {
                    child: json.loads((await zk.get(f"{live}/{child}"))[0])["admin_port"]
                    for child in children
                }
            finally:
                await zk.stop()

        found = trio.run(registered)
        assert set(found) == {f"127.0.0.1:{gw_port}", f"127.0.0.1:{gw_port}#1"}
        assert len(set(found.values())) == 2  # two admin ports, one per worker
        assert redis.Redis(port=gw_port).set("k", "v")
    finally:
        if gateway is not None:
            stop(gateway)
        stop(pg)

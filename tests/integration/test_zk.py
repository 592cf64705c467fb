"""The ZooKeeper foundation against a real ZooKeeper: the server wrapper, the trio adapter's
CRUD, transactions, watches, connection states, session expiry and leader election."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import trio

from tessera import zk as zkmod
from tessera import zkserver
from tessera.errors import ConfigError, CoordinationError
from tessera.zk import (
    BadVersionError,
    CheckOp,
    CreateOp,
    DeleteOp,
    LeadershipLostError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    SetOp,
    TransactionError,
    ZkClient,
    ZkTimeoutError,
)
from tessera.zkserver import ZooKeeperServer, four_letter, ruok
from tests.procs import free_port
from tests.zk_fixtures import ZkFactory, zk, zk_chroot, zk_factory, zk_server

__all__ = ["zk", "zk_chroot", "zk_factory", "zk_server"]  # fixtures, used by name

T = TypeVar("T")

QUICK_S = 1.0  # a watch or state change must arrive this fast


async def next_state(states: trio.MemoryReceiveChannel[str]) -> str:
    # Generous: under load a reconnect into a restarting ZooKeeper 3.8.0 can take one stuck
    # handshake (a third of the session timeout, see ZkClient._new_kazoo) before it succeeds.
    with trio.fail_after(10):
        return await states.receive()


async def first(channel: trio.MemoryReceiveChannel[T]) -> T:
    with trio.fail_after(QUICK_S):
        return await channel.receive()


async def until(channel: trio.MemoryReceiveChannel[T], accept: Callable[[T], bool]) -> None:
    """Receive until `accept(value)`, within QUICK_S."""
    with trio.fail_after(QUICK_S):
        while not accept(await channel.receive()):
            pass


# --- the server -----------------------------------------------------------------------------


def test_server_start_ruok_restart_stop(tmp_path: Path) -> None:
    server = ZooKeeperServer(tmp_path / "zk", port=free_port())
    assert not ruok(server.host, server.port, 0.2)
    with server:
        assert ruok(server.host, server.port)
        assert b"Mode: standalone" in (four_letter(server.host, server.port, "srvr") or b"")
        first_pid = server.pid
        assert first_pid is not None
        assert server.address == f"127.0.0.1:{server.port}"
        assert "clientPort" in (tmp_path / "zk/conf/zoo.cfg").read_text()

        with pytest.raises(ConfigError, match="already in use"):
            ZooKeeperServer(tmp_path / "other", port=server.port).start()

        server.restart()
        assert server.pid not in (None, first_pid)
        assert ruok(server.host, server.port)
    assert server.pid is None
    assert not ruok(server.host, server.port, 0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(first_pid, 0)


def test_server_kill_is_sigkill(tmp_path: Path) -> None:
    server = ZooKeeperServer(tmp_path, port=free_port())
    server.start()
    server.kill()
    assert server.pid is None
    assert not ruok(server.host, server.port, 0.2)
    server.stop()  # nothing left to stop: a no-op


def test_server_missing_install_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zkserver, "ZOOKEEPER_JAR", tmp_path / "nope.jar")
    with pytest.raises(ConfigError, match="apt-get install -y zookeeper"):
        ZooKeeperServer(tmp_path, port=free_port()).start()
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(ConfigError, match="java is not installed"):
        ZooKeeperServer(tmp_path, port=free_port()).start()


# --- CRUD -------------------------------------------------------------------------------------


async def test_crud_and_errors(zk: ZkClient) -> None:
    assert await zk.create("/a", b"1") == "/a"
    data, stat = await zk.get("/a")
    assert (data, stat.version, stat.ephemeral_owner) == (b"1", 0, 0)

    with pytest.raises(NodeExistsError, match="/a"):
        await zk.create("/a")
    with pytest.raises(NoNodeError, match="get /missing"):
        await zk.get("/missing")
    with pytest.raises(NoNodeError):
        await zk.create("/no/parent")
    assert await zk.exists("/missing") is None

    stat = await zk.set("/a", b"2", version=0)
    assert stat.version == 1
    with pytest.raises(BadVersionError):
        await zk.set("/a", b"3", version=0)
    with pytest.raises(BadVersionError):
        await zk.delete("/a", version=0)

    assert await zk.create("/deep/er/node", b"x", makepath=True) == "/deep/er/node"
    await zk.ensure_path("/deep/er/node")  # exists: fine
    await zk.ensure_path("/deep/other")
    assert await zk.children("/deep") == ["er", "other"]
    with pytest.raises(NotEmptyError):
        await zk.delete("/deep")
    await zk.delete("/deep", recursive=True)
    assert await zk.exists("/deep") is None

    first = await zk.create("/seq-", sequence=True)
    second = await zk.create("/seq-", sequence=True)
    assert first.startswith("/seq-")
    assert int(first[-10:]) < int(second[-10:])

    eph = await zk.create("/eph", ephemeral=True)
    eph_stat = await zk.exists(eph)
    assert eph_stat is not None
    assert eph_stat.ephemeral_owner == zk.session_id

    await zk.create_json("/j", {"b": 1, "a": [1, 2]})
    assert (await zk.get("/j"))[0] == b'{"a":[1,2],"b":1}'
    await zk.set_json("/j", {"c": None})
    assert await zk.get_json("/j") == {"c": None}
    with pytest.raises(CoordinationError, match="JSON object"):
        await zk.get_json("/a")  # b"2" is JSON, but not an object

    await zk.delete("/a")
    with pytest.raises(NoNodeError):
        await zk.delete("/a")
    with pytest.raises(ValueError, match="absolute"):
        await zk.get("relative")


async def test_many_reads_in_one_round_trip_say_which_nodes_are_missing(zk: ZkClient) -> None:
    await zk.create("/m", b"root")
    await zk.create("/m/b", b"2")
    await zk.create("/m/a", b"1")
    assert await zk.get_many(["/m/a", "/m/gone", "/m/b"]) == [b"1", None, b"2"]
    assert await zk.children_many(["/m", "/m/a", "/gone"]) == [["a", "b"], [], None]
    assert await zk.get_many([]) == []


async def test_chroot_isolates_and_is_created(zk_server: ZooKeeperServer, zk: ZkClient) -> None:
    await zk.create("/mine")
    async with ZkClient(zk_server.address, "/nested/chroot/deeper") as other:
        assert await other.children("/") == []
        await other.create("/theirs")
        assert await zk.exists("/theirs") is None
    async with ZkClient(zk_server.address) as root:
        assert await root.exists(f"{zk.chroot}/mine") is not None
        assert await root.exists("/nested/chroot/deeper/theirs") is not None
        await root.delete("/nested", recursive=True)


async def test_connect_timeout_is_a_coordination_error() -> None:
    client = ZkClient(f"127.0.0.1:{free_port()}", timeout_s=0.5)
    with pytest.raises(ZkTimeoutError, match="cannot connect"):
        await client.start()


# --- transactions -----------------------------------------------------------------------------


async def test_transaction_all_or_nothing(zk: ZkClient) -> None:
    await zk.create("/t", b"v0")
    results = await zk.transaction(
        [CheckOp("/t", 0), CreateOp("/t/child", b"c"), SetOp("/t", b"v1", 0), DeleteOp("/t/child")]
    )
    assert results[0] is None
    assert results[1] == "/t/child"
    assert results[3] is None
    assert isinstance(results[2], zkmod.ZnodeStat)
    assert results[2].version == 1

    with pytest.raises(TransactionError) as info:
        await zk.transaction([CreateOp("/t/new"), SetOp("/t", b"v2", 0), DeleteOp("/t")])
    assert info.value.index == 1
    assert info.value.op == SetOp("/t", b"v2", 0)
    assert isinstance(info.value.reason, BadVersionError)
    assert "SetOp" in str(info.value)
    assert await zk.exists("/t/new") is None  # the create was rolled back
    assert (await zk.get("/t"))[0] == b"v1"

    with pytest.raises(TransactionError) as info:
        await zk.transaction([CheckOp("/missing", 0), CreateOp("/t/x")])
    assert isinstance(info.value.reason, NoNodeError)
    assert await zk.children("/t") == []
    assert await zk.transaction([]) == []


# --- watches ----------------------------------------------------------------------------------


async def test_data_watch_follows_a_node_from_before_birth(zk: ZkClient) -> None:
    values = zk.watch_data("/w")
    with trio.fail_after(QUICK_S):
        assert await values.receive() == (None, None)
    await zk.create("/w", b"one")
    with trio.fail_after(QUICK_S):
        data, stat = await values.receive()
    assert data == b"one"
    assert stat is not None
    assert stat.version == 0
    await zk.set("/w", b"two")
    with trio.fail_after(QUICK_S):
        assert (await values.receive())[0] == b"two"
    await zk.delete("/w")
    with trio.fail_after(QUICK_S):
        assert await values.receive() == (None, None)


async def test_children_watch(zk: ZkClient, zk_factory: ZkFactory) -> None:
    names = zk.watch_children("/members")  # created, or the watch would never fire
    with trio.fail_after(QUICK_S):
        assert await names.receive() == []
    other = await zk_factory()
    await other.create("/members/b", ephemeral=True)
    await zk.create("/members/a")
    await until(names, lambda v: v == ["a", "b"])
    await other.stop()  # its ephemeral child goes with its session
    await until(names, lambda v: v == ["a"])


def test_sink_coalesces_for_a_slow_consumer() -> None:
    sink: zkmod._Sink[int] = zkmod._Sink(4, coalesce=True)
    for i in range(10):
        sink.offer(i)  # never blocks, never raises
    assert [sink.recv.receive_nowait() for _ in range(2)] == [8, 9]
    history: zkmod._Sink[int] = zkmod._Sink(4, coalesce=False)
    for i in range(10):
        history.offer(i)
    assert [history.recv.receive_nowait() for _ in range(4)] == [6, 7, 8, 9]
    history.recv.close()
    history.offer(10)
    assert history.closed


async def test_slow_consumer_gets_the_latest_value_not_a_backlog(zk: ZkClient) -> None:
    await zk.create("/busy", b"-1")
    values = zk.watch_data("/busy")
    changes = 4 * zkmod.WATCH_BUFFER
    for i in range(changes):
        await zk.set("/busy", str(i).encode())
    received: list[bytes | None] = []
    with trio.fail_after(QUICK_S):
        while not received or received[-1] != str(changes - 1).encode():
            received.append((await values.receive())[0])
    assert len(received) < changes / 2


async def test_closing_the_channel_stops_the_watch(zk: ZkClient) -> None:
    values = zk.watch_data("/c")
    await first(values)
    values.close()
    await zk.create("/c", b"x")  # delivered nowhere, and nothing breaks
    await zk.set("/c", b"y")
    assert (await zk.get("/c"))[0] == b"y"


# --- connection states, restart, expiry -------------------------------------------------------


async def test_server_restart_suspends_then_reconnects_and_watches_resume(
    zk: ZkClient, zk_server: ZooKeeperServer
) -> None:
    await zk.create("/r", b"before")
    await zk.ensure_path("/kids")
    eph = await zk.create("/eph", ephemeral=True)
    values = zk.watch_data("/r")
    kids = zk.watch_children("/kids")
    assert (await first(values))[0] == b"before"
    assert await first(kids) == []
    states = zk.states()
    session = zk.session_id

    await trio.to_thread.run_sync(zk_server.restart)
    assert await next_state(states) == "SUSPENDED"
    assert await next_state(states) == "CONNECTED"
    assert zk.session_id == session  # the session survived the restart
    assert await zk.exists(eph) is not None

    await zk.set("/r", b"after")
    await until(values, lambda v: v[0] == b"after")
    await zk.create("/kids/k")
    await until(kids, lambda v: v == ["k"])


async def test_drop_connection_keeps_the_session_and_leadership(zk: ZkClient) -> None:
    eph = await zk.create("/eph", ephemeral=True)
    leadership = await zk.campaign("/election", "blip")
    states = zk.states()
    session = zk.session_id
    await zk.drop_connection()
    assert await next_state(states) == "SUSPENDED"
    assert await next_state(states) == "CONNECTED"
    assert zk.session_id == session
    assert await zk.exists(eph) is not None
    assert leadership.is_leader
    assert not leadership.suspended
    assert await leadership.won() == leadership.epoch


async def test_session_expiry_is_lost_and_removes_ephemerals(
    zk: ZkClient, zk_factory: ZkFactory
) -> None:
    observer = await zk_factory()
    eph = await zk.create("/eph", ephemeral=True)
    values = zk.watch_data("/watched")
    assert await first(values) == (None, None)
    states = zk.states()
    old_session = zk.session_id
    await zk.expire_session()
    assert await observer.exists(eph) is None
    while await next_state(states) != "LOST":
        pass  # the attach that expires the session may first show as a reconnect
    assert await next_state(states) == "CONNECTED"
    assert zk.session_id not in (None, old_session)  # kazoo opened a new session
    assert await zk.exists(eph) is None
    await observer.create("/watched", b"new session")  # watches carry over to it
    await until(values, lambda v: v[0] == b"new session")


async def test_stop_closes_channels_and_ends_leadership(zk_factory: ZkFactory) -> None:
    client = await zk_factory()
    states = client.states()
    values = client.watch_data("/s")
    await first(values)
    leadership = await client.campaign("/election", "solo")
    await client.stop()
    assert [s async for s in states] == ["LOST"]
    assert [v async for v in values] == []
    assert leadership.lost.is_set()
    assert not leadership.is_leader


# --- leader election --------------------------------------------------------------------------


async def test_election_failover_on_session_expiry(zk_factory: ZkFactory) -> None:
    a, b = await zk_factory(), await zk_factory()
    lead_a = await a.campaign("/election", "a")
    assert lead_a.is_leader
    epoch_a = await lead_a.won()
    lead_b = await b.campaign("/election", "b")
    assert not lead_b.is_leader

    await a.create("/data", b"0")
    await a.transaction([lead_a.fence(), SetOp("/data", b"by a")])  # fenced write passes

    await a.expire_session()
    assert lead_a.lost.is_set()
    assert not lead_a.is_leader
    await a.wait_state("CONNECTED")  # kazoo's new session (calls fail until then)
    with trio.fail_after(3):
        epoch_b = await lead_b.won()
    assert lead_b.is_leader
    assert epoch_b > epoch_a
    assert await b.get_json("/election/epoch") == {"epoch": epoch_b, "leader": "b"}

    # The deposed leader's fenced writes now fail; the new leader's pass.
    with pytest.raises(TransactionError) as info:
        await a.transaction([lead_a.fence(), SetOp("/data", b"stale a")])
    assert isinstance(info.value.reason, BadVersionError)
    await b.transaction([lead_b.fence(), SetOp("/data", b"by b")])
    assert (await b.get("/data"))[0] == b"by b"
    with pytest.raises(LeadershipLostError):
        await lead_a.won()


async def test_election_resign_hands_over_in_order(zk_factory: ZkFactory) -> None:
    a, b, c = await zk_factory(), await zk_factory(), await zk_factory()
    lead_a = await a.campaign("/election", "a")
    lead_b = await b.campaign("/election", "b")
    lead_c = await c.campaign("/election", "c")
    epoch_a = await lead_a.won()

    await lead_b.resign()  # c's predecessor leaves the line: c must now wait for a
    with pytest.raises(LeadershipLostError, match="resigned"):
        await lead_b.won()
    with trio.move_on_after(0.3) as waited:  # a negative check needs some time
        await lead_c.won()
    assert waited.cancelled_caught
    assert not lead_c.is_leader

    await lead_a.resign()
    assert lead_a.lost.is_set()
    assert not lead_a.is_leader
    with trio.fail_after(3):
        epoch_c = await lead_c.won()  # a cancelled wait kept c's place in line
    assert epoch_c > epoch_a
    assert lead_c.is_leader


async def test_deleting_the_candidate_node_ends_the_leadership(zk: ZkClient) -> None:
    leadership = await zk.campaign("/election", "x")
    await zk.delete(leadership.node)
    with trio.fail_after(QUICK_S):
        await leadership.lost.wait()
    assert leadership.lost_reason == "candidate node deleted"
    with pytest.raises(LeadershipLostError, match="deleted"):
        await leadership.won()


async def test_campaign_again_after_losing(zk: ZkClient) -> None:
    first = await zk.campaign("/election", "x")
    epoch = first.epoch
    await zk.expire_session()
    await zk.wait_state("CONNECTED")
    again = await zk.campaign("/election", "x")
    assert again.is_leader
    assert again.epoch == epoch + 1

"""Replication inside a partition group, with real pgserver processes and SIGKILL.

Roles are given with TSR.ROLE directly here (what the confmaster does), so these tests
check the pgserver's side of the protocol: quorum commit, streaming, catch-up, full sync,
promotion, and an old master's uncommitted tail being thrown away.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import redis

from tessera.resp import encode_command
from tests.procs import start_pgserver, stop


def role(port: int, *args: str | int) -> int:
    """TSR.ROLE as the confmaster sends it; the reply is the pgserver's log end LSN."""
    lsn = redis.Redis(port=port).execute_command("TSR.ROLE", *args)  # type: ignore[no-untyped-call]
    assert isinstance(lsn, int)
    assert lsn >= 0
    return lsn


def info(port: int) -> dict[str, object]:
    result: dict[str, object] = redis.Redis(port=port).info("all")
    return result


def wait_until(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def slave_reader(port: int) -> redis.Redis:
    client = redis.Redis(port=port)
    client.execute_command("READONLY")  # type: ignore[no-untyped-call]
    return client


@pytest.fixture
def pair(tmp_path: Path) -> object:
    master, m_port = start_pgserver(tmp_path / "m", None, "--managed")
    slave, s_port = start_pgserver(tmp_path / "s", None, "--managed")
    role(m_port, "MASTER", 1, 1)
    role(s_port, "SLAVE", 1, f"127.0.0.1:{m_port}")
    yield master, m_port, slave, s_port, tmp_path
    stop(master)
    stop(slave)


def test_writes_reach_the_slave_before_they_are_acknowledged(pair: tuple) -> None:  # type: ignore[type-arg]
    _master, m_port, _slave, s_port, _ = pair
    client = redis.Redis(port=m_port)
    for i in range(200):
        client.set(f"k{i}", i)
        client.hset("h", f"f{i}", i)
    client.expire("h", 1000)
    reader = slave_reader(s_port)
    # Acknowledged means logged on the slave; applying follows within moments.
    wait_until(lambda: reader.dbsize() == 201, 5, "the slave to apply")
    assert reader.get("k199") == b"199"
    assert reader.hlen("h") == 200
    assert 990 < reader.ttl("h") <= 1000
    replication = info(m_port)
    assert replication["connected_slaves"] == 1
    assert replication["role"] == "master"
    assert info(s_port)["role"] == "slave"


def test_slave_refuses_writes_and_unrequested_reads(pair: tuple) -> None:  # type: ignore[type-arg]
    _master, _m_port, _slave, s_port, _ = pair
    client = redis.Redis(port=s_port)
    with pytest.raises(redis.ReadOnlyError):
        client.set("x", 1)
    with pytest.raises(redis.ResponseError, match="send READONLY"):
        client.get("x")
    assert client.ping()


def test_unassigned_pgserver_refuses_data_commands(tmp_path: Path) -> None:
    proc, port = start_pgserver(tmp_path, None, "--managed")
    try:
        with pytest.raises(redis.ResponseError, match="no role yet"):
            redis.Redis(port=port).set("x", 1)
    finally:
        stop(proc)


def test_writes_wait_for_the_quorum(tmp_path: Path) -> None:
    master, m_port = start_pgserver(tmp_path / "m", None, "--managed")
    try:
        role(m_port, "MASTER", 1, 1)  # one slave must acknowledge, and there is none
        with socket.create_connection(("127.0.0.1", m_port), timeout=5) as sock:
            sock.sendall(b"SET x 1\r\n")
            sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                sock.recv(100)
            role(m_port, "MASTER", 1, 0)  # quorum lowered: the write commits
            sock.settimeout(5)
            assert sock.recv(100) == b"+OK\r\n"
    finally:
        stop(master)


def _log_end(port: int) -> int:
    return int(str(info(port)["log_end_lsn"]))


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the connection closed"
        data += chunk
    return data


def test_a_pipelining_client_is_served_while_its_replies_wait_in_order(tmp_path: Path) -> None:
    """Replies waiting for the quorum do not stop the client's next requests from running
    (up to 1 MB of waiting replies); they all go out in request order once committed."""
    master, m_port = start_pgserver(tmp_path / "m", None, "--managed")
    try:
        role(m_port, "MASTER", 1, 1)  # one slave must acknowledge, and there is none
        with socket.create_connection(("127.0.0.1", m_port), timeout=5) as sock:
            start = _log_end(m_port)
            _held(sock, b"SET a 1\r\n")
            after_first = _log_end(m_port)
            assert after_first > start
            _held(sock, b"SET b 2\r\nPING\r\nGET a\r\n")
            assert _log_end(m_port) > after_first  # executed though nothing is committed
            # Replies of 1.2 MB waiting: the client is not read any more.
            sock.sendall(encode_command([b"SET", b"big", b"x" * 600_000]))
            wait_until(lambda: _log_end(m_port) > after_first + 600_000, 5, "the big SET")
            _held(sock, b"GET big\r\nGET big\r\n")
            paused_at = _log_end(m_port)
            _held(sock, b"SET c 3\r\n")
            time.sleep(0.2)
            assert _log_end(m_port) == paused_at  # SET c waits unread
            role(m_port, "MASTER", 1, 0)  # quorum lowered: everything commits
            big = b"$600000\r\n" + b"x" * 600_000 + b"\r\n"
            expected = b"+OK\r\n+OK\r\n+PONG\r\n$1\r\n1\r\n+OK\r\n" + big + big + b"+OK\r\n"
            assert _recv_exactly(sock, len(expected)) == expected
            assert _log_end(m_port) > paused_at  # SET c ran once the replies went out
    finally:
        stop(master)


def _held(sock: socket.socket, request: bytes) -> None:
    """Send a write and check that no reply comes within half a second."""
    sock.sendall(request)
    sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        sock.recv(100)
    sock.settimeout(5)


def test_writes_wait_for_every_named_voter(tmp_path: Path) -> None:
    master, m_port = start_pgserver(tmp_path / "m", None, "--managed")
    a, a_port = start_pgserver(tmp_path / "a", None, "--managed")
    b, b_port = start_pgserver(tmp_path / "b", None, "--managed")
    try:
        role(m_port, "MASTER", 1, "VOTERS", "A", "ID", "M")
        for port, ident in ((a_port, "A"), (b_port, "B")):
            role(port, "SLAVE", 1, f"127.0.0.1:{m_port}", "ID", ident)
        client = redis.Redis(port=m_port, socket_timeout=5)
        wait_until(lambda: info(m_port)["connected_slaves"] == 2, 5, "both slaves")
        b.send_signal(signal.SIGSTOP)  # not a voter: writes go on without it
        try:
            assert client.set("k", "1")
        finally:
            b.send_signal(signal.SIGCONT)
        a.send_signal(signal.SIGSTOP)  # the voter is paused: writes wait for it
        try:
            with socket.create_connection(("127.0.0.1", m_port), timeout=5) as sock:
                _held(sock, b"SET k 2\r\n")
                lsn = redis.Redis(port=m_port).execute_command("TSR.SETQUORUM", 1, "B")  # type: ignore[no-untyped-call]
                assert sock.recv(100) == b"+OK\r\n"  # B has it: acknowledged
                assert lsn == info(m_port)["log_end_lsn"]
        finally:
            a.send_signal(signal.SIGCONT)
        fields = info(m_port)
        assert fields["voters"] == "B"
        slaves = [fields["slave0"], fields["slave1"]]
        assert sorted(s["id"] for s in slaves) == ["A", "B"]  # type: ignore[index]
    finally:
        for proc in (master, a, b):
            stop(proc)


def test_a_slave_on_hold_stops_acknowledging(pair: tuple) -> None:  # type: ignore[type-arg]
    _master, m_port, _slave, s_port, _ = pair
    role(m_port, "MASTER", 1, "VOTERS", "S", "ID", "M")
    role(s_port, "SLAVE", 1, f"127.0.0.1:{m_port}", "ID", "S")
    client = redis.Redis(port=m_port, socket_timeout=5)
    wait_until(lambda: info(m_port)["connected_slaves"] == 1, 5, "the slave to attach")
    assert client.set("before", "1")
    held_lsn = role(s_port, "SLAVE", 1, "-")
    assert held_lsn == info(s_port)["log_end_lsn"]
    assert info(s_port)["master_link"] == "on hold"
    with socket.create_connection(("127.0.0.1", m_port), timeout=5) as sock:
        _held(sock, b"SET during 1\r\n")
        assert info(s_port)["log_end_lsn"] == held_lsn  # nothing arrives while on hold
        role(s_port, "SLAVE", 1, f"127.0.0.1:{m_port}")  # follows again: the write commits
        assert sock.recv(100) == b"+OK\r\n"


def test_commands_of_an_older_confmaster_leader_are_refused(pair: tuple) -> None:  # type: ignore[type-arg]
    _master, m_port, _slave, _s_port, _ = pair
    role(m_port, "MASTER", 1, "VOTERS", "-", "SEQ", 2, 5)
    for seq in ((2, 5), (2, 4), (1, 9)):
        with pytest.raises(redis.ResponseError, match="stale command seq"):
            role(m_port, "SLAVE", 1, "127.0.0.1:1", "SEQ", *seq)
    assert info(m_port)["role"] == "master"
    role(m_port, "MASTER", 1, "VOTERS", "-", "SEQ", 3, 1)  # a newer leader
    with pytest.raises(redis.ResponseError, match="syntax"):
        role(m_port, "MASTER", 1, "VOTERS")


def test_stale_epochs_are_refused(pair: tuple) -> None:  # type: ignore[type-arg]
    _master, m_port, _slave, _s_port, _ = pair
    with pytest.raises(redis.ResponseError, match="stale epoch 0"):
        role(m_port, "SLAVE", 0, "127.0.0.1:1")


def test_failover_keeps_every_acknowledged_write_and_old_master_rejoins(pair: tuple) -> None:  # type: ignore[type-arg]
    master, m_port, slave, s_port, tmp_path = pair
    acked: dict[str, int] = {}
    stop_flag = threading.Event()

    def load() -> None:
        client = redis.Redis(port=m_port, socket_timeout=5)
        i = 0
        try:
            while not stop_flag.is_set():
                key = f"key:{i % 300}"
                client.set(key, i)
                acked[key] = i
                i += 1
        except (redis.ConnectionError, redis.TimeoutError):
            return

    writer = threading.Thread(target=load)
    writer.start()
    time.sleep(0.8)
    master.send_signal(signal.SIGKILL)
    master.wait()
    writer.join(10)
    stop_flag.set()
    assert len(acked) > 50
    # Promote the slave at the next epoch, as the confmaster would.
    role(s_port, "MASTER", 2, 0)
    new_master = redis.Redis(port=s_port)
    for key, last in acked.items():
        value = new_master.get(key)
        assert value is not None, f"{key} lost"
        assert int(value) >= last, f"{key}: acknowledged {last}, found {value!r}"
    new_master.set("after-failover", "yes")
    # The old master comes back (it may hold writes nobody acknowledged) and follows.
    old, old_port = start_pgserver(tmp_path / "m", m_port, "--managed")
    try:
        role(old_port, "SLAVE", 2, f"127.0.0.1:{s_port}")
        role(s_port, "MASTER", 2, 1)
        reader = slave_reader(old_port)
        wait_until(lambda: reader.get("after-failover") == b"yes", 10, "the old master to rejoin")
        assert reader.dbsize() == new_master.dbsize()
        for key in acked:
            assert reader.get(key) == new_master.get(key)
        new_master.set("later", 1)
        wait_until(lambda: reader.get("later") == b"1", 5, "replication to the old master")
    finally:
        stop(old)
        stop(slave)


def test_slave_far_behind_gets_a_checkpoint_first(tmp_path: Path) -> None:
    master, m_port = start_pgserver(
        tmp_path / "m",
        None,
        "--managed",
        "--log-segment-mb",
        "1",
        "--keep-log-mb",
        "0",
        "--checkpoint-every-mb",
        "0",
    )
    slave = None
    try:
        role(m_port, "MASTER", 1, 0)
        client = redis.Redis(port=m_port)
        pipe = client.pipeline(transaction=False)
        for i in range(30_000):
            pipe.set(f"key:{i}", "v" * 50)
        pipe.execute()
        assert client.bgsave()
        wait_until(lambda: not info(m_port)["checkpoint_in_progress"], 30, "the checkpoint")
        client.set("after-checkpoint", 1)
        assert int(str(info(m_port)["log_first_lsn"])) > 0  # old segments are gone
        slave, s_port = start_pgserver(tmp_path / "s", None, "--managed")
        role(s_port, "SLAVE", 1, f"127.0.0.1:{m_port}")
        reader = slave_reader(s_port)
        wait_until(lambda: reader.dbsize() == 30_001, 30, "the full sync")
        assert reader.get("key:29999") == b"v" * 50
        client.set("streamed", 2)
        wait_until(lambda: reader.get("streamed") == b"2", 5, "streaming after the full sync")
    finally:
        stop(master)
        if slave is not None:
            stop(slave)

"""Moving partitions through a live gateway: BLOCK, copy, REDIRECT (or UNBLOCK) on the admin port.

The copy between the two pgservers is done by the test itself (a stand-in for the
migrator); what is checked is the gateway's part: requests for the moving partitions are
held while blocked and then go, in order, to the right owner, with nothing lost, repeated
or answered out of order.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis

from tessera.partition import pn
from tests.gateway_fixtures import (
    Cluster,
    Gateway,
    Pgserver,
    connect,
    default_assignments,
    keys_in,
    recv_exactly,
    start_backends,
    start_gateway,
    stop_backends,
)

MOVED = (0, 2047)  # owned by backend 0 at first, moved to backend 1
MOVED_TEXT = f"{MOVED[0]}-{MOVED[1]}"
MOVED_KEYS = keys_in(*MOVED, 12, "mv:")
STAYING_KEYS = keys_in(4096, 8191, 4, "stay:")  # backend 1, never blocked
OTHER_A_KEYS = keys_in(MOVED[1] + 1, 4095, 2, "a:")  # backend 0, never blocked
HELD_TOO_LONG = (
    b"-TRYAGAIN partition is being moved and the hold deadline passed; retry the request\r\n"
)


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Pgserver]]:
    started = start_backends(tmp_path_factory.mktemp("blocking"))
    yield started
    stop_backends(started)


@dataclass
class Moving:
    """A fresh gateway (map version 0) in front of the module's emptied backends."""

    cluster: Cluster
    admin: redis.Redis

    @property
    def old(self) -> Pgserver:
        return self.cluster.backends[0]

    @property
    def new(self) -> Pgserver:
        return self.cluster.backends[1]

    @property
    def gateway(self) -> Gateway:
        return self.cluster.gateway

    def command(self, *args: object) -> object:
        return self.admin.execute_command(*args)  # type: ignore[no-untyped-call]


def moving_cluster(backends: list[Pgserver], *gateway_args: str) -> Iterator[Moving]:
    for backend in backends:
        with backend.client() as client:
            client.flushall()
    proc, port, admin_port = start_gateway(default_assignments(backends), *gateway_args)
    gateway = Gateway(proc, port, admin_port)
    admin = gateway.admin()
    try:
        yield Moving(Cluster(backends, gateway, gateway_args), admin)
    finally:
        admin.close()
        gateway.stop()


@pytest.fixture
def moving(backends: list[Pgserver]) -> Iterator[Moving]:
    yield from moving_cluster(backends)


@pytest.fixture
def moving_short_hold(backends: list[Pgserver]) -> Iterator[Moving]:
    yield from moving_cluster(backends, "--hold-timeout-ms", "300")


def copy_partitions(source: Pgserver, target: Pgserver, first: int, last: int) -> set[bytes]:
    """What the migrator would do: copy every key of partitions first..last."""
    copied: set[bytes] = set()
    with source.client() as src, target.client() as dst:
        for key in src.scan_iter(count=1000):
            if not first <= pn(key) <= last:
                continue
            kind = src.type(key)
            dst.delete(key)
            if kind == b"string":
                dst.set(key, src.get(key))
            elif kind == b"list":
                dst.rpush(key, *src.lrange(key, 0, -1))
            else:
                raise AssertionError(f"unexpected type {kind!r} of {key!r}")
            copied.add(key)
    return copied


def raw(port: int, timeout: float = 5) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def reply_within(sock: socket.socket, seconds: float) -> bytes:
    """Whatever arrives within `seconds` (b"" if nothing)."""
    sock.settimeout(seconds)
    try:
        return sock.recv(65536)
    except TimeoutError:
        return b""
    finally:
        sock.settimeout(5)


# ---------------------------------------------------------------------- writers


@dataclass
class Op:
    sent: float
    acked: float
    key: str
    value: int


@dataclass
class Writer:
    """One client writing SET key n; RPUSH log n (pipelined) with n = 0, 1, 2, ..."""

    port: int
    keys: list[str]
    log: str
    ops: list[Op] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def finish(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(15)
        assert not self.thread.is_alive(), "writer hung"

    def _run(self) -> None:
        n = 0
        with connect(self.port) as client:
            while not self.stop.is_set():
                key = self.keys[n % len(self.keys)]
                sent = time.monotonic()
                try:
                    with client.pipeline(transaction=False) as pipe:
                        pipe.set(key, n)
                        pipe.rpush(self.log, n)
                        pipe.get(key)
                        replies = pipe.execute(raise_on_error=False)
                except redis.RedisError as exc:
                    self.errors.append(f"op {n}: {exc!r}")
                    return
                if replies != [True, n + 1, str(n).encode()]:
                    self.errors.append(f"op {n} on {key}: replies {replies!r}")
                    return
                self.ops.append(Op(sent, time.monotonic(), key, n))
                n += 1

    def acked_during(self, start: float, end: float) -> list[Op]:
        return [op for op in self.ops if start <= op.acked <= end]


def start_writers(port: int) -> tuple[list[Writer], Writer]:
    moved = [Writer(port, MOVED_KEYS[i::3], keys_in(*MOVED, 3, "log:")[i]) for i in range(3)]
    staying = Writer(port, STAYING_KEYS, keys_in(4096, 8191, 1, "stay-log:")[0])
    for writer in [*moved, staying]:
        writer.start()
    return moved, staying


# ---------------------------------------------------------------------- REDIRECT


def test_redirect_under_continuous_writes_loses_nothing(moving: Moving) -> None:
    moved, staying = start_writers(moving.gateway.port)
    try:
        time.sleep(0.3)
        assert all(w.ops for w in moved), "writers did not get going"
        block_sent = time.monotonic()
        assert moving.command("BLOCK", "job-1", MOVED_TEXT) == b"OK"
        blocked = time.monotonic()
        assert blocked - block_sent < 1.0
        copied = copy_partitions(moving.old, moving.new, *MOVED)
        time.sleep(0.2)  # requests for the moving partitions pile up meanwhile
        redirect_sent = time.monotonic()
        assert (
            moving.command("REDIRECT", "job-1", MOVED_TEXT, f"127.0.0.1:{moving.new.port}", 1)
            == b"OK"
        )
        redirected = time.monotonic()
        time.sleep(0.3)
    finally:
        for writer in [*moved, staying]:
            writer.finish()

    for writer in [*moved, staying]:
        assert writer.errors == []
    # Everything the moving writers wrote before the block was copied.
    assert {k.encode() for w in moved for k in [*w.keys, w.log]} <= copied
    for writer in moved:
        # Exactly one request per writer was held across the block and then succeeded.
        held = [op for op in writer.ops if op.sent < redirect_sent <= op.acked]
        assert len(held) == 1, held
        assert held[0].acked - held[0].sent >= 0.19
        # (50 ms of slack: a reply received before BLOCK's OK may be timed just after it.)
        assert writer.acked_during(blocked + 0.05, redirect_sent) == []
        assert writer.acked_during(redirected, redirected + 10), "no progress after REDIRECT"
    # Partitions that were not moving were served throughout.
    assert len(staying.acked_during(blocked, redirect_sent)) > 5

    with (
        moving.gateway.client() as client,
        moving.new.client() as new,
        moving.old.client() as old,
    ):
        for writer in [*moved, staying]:
            values = [op.value for op in writer.ops]
            assert values == list(range(len(values)))  # every acked write, once, in order
            # The log on the owner has every acknowledged RPUSH exactly once, in order.
            assert [int(v) for v in client.lrange(writer.log, 0, -1)] == values
            last: dict[str, int] = {}
            for op in writer.ops:
                last[op.key] = op.value
            for key, value in last.items():
                assert client.get(key) == str(value).encode(), key
        for writer in moved:
            assert new.lrange(writer.log, 0, -1) == client.lrange(writer.log, 0, -1)
            # The old owner kept only what was written before the block.
            assert old.llen(writer.log) < new.llen(writer.log)
        map_reply = moving.command("MAP")
    assert map_reply == [
        b"version",
        1,
        b"ranges",
        [
            f"0-2047=127.0.0.1:{moving.new.port}".encode(),
            f"2048-4095=127.0.0.1:{moving.old.port}".encode(),
            f"4096-8191=127.0.0.1:{moving.new.port}".encode(),
        ],
        b"blocked",
        [],
    ]
    stats = moving.command("STATS")
    assert isinstance(stats, list)
    assert dict(zip(stats[::2], stats[1::2], strict=True))[b"held_requests"] >= 3


def test_redirect_releases_a_pipeline_in_order(moving: Moving) -> None:
    """One client pipelines writes to moving and to other partitions during the block."""
    key, other = MOVED_KEYS[0], STAYING_KEYS[0]
    assert moving.command("BLOCK", "job-2", MOVED_TEXT) == b"OK"
    pipeline = b"".join(
        [f"SET {key} {i}\r\nGET {other}\r\nINCR {other}\r\n".encode() for i in range(50)]
    )
    with raw(moving.gateway.port) as sock:
        sock.sendall(pipeline + f"MSET {key} last {other} last\r\nMGET {key} {other}\r\n".encode())
        # Nothing can be answered yet: the first request is held, replies keep their order.
        assert reply_within(sock, 0.3) == b""
        assert moving.command("REDIRECT", "job-2", MOVED_TEXT, f"127.0.0.1:{moving.new.port}", 1)
        parts = []
        for i in range(50):
            parts.append(b"+OK\r\n")  # SET key i (held, then sent to the new owner)
            parts.append(b"$-1\r\n" if i == 0 else b"$%d\r\n%d\r\n" % (len(str(i)), i))  # GET
            parts.append(b":%d\r\n" % (i + 1))  # INCR other
        parts.append(b"+OK\r\n*2\r\n$4\r\nlast\r\n$4\r\nlast\r\n")  # MSET, MGET
        expected = b"".join(parts)
        assert recv_exactly(sock, len(expected)) == expected
    with moving.new.client() as new, moving.old.client() as old:
        assert new.get(key) == b"last"  # the held writes went to the new owner
        assert old.get(key) is None


# ---------------------------------------------------------------------- UNBLOCK


def test_unblock_releases_held_requests_to_the_old_owner(moving: Moving) -> None:
    key = MOVED_KEYS[1]
    assert moving.command("BLOCK", "job-3", MOVED_TEXT) == b"OK"
    with raw(moving.gateway.port) as sock:
        sock.sendall(f"SET {key} held\r\nGET {key}\r\nPING\r\n".encode())
        assert reply_within(sock, 0.3) == b""
        with moving.gateway.client() as other:  # another client, other partitions: not held
            assert other.set(OTHER_A_KEYS[0], "a")
            assert other.set(STAYING_KEYS[0], "b")
        assert moving.command("UNBLOCK", "job-3") == b"OK"
        expected = b"+OK\r\n$4\r\nheld\r\n+PONG\r\n"
        assert recv_exactly(sock, len(expected)) == expected
        sock.sendall(f"GET {key}\r\n".encode())
        assert recv_exactly(sock, 10) == b"$4\r\nheld\r\n"
    with moving.old.client() as old, moving.new.client() as new:
        assert old.get(key) == b"held"
        assert new.get(key) is None
    assert moving.command("MAP")[1] == 0  # type: ignore[index]
    assert moving.command("UNBLOCK", "job-3") == b"OK"  # idempotent


# ---------------------------------------------------------------------- hold deadline


def test_held_request_past_the_hold_timeout_gets_an_error(moving_short_hold: Moving) -> None:
    moving = moving_short_hold
    key, other = MOVED_KEYS[2], STAYING_KEYS[1]
    with moving.gateway.client() as client:
        client.set(key, "before")
        client.set(other, "other")
    assert moving.command("BLOCK", "job-4", MOVED_TEXT) == b"OK"
    with raw(moving.gateway.port) as sock:
        started = time.monotonic()
        sock.sendall(f"GET {key}\r\nPING\r\nGET {other}\r\n".encode())
        expected = HELD_TOO_LONG + b"+PONG\r\n$5\r\nother\r\n"
        assert recv_exactly(sock, len(expected)) == expected
        waited = time.monotonic() - started
        assert 0.25 <= waited < 2.0, waited
        # The connection stays usable, for other partitions at once ...
        sock.sendall(f"SET {other} again\r\n".encode())
        assert recv_exactly(sock, 5) == b"+OK\r\n"
        # ... and for the moving ones once the move is over.
        sock.sendall(f"GET {key}\r\n".encode())
        assert reply_within(sock, 0.1) == b""
        assert moving.command("UNBLOCK", "job-4") == b"OK"
        assert recv_exactly(sock, 12) == b"$6\r\nbefore\r\n"
    stats = moving.command("STATS")
    assert isinstance(stats, list)
    assert dict(zip(stats[::2], stats[1::2], strict=True))[b"expired_holds"] == 1


# ---------------------------------------------------------------------- BLOCK and draining


def test_block_when_idle_and_admin_commands_are_idempotent(moving: Moving) -> None:
    new = f"127.0.0.1:{moving.new.port}"
    assert moving.command("PING") == b"PONG"
    started = time.monotonic()
    assert moving.command("BLOCK", "job-5", MOVED_TEXT) == b"OK"
    assert time.monotonic() - started < 0.5
    assert moving.command("BLOCK", "job-5", MOVED_TEXT) == b"OK"  # repeated: OK
    with pytest.raises(redis.ResponseError, match="job job-5 already blocks other ranges"):
        moving.command("BLOCK", "job-5", "0-10")
    with pytest.raises(redis.ResponseError, match="partition 2000 is already blocked by job job-5"):
        moving.command("BLOCK", "job-6", "2000-2100")
    with pytest.raises(redis.ResponseError, match="not within 0-8191"):
        moving.command("BLOCK", "job-6", "8000-9000")
    assert moving.command("MAP")[5] == [b"job-5 0-2047 held=0 blocked"]  # type: ignore[index]
    with pytest.raises(redis.ResponseError, match="job job-5 blocks other ranges"):
        moving.command("REDIRECT", "job-5", "0-10", new, 1)
    with pytest.raises(redis.ResponseError, match="job job-6 is not blocking anything"):
        moving.command("REDIRECT", "job-6", "2048-3000", new, 1)
    assert moving.command("REDIRECT", "job-5", MOVED_TEXT, new, 1) == b"OK"
    assert moving.command("REDIRECT", "job-5", MOVED_TEXT, new, 1) == b"OK"  # repeated: OK
    assert moving.command("UNBLOCK", "job-5") == b"OK"  # after the redirect: nothing to do
    assert moving.command("MAP")[:2] == [b"version", 1]  # type: ignore[index]
    with pytest.raises(redis.ResponseError, match="unknown admin command 'NOPE'"):
        moving.command("NOPE")
    with moving.gateway.client() as client:  # the moved partitions now go to the new owner
        assert client.set(MOVED_KEYS[0], "x")
    with moving.new.client() as direct:
        assert direct.get(MOVED_KEYS[0]) == b"x"


def _block_in_thread(moving: Moving, job: str, results: list[tuple[float, object]]) -> None:
    with moving.gateway.admin(timeout=3) as admin:
        try:
            reply = admin.execute_command("BLOCK", job, MOVED_TEXT)
        except redis.RedisError as exc:
            reply = exc
        results.append((time.monotonic(), reply))


def test_block_replies_only_after_in_flight_requests_are_answered(moving: Moving) -> None:
    key = MOVED_KEYS[3]
    with moving.gateway.client() as client:
        client.set(key, "v")  # also makes the backend connection fresh
    with raw(moving.gateway.port) as sock:
        with moving.old.stopped():
            sock.sendall(f"GET {key}\r\n".encode())
            time.sleep(0.05)  # the GET is now forwarded and unanswered
            results: list[tuple[float, object]] = []
            thread = threading.Thread(target=_block_in_thread, args=(moving, "job-7", results))
            thread.start()
            time.sleep(0.3)
            assert results == []  # BLOCK waits for the GET
            resumed = time.monotonic()
        assert recv_exactly(sock, 7) == b"$1\r\nv\r\n"
        thread.join(5)
        assert [reply for _, reply in results] == [b"OK"]
        assert results[0][0] >= resumed
    assert moving.command("UNBLOCK", "job-7") == b"OK"


def test_repeated_block_while_draining_answers_every_caller(moving: Moving) -> None:
    """confmaster may repeat BLOCK (e.g. after a reconnect): both callers must get OK."""
    key = MOVED_KEYS[4]
    with moving.gateway.client() as client:
        client.set(key, "v")
    results: list[tuple[float, object]] = []
    with raw(moving.gateway.port) as sock:
        with moving.old.stopped():
            sock.sendall(f"GET {key}\r\n".encode())
            time.sleep(0.05)
            threads = []
            for _ in range(2):
                thread = threading.Thread(target=_block_in_thread, args=(moving, "job-8", results))
                thread.start()
                threads.append(thread)
                time.sleep(0.1)
        assert recv_exactly(sock, 7) == b"$1\r\nv\r\n"
        for thread in threads:
            thread.join(5)
    assert sorted(repr(reply) for _, reply in results) == [repr(b"OK")] * 2
    assert moving.command("UNBLOCK", "job-8") == b"OK"


def test_requests_of_a_closed_client_are_not_replayed_to_others(moving: Moving) -> None:
    """A client that disconnects while its requests are held: nothing reaches other clients."""
    key = MOVED_KEYS[5]
    assert moving.command("BLOCK", "job-9", MOVED_TEXT) == b"OK"
    with raw(moving.gateway.port) as sock:
        sock.sendall(f"SET {key} from-gone-client\r\n".encode())
        time.sleep(0.05)
    with moving.gateway.client() as client:
        assert client.ping()  # connected before the release (it may reuse the closed fd)
        assert moving.command("UNBLOCK", "job-9") == b"OK"
        assert client.set(key, "mine")
        assert client.get(key) == b"mine"
        assert client.ping()


def test_admin_port_accepts_a_default_redis_py_client(moving: Moving) -> None:
    """redis-py 8 opens every connection with HELLO 3; the admin port must not refuse it."""
    with connect(moving.gateway.admin_port, socket_timeout=3) as client:
        assert client.execute_command("PING") in (True, b"PONG")
        reply = client.execute_command("MAP")
        assert reply[b"version"] == 0

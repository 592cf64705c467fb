"""A gateway whose map is stale meets a fenced source master (`TSR.FENCE ADD`).

The pgserver refuses every command on a fenced partition with `-TRYAGAIN partition <pn>
...`; the gateway must not forward that: it holds the request (the client's later replies
wait behind it), retries, and answers only when the fence is lifted or the map moves the
partition, or with the TRYAGAIN error once `--moving-hold-ms` has passed. Real pgservers
(static, so masters) behind a static-map gateway; fences are set on the pgserver directly.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import hiredis
import pytest
import redis

from tessera.partition import pn
from tessera.resp import encode_command
from tests.gateway_fixtures import (
    Gateway,
    Pgserver,
    connect,
    default_assignments,
    keys_in,
    start_backends,
    start_gateway,
    stop_backends,
)

FENCED = keys_in(0, 4095, 1, "fenced:")[0]  # backend A; only its partition is fenced
FENCED_PN = pn(FENCED.encode())
A_KEYS = [k for k in keys_in(0, 4095, 20, "a:") if pn(k.encode()) != FENCED_PN][:4]
B_KEYS = keys_in(4096, 8191, 4, "b:")
HOLD_MS = 1500


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Pgserver]]:
    started = start_backends(tmp_path_factory.mktemp("tryagain"))
    yield started
    stop_backends(started)


def fence(backend: Pgserver, ranges: str) -> None:
    with backend.client() as client:
        client.execute_command("TSR.FENCE", "ADD", ranges)


def unfence(backend: Pgserver, ranges: str = "0-8191") -> None:
    with backend.client() as client:
        client.execute_command("TSR.FENCE", "DEL", ranges)


@pytest.fixture
def gateway(backends: list[Pgserver]) -> Iterator[Gateway]:
    """A fresh gateway (hold HOLD_MS) in front of the emptied, unfenced backends."""
    for backend in backends:
        if backend.proc.poll() is not None:
            backend.restart()
        unfence(backend)
        with backend.client() as client:
            client.flushall()
    proc, port, admin_port = start_gateway(
        default_assignments(backends), "--moving-hold-ms", str(HOLD_MS)
    )
    started = Gateway(proc, port, admin_port)
    yield started
    started.stop()
    for backend in backends:
        if backend.proc.poll() is None:
            unfence(backend)


class Raw:
    """A raw client socket: send pipelines exactly, read replies with timing."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = hiredis.Reader()

    def send(self, *commands: tuple[str | bytes, ...]) -> None:
        self.sock.sendall(
            b"".join(
                encode_command([a.encode() if isinstance(a, str) else a for a in c])
                for c in commands
            )
        )

    def replies(self, count: int, timeout: float = 10) -> list[Any]:
        """Exactly `count` replies (fails if they do not all arrive within `timeout`)."""
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            reply = self.reader.gets()
            if reply is not False:
                got.append(reply)
                continue
            left = deadline - time.monotonic()
            assert left > 0, f"only {len(got)} of {count} replies: {got!r}"
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            assert data, "connection closed"
            self.reader.feed(data)
        return got

    def nothing_within(self, seconds: float) -> bool:
        """True when no reply (not even part of one) arrives within `seconds`."""
        if self.reader.gets() is not False:
            return False
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        self.reader.feed(data)
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(gateway: Gateway) -> Iterator[Raw]:
    client = Raw(gateway.port)
    yield client
    client.close()


def info(gateway: Gateway) -> dict[str, Any]:
    with gateway.client() as client:
        return client.info()  # type: ignore[no-any-return]


def is_tryagain(reply: object) -> bool:
    return isinstance(reply, hiredis.ReplyError) and str(reply).startswith(
        f"TRYAGAIN partition {FENCED_PN} "
    )


# ---------------------------------------------------------------------- fence lifted


def test_get_and_set_are_held_until_the_fence_is_lifted(
    backends: list[Pgserver], gateway: Gateway, raw: Raw
) -> None:
    with gateway.client() as client:
        client.set(FENCED, "before")
    fence(backends[0], str(FENCED_PN))
    sent = time.monotonic()
    raw.send(("GET", FENCED), ("SET", FENCED, "after"), ("GET", FENCED))
    assert raw.nothing_within(0.5)
    unfence(backends[0])
    lifted = time.monotonic()
    assert raw.replies(3) == [b"before", b"OK", b"after"]
    answered = time.monotonic()
    assert answered - lifted < 1.0  # the next retry (backoff at most 400 ms)
    assert answered - sent < HOLD_MS / 1000
    stats = info(gateway)
    assert stats["moved_replies"] >= 3
    assert stats["moved_retries"] >= 3
    assert stats["moved_timeouts"] == 0
    assert stats["moving_held_requests"] == 0


def test_pipelined_commands_keep_their_order_around_a_held_one(
    backends: list[Pgserver], gateway: Gateway, raw: Raw
) -> None:
    """One read, all for backend A: the raw-forwarding path; then the general path."""
    a1, a2 = A_KEYS[:2]
    fence(backends[0], str(FENCED_PN))
    raw.send(
        ("SET", a1, "x"),
        ("SET", FENCED, "1"),
        ("INCR", FENCED),
        ("SET", a1, "y"),
        ("APPEND", FENCED, "z"),
        ("GET", a1),
        ("GET", FENCED),
    )
    assert raw.replies(1, timeout=1) == [b"OK"]  # the reply before the held one is not held
    assert raw.nothing_within(0.4)
    # More commands on the held key arrive after its refusal: they wait behind it.
    raw.send(("INCR", a2), ("APPEND", FENCED, "w"), ("GET", B_KEYS[0]))
    assert raw.nothing_within(0.2)
    unfence(backends[0])
    assert raw.replies(9) == [b"OK", 2, b"OK", 2, b"y", b"2z", 1, 3, None]
    with gateway.client() as client:
        assert client.get(FENCED) == b"2zw"


def test_split_commands_merge_right_after_the_fence_is_lifted(
    backends: list[Pgserver], gateway: Gateway, raw: Raw
) -> None:
    """MSET/MGET/DEL over a fenced key, an unfenced key of the same backend and one of B:
    only the part with the fenced key waits, and is counted once."""
    a1, b1 = A_KEYS[0], B_KEYS[0]
    fence(backends[0], str(FENCED_PN))
    raw.send(
        ("MSET", FENCED, "1", a1, "2", b1, "3"),
        ("MGET", FENCED, a1, b1),
        ("DEL", FENCED, a1, b1),
        ("MGET", FENCED, a1, b1),
        ("EXISTS", FENCED, b1),
    )
    assert raw.nothing_within(0.4)
    with backends[1].client() as b:  # B's parts were served meanwhile
        assert b.get(b1) is None
    unfence(backends[0])
    assert raw.replies(5) == [b"OK", [b"1", b"2", b"3"], 3, [None, None, None], 0]


# ---------------------------------------------------------------------- fence kept


def test_fence_kept_the_client_gets_tryagain_after_the_deadline_others_are_served(
    backends: list[Pgserver], gateway: Gateway, raw: Raw
) -> None:
    fence(backends[0], str(FENCED_PN))
    sent = time.monotonic()
    raw.send(("SET", A_KEYS[0], "x"), ("GET", FENCED), ("GET", A_KEYS[0]))
    assert raw.replies(1, timeout=1) == [b"OK"]
    slowest = 0.0
    served = 0
    with gateway.client() as other:  # another client, other partitions: never delayed
        while time.monotonic() - sent < HOLD_MS / 1000 - 0.3:
            for key in (A_KEYS[1], B_KEYS[0]):
                started = time.monotonic()
                assert other.incr(key)
                slowest = max(slowest, time.monotonic() - started)
                served += 1
            time.sleep(0.02)
    assert served > 20
    assert slowest < 0.2
    replies = raw.replies(2, timeout=5)
    waited = time.monotonic() - sent
    assert is_tryagain(replies[0]), replies
    assert replies[1] == b"x"
    assert HOLD_MS / 1000 - 0.1 <= waited < HOLD_MS / 1000 + 1.0
    stats = info(gateway)
    assert stats["moved_timeouts"] == 1
    assert stats["moved_retries"] >= 3  # it was tried again meanwhile
    assert stats["moving_held_requests"] == 0


# ---------------------------------------------------------------------- the map moves


def test_redirect_sends_a_held_request_to_the_new_owner(
    backends: list[Pgserver], gateway: Gateway, raw: Raw
) -> None:
    """The fence stays (as after a committed move); a new map version releases the request
    to the new owner, and no later write reaches the old owner."""
    old, new = backends
    with gateway.client() as client:
        client.set(FENCED, "moved-value")
    fence(old, str(FENCED_PN))
    with new.client() as target:  # the migrator's copy
        target.set(FENCED, "moved-value")
    raw.send(("GET", FENCED), ("SET", FENCED, "new"), ("GET", FENCED))
    assert raw.nothing_within(0.3)
    with gateway.admin() as admin:
        assert admin.execute_command("BLOCK", "j1", str(FENCED_PN)) == b"OK"
        assert (
            admin.execute_command("REDIRECT", "j1", str(FENCED_PN), f"127.0.0.1:{new.port}", 1)
            == b"OK"
        )
    assert raw.replies(3, timeout=2) == [b"moved-value", b"OK", b"new"]
    with new.client() as target:
        assert target.get(FENCED) == b"new"
    unfence(old)
    with old.client() as source:
        assert source.get(FENCED) == b"moved-value"  # never written after the fence


def test_a_refused_part_the_new_map_splits_is_sent_to_both_owners(
    backends: list[Pgserver], gateway: Gateway, raw: Raw
) -> None:
    """MGET/DEL parts [fenced, a1] on A: the new map gives only the fenced partition to B,
    so each held part goes out again as two parts, merged back into one reply."""
    old, new = backends
    a1, b1 = A_KEYS[0], B_KEYS[0]
    with gateway.client() as client:
        client.mset({FENCED: "f", a1: "a", b1: "b"})
    fence(old, str(FENCED_PN))
    with new.client() as target:
        target.set(FENCED, "f")
    raw.send(("MGET", b1, FENCED, a1), ("EXISTS", FENCED, a1, b1, FENCED))
    assert raw.nothing_within(0.3)
    # Sent after the refusals: held behind them, whole.
    raw.send(("DEL", a1, FENCED), ("MGET", FENCED, a1, b1))
    results: list[list[bytes | None]] = []

    def resp3_client() -> None:
        with connect(gateway.port, protocol=3) as client:
            results.append(client.mget(FENCED, a1, b1))

    thread = threading.Thread(target=resp3_client)
    thread.start()
    assert raw.nothing_within(0.3)
    with gateway.admin() as admin:
        assert admin.execute_command("BLOCK", "j1", str(FENCED_PN)) == b"OK"
        assert (
            admin.execute_command("REDIRECT", "j1", str(FENCED_PN), f"127.0.0.1:{new.port}", 1)
            == b"OK"
        )
    assert raw.replies(4, timeout=3) == [[b"b", b"f", b"a"], 4, 2, [None, None, b"b"]]
    thread.join(5)
    # Another client, so no order against the DEL above (and MGET spans two groups).
    assert len(results) == 1
    assert tuple(results[0]) in {(f, a, b"b") for f in (b"f", None) for a in (b"a", None)}
    with new.client() as target, old.client() as source:
        assert target.get(FENCED) is None
        assert source.get(a1) is None
        unfence(old)
        assert source.get(FENCED) == b"f"  # the old owner was not written after the fence


# ---------------------------------------------------------------------- faults


def test_backend_dying_while_requests_are_held_gives_the_usual_error(
    backends: list[Pgserver], gateway: Gateway, raw: Raw
) -> None:
    fence(backends[0], str(FENCED_PN))
    raw.send(("GET", FENCED), ("GET", B_KEYS[0]))
    assert raw.nothing_within(0.3)
    backends[0].kill()
    died = time.monotonic()
    replies = raw.replies(2, timeout=3)
    assert time.monotonic() - died < 1.0
    assert isinstance(replies[0], hiredis.ReplyError)
    assert str(replies[0]) == f"ERR backend 127.0.0.1:{backends[0].port} unavailable"
    assert replies[1] is None
    backends[0].restart()  # still fenced (the fence is logged); the fixture lifts it
    unfence(backends[0])
    with gateway.client() as client:
        deadline = time.monotonic() + 10
        while True:
            try:
                assert client.set(FENCED, "back")
                break
            except redis.ResponseError:
                assert time.monotonic() < deadline
                time.sleep(0.1)


def test_a_client_that_leaves_while_held_does_not_disturb_others(
    backends: list[Pgserver], gateway: Gateway
) -> None:
    fence(backends[0], str(FENCED_PN))
    leaving = Raw(gateway.port)
    leaving.send(*[("INCR", FENCED)] * 50)
    time.sleep(0.2)
    leaving.close()
    results: list[object] = []

    def staying() -> None:
        with connect(gateway.port) as client:
            results.append(client.incr(FENCED))

    thread = threading.Thread(target=staying)
    thread.start()
    time.sleep(0.2)
    unfence(backends[0])
    thread.join(5)
    assert not thread.is_alive()
    assert results == [1]  # the departed client's requests were dropped, not sent

"""Gateway resource limits on real processes: max clients, the output limit of a client that
does not read, and backpressure on a client with too many requests in flight."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway_fixtures import (
    Cluster,
    Gateway,
    connect,
    default_assignments,
    recv_until_closed,
    running_cluster,
    start_gateway,
)
from tests.procs import stop

OUTPUT_LIMIT_MB = 1
MAX_INFLIGHT = 1000


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("limits"),
        "--client-output-limit-mb",
        str(OUTPUT_LIMIT_MB),
        "--max-inflight-per-client",
        str(MAX_INFLIGHT),
    ) as started:
        yield started


def stats(gateway: Gateway) -> dict[str, Any]:
    reply = gateway.admin().execute_command("STATS")  # type: ignore[no-untyped-call]
    items = iter(reply)
    return {key.decode(): value for key, value in zip(items, items, strict=True)}


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def ping(sock: socket.socket) -> bytes:
    sock.sendall(b"PING\r\n")
    return sock.recv(64)


def admitted(port: int) -> socket.socket:
    """A connection the gateway serves (connections just closed may still count a moment)."""
    deadline = time.monotonic() + 10
    while True:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if ping(sock) == b"+PONG\r\n":
            return sock
        sock.close()
        assert time.monotonic() < deadline, "no connection admitted"
        time.sleep(0.05)


def test_clients_over_maxclients_get_the_redis_error(limited: Cluster) -> None:
    proc, port, _admin = start_gateway(default_assignments(limited.backends), "--maxclients", "2")
    try:
        first, second = admitted(port), admitted(port)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as third:
            assert recv_until_closed(third) == b"-ERR max number of clients reached\r\n"
        first.close()
        admitted(port).close()  # a place is free again once the gateway sees the close
        second.close()
    finally:
        stop(proc)


def test_a_client_that_never_reads_is_disconnected_and_memory_stays_bounded(
    limited: Cluster,
) -> None:
    gateway = limited.gateway
    value = b"x" * (16 << 10)
    requests = 3000  # 48 MB of replies asked for; the limit is 1 MB
    normal = gateway.client()
    normal.set("big", value)
    before = rss_bytes(gateway.proc.pid)
    disconnects = stats(gateway)["output_limit_disconnects"]

    silent = socket.socket()
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
    silent.settimeout(5)
    silent.connect(("127.0.0.1", gateway.port))
    try:
        silent.sendall(b"GET big\r\n" * requests)
        deadline = time.monotonic() + 30
        i = 0
        while stats(gateway)["output_limit_disconnects"] == disconnects:
            normal.set(f"k{i}", i)  # others are served meanwhile
            assert normal.get(f"k{i}") == str(i).encode()
            i += 1
            assert time.monotonic() < deadline, "the silent client was never disconnected"
        grown = rss_bytes(gateway.proc.pid) - before
        received = recv_until_closed(silent)  # what was sent before the close, then EOF
    except ConnectionResetError:
        received = b""
    finally:
        silent.close()
    assert len(received) < requests * len(value) // 4
    assert grown < 20 << 20, f"gateway RSS grew by {grown >> 20} MB"
    assert normal.get("big") == value
    normal.close()


def test_a_pipeline_of_100k_commands_completes_under_backpressure(limited: Cluster) -> None:
    gateway = limited.gateway
    paused = stats(gateway)["paused_clients"]
    count = 50_000
    with connect(gateway.port, socket_timeout=120) as client:
        pipe = client.pipeline(transaction=False)
        for i in range(count):
            pipe.set(f"p:{i}", i)
        for i in range(count):
            pipe.get(f"p:{i}")
        started = time.monotonic()
        replies = pipe.execute()
        took = time.monotonic() - started
    assert replies[:count] == [True] * count
    assert replies[count:] == [str(i).encode() for i in range(count)]
    # It was held back (not read) while MAX_INFLIGHT requests waited, and went on each time.
    assert stats(gateway)["paused_clients"] > paused
    assert took < 90

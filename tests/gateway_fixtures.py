"""Real gateway processes in front of real pgservers, for the gateway's integration tests.

A `Cluster` is two pgservers (partitions 0-4095 on the first, 4096-8191 on the second) and
one gateway routing to them. Test modules import the fixtures they use from here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tessera.partition import PARTITIONS, pn
from tests.procs import REPO, free_port, start_pgserver, stop, wait_for_port

SPLIT_AT = 4096  # partitions below belong to backend 0, the rest to backend 1


def start_gateway(
    backends: list[tuple[str, int]], *extra: str
) -> tuple[subprocess.Popen[bytes], int, int]:
    """A gateway process for `(ranges, port)` assignments; returns (proc, port, admin port)."""
    port, admin_port = free_port(), free_port()
    args = [
        sys.executable,
        "-m",
        "gateway",
        "--port",
        str(port),
        "--admin-port",
        str(admin_port),
        "--log-level",
        "warning",
    ]
    for ranges, backend_port in backends:
        args += ["--backend", f"{ranges}=127.0.0.1:{backend_port}"]
    proc = subprocess.Popen([*args, *extra], cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for_port(port, proc)
        wait_for_port(admin_port, proc)
    except BaseException:
        stop(proc)
        raise
    return proc, port, admin_port


def keys_in(first: int, last: int, count: int, prefix: str = "k") -> list[str]:
    """`count` distinct keys `prefix<n>` whose partitions lie in first..last."""
    found: list[str] = []
    n = 0
    while len(found) < count:
        key = f"{prefix}{n}"
        if first <= pn(key.encode()) <= last:
            found.append(key)
        n += 1
    return found


def owner_index(key: str | bytes) -> int:
    """Which backend of a `Cluster` owns `key` under the initial map."""
    raw = key.encode() if isinstance(key, str) else key
    return 0 if pn(raw) < SPLIT_AT else 1


def connect(port: int, **kwargs: object) -> redis.Redis:
    """A redis-py client that never retries: a retry could hide a lost or failed reply.

    redis-py 8 speaks RESP3 (HELLO 3) unless given protocol=2.
    """
    options: dict[str, object] = {"socket_timeout": 10, "retry": Retry(NoBackoff(), 0), **kwargs}
    return redis.Redis(port=port, **options)  # type: ignore[arg-type]


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def recv_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@dataclass
class Pgserver:
    data_dir: Path
    port: int
    proc: subprocess.Popen[bytes]

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def restart(self) -> None:
        """Start again on the same port with the same data directory."""
        self.proc, _ = start_pgserver(self.data_dir, self.port)

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """SIGSTOP the process for the duration of the block (always SIGCONT afterwards)."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)

    def client(self, **kwargs: object) -> redis.Redis:
        return connect(self.port, **kwargs)


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    port: int
    admin_port: int

    def client(self, **kwargs: object) -> redis.Redis:
        return connect(self.port, **kwargs)

    def admin(self, timeout: float = 10) -> redis.Redis:
        """A client of the admin port that returns replies as they come (no callbacks)."""
        # protocol=2: redis-py 8 otherwise opens with HELLO 3, which the admin port refuses.
        client = connect(self.admin_port, socket_timeout=timeout, protocol=2)
        client.response_callbacks.clear()
        return client

    def stop(self) -> None:
        stop(self.proc)


@dataclass
class Cluster:
    backends: list[Pgserver]
    gateway: Gateway
    extra: tuple[str, ...] = field(default=())

    def owner(self, key: str | bytes) -> Pgserver:
        return self.backends[owner_index(key)]

    def flush(self) -> None:
        """Empty both backends directly (the gateway refuses FLUSHALL by default)."""
        for backend in self.backends:
            with backend.client() as client:
                client.flushall()


def start_backends(tmp: Path, count: int = 2) -> list[Pgserver]:
    backends: list[Pgserver] = []
    try:
        for i in range(count):
            data_dir = tmp / f"pg{i}"
            data_dir.mkdir()
            proc, port = start_pgserver(data_dir)
            backends.append(Pgserver(data_dir, port, proc))
    except BaseException:
        stop_backends(backends)
        raise
    return backends


def stop_backends(backends: list[Pgserver]) -> None:
    for backend in backends:
        if backend.proc.poll() is None:
            os.kill(backend.proc.pid, signal.SIGCONT)  # in case a test left it stopped
        stop(backend.proc)


def default_assignments(backends: list[Pgserver]) -> list[tuple[str, int]]:
    return [
        (f"0-{SPLIT_AT - 1}", backends[0].port),
        (f"{SPLIT_AT}-{PARTITIONS - 1}", backends[1].port),
    ]


@contextmanager
def running_cluster(tmp: Path, *gateway_args: str) -> Iterator[Cluster]:
    backends = start_backends(tmp)
    try:
        proc, port, admin_port = start_gateway(default_assignments(backends), *gateway_args)
        gateway = Gateway(proc, port, admin_port)
        try:
            yield Cluster(backends, gateway, gateway_args)
        finally:
            gateway.stop()
    finally:
        stop_backends(backends)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two pgservers and a gateway with default options, shared by a test module."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.fixture
def gw(cluster: Cluster) -> Iterator[redis.Redis]:
    """A redis-py client of the module's gateway, with both backends emptied first."""
    cluster.flush()
    client = cluster.gateway.client()
    yield client
    client.close()

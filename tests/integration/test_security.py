"""Passwords and the cluster secret on real processes.

Application AUTH (gateway and standalone pgserver `--requirepass`) is compared byte for byte
with a real redis-server started with `--requirepass`. Internal ports (pgserver, gateway
admin, confmaster API) refuse a client without the cluster secret before running anything.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trio

from tessera.layout import ROOT, map_path
from tessera.security import ZkAuth
from tessera.zk import NotAuthorizedError, ZkClient
from tessera.zkserver import ZooKeeperServer
from tests.cluster_fixtures import LocalCluster, wait_until
from tests.gateway_fixtures import (
    Cluster,
    connect,
    default_assignments,
    keys_in,
    recv_until_closed,
    running_cluster,
    start_gateway,
)
from tests.procs import REPO, free_port, start_pgserver, start_redis, stop, wait_for_port
from tests.zk_fixtures import zk_chroot, zk_server

__all__ = ["zk_chroot", "zk_server"]

PASSWORD = "s3cret"
SECRET = "cluster-secret-for-tests"
LOW = keys_in(0, 4095, 2)


def secret_file(directory: Path, name: str, content: str) -> Path:
    path = directory / name
    path.write_text(content + "\n")
    path.chmod(0o600)
    return path


def exchange(port: int, request: bytes, timeout: float = 5) -> bytes:
    """Send `request`, then half-close and read every reply until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        return recv_until_closed(sock)


# ---------------------------------------------------------------------- application AUTH


@pytest.fixture(scope="module")
def reference() -> Iterator[int]:
    proc, port = start_redis(None, "--requirepass", PASSWORD)
    yield port
    stop(proc)


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A standalone pgserver whose password comes from the environment."""
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "pgserver", "--port", str(port), "--log-level", "warning"),
            *("--data-dir", str(tmp_path_factory.mktemp("standalone"))),
        ],
        cwd=REPO,
        env={**os.environ, "TESSERA_REQUIREPASS": PASSWORD},
    )
    wait_for_port(port, proc)
    yield port
    stop(proc)


@pytest.fixture(scope="module")
def gateway_with_password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A gateway whose password comes from --requirepass-file."""
    tmp = tmp_path_factory.mktemp("requirepass")
    path = secret_file(tmp, "requirepass", PASSWORD)
    with running_cluster(tmp, "--requirepass-file", str(path)) as started:
        yield started


# Before AUTH; each line is one request, the replies are compared with redis-server's.
BEFORE_AUTH = [
    f"GET {LOW[0]}",
    "PING",
    "NOSUCHCOMMAND a b",
    "GET",
    f"SET {LOW[0]}",
    "AUTH",
    "AUTH a b c",
    "AUTH nope",
    "AUTH default nope",
    f"AUTH someone {PASSWORD}",
    "HELLO 3",
    "HELLO 3 AUTH default nope",
    "HELLO 4",
    "SELECT 0",
    f"AUTH {PASSWORD}",
    "PING",
    f"AUTH {PASSWORD}",
    "AUTH nope",
    "PING",
    "QUIT",
]


def test_auth_replies_match_redis_byte_for_byte(
    reference: int, standalone: int, gateway_with_password: Cluster
) -> None:
    request = "".join(line + "\r\n" for line in BEFORE_AUTH).encode()
    expected = exchange(reference, request)
    assert expected.startswith(b"-NOAUTH Authentication required.\r\n")
    assert b"-WRONGPASS invalid username-password pair or user is disabled.\r\n" in expected
    assert exchange(standalone, request) == expected
    assert exchange(gateway_with_password.gateway.port, request) == expected


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_sees_the_same_errors(
    reference: int, standalone: int, gateway_with_password: Cluster, protocol: int
) -> None:
    def errors(port: int) -> list[str]:
        seen = []
        for password in (None, "wrong"):
            with pytest.raises(redis.AuthenticationError) as refused:
                connect(port, password=password, protocol=protocol).get(LOW[0])
            seen.append(str(refused.value))
        with connect(port, password=PASSWORD, protocol=protocol) as client:
            client.set(LOW[0], "v")
            assert client.get(LOW[0]) == b"v"
        return seen

    expected = errors(reference)
    assert expected[1] == "invalid username-password pair or user is disabled."
    assert errors(standalone) == expected
    assert errors(gateway_with_password.gateway.port) == expected


# ---------------------------------------------------------------------- internal ports


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two pgservers and a gateway, every one of them with the cluster secret (a file)."""
    tmp = tmp_path_factory.mktemp("secured")
    path = secret_file(tmp, "cluster.secret", SECRET)
    with running_cluster(tmp, "--cluster-secret-file", str(path)) as started:
        # running_cluster starts its pgservers without arguments: restart them with the secret.
        for backend in started.backends:
            stop(backend.proc)
            backend.proc, _ = start_pgserver(
                backend.data_dir, backend.port, "--cluster-secret-file", str(path)
            )
        yield started


NOAUTH = b"-NOAUTH Authentication required.\r\n"
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"


def test_pgserver_refuses_and_closes_without_the_cluster_secret(secured: Cluster) -> None:
    port = secured.backends[0].port
    # Nothing after the refusal runs: the connection is closed.
    assert exchange(port, b"SET k v\r\nAUTH " + SECRET.encode() + b"\r\nPING\r\n") == NOAUTH
    assert exchange(port, b"AUTH nope\r\nPING\r\n") == WRONGPASS
    assert exchange(port, b"HELLO 3\r\nPING\r\n").startswith(b"-NOAUTH HELLO must be called")
    assert exchange(port, f"AUTH {SECRET}\r\nPING\r\n".encode()) == b"+OK\r\n+PONG\r\n"
    with connect(port, password=SECRET) as client:
        assert client.dbsize() >= 0
    with pytest.raises(redis.ConnectionError):
        connect(port).set("k", "v")


def test_gateway_admin_port_refuses_and_closes_without_the_cluster_secret(
    secured: Cluster,
) -> None:
    port = secured.gateway.admin_port
    assert exchange(port, b"MAP\r\nAUTH " + SECRET.encode() + b"\r\nMAP\r\n") == NOAUTH
    assert exchange(port, b"AUTH nope\r\nMAP\r\n") == WRONGPASS
    assert exchange(port, b"UNBLOCK job\r\n") == NOAUTH
    assert exchange(port, f"AUTH {SECRET}\r\nPING\r\n".encode()) == b"+OK\r\n+PONG\r\n"
    admin = connect(port, protocol=2, password=SECRET)
    admin.response_callbacks.clear()
    assert b"ranges" in admin.execute_command("MAP")  # type: ignore[no-untyped-call]
    admin3 = connect(port, protocol=3, password=SECRET)
    assert admin3.execute_command("PING") is True  # type: ignore[no-untyped-call]


def test_a_secured_gateway_serves_through_secured_pgservers(secured: Cluster) -> None:
    with secured.gateway.client() as client:
        keys = {f"key:{i}": str(i) for i in range(50)}  # both backends
        client.mset(keys)
        assert client.mget(list(keys)) == [v.encode() for v in keys.values()]
        assert client.dbsize() >= 50
    for backend in secured.backends:  # each one got its share, through authenticated links
        assert backend.client(password=SECRET).dbsize() > 0


def test_a_gateway_with_a_wrong_secret_gets_no_data(secured: Cluster, tmp_path: Path) -> None:
    wrong = secret_file(tmp_path, "wrong.secret", "not-the-secret")
    proc, port, _admin = start_gateway(
        default_assignments(secured.backends), "--cluster-secret-file", str(wrong)
    )
    try:
        with connect(port) as client, pytest.raises(redis.ResponseError, match="unavailable"):
            client.get(LOW[0])
    finally:
        stop(proc)


def test_pgserver_refuses_two_different_passwords(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "cluster.secret", SECRET)
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pgserver", "--data-dir", str(tmp_path / "data")),
            *("--port", str(free_port()), "--requirepass", "other"),
            *("--cluster-secret-file", str(path)),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "one password" in result.stderr


def api_status(port: int, headers: dict[str, str]) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/clusters", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            json.loads(reply.read())
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def cli(
    cluster: LocalCluster, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "confmaster.cli"),
            *("--confmaster", f"127.0.0.1:{cluster.confmaster_port}"),
            *args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in {**os.environ, **(env or {})}.items() if v},
    )


@pytest.fixture
def secured_cluster(
    zk_server: ZooKeeperServer, zk_chroot: str, tmp_path: Path
) -> Iterator[LocalCluster]:
    """confmaster, a PG of master and slave, and a gateway: the cluster secret everywhere and
    ZooKeeper credentials for the confmaster and the gateway."""
    local = LocalCluster(
        zk_server,
        zk_chroot,
        tmp_path,
        pgs=2,
        replicas=1,
        secret=SECRET,
        zk_auth="tessera:zkpw",
        log_files=True,
    )
    try:
        yield local.start()
    finally:
        local.stop()


def test_a_secured_cluster_serves_fails_over_and_keeps_zookeeper_closed(
    secured_cluster: LocalCluster,
    zk_server: ZooKeeperServer,
    zk_chroot: str,
) -> None:
    cluster = secured_cluster  # started: roles, replication and heartbeats all authenticated
    port = cluster.confmaster_port
    assert api_status(port, {}) == 401
    assert api_status(port, {"Authorization": "Bearer nope"}) == 401
    assert api_status(port, {"Authorization": f"Bearer {SECRET}"}) == 200

    client = cluster.client()
    client.set("greeting", "hello")
    assert client.get("greeting") == b"hello"

    refused = cli(cluster, "status", env={"TESSERA_CLUSTER_SECRET": ""})
    assert refused.returncode == 1
    assert "requires the cluster secret" in refused.stderr

    old = cluster.master(0)
    secret_path = str(cluster.tmp_path / "cluster.secret")
    result = cli(cluster, "--cluster-secret-file", secret_path, "failover", "--pg", "0")
    assert result.returncode == 0, result.stderr
    new = cluster.pg(0)["master"]
    assert new != old.id
    wait_until(lambda: client.set("after", "1"), 15, "writes through the new master")
    assert client.get("greeting") == b"hello"
    wait_until(lambda: cluster.in_sync(0), 30, "the old master to follow the new one")

    # A migration: the jobs' mover connections and the gateway admin commands, all with AUTH.
    moving = {key: key.upper() for key in keys_in(100, 199, 20, prefix="moving")}
    client.mset(moving)
    moved = cli(
        cluster, "--cluster-secret-file", secret_path, "migrate", "--range", "100-199:1", "--wait"
    )
    assert moved.returncode == 0, moved.stderr
    logged = cluster.log_text("confmaster") + cluster.log_text("gateway")
    assert "BLOCK not confirmed" not in logged  # the gateway took the secret on its admin port
    assert "refused the cluster secret" not in logged
    assert [100, 199, 1] in cluster.api("GET", "/clusters/default/map")["ranges"]
    assert client.mget(list(moving)) == [value.encode() for value in moving.values()]
    target = redis.Redis(port=cluster.master(1).port, password=SECRET)
    assert target.mget(list(moving)) == [value.encode() for value in moving.values()]

    trio.run(_zookeeper_refuses_strangers, zk_server.address, zk_chroot)


async def _zookeeper_refuses_strangers(address: str, chroot: str) -> None:
    stranger = ZkClient(address, chroot)
    await stranger.start()
    try:
        with pytest.raises(NotAuthorizedError):
            await stranger.set(map_path("default"), b"{}")
        with pytest.raises(NotAuthorizedError):
            await stranger.create(f"{ROOT}/intruder")
        with pytest.raises(NotAuthorizedError):
            await stranger.delete(map_path("default"))
        with pytest.raises(NotAuthorizedError):  # no world read unless --zk-world-read
            await stranger.get(map_path("default"))
    finally:
        await stranger.stop()
    owner = ZkClient(address, chroot, auth=ZkAuth(user="tessera", password="zkpw"))
    await owner.start()
    try:
        data, _stat = await owner.get(map_path("default"))
        assert b"ranges" in data
    finally:
        await owner.stop()

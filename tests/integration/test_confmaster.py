"""The confmaster on a real ZooKeeper, driven the way operators do: confmaster-cli, the API,
real pgservers and gateways, SIGKILL for faults."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tessera.partition import pn
from tessera.zkserver import ZooKeeperServer
from tests.procs import REPO, free_port, free_port_block, start_pgserver, stop, wait_for_port
from tests.zk_fixtures import zk_chroot, zk_server

__all__ = ["zk_chroot", "zk_server"]


def start_confmaster(
    zk: ZooKeeperServer, chroot: str, port: int | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    port = port or free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "confmaster",
            "--zk",
            zk.address,
            "--zk-chroot",
            chroot,
            "--port",
            str(port),
            "--heartbeat-interval-ms",
            "200",
            "--heartbeat-timeout-ms",
            "1000",
            "--log-level",
            "warning",
        ],
        cwd=REPO,
    )
    wait_for_port(port, proc)
    return proc, port


def api(port: int, path: str = "/") -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
        return json.loads(reply.read())


def wait_until(condition: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = condition()
            if value:
                return value
        except (OSError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


def cli(port: int, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "confmaster.cli", "--confmaster", f"127.0.0.1:{port}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def confmaster(zk_server: ZooKeeperServer, zk_chroot: str) -> Iterator[int]:
    if not zk_server.running:
        zk_server.start()
    proc, port = start_confmaster(zk_server, zk_chroot)
    wait_until(lambda: api(port)["is_leader"], 20, "leadership")
    yield port
    stop(proc)


def test_cli_manages_a_cluster(confmaster: int) -> None:
    created = json.loads(
        cli(confmaster, "--json", "cluster", "create", "shop", "--pgs", "2").stdout
    )
    assert created["map"]["ranges"] == [[0, 4095, 0], [4096, 8191, 1]]
    assert created["route"] is None  # no PG has a master yet
    assert "shop" in cli(confmaster, "cluster", "list").stdout
    cli(confmaster, "--cluster", "shop", "pg", "add")
    cli(confmaster, "--cluster", "shop", "pgs", "add", "--pg", "0", "127.0.0.1:17100")
    cli(confmaster, "--cluster", "shop", "pgs", "add", "--pg", "1", "127.0.0.1:17101")
    cli(confmaster, "--cluster", "shop", "gw", "add", "127.0.0.1:16100")
    status = json.loads(cli(confmaster, "--cluster", "shop", "--json", "status").stdout)
    assert [pg["id"] for pg in status["pgs"]] == [0, 1, 2]
    assert status["route"]["ranges"] == [
        [0, 4095, "127.0.0.1:17100"],
        [4096, 8191, "127.0.0.1:17101"],
    ]
    assert status["gateways"][0]["admin_port"] == 16101
    text = cli(confmaster, "--cluster", "shop", "status").stdout
    assert "127.0.0.1:17100" in text
    assert "PG" in text
    assert "0-4095 -> PG 0" in cli(confmaster, "--cluster", "shop", "map", "show").stdout.replace(
        "   ", " "
    )
    cli(confmaster, "--cluster", "shop", "pg", "del", "2")

    bad = cli(confmaster, "--cluster", "nope", "status", check=False)
    assert bad.returncode == 1
    assert "unknown cluster 'nope'" in bad.stderr
    overlap = cli(
        confmaster,
        "cluster",
        "create",
        "x",
        "--range",
        "0-5000:0",
        "--range",
        "4000-8191:1",
        check=False,
    )
    assert overlap.returncode == 1
    assert "assigned to both PG 0 and PG 1" in overlap.stderr
    busy = cli(confmaster, "--cluster", "shop", "pg", "del", "0", check=False)
    assert busy.returncode == 1
    assert "still owns partitions" in busy.stderr
    unreachable = cli(free_port(), "cluster", "list", check=False)
    assert unreachable.returncode == 1
    assert "cannot reach the confmaster" in unreachable.stderr
    usage = cli(confmaster, "pgs", "add", "nonsense", check=False)
    assert usage.returncode == 2


def test_gateway_follows_map_changes(
    confmaster: int, zk_server: ZooKeeperServer, zk_chroot: str, tmp_path: Path
) -> None:
    pg_a, port_a = start_pgserver(tmp_path / "a")
    pg_b, port_b = start_pgserver(tmp_path / "b")
    gw_port = free_port()
    gateway = None
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
                "--cluster",
                "default",
                "--log-level",
                "warning",
            ],
            cwd=REPO,
        )
        wait_for_port(gw_port, gateway)
        client = redis.Redis(port=gw_port)
        low = next(f"k{i}" for i in range(10_000) if pn(f"k{i}".encode()) < 4096)
        client.set(low, "before")
        assert redis.Redis(port=port_a).get(low) == b"before"
        # Reassign 0-4095 to PG 1 (no data moves: this only checks that routing follows).
        body = json.dumps({"ranges": [[0, 8191, 1]]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{confmaster}/clusters/default/map", data=body, method="PUT"
        )
        started = time.monotonic()
        urllib.request.urlopen(request, timeout=10).read()

        def routed_to_b() -> bool:
            client.set(low, "after")
            return redis.Redis(port=port_b).get(low) == b"after"

        wait_until(routed_to_b, 5, "the gateway to apply the new map")
        assert time.monotonic() - started < 2.0
        assert api(confmaster, "/clusters/default")["live_gateways"] == [f"127.0.0.1:{gw_port}"]
    finally:
        if gateway is not None:
            stop(gateway)
        stop(pg_a)
        stop(pg_b)


def test_leader_killed_a_follower_takes_over(zk_server: ZooKeeperServer, zk_chroot: str) -> None:
    if not zk_server.running:
        zk_server.start()
    first, port1 = start_confmaster(zk_server, zk_chroot)
    second, port2 = start_confmaster(zk_server, zk_chroot)
    try:
        wait_until(lambda: api(port1)["is_leader"] or api(port2)["is_leader"], 20, "a leader")
        leader, follower = (first, port2) if api(port1)["is_leader"] else (second, port1)
        cli(follower, "cluster", "create", "default")  # a follower forwards the CLI to the leader
        epoch = wait_until(lambda: api(follower)["leader"], 5, "leader pointer")
        assert epoch
        leader.send_signal(signal.SIGKILL)
        leader.wait()
        started = time.monotonic()
        wait_until(lambda: api(follower)["is_leader"], 20, "the follower to take over")
        took = time.monotonic() - started
        assert took < 10, f"takeover took {took:.1f}s"
        cli(follower, "pg", "add")
        status = json.loads(cli(follower, "--json", "status").stdout)
        assert [pg["id"] for pg in status["pgs"]] == [0, 1, 2]
    finally:
        stop(first)
        stop(second)


def test_killed_gateway_shows_as_down(
    confmaster: int, zk_server: ZooKeeperServer, zk_chroot: str, tmp_path: Path
) -> None:
    pg_a, port_a = start_pgserver(tmp_path / "a")
    gw_port = free_port()
    gateway = None
    try:
        cli(confmaster, "cluster", "create", "default", "--pgs", "1")
        cli(confmaster, "pgs", "add", "--pg", "0", f"127.0.0.1:{port_a}")
        cli(confmaster, "gw", "add", f"127.0.0.1:{gw_port}")
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

        def gateway_state() -> str:
            return str(api(confmaster, "/clusters/default")["gateways"][0]["state"])

        wait_until(lambda: gateway_state() == "up", 10, "the gateway to be seen up")
        wait_until(
            lambda: api(confmaster, "/clusters/default")["pgservers"][0]["state"] == "up",
            10,
            "the pgserver to be seen up",
        )
        gateway.send_signal(signal.SIGKILL)
        gateway.wait()
        killed = time.monotonic()
        wait_until(lambda: gateway_state() == "down", 15, "the gateway to be seen down")
        assert time.monotonic() - killed < 5  # heartbeat timeout 1 s, probes every 0.2 s
        assert "down" in cli(confmaster, "status").stdout
    finally:
        if gateway is not None:
            stop(gateway)
        stop(pg_a)


def test_tessera_up_smoke(tmp_path: Path) -> None:
    def pick() -> dict[str, int]:
        return {
            "gw": free_port_block(2),
            "pg": free_port_block(4),
            "cm": free_port(),
            "zk": free_port(),
        }

    def clash(p: dict[str, int]) -> bool:
        used = {p["gw"], p["gw"] + 1, p["cm"], p["zk"], *range(p["pg"], p["pg"] + 4)}
        return len(used) < 8

    def bindable(port: int) -> bool:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    ports = pick()
    while clash(ports):
        ports = pick()
    services = [ports["gw"], *range(ports["pg"], ports["pg"] + 4)]
    # /metrics of each gateway and pgserver is on its port + the offset: find free ones.
    offset = next(
        o
        for o in range(1000, 30000, 37)
        if max(services) + o < 65536
        and all(bindable(p + o) for p in services)
        and not {p + o for p in services} & {*services, ports["cm"], ports["zk"], ports["gw"] + 1}
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tessera.up",
            "up",
            "--data-dir",
            str(tmp_path / "data"),
            "--port",
            str(ports["gw"]),
            "--pgserver-port",
            str(ports["pg"]),
            "--confmaster-port",
            str(ports["cm"]),
            "--zk-port",
            str(ports["zk"]),
            "--no-status",
            "--replicas",
            "1",
            "--metrics-offset",
            str(offset),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    output = ""
    try:
        deadline = time.monotonic() + 90
        while "Ctrl-C stops everything" not in output:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, output
            output += line
            assert time.monotonic() < deadline, output
        assert f"redis-cli -p {ports['gw']}" in output
        # The cluster secret: generated private, given to every process, shown how to use.
        secret_path = tmp_path / "data" / "cluster.secret"
        assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
        secret = secret_path.read_text().strip()
        assert len(secret) >= 32
        assert f"export TESSERA_CLUSTER_SECRET=$(cat {secret_path})" in output
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=ports["pg"]).ping()
        gateway_metrics = f"http://127.0.0.1:{ports['gw'] + offset}/metrics"
        assert gateway_metrics in output
        assert f"http://127.0.0.1:{ports['cm']}/metrics" in output
        client = redis.Redis(port=ports["gw"])
        for i in range(100):
            client.set(f"key:{i}", i)
        with urllib.request.urlopen(gateway_metrics, timeout=10) as reply:
            assert 'tessera_gateway_commands_total{command="set"} 100.0' in reply.read().decode()
        values = client.mget([f"key:{i}" for i in range(100)])
        assert values == [str(i).encode() for i in range(100)]
        assert client.dbsize() == 100
        # --replicas 1: each PG is a master and a slave that holds the same data.
        slaves = []
        for port in range(ports["pg"], ports["pg"] + 4):
            replication = redis.Redis(port=port, password=secret).info("replication")
            if replication["role"] == "slave":
                slaves.append(port)
        assert len(slaves) == 2

        def slaves_have_everything() -> bool:
            total = 0
            for port in slaves:
                reader = redis.Redis(port=port, password=secret)
                reader.execute_command("READONLY")  # type: ignore[no-untyped-call]
                total += reader.dbsize()
            return total == 100

        wait_until(slaves_have_everything, 10, "the slaves to hold every key")
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output + rest
    assert "all Tessera processes stopped" in rest
    for port in (ports["gw"], *range(ports["pg"], ports["pg"] + 4), ports["cm"], ports["zk"]):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()

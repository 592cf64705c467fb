"""Automatic and manual failover with real processes: ZooKeeper, confmaster, pgservers, a gateway.

A write load runs through the gateway while masters are killed (SIGKILL), paused (SIGSTOP),
brought back, and slaves die; afterwards every acknowledged write must be there.
`TESSERA_FAILOVER_ROUNDS=20 pytest tests/integration/test_failover.py -k rounds` runs the
long version of the kill loop by hand; CI runs a few rounds.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tessera.zkserver import ZooKeeperServer
from tests.cluster_fixtures import LocalCluster, WriteLoad, http_error_text, wait_until
from tests.procs import REPO
from tests.zk_fixtures import zk_chroot, zk_server

__all__ = ["zk_chroot", "zk_server"]

ROUNDS = int(os.environ.get("TESSERA_FAILOVER_ROUNDS", "3"))


@pytest.fixture
def cluster(zk_server: ZooKeeperServer, zk_chroot: str, tmp_path: Path) -> Iterator[LocalCluster]:
    local = LocalCluster(zk_server, zk_chroot, tmp_path, pgs=1, replicas=1)
    try:
        yield local.start()
    finally:
        local.stop()


def same_data(cluster: LocalCluster, load: WriteLoad) -> None:
    """Every member of PG 0 holds the same value for every key of the load."""
    record = cluster.pg(0)
    expected = [cluster.client().get(key) for key in load.keys]
    for pgs_id in record["members"]:
        member = cluster.members[pgs_id]
        reader = redis.Redis(port=member.port)
        if pgs_id != record["master"]:
            reader.execute_command("READONLY")  # type: ignore[no-untyped-call]

        def matches(reader: redis.Redis = reader) -> bool:
            return [reader.get(key) for key in load.keys] == expected

        wait_until(matches, 10, f"{pgs_id} to hold the master's data")


def test_master_kill_rounds_lose_no_acknowledged_write(cluster: LocalCluster) -> None:
    load = WriteLoad(cluster.gateway_port)
    load.start()
    gaps = []
    try:
        for _ in range(ROUNDS):
            wait_until(lambda: cluster.in_sync(0), 30, "the PG to be back in sync")
            time.sleep(random.uniform(0.1, 0.8))  # a random point of the write stream
            old = cluster.master(0)
            epoch = cluster.pg(0)["epoch"]
            cluster.kill(old)  # returns once the process is gone
            killed_at = time.monotonic()
            gaps.append(load.first_success_after(killed_at, 15))
            record = cluster.pg(0)
            assert record["master"] != old.id
            assert record["epoch"] > epoch
            cluster.restart(old)  # comes back as a slave of the new master
    finally:
        load.stop()
    wait_until(lambda: cluster.in_sync(0), 30, "the old master to rejoin")
    assert load.verify(cluster.client()) == []
    same_data(cluster, load)
    assert len(load.acked) == len(load.keys)
    print(f"writes resumed after {', '.join(f'{g:.2f}' for g in gaps)} s")


def test_slave_death_does_not_stop_writes_and_it_catches_up(cluster: LocalCluster) -> None:
    record = cluster.pg(0)
    slave = cluster.members[next(m for m in record["members"] if m != record["master"])]
    load = WriteLoad(cluster.gateway_port)
    load.start()
    try:
        time.sleep(0.3)
        killed_at = time.monotonic()
        cluster.kill(slave)
        wait_until(lambda: cluster.pg(0)["quorum"] == 0, 10, "the quorum to drop the slave")
        load.first_success_after(time.monotonic(), 5)
        stalled = load.first_success_after(killed_at, 5)
        assert stalled < 5
        assert cluster.pg(0)["master"] == record["master"]  # no failover for a slave
        cluster.restart(slave)
        wait_until(lambda: cluster.in_sync(0), 30, "the slave to rejoin the quorum")
        time.sleep(0.3)
    finally:
        load.stop()
    assert load.verify(cluster.client()) == []
    same_data(cluster, load)


def test_paused_master_is_replaced_and_rejoins_as_slave(cluster: LocalCluster) -> None:
    old = cluster.master(0)
    load = WriteLoad(cluster.gateway_port)
    load.start()
    try:
        time.sleep(0.3)
        cluster.kill(old, signal.SIGSTOP)
        wait_until(lambda: cluster.pg(0)["master"] != old.id, 15, "a failover")
        load.first_success_after(time.monotonic(), 10)
        time.sleep(0.3)
        cluster.kill(old, signal.SIGCONT)  # it wakes up believing it is the master
        wait_until(lambda: cluster.in_sync(0), 30, "the old master to become a slave")
        assert cluster.info(old)["role"] == "slave"
        time.sleep(0.3)
    finally:
        load.stop()
    assert load.verify(cluster.client()) == []
    same_data(cluster, load)


def test_manual_failover_with_the_cli(cluster: LocalCluster) -> None:
    old = cluster.master(0)
    load = WriteLoad(cluster.gateway_port)
    load.start()
    try:
        time.sleep(0.3)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "confmaster.cli",
                "--confmaster",
                f"127.0.0.1:{cluster.confmaster_port}",
                "failover",
                "--pg",
                "0",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        new = cluster.pg(0)["master"]
        assert new != old.id
        assert f"{old.id} -> {new}" in result.stdout
        load.first_success_after(time.monotonic(), 10)
        wait_until(lambda: cluster.in_sync(0), 30, "the old master to follow")
    finally:
        load.stop()
    assert load.verify(cluster.client()) == []
    same_data(cluster, load)
    # A dead target is refused with the reason.
    slave = cluster.members[old.id]
    cluster.kill(slave)
    wait_until(lambda: cluster.pg(0)["quorum"] == 0, 10, "the slave to be dropped")
    with pytest.raises(urllib.error.HTTPError) as refused:
        cluster.api("POST", "/clusters/default/pgs/0/failover", {"to": old.id})
    assert refused.value.code == 409
    assert "is dead" in http_error_text(refused.value)


def test_min_copies_makes_writes_wait_for_a_dead_slave(cluster: LocalCluster) -> None:
    cluster.api("PUT", "/clusters/default/pgs/0", {"min_copies": 2})
    assert cluster.pg(0)["min_copies"] == 2
    wait_until(lambda: cluster.in_sync(0), 10, "the PG to be in sync again")
    record = cluster.pg(0)
    slave = cluster.members[next(m for m in record["members"] if m != record["master"])]
    cluster.kill(slave)
    time.sleep(1.5)  # past the heartbeat timeout: the slave is known dead
    with socket.create_connection(("127.0.0.1", cluster.gateway_port), timeout=1) as sock:
        sock.sendall(b"SET needs-two-copies 1\r\n")
        with pytest.raises(TimeoutError):
            sock.recv(100)  # held: only one copy could exist
        assert cluster.pg(0)["quorum"] == 1
        cluster.restart(slave)
        sock.settimeout(10)
        assert sock.recv(100) == b"+OK\r\n"  # the slave is back: acknowledged
    reader = redis.Redis(port=slave.port)
    reader.execute_command("READONLY")  # type: ignore[no-untyped-call]
    assert reader.get("needs-two-copies") == b"1"

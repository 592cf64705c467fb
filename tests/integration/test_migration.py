"""Online migration on real processes: ZooKeeper, confmaster, 2 PGs x 2 pgservers, gateways.

A write load of unique values runs through the gateway while partition ranges move between
the PGs (with confmaster-cli and the API), while jobs are cancelled, and while processes are
killed; afterwards every acknowledged write must read back, every preloaded key must be
there once, and the side that gave partitions away (or the target of a cancelled job) must
hold no key of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tessera.partition import PartitionSet, parse_ranges, pn
from tessera.zkserver import ZooKeeperServer
from tests.cluster_fixtures import (
    LocalCluster,
    WriteLoad,
    http_error_text,
    reads_succeed,
    wait_until,
)
from tests.procs import REPO, free_port, wait_for_port
from tests.zk_fixtures import zk_chroot, zk_server

__all__ = ["zk_chroot", "zk_server"]

FINISHED = ("done", "cancelled", "failed")
PRELOAD = 3000


@pytest.fixture
def cluster(zk_server: ZooKeeperServer, zk_chroot: str, tmp_path: Path) -> Iterator[LocalCluster]:
    local = LocalCluster(zk_server, zk_chroot, tmp_path, pgs=2, replicas=1)
    try:
        local.start()
        preload(local)
        yield local
    finally:
        local.stop()


def preload(cluster: LocalCluster, value_size: int = 200) -> None:
    client = cluster.client()
    pipe = client.pipeline(transaction=False)
    for i in range(PRELOAD):
        pipe.set(f"pre:{i}", f"{i}:" + "v" * value_size)
    pipe.execute()


def check_preloaded(client: redis.Redis) -> None:
    values = client.mget([f"pre:{i}" for i in range(PRELOAD)])
    missing = [
        i for i, v in enumerate(values) if not isinstance(v, bytes) or not v.startswith(b"%d:" % i)
    ]
    assert not missing, f"{len(missing)} preloaded keys lost, e.g. pre:{missing[0]}"


def cli(
    cluster: LocalCluster, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "confmaster.cli",
            "--confmaster",
            f"127.0.0.1:{cluster.confmaster_port}",
            *args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(cluster: LocalCluster, *moves: tuple[int, int, int], **options: Any) -> list[str]:
    body = {"ranges": [list(m) for m in moves], **options}
    jobs: list[str] = cluster.api("POST", "/clusters/default/migrations", body)["jobs"]
    return jobs


def job(cluster: LocalCluster, job_id: str) -> dict[str, Any]:
    record: dict[str, Any] = cluster.api("GET", f"/clusters/default/migrations/{job_id}")
    return record


def wait_job(cluster: LocalCluster, job_id: str, timeout_s: float = 60) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        record = job(cluster, job_id)
        return record if record["phase"] in FINISHED else None

    record: dict[str, Any] = wait_until(ended, timeout_s, f"job {job_id} to end")
    return record


def wait_phase(cluster: LocalCluster, job_id: str, phases: tuple[str, ...]) -> str:
    def reached() -> str | None:
        phase = str(job(cluster, job_id)["phase"])
        return phase if phase in phases else None

    phase: str = wait_until(reached, 60, f"job {job_id} to reach {phases}")
    return phase


def owner_map(cluster: LocalCluster) -> list[list[int]]:
    ranges: list[list[int]] = cluster.api("GET", "/clusters/default/map")["ranges"]
    return ranges


def count(cluster: LocalCluster, member_id: str, ranges: str) -> int:
    port = cluster.members[member_id].port
    with redis.Redis(port=port, socket_timeout=5, single_connection_client=True) as client:
        client.execute_command("READONLY")  # slaves answer reads only after it
        keys, _bytes = client.execute_command("TSR.COUNT", ranges)
    return int(keys)


def marks(cluster: LocalCluster, member_id: str) -> dict[str, str]:
    # The raw text: redis-py's INFO parser would turn "1,5" into a list.
    with socket.create_connection(("127.0.0.1", cluster.members[member_id].port), 5) as sock:
        sock.sendall(b"INFO migration\r\n")
        data = b""
        while not (data.count(b"\r\n") >= 2 and data.endswith(b"\r\n\r\n")):
            chunk = sock.recv(65536)
            assert chunk, "connection closed"
            data += chunk
    text = data.split(b"\r\n", 1)[1].decode()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k: fields.get(k, "") for k in ("importing_ranges", "fenced_ranges")}


def pg_members(cluster: LocalCluster, pg: int) -> list[str]:
    members: list[str] = cluster.pg(pg)["members"]
    return members


def assert_only_owner_holds(cluster: LocalCluster, ranges: str, owner: int, other: int) -> None:
    """Every member of `other` is without a key of `ranges` and does not import them."""
    for member in pg_members(cluster, other):
        wait_until(
            lambda m=member: count(cluster, m, ranges) == 0, 20, f"{member} to drop {ranges}"
        )
        assert marks(cluster, member)["importing_ranges"] == ""
    wanted = set(PartitionSet(parse_ranges(ranges)).members())
    for member in pg_members(cluster, owner):
        found = marks(cluster, member)
        assert found["importing_ranges"] == ""
        fenced = (
            PartitionSet(parse_ranges(found["fenced_ranges"]))
            if found["fenced_ranges"]
            else PartitionSet()
        )
        assert not wanted & set(fenced.members()), found


def same_members(cluster: LocalCluster, pg: int, ranges: str) -> None:
    members = pg_members(cluster, pg)
    wait_until(
        lambda: len({count(cluster, m, ranges) for m in members}) == 1,
        20,
        f"PG {pg}'s members to agree on {ranges}",
    )


# ---------------------------------------------------------------------- moves


def test_move_there_and_back_under_load(cluster: LocalCluster) -> None:
    load = WriteLoad(cluster.gateway_port, keys=256)
    load.start()
    try:
        time.sleep(0.3)
        done = cli(cluster, "migrate", "--range", "0-2047:1", "--wait")
        assert done.returncode == 0, done.stderr
        assert "started job(s) 1" in done.stdout
        assert owner_map(cluster) == [[0, 2047, 1], [2048, 4095, 0], [4096, 8191, 1]]
        first = job(cluster, "1")
        assert first["phase"] == "done"
        assert first["keys_copied"] > 0
        assert first["attempts"] >= 1
        assert len(first["block_ms"]) == first["attempts"]
        assert_only_owner_holds(cluster, "0-2047", owner=1, other=0)
        # The old owner keeps refusing the moved partitions (a stale gateway cannot write).
        for member in pg_members(cluster, 0):
            assert marks(cluster, member)["fenced_ranges"] == "0-2047"
        time.sleep(0.3)
        [back] = start(cluster, (0, 2047, 0))
        assert wait_job(cluster, back)["phase"] == "done"
        assert owner_map(cluster) == [[0, 4095, 0], [4096, 8191, 1]]
        assert_only_owner_holds(cluster, "0-2047", owner=0, other=1)
        time.sleep(0.3)
    finally:
        load.stop()
    client = cluster.client()
    assert load.verify(client) == []
    assert len(load.acked) == 256
    check_preloaded(client)
    assert client.dbsize() == PRELOAD + 256 + 1  # + the "ready" key of the fixture
    same_members(cluster, 0, "0-4095")
    same_members(cluster, 1, "4096-8191")
    # status and list, human and JSON
    listed = cli(cluster, "migrate", "list")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[:2] for line in listed.stdout.splitlines()[1:]] == [
        ["1", "done"],
        ["2", "done"],
    ]
    shown = cli(cluster, "migrate", "status", "2", "--json")
    assert json.loads(shown.stdout)["target_pg"] == 0
    human = cli(cluster, "migrate", "status", "1").stdout
    assert "job 1  done" in human
    assert "block" in human


def test_several_ranges_and_targets_in_one_command(cluster: LocalCluster) -> None:
    out = cli(cluster, "migrate", "--range", "100-199:1", "--range", "5000-5099:0", "--wait")
    assert out.returncode == 0, out.stderr
    records = cluster.api("GET", "/clusters/default/migrations")["jobs"]
    assert sorted((r["source_pg"], r["target_pg"], r["ranges"]) for r in records) == [
        (0, 1, [[100, 199]]),
        (1, 0, [[5000, 5099]]),
    ]
    assert owner_map(cluster) == [
        [0, 99, 0],
        [100, 199, 1],
        [200, 4095, 0],
        [4096, 4999, 1],
        [5000, 5099, 0],
        [5100, 8191, 1],
    ]
    assert_only_owner_holds(cluster, "100-199", owner=1, other=0)
    assert_only_owner_holds(cluster, "5000-5099", owner=0, other=1)
    check_preloaded(cluster.client())


@pytest.mark.parametrize(
    ("ranges", "why"),
    [
        (["0-100:1", "50-60:1"], "overlaps"),
        (["5000-5001:1"], "already belongs to PG 1"),
        (["8000-8192:0"], "within 0-8191"),
        (["0-10:7"], "PG 7 does not exist"),
    ],
)
def test_bad_requests_are_refused_up_front(
    cluster: LocalCluster, ranges: list[str], why: str
) -> None:
    args = [arg for spec in ranges for arg in ("--range", spec)]
    out = cli(cluster, "migrate", *args)
    assert out.returncode == 1
    assert why in out.stderr
    assert cluster.api("GET", "/clusters/default/migrations")["jobs"] == []


def test_reading_a_job_that_does_not_exist_is_a_404_naming_it(cluster: LocalCluster) -> None:
    for path, why in (
        ("/clusters/default/migrations/77", "no migration job '77'"),
        ("/clusters/nope/migrations/1", "unknown cluster 'nope'"),
    ):
        with pytest.raises(urllib.error.HTTPError) as caught:
            cluster.api("GET", path)
        assert caught.value.code == 404
        assert why in http_error_text(caught.value)


def test_a_range_in_a_running_job_is_refused(cluster: LocalCluster) -> None:
    [slow] = start(cluster, (0, 2047, 1), rate_mb_s=0.05)
    out = cli(cluster, "migrate", "--range", "2000-2100:1")
    assert out.returncode == 1
    assert f"in running job {slow}" in out.stderr
    assert cli(cluster, "migrate", "cancel", slow).returncode == 0
    assert wait_job(cluster, slow)["phase"] == "cancelled"


# ---------------------------------------------------------------------- cancel


def test_cancel_during_the_copy_leaves_the_target_clean(cluster: LocalCluster) -> None:
    [slow] = start(cluster, (0, 2047, 1), rate_mb_s=0.05)
    wait_phase(cluster, slow, ("copy",))
    wait_until(lambda: job(cluster, slow)["keys_copied"] > 0, 20, "some keys copied")
    out = cli(cluster, "migrate", "cancel", "--all")
    assert out.returncode == 0, out.stderr
    assert f"job {slow}: cancel requested" in out.stdout
    record = wait_job(cluster, slow)
    assert record["phase"] == "cancelled"
    assert owner_map(cluster) == [[0, 4095, 0], [4096, 8191, 1]]
    assert_only_owner_holds(cluster, "0-2047", owner=0, other=1)
    for member in pg_members(cluster, 0):
        assert marks(cluster, member)["fenced_ranges"] == ""
    check_preloaded(cluster.client())


def test_cancel_at_random_moments_ends_clean_either_way(cluster: LocalCluster) -> None:
    load = WriteLoad(cluster.gateway_port, keys=128)
    load.start()
    try:
        owner = 0
        for delay in (0.0, 0.15, 0.3, 0.6):
            target = 1 - owner
            [job_id] = start(cluster, (0, 1023, target))
            time.sleep(delay)
            refused = ""
            try:
                cluster.api("POST", f"/clusters/default/migrations/{job_id}/cancel", {})
            except urllib.error.HTTPError as exc:
                refused = f"{exc.code} {http_error_text(exc)}"
            assert refused == "" or refused.startswith("409 job"), refused
            assert refused == "" or "already" in refused, refused
            record = wait_job(cluster, job_id)
            assert record["phase"] in ("done", "cancelled"), record
            if record["phase"] == "done":
                owner = target
            assert_only_owner_holds(cluster, "0-1023", owner=owner, other=1 - owner)
    finally:
        load.stop()
    client = cluster.client()
    assert load.verify(client) == []
    check_preloaded(client)


def test_cancel_after_the_commit_is_refused(cluster: LocalCluster) -> None:
    [job_id] = start(cluster, (0, 99, 1))
    assert wait_job(cluster, job_id)["phase"] == "done"
    out = cli(cluster, "migrate", "cancel", job_id)
    assert out.returncode == 1
    assert "already ended" in out.stderr or "already committed" in out.stderr


# ---------------------------------------------------------------------- faults


def spawn_confmaster(cluster: LocalCluster) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = cluster._spawn(
        "confmaster",
        "--zk",
        cluster.zk.address,
        "--zk-chroot",
        cluster.chroot,
        "--port",
        str(port),
    )
    wait_for_port(port, proc)
    return proc, port


def test_confmaster_leader_killed_during_the_copy_the_next_one_finishes(
    cluster: LocalCluster,
) -> None:
    standby, standby_port = spawn_confmaster(cluster)
    load = WriteLoad(cluster.gateway_port, keys=128)
    load.start()
    try:
        [job_id] = start(cluster, (0, 2047, 1), rate_mb_s=0.02)
        wait_until(lambda: job(cluster, job_id)["keys_copied"] > 0, 30, "some keys copied")
        cluster.confmaster.send_signal(signal.SIGKILL)
        cluster.confmaster.wait(10)
        cluster.confmaster, cluster.confmaster_port = standby, standby_port
        wait_until(lambda: cluster.api("GET", "/")["is_leader"], 30, "a new leader")
        record = wait_job(cluster, job_id, timeout_s=120)
        assert record["phase"] == "done", record
        time.sleep(0.3)
    finally:
        load.stop()
    assert owner_map(cluster)[0] == [0, 2047, 1]
    assert_only_owner_holds(cluster, "0-2047", owner=1, other=0)
    client = cluster.client()
    assert load.verify(client) == []
    check_preloaded(client)


@pytest.mark.parametrize("side", ["source", "target"])
def test_a_master_killed_during_the_copy_fails_over_and_the_job_finishes(
    cluster: LocalCluster, side: str
) -> None:
    load = WriteLoad(cluster.gateway_port, keys=128)
    load.start()
    try:
        [job_id] = start(cluster, (0, 2047, 1), rate_mb_s=0.02)
        wait_until(lambda: job(cluster, job_id)["keys_copied"] > 0, 30, "some keys copied")
        victim = cluster.master(0 if side == "source" else 1)
        before = job(cluster, job_id)["phase"]  # "copy" but on a crawling machine
        cluster.kill(victim)
        record = wait_job(cluster, job_id, timeout_s=120)
        assert record["phase"] == "done", record
        if before in ("copy", "catchup"):
            assert record["last_error"]  # the mover noticed, and the job went on
        cluster.restart(victim)
        time.sleep(0.3)
    finally:
        load.stop()
    wait_until(lambda: cluster.in_sync(0) and cluster.in_sync(1), 60, "both PGs in sync")
    assert owner_map(cluster)[0] == [0, 2047, 1]
    assert_only_owner_holds(cluster, "0-2047", owner=1, other=0)
    client = cluster.client()
    assert load.verify(client) == []
    check_preloaded(client)
    same_members(cluster, 1, "0-2047,4096-8191")


def test_a_stopped_gateway_does_not_hold_up_the_cutover_nor_write_to_the_old_owner(
    cluster: LocalCluster,
) -> None:
    port = free_port()
    stale = cluster._spawn(
        "gateway",
        "--port",
        str(port),
        "--admin-port",
        "0",
        "--zk",
        cluster.zk.address,
        "--zk-chroot",
        cluster.chroot,
        "--cluster",
        "default",
    )
    wait_for_port(port, stale)
    key = next(f"stale:{i}" for i in range(1000) if pn(f"stale:{i}".encode()) <= 2047)
    stale_client = redis.Redis(port=port, socket_timeout=10)
    stale_client.set(key, "before")
    stale.send_signal(signal.SIGSTOP)
    try:
        [job_id] = start(cluster, (0, 2047, 1))
        record = wait_job(cluster, job_id)
        assert record["phase"] == "done", record
        assert max(record["block_ms"]) < 3000
    finally:
        stale.send_signal(signal.SIGCONT)
    # Back, the gateway either saw the new route or is refused by the old owner's fence
    # and refreshes it: the write lands on the new owner.
    stale_client.set(key, "after")
    assert cluster.client().get(key) == b"after"
    for member in pg_members(cluster, 0):
        assert count(cluster, member, "0-2047") == 0


# ---------------------------------------------------------------------- chaos

FAULTS = ("kill-source", "kill-target", "kill-leader", "stop-gateway", "cancel", "none")


def leader_port(ports: list[int]) -> int:
    def find() -> int | None:
        for port in ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
                    if json.loads(reply.read())["is_leader"]:
                        return port
            except OSError:
                continue
        return None

    port: int = wait_until(find, 30, "a confmaster leader")
    return port


def test_random_faults_at_random_moments(cluster: LocalCluster) -> None:
    """`TESSERA_MIGRATION_ROUNDS=30 pytest -k random_faults` runs the long version by hand;
    `TESSERA_MIGRATION_SEED` replays one."""
    rounds = int(os.environ.get("TESSERA_MIGRATION_ROUNDS", "3"))
    seed = int(os.environ.get("TESSERA_MIGRATION_SEED", str(random.randrange(1 << 30))))
    print(f"seed {seed}")
    rng = random.Random(seed)
    confmasters = {cluster.confmaster_port: cluster.confmaster}
    proc, port = spawn_confmaster(cluster)
    confmasters[port] = proc
    load = WriteLoad(cluster.gateway_port, keys=128)
    load.start()
    owner = 0
    try:
        for round_ in range(rounds):
            target = 1 - owner
            cluster.confmaster_port = leader_port(list(confmasters))
            [job_id] = start(cluster, (0, 2047, target), rate_mb_s=rng.choice([0.0, 0.05, 0.2]))
            time.sleep(rng.uniform(0.0, 1.2))
            fault = rng.choice(FAULTS)
            print(f"round {round_}: job {job_id} to PG {target}, {fault}")
            killed = None
            if fault in ("kill-source", "kill-target"):
                killed = cluster.master(owner if fault == "kill-source" else target)
                cluster.kill(killed)
            elif fault == "kill-leader":
                leader = leader_port(list(confmasters))
                confmasters.pop(leader).send_signal(signal.SIGKILL)
                proc, port = spawn_confmaster(cluster)
                confmasters[port] = proc
                cluster.confmaster_port = port
            elif fault == "stop-gateway":
                cluster.gateway.send_signal(signal.SIGSTOP)
                time.sleep(rng.uniform(0.2, 1.5))
                cluster.gateway.send_signal(signal.SIGCONT)
            elif fault == "cancel":
                with contextlib.suppress(urllib.error.HTTPError):  # 409 once committed
                    cluster.api("POST", f"/clusters/default/migrations/{job_id}/cancel", {})
            record = wait_job(cluster, job_id, timeout_s=120)
            print(f"  -> {record['phase']}, block {record['block_ms']}, {record['last_error']}")
            assert record["phase"] in ("done", "cancelled"), record
            if record["phase"] == "done":
                owner = target
            if killed is not None:
                cluster.restart(killed)
            wait_until(lambda: cluster.in_sync(0) and cluster.in_sync(1), 60, "PGs in sync")
            expected = (
                [[0, 4095, 0], [4096, 8191, 1]]
                if owner == 0
                else [[0, 2047, 1], [2048, 4095, 0], [4096, 8191, 1]]
            )
            assert owner_map(cluster) == expected
            assert_only_owner_holds(cluster, "0-2047", owner=owner, other=1 - owner)
        time.sleep(0.3)
    finally:
        load.stop()
    client = cluster.client()
    wait_until(lambda: reads_succeed(client, load.keys), 10, "reads through the gateway")
    assert load.verify(client) == []
    check_preloaded(client)
    same_members(cluster, owner, "0-2047")

"""/metrics and --log-json on real processes: counters move by what clients did.

Each test scrapes a running gateway, pgserver or confmaster over HTTP, parses the text with
prometheus_client's parser, and compares values before and after some traffic.
"""

from __future__ import annotations

import json
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
from prometheus_client.parser import text_string_to_metric_families

from tessera.partition import pn
from tessera.zkserver import ZooKeeperServer
from tests.cluster_fixtures import LocalCluster, wait_until
from tests.gateway_fixtures import connect, running_cluster
from tests.procs import REPO, free_port, start_pgserver, stop
from tests.zk_fixtures import zk_chroot, zk_server

__all__ = ["zk_chroot", "zk_server"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_gateway_counts_commands_errors_latency_and_connections(tmp_path: Path) -> None:
    metrics_port = free_port()
    with running_cluster(tmp_path, "--metrics-port", str(metrics_port)) as cluster:
        client = cluster.gateway.client(protocol=2)
        client.ping()
        before = scrape(metrics_port)
        for i in range(10):
            client.set(f"key{i}", i)
        pipe = client.pipeline(transaction=False)
        for i in range(5):
            pipe.execute_command("SET" if i % 2 else "set", f"p{i}", i)  # type: ignore[no-untyped-call]
        pipe.execute()
        client.set("text", "abc")
        with pytest.raises(redis.ResponseError):
            client.lpush("text", "x")  # WRONGTYPE: the backend's error
        with pytest.raises(redis.ResponseError):
            client.execute_command("NOSUCHCOMMAND", "x")  # type: ignore[no-untyped-call]
        assert client.mget("key1", "key2", "zzz") == [b"1", b"2", None]
        after = scrape(metrics_port)

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert delta("tessera_gateway_commands_total", command="set") == 16
        assert delta("tessera_gateway_commands_total", command="lpush") == 1
        assert delta("tessera_gateway_commands_total", command="mget") == 1
        assert delta("tessera_gateway_commands_total", command="unknown") == 1
        assert delta("tessera_gateway_command_errors_total", command="lpush") == 1
        assert delta("tessera_gateway_command_errors_total", command="unknown") == 1
        assert delta("tessera_gateway_command_errors_total", command="set") == 0
        # one batch per round trip: 10 SETs, the pipeline, SET, LPUSH, the unknown, MGET
        assert delta("tessera_gateway_request_latency_seconds_count") == 15
        assert delta("tessera_gateway_request_latency_seconds_sum") > 0
        assert value(after, "tessera_gateway_connections") >= 1
        assert delta("tessera_gateway_connections_received_total") == 0
        assert value(after, "tessera_gateway_backend_connections") == 2
        assert value(after, "tessera_gateway_held_requests") == 0
        for generation in "012":  # collector pauses are reported even when there were none
            assert ("tessera_gc_pause_max_seconds", (("generation", generation),)) in after
        assert "gc_pause_max_ms" in client.info("stats")
        other = cluster.gateway.client(protocol=2)
        other.ping()
        assert value(scrape(metrics_port), "tessera_gateway_connections_received_total") == (
            value(after, "tessera_gateway_connections_received_total") + 1
        )
        other.close()
        client.close()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/nothing", timeout=10)
        assert missing.value.code == 404
        missing.value.close()


def test_pgserver_counts_commands_and_reports_its_log(tmp_path: Path) -> None:
    metrics_port = free_port()
    proc, port = start_pgserver(tmp_path / "pg", None, "--metrics-port", str(metrics_port))
    try:
        client = redis.Redis(port=port)
        client.ping()
        before = scrape(metrics_port)
        for i in range(10):
            client.set(f"key{i}", "v" * 100)
        with pytest.raises(redis.ResponseError):
            client.execute_command("NOSUCHCOMMAND")  # type: ignore[no-untyped-call]
        with pytest.raises(redis.ResponseError):
            client.lpush("key1", "x")  # WRONGTYPE
        after = scrape(metrics_port)
        assert value(after, "tessera_pgserver_commands_total", command="set") == 10
        assert value(after, "tessera_pgserver_commands_total", command="lpush") == 1
        assert value(after, "tessera_pgserver_command_errors_total", command="lpush") == 1
        assert value(after, "tessera_pgserver_command_errors_total", command="unknown") == 1
        assert value(after, "tessera_pgserver_command_errors_total", command="set") == 0
        assert value(after, "tessera_pgserver_keys") == 10
        assert value(after, "tessera_pgserver_role", role="master") == 1
        grown = value(after, "tessera_pgserver_log_size_bytes") - value(
            before, "tessera_pgserver_log_size_bytes"
        )
        assert grown > 10 * 100  # ten SETs of 100-byte values were logged
        assert value(after, "tessera_pgserver_log_end_lsn") >= grown
        latency = "tessera_pgserver_request_latency_seconds_count"
        assert value(after, latency) - value(before, latency) == 12
        assert value(after, "process_resident_memory_bytes") > 0
        client.close()
    finally:
        stop(proc)


def test_pgserver_reports_cycle_collector_pauses(tmp_path: Path) -> None:
    metrics_port = free_port()
    proc, port = start_pgserver(tmp_path / "pg", None, "--metrics-port", str(metrics_port))
    try:
        client = redis.Redis(port=port)
        with client.pipeline(transaction=False) as pipe:
            for i in range(5000):  # each command parsed allocates a list: collections run
                pipe.hset(f"h{i}", "field", "v")
            pipe.execute()
        samples = scrape(metrics_port)
        assert value(samples, "tessera_gc_collections_total", generation="0") > 0
        assert value(samples, "tessera_gc_pause_seconds_total", generation="0") > 0
        assert value(samples, "tessera_gc_pause_max_seconds", generation="0") > 0
        stats = client.info("stats")
        assert stats["gc_collections"] > 0
        assert stats["gc_full_collections"] >= 0
        assert 0 < float(stats["gc_pause_max_ms"]) <= float(stats["gc_pause_total_ms"])
        client.close()
    finally:
        stop(proc)


def test_master_reports_its_slave_lag_and_commit_latency(tmp_path: Path) -> None:
    m_metrics, s_metrics = free_port(), free_port()
    master, m_port = start_pgserver(
        tmp_path / "m", None, "--managed", "--metrics-port", str(m_metrics)
    )
    slave, s_port = start_pgserver(
        tmp_path / "s", None, "--managed", "--metrics-port", str(s_metrics)
    )
    try:
        redis.Redis(port=m_port).execute_command("TSR.ROLE", "MASTER", 1, 1)  # type: ignore[no-untyped-call]
        redis.Redis(port=s_port).execute_command(  # type: ignore[no-untyped-call]
            "TSR.ROLE", "SLAVE", 1, f"127.0.0.1:{m_port}"
        )
        client = redis.Redis(port=m_port)
        for i in range(20):
            client.set(f"k{i}", i)  # each one waits for the slave's acknowledgement
        end = value(scrape(m_metrics), "tessera_pgserver_log_end_lsn")
        wait_until(
            lambda: value(scrape(s_metrics), "tessera_pgserver_applied_lsn") == end,
            10,
            "the slave to apply the master's log",
        )
        on_master = scrape(m_metrics)
        slaves = [k for k in on_master if k[0] == "tessera_pgserver_slave_acked_lsn"]
        assert len(slaves) == 1
        assert on_master[slaves[0]] == end
        lag = next(v for k, v in on_master.items() if k[0] == "tessera_pgserver_slave_lag_bytes")
        assert lag == 0
        assert value(on_master, "tessera_pgserver_connected_slaves") == 1
        assert value(on_master, "tessera_pgserver_commit_latency_seconds_count") >= 20
        assert value(on_master, "tessera_pgserver_log_size_bytes") == end
        on_slave = scrape(s_metrics)
        assert value(on_slave, "tessera_pgserver_role", role="slave") == 1
        assert value(on_slave, "tessera_pgserver_master_link_up") == 1
        assert value(on_slave, "tessera_pgserver_applied_commands_total", command="set") == 20
        assert value(on_slave, "tessera_pgserver_commands_total", command="set") == 0
        slave.send_signal(signal.SIGSTOP)  # the master's writes now wait: lag grows
        try:
            pending = connect(m_port, socket_timeout=0.5)  # no retries
            with pytest.raises(redis.TimeoutError):
                pending.set("late", "x" * 1000)
            pending.close()
            lagging = scrape(m_metrics)
            lag = next(v for k, v in lagging.items() if k[0] == "tessera_pgserver_slave_lag_bytes")
            assert lag > 1000
            assert value(lagging, "tessera_pgserver_held_replies") == 1
        finally:
            slave.send_signal(signal.SIGCONT)
    finally:
        stop(master)
        stop(slave)


# ---------------------------------------------------------------------------- confmaster


@pytest.fixture
def logged_cluster(
    zk_server: ZooKeeperServer, zk_chroot: str, tmp_path: Path
) -> Iterator[tuple[LocalCluster, Path]]:
    log_file = tmp_path / "confmaster.log"
    local = LocalCluster(
        zk_server,
        zk_chroot,
        tmp_path,
        pgs=2,
        replicas=1,
        log_level="info",
        confmaster_args=("--log-json",),
        confmaster_log=log_file,
    )
    try:
        local.start()
        yield local, log_file
    finally:
        local.stop()


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one JSON object


def keys_in_range(first: int, last: int, count: int) -> list[str]:
    found: list[str] = []
    n = 0
    while len(found) < count:
        key = f"m{n}"
        if first <= pn(key.encode()) <= last:
            found.append(key)
        n += 1
    return found


def test_confmaster_reports_migration_and_failover_and_logs_json_steps(
    logged_cluster: tuple[LocalCluster, Path],
) -> None:
    cluster, log_file = logged_cluster
    port = cluster.confmaster_port
    first = scrape(port)
    assert value(first, "tessera_confmaster_leader") == 1
    assert value(first, "tessera_confmaster_leaderships_total") == 1
    assert value(first, "tessera_confmaster_pg_epoch", cluster="default", pg="0") >= 1

    client = cluster.client()
    moving = keys_in_range(0, 99, 200)
    for key in moving:
        client.set(key, "v" * 500)
    body = {"ranges": [[0, 99, 1]], "rate_mb_s": 0.05}  # ~100 KB: about 2 s of copy
    [job_id] = cluster.api("POST", "/clusters/default/migrations", body)["jobs"]

    def running() -> Samples | None:
        now = scrape(port)
        labels = {"cluster": "default", "job": job_id}
        active = sum(
            value(now, "tessera_migration_phase", **labels, phase=phase)
            for phase in ("copy", "catchup")
        )
        moving = sum(  # the mover inside the confmaster leader
            value(now, "tessera_migrator_phase", **labels, phase=phase)
            for phase in ("loading", "catching_up")
        )
        return now if active == 1 and moving == 1 else None

    during = wait_until(running, 30, "the job to copy")
    assert value(during, "tessera_migration_keys_total", cluster="default", job=job_id) == 200
    assert value(during, "tessera_migration_bytes_total", cluster="default", job=job_id) > 0
    to_load = value(during, "tessera_migrator_bytes_to_load", cluster="default", job=job_id)
    assert to_load > 200 * 500

    def ended() -> bool:
        record = cluster.api("GET", f"/clusters/default/migrations/{job_id}")
        return bool(record["phase"] == "done")

    wait_until(ended, 60, "the job to finish")

    def forgotten() -> Samples | None:
        now = scrape(port)  # a finished job leaves the per-job gauges
        return None if [k for k in now if k[0] == "tessera_migration_phase"] else now

    done = wait_until(forgotten, 10, "the job to leave the gauges")
    assert value(done, "tessera_migration_jobs_ended_total", phase="done") == 1
    block_count = "tessera_migration_cutover_block_seconds_count"
    assert value(done, block_count, outcome="committed") == 1
    assert value(done, "tessera_migration_cutover_block_seconds_sum", outcome="committed") > 0
    assert client.get(moving[0]) == b"v" * 500

    # A failover: kill PG 0's master; the slave takes over.
    # (On a loaded machine a slow heartbeat may have caused a failover already: count from here.)
    pg0 = {"cluster": "default", "pg": "0"}
    old = cluster.master(0)
    epoch = cluster.pg(0)["epoch"]
    failovers = value(scrape(port), "tessera_confmaster_failovers_total", **pg0)
    cluster.kill(old)
    wait_until(lambda: cluster.pg(0)["master"] not in (None, old.id), 30, "a failover")

    def failed_over() -> Samples | None:
        now = scrape(port)
        counted = value(now, "tessera_confmaster_failovers_total", **pg0) > failovers
        return now if counted else None

    after = wait_until(failed_over, 30, "the failover to be counted")
    duration = value(after, "tessera_confmaster_failover_last_duration_seconds", **pg0)
    assert 0.5 < duration < 30  # at least the heartbeat timeout (1 s by default)
    assert value(after, "tessera_confmaster_pg_epoch", **pg0) > epoch
    assert (
        value(after, "tessera_confmaster_pgserver_up", cluster="default", pg="0", pgserver=old.id)
        == 0
    )

    entries = json_lines(log_file)
    for entry in entries:
        assert {"ts", "level", "logger", "msg"} <= entry.keys()
    steps = [e for e in entries if e.get("job") == job_id]
    phases = [e["msg"] for e in steps if "phase" in e["msg"] and "->" in e["msg"]]
    assert phases[:3] == [
        f"job {job_id}: phase prepare -> copy",
        f"job {job_id}: phase copy -> catchup",
        f"job {job_id}: phase catchup -> cutover",
    ]  # a cutover over its budget on a slow machine goes back to catchup and tries again
    assert phases[-2:] == [
        f"job {job_id}: phase cutover -> committed",
        f"job {job_id}: phase committed -> done",
    ]
    commit = [e for e in steps if "committed (the ranges" in e["msg"]]
    assert len(commit) == 1
    assert commit[0]["map_version"] >= 2
    assert any("redirected" in e["msg"] and "route_version" in e for e in steps)
    assert any("blocked its partitions" in e["msg"] and e["outcome"] == "committed" for e in steps)
    failover = [e for e in entries if e.get("pg") == 0 and e.get("epoch", 0) > epoch]
    assert any("failover done" in e["msg"] and e["duration_s"] > 0 for e in failover)
    assert any(e["msg"].startswith("default PG 0: failover") for e in entries)


def test_services_log_json_lines(tmp_path: Path) -> None:
    metrics_port = free_port()
    log_file = tmp_path / "pgserver.log"
    proc, _port = start_pgserver(
        tmp_path / "pg",
        None,
        *("--metrics-port", str(metrics_port), "--log-level", "info", "--log-json"),
        stderr=log_file,
    )
    try:
        deadline = time.monotonic() + 30
        while "listening" not in log_file.read_text():
            assert proc.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        stop(proc)
    entries = json_lines(log_file)
    listening = [e for e in entries if "listening" in e["msg"]]
    assert listening[0]["level"] == "info"
    assert listening[0]["logger"] == "tessera.pgserver"
    assert f"127.0.0.1:{metrics_port}/metrics" in listening[0]["msg"]
    with socket.socket() as probe:  # the metrics port is closed again
        assert probe.connect_ex(("127.0.0.1", metrics_port)) != 0


def test_the_standalone_migrator_serves_its_progress(tmp_path: Path) -> None:
    source, s_port = start_pgserver(tmp_path / "source")
    target, t_port = start_pgserver(tmp_path / "target")
    metrics_port = free_port()
    mover: subprocess.Popen[bytes] | None = None
    try:
        keys = keys_in_range(0, 2047, 300)
        client = redis.Redis(port=s_port)
        for key in keys:
            client.set(key, "v" * 100)
        client.close()
        mover = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "migrator",
                f"--source=127.0.0.1:{s_port}",
                f"--target=127.0.0.1:{t_port}",
                "--range=0-2047",
                "--follow",
                f"--metrics-port={metrics_port}",
            ],
            cwd=REPO,
            stderr=subprocess.DEVNULL,
        )

        def following() -> Samples | None:
            now = scrape(metrics_port)
            return now if value(now, "tessera_migrator_phase", phase="catching_up") else None

        now = wait_until(following, 30, "the migrator to load and follow")
        assert value(now, "tessera_migrator_keys_loaded") == 300
        assert value(now, "tessera_migrator_bytes_loaded") == value(
            now, "tessera_migrator_bytes_to_load"
        )
        redis.Redis(port=s_port).set(keys[0], "new")  # one write to apply from the tail
        wait_until(
            lambda: value(scrape(metrics_port), "tessera_migrator_commands_applied") >= 1,
            10,
            "the tail to apply the write",
        )
        mover.send_signal(signal.SIGINT)
        assert mover.wait(30) == 0
    finally:
        if mover is not None:
            stop(mover)
        stop(source)
        stop(target)

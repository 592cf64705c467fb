"""Durability of a real pgserver process: SIGKILL under load, damaged logs, big checkpoints."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from tests.procs import REPO, free_port, start_pgserver, stop


def writer(port: int, acked: dict[str, int], stop_flag: threading.Event) -> None:
    """Overwrite 200 keys with increasing values; remember the last acknowledged one."""
    client = redis.Redis(port=port, socket_timeout=5)
    i = 0
    try:
        while not stop_flag.is_set():
            key = f"key:{i % 200}"
            client.set(key, str(i))
            acked[key] = i
            i += 1
    except (redis.ConnectionError, redis.TimeoutError):
        return


@pytest.mark.parametrize("policy", ["always", "everysec"])
def test_sigkill_under_load_loses_no_acknowledged_write(tmp_path: Path, policy: str) -> None:
    port = free_port()
    proc, _ = start_pgserver(tmp_path, port, "--fsync", policy)
    acked: dict[str, int] = {}
    stop_flag = threading.Event()
    thread = threading.Thread(target=writer, args=(port, acked, stop_flag))
    thread.start()
    time.sleep(random.uniform(0.5, 1.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    thread.join(10)
    stop_flag.set()
    assert len(acked) > 50, "the load did not get going"
    proc, _ = start_pgserver(tmp_path, port, "--fsync", policy)
    try:
        client = redis.Redis(port=port)
        for key, last in acked.items():
            value = client.get(key)
            assert value is not None, f"{key} lost"
            # The last acknowledged write or a later one whose reply the kill swallowed.
            assert int(value) >= last, f"{key}: acknowledged {last}, found {value!r}"
    finally:
        stop(proc)


def start_expecting_failure(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgserver", "--port", str(free_port()), "--data-dir", str(data_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def fill_and_stop(data_dir: Path, count: int) -> None:
    proc, port = start_pgserver(data_dir)
    client = redis.Redis(port=port)
    for i in range(count):
        client.set(f"k{i}", "v" * 50)
    stop(proc)


def test_corrupt_middle_of_log_stops_startup_with_file_and_offset(tmp_path: Path) -> None:
    fill_and_stop(tmp_path, 20)
    (segment,) = (tmp_path / "log").glob("*.log")
    raw = bytearray(segment.read_bytes())
    raw[200] ^= 0xFF
    segment.write_bytes(bytes(raw))
    result = start_expecting_failure(tmp_path)
    assert result.returncode == 2
    assert f"{segment}: offset" in result.stderr
    assert "refusing to start" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_log_format_version_is_a_clear_error(tmp_path: Path) -> None:
    fill_and_stop(tmp_path, 3)
    (segment,) = (tmp_path / "log").glob("*.log")
    raw = bytearray(segment.read_bytes())
    raw[8] = 42
    segment.write_bytes(bytes(raw))
    result = start_expecting_failure(tmp_path)
    assert result.returncode == 2
    assert "segment format version 42 is not supported" in result.stderr


def test_torn_tail_is_truncated_and_reported(tmp_path: Path) -> None:
    fill_and_stop(tmp_path, 10)
    (segment,) = (tmp_path / "log").glob("*.log")
    with open(segment, "ab") as f:
        f.write(b"\x30\x00\x00\x00partial")
    proc, port = start_pgserver(tmp_path)
    try:
        assert redis.Redis(port=port).dbsize() == 10
    finally:
        stop(proc)


def test_checkpoint_of_a_million_keys_does_not_stall_clients(tmp_path: Path) -> None:
    proc, port = start_pgserver(tmp_path, None, "--checkpoint-every-mb", "0")
    try:
        client = redis.Redis(port=port)
        pipe = client.pipeline(transaction=False)
        for batch in range(1000):
            pipe.mset({f"key:{batch}:{i}": "x" * 100 for i in range(1000)})
            if batch % 50 == 49:
                pipe.execute()
        pipe.execute()
        assert client.dbsize() == 1_000_000
        worst = 0.0
        assert client.bgsave()
        deadline = time.monotonic() + 120
        while True:
            started = time.perf_counter()
            client.ping()
            worst = max(worst, time.perf_counter() - started)
            info = client.info("persistence")
            if not info["checkpoint_in_progress"]:
                break
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert info["last_checkpoint_status"] == "ok"
        # Generous bound for a loaded CI box; docs/benchmarks.md has the measured numbers.
        assert worst < 0.25, f"a client waited {worst * 1000:.0f} ms during the checkpoint"
    finally:
        stop(proc, timeout=30)
    proc, port = start_pgserver(tmp_path)
    try:
        assert redis.Redis(port=port).dbsize() == 1_000_000
    finally:
        stop(proc)

"""`gateway --workers N`: the workers go when the first process goes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from tests.procs import REPO, free_port, stop, wait_for_port


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start_workers(count: int) -> tuple[subprocess.Popen[bytes], int, list[int]]:
    """A gateway with `count` processes (its backend is never asked); its port, its workers."""
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "gateway", "--port", str(port), "--admin-port", "0"),
            *("--workers", str(count), "--log-level", "warning"),
            *("--backend", f"0-8191=127.0.0.1:{free_port()}"),
        ],
        cwd=REPO,
    )
    try:
        wait_for_port(port, proc)
        deadline = time.monotonic() + 10
        while len(workers := children(proc.pid)) < count - 1:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.01)
    except BaseException:
        stop(proc)
        raise
    return proc, port, workers


def test_sigterm_to_the_first_process_stops_its_workers_before_it_exits() -> None:
    proc, port, workers = start_workers(3)
    try:
        assert len(workers) == 2
        assert all(running(pid) for pid in workers)
        assert redis.Redis(port=port, socket_timeout=5).ping()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert [pid for pid in workers if running(pid)] == []  # reaped, not orphaned
    finally:
        stop(proc)
        for pid in workers:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_workers_exit_when_the_first_process_is_killed() -> None:
    proc, _port, workers = start_workers(2)
    try:
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 20
        while any(running(pid) for pid in workers):
            assert time.monotonic() < deadline, "a worker outlived the first process"
            time.sleep(0.05)
    finally:
        stop(proc)
        for pid in workers:
            if running(pid):
                os.kill(pid, signal.SIGKILL)

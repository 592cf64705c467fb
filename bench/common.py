"""Helpers shared by the benchmark scripts: processes, redis-benchmark runs, CPU accounting."""

from __future__ import annotations

import csv
import io
import os
import statistics
import subprocess
from dataclasses import dataclass

from tests.procs import free_port, start_pgserver, start_redis, stop, wait_for_port

__all__ = [
    "Result",
    "free_port",
    "run_benchmark",
    "start_pgserver",
    "start_redis",
    "stop",
    "wait_for_port",
]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime of the given processes, from /proc."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_req: float


def _one_run(
    port: int,
    test: str,
    pipeline: int,
    requests: int,
    pids: list[int],
    clients: int,
    data_size: int,
) -> Result:
    before = cpu_seconds(pids)
    out = subprocess.run(
        [
            "redis-benchmark",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-t",
            test,
            "-n",
            str(requests),
            "-c",
            str(clients),
            "-d",
            str(data_size),
            "-r",
            "100000",
            "-P",
            str(pipeline),
            "--csv",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    used = cpu_seconds(pids) - before
    rows = list(csv.DictReader(io.StringIO(out)))
    row = rows[-1]
    return Result(
        rps=float(row["rps"]),
        p50_ms=float(row["p50_latency_ms"]),
        p99_ms=float(row["p99_latency_ms"]),
        cpu_us_per_req=used / requests * 1e6,
    )


def run_benchmark(
    port: int,
    test: str,
    pipeline: int,
    requests: int,
    pids: list[int],
    runs: int = 3,
    clients: int = 50,
    data_size: int = 100,
) -> Result:
    """Median over `runs` runs of one redis-benchmark test against `port`."""
    results = [
        _one_run(port, test, pipeline, requests, pids, clients, data_size) for _ in range(runs)
    ]
    return Result(
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        cpu_us_per_req=statistics.median(r.cpu_us_per_req for r in results),
    )

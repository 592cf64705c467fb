"""pgserver vs redis-server with redis-benchmark (-c 50 -d 100), SET and GET, with/without -P 16.

Run: .venv/bin/python -m bench.pgserver [--runs 3] [--requests 200000]
Systems, all in the same run: redis-server (no persistence), pgserver with its log at the
default fsync policy (everysec), pgserver --no-log (memory only, to price the log) and
pgserver --fsync always. Prints a markdown table: req/s, p50/p99, server CPU µs/request,
ratio to redis-server and ratio to pgserver --no-log.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import Result, run_benchmark, start_pgserver, start_redis, stop

VARIANTS: dict[str, tuple[str, ...]] = {
    "pgserver (log, fsync everysec)": (),
    "pgserver --no-log": ("--no-log",),
    "pgserver (log, fsync always)": ("--fsync", "always"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per cell (median is reported)")
    parser.add_argument("--requests", type=int, default=200_000, help="requests per run, -P 1")
    parser.add_argument("--pipelined-requests", type=int, default=1_000_000)
    args = parser.parse_args()

    table: dict[tuple[str, str, int], Result] = {}
    with tempfile.TemporaryDirectory() as tmp:
        procs = {}
        ports = {}
        redis_proc, ports["redis-server"] = start_redis()
        procs["redis-server"] = redis_proc
        for i, (name, extra) in enumerate(VARIANTS.items()):
            procs[name], ports[name] = start_pgserver(Path(tmp) / str(i), None, *extra)
        try:
            for pipeline in (1, 16):
                requests = args.requests if pipeline == 1 else args.pipelined_requests
                for test in ("set", "get"):
                    for name, proc in procs.items():
                        table[(name, test, pipeline)] = run_benchmark(
                            ports[name], test, pipeline, requests, [proc.pid], runs=args.runs
                        )
        finally:
            for proc in procs.values():
                stop(proc)

    print(
        "| system | test | -P | req/s | p50 ms | p99 ms | server CPU µs/req | x redis | x no-log |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for (name, test, pipeline), r in table.items():
        ratio = r.rps / table[("redis-server", test, pipeline)].rps
        nolog = r.rps / table[("pgserver --no-log", test, pipeline)].rps
        print(
            f"| {name} | {test.upper()} | {pipeline} | {r.rps:,.0f} | {r.p50_ms:.2f} | "
            f"{r.p99_ms:.2f} | {r.cpu_us_per_req:.1f} | {ratio:.2f} | {nolog:.2f} |"
        )


if __name__ == "__main__":
    main()

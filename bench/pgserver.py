"""pgserver vs redis-server with redis-benchmark (-c 50 -d 100), SET and GET, with/without -P 16.

Run: .venv/bin/python -m bench.pgserver [--runs 3] [--requests 200000]
Prints a markdown table (req/s, p50/p99, server CPU us/request, ratio pgserver/redis).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import Result, run_benchmark, start_pgserver, start_redis, stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per cell (median is reported)")
    parser.add_argument(
        "--requests", type=int, default=200_000, help="requests per run, no pipeline"
    )
    parser.add_argument("--pipelined-requests", type=int, default=1_000_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        redis_proc, redis_port = start_redis()
        pg_proc, pg_port = start_pgserver(Path(tmp))
        systems = {"redis-server": (redis_port, redis_proc.pid), "pgserver": (pg_port, pg_proc.pid)}
        table: dict[tuple[str, str, int], Result] = {}
        try:
            for pipeline in (1, 16):
                requests = args.requests if pipeline == 1 else args.pipelined_requests
                for test in ("set", "get"):
                    for name, (port, pid) in systems.items():
                        table[(name, test, pipeline)] = run_benchmark(
                            port, test, pipeline, requests, [pid], runs=args.runs
                        )
        finally:
            stop(pg_proc)
            stop(redis_proc)

    print("| system | test | pipeline | req/s | p50 ms | p99 ms | server CPU µs/req | x redis |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for (name, test, pipeline), r in table.items():
        ratio = r.rps / table[("redis-server", test, pipeline)].rps
        print(
            f"| {name} | {test.upper()} | {pipeline} | {r.rps:,.0f} | {r.p50_ms:.2f} | "
            f"{r.p99_ms:.2f} | {r.cpu_us_per_req:.1f} | {ratio:.2f} |"
        )


if __name__ == "__main__":
    main()

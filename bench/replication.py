"""Cost of synchronous replication: a pgserver with one synchronous slave vs none.

Run: .venv/bin/python -m bench.replication [--runs 3]
Same redis-benchmark load as bench/pgserver.py (-c 50 -d 100 -r 100000, SET and GET, with
and without -P 16), against redis-server, a standalone pgserver, and a pgserver master
whose writes are acknowledged only after its slave has logged them (quorum 1).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import redis

from bench.common import Result, run_benchmark, start_pgserver, start_redis, stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--pipelined-requests", type=int, default=1_000_000)
    args = parser.parse_args()
    table: dict[tuple[str, str, int], Result] = {}
    with tempfile.TemporaryDirectory() as tmp:
        redis_proc, redis_port = start_redis()
        alone, alone_port = start_pgserver(Path(tmp) / "alone")
        master, master_port = start_pgserver(Path(tmp) / "m", None, "--managed")
        slave, slave_port = start_pgserver(Path(tmp) / "s", None, "--managed")
        redis.Redis(port=master_port).execute_command("TSR.ROLE", "MASTER", 1, 1)  # type: ignore[no-untyped-call]
        redis.Redis(port=slave_port).execute_command(  # type: ignore[no-untyped-call]
            "TSR.ROLE", "SLAVE", 1, f"127.0.0.1:{master_port}"
        )
        time.sleep(0.5)
        systems = {
            "redis-server": (redis_port, [redis_proc.pid]),
            "pgserver, no slave": (alone_port, [alone.pid]),
            "pgserver + 1 sync slave": (master_port, [master.pid, slave.pid]),
        }
        try:
            for pipeline in (1, 16):
                requests = args.requests if pipeline == 1 else args.pipelined_requests
                for test in ("set", "get"):
                    for name, (port, pids) in systems.items():
                        table[(name, test, pipeline)] = run_benchmark(
                            port, test, pipeline, requests, pids, runs=args.runs
                        )
        finally:
            for proc in (redis_proc, alone, master, slave):
                stop(proc)
    print(
        "| system | test | -P | req/s | p50 ms | p99 ms | CPU µs/req (all nodes) "
        "| x redis | x no slave |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for (name, test, pipeline), r in table.items():
        ratio = r.rps / table[("redis-server", test, pipeline)].rps
        alone_ratio = r.rps / table[("pgserver, no slave", test, pipeline)].rps
        print(
            f"| {name} | {test.upper()} | {pipeline} | {r.rps:,.0f} | {r.p50_ms:.2f} | "
            f"{r.p99_ms:.2f} | {r.cpu_us_per_req:.1f} | {ratio:.2f} | {alone_ratio:.2f} |"
        )


if __name__ == "__main__":
    main()

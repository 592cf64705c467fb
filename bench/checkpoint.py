"""Checkpoint and restart costs of a pgserver holding N keys of 100 bytes (default 1M).

Run: .venv/bin/python -m bench.checkpoint [--keys 1000000]
Measures: load rate, BGSAVE fork time, checkpoint duration, the longest a PING waited while
the checkpoint ran (probing every 2 ms), checkpoint size, and restart time (process start
until it answers) from checkpoint + log and from the log alone.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from bench.common import free_port, start_pgserver, stop


def load(client: redis.Redis, keys: int) -> float:
    started = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    per_command = 1000
    for batch in range(keys // per_command):
        pipe.mset({f"key:{batch}:{i}": b"x" * 100 for i in range(per_command)})
        if batch % 50 == 49:
            pipe.execute()
    pipe.execute()
    return time.perf_counter() - started


def timed_start(data_dir: Path) -> tuple[float, subprocess.Popen[bytes], int]:
    """Start a pgserver; seconds until it answers on its port."""
    port = free_port()
    started = time.perf_counter()
    proc, _ = start_pgserver(data_dir, port)
    return time.perf_counter() - started, proc, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pg"
        proc, port = start_pgserver(data, None, "--checkpoint-every-mb", "0")
        client = redis.Redis(port=port)
        load_s = load(client, args.keys)
        print(
            f"loaded {client.dbsize():,} keys in {load_s:.1f}s ({args.keys / load_s:,.0f} keys/s)"
        )
        stop(proc, timeout=60)

        # Restart from the log alone.
        log_restart_s, proc, port = timed_start(data)
        client = redis.Redis(port=port)
        assert client.dbsize() == args.keys
        print(f"restart from the log only: {log_restart_s:.1f}s")

        waits: list[float] = []
        started = time.perf_counter()
        client.bgsave()
        while True:
            t0 = time.perf_counter()
            client.ping()
            waits.append(time.perf_counter() - t0)
            info = client.info("persistence")
            if not info["checkpoint_in_progress"]:
                break
            time.sleep(0.002)
        duration = time.perf_counter() - started
        size = sum(p.stat().st_size for p in data.glob("checkpoint-*.tsnap"))
        print(
            f"checkpoint: {duration:.2f}s, fork {float(info['last_fork_ms']):.1f} ms, "
            f"{size / 1e6:.0f} MB, status {info['last_checkpoint_status']}"
        )
        print(
            f"PING while checkpointing: {len(waits)} probes, median "
            f"{statistics.median(waits) * 1000:.2f} ms, max {max(waits) * 1000:.1f} ms"
        )
        stop(proc, timeout=60)

        ckpt_restart_s, proc, port = timed_start(data)
        assert redis.Redis(port=port).dbsize() == args.keys
        print(f"restart from checkpoint (+ empty log tail): {ckpt_restart_s:.1f}s")
        stop(proc, timeout=60)


if __name__ == "__main__":
    main()

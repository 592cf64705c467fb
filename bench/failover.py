"""Failover time: SIGKILL of a PG master to the first write acknowledged again.

Run: .venv/bin/python -m bench.failover [--runs 10]
A real cluster (ZooKeeper, confmaster with its default heartbeat settings, one PG of a
master and one slave, a gateway following ZooKeeper) under a redis-py write load through
the gateway. Each run kills the current master, measures the time until the load's next
acknowledged write, restarts the killed pgserver (it rejoins as a slave) and waits until the
PG is back in sync. Prints every run and the median; the load is verified at the end.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from tessera.zkserver import ZooKeeperServer
from tests.cluster_fixtures import LocalCluster, WriteLoad, wait_until
from tests.procs import free_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        zk = ZooKeeperServer(Path(tmp) / "zk", port=free_port())
        zk.start()
        cluster = LocalCluster(zk, f"/bench-{uuid.uuid4().hex[:8]}", Path(tmp))
        try:
            cluster.start()
            load = WriteLoad(cluster.gateway_port)
            load.start()
            gaps = []
            for run in range(args.runs):
                wait_until(lambda: cluster.in_sync(0), 60, "the PG to be in sync")
                time.sleep(0.5)
                old = cluster.master(0)
                cluster.kill(old)
                killed_at = time.monotonic()
                gap = load.first_success_after(killed_at, 30)
                gaps.append(gap)
                print(f"run {run + 1}: writes acknowledged again {gap * 1000:.0f} ms after SIGKILL")
                cluster.restart(old)
            load.stop()
            wait_until(lambda: cluster.in_sync(0), 60, "the PG to be in sync")
            problems = load.verify(cluster.client())
        finally:
            cluster.stop()
            zk.stop()
    ms = sorted(g * 1000 for g in gaps)
    print(
        f"\n{len(ms)} runs: median {statistics.median(ms):.0f} ms, "
        f"min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms; "
        f"{len(load.acked)} keys verified, lost acknowledged writes: {len(problems)}"
    )
    for problem in problems:
        print("LOST:", problem)


if __name__ == "__main__":
    main()

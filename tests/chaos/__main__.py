"""`python -m tests.chaos --rounds N [--seed S]`: the chaos suite on a private ZooKeeper.

Process logs and ZooKeeper's data go to a temporary directory (kept with --keep, or when a
problem was found); the per-round log and the verdict go to stdout. Exit status 1 on a
problem.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import random
import shutil
import sys
import tempfile
from pathlib import Path

from tessera.zkserver import ZooKeeperServer
from tests.chaos.cluster import ChaosCluster
from tests.chaos.runner import FAULTS, ChaosConfig, run_chaos
from tests.procs import free_port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None, help="replay a run (default: random)")
    parser.add_argument("--writers", type=int, default=4, help="half SET, half RPUSH")
    parser.add_argument("--rate", type=float, default=100.0, help="writes/s per writer")
    parser.add_argument(
        "--faults", default="", help=f"comma-separated subset of: {', '.join(FAULTS)}"
    )
    parser.add_argument("--keep", action="store_true", help="keep logs and data")
    args = parser.parse_args(argv)
    logging.getLogger("kazoo").setLevel(logging.ERROR)  # its reconnect chatter during faults
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    faults = tuple(f for f in args.faults.split(",") if f)
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s) {unknown}; choose from {', '.join(FAULTS)}")
    config = ChaosConfig(
        rounds=args.rounds, seed=seed, writers=args.writers, rate_per_writer=args.rate
    )
    if faults:
        config = dataclasses.replace(config, faults=faults)
    work = Path(tempfile.mkdtemp(prefix="tessera-chaos-"))
    print(f"chaos: seed {seed}, {args.rounds} rounds, logs in {work}", flush=True)
    zk = ZooKeeperServer(work / "zookeeper", port=free_port())
    cluster = ChaosCluster(zk, "/chaos", work)
    try:
        zk.start()
        cluster.start()
        result = run_chaos(cluster, config)
    finally:
        cluster.stop()
        zk.stop()
    print(result.report())
    if result.ok and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"logs kept in {work}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Pure Python vs mypyc-compiled (scripts/build_fast.py): the same source, A/B interleaved.
With --baseline DIR, another checkout (A) against this one (B) instead.

Run: .venv/bin/python -m bench.mypyc_ab [--rounds 5] [--requests 200000] [--only pgserver]
after `make compiled`. The pure side (A) runs from a copy of this checkout without any
compiled module; the compiled side (B) runs from this checkout. Both run at once:
  pgserver: A and B (default options: log, fsync everysec);
  gateway:  A and B, each in front of the same two redis-servers;
  --reference adds redis-server and twemproxy respectively, for the "x ref" ratios.
Every round runs each (test, -P) cell on A and B back to back, alternating which goes
first, so a passing disturbance on this shared machine hits both alike. Prints, per cell,
the median and range over the rounds of the server process's CPU µs/request (utime+stime
from /proc, steadier than req/s) and of req/s, and B/A ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import Result, free_port, run_benchmark, start_redis, stop, wait_for_port
from bench.gateway import start_nutcracker
from tessera.compiled import extension_modules

REPO = Path(__file__).resolve().parent.parent
PURE = "A pure"
COMPILED = "B mypyc"
REFERENCE = "reference"  # redis-server for pgserver, twemproxy for the gateway


def pure_copy(dest: Path) -> Path:
    """This checkout's Python packages, without compiled modules and build output."""
    for package in ("tessera", "pgserver", "gateway", "confmaster", "migrator"):
        shutil.copytree(
            REPO / package,
            dest / package,
            ignore=shutil.ignore_patterns("*.so", "__pycache__"),
        )
    return dest


def spawn(root: Path, module: str, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """`python -m module` importing from `root` only (cwd and PYTHONPATH)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--port", str(port), *args, "--log-level", "warning"],
        cwd=root,
        env=env,
    )
    wait_for_port(port, proc)
    return proc, port


def loads_compiled(pid: int) -> bool:
    """Whether the process mapped mypyc's shared library (i.e. runs compiled modules)."""
    with open(f"/proc/{pid}/maps") as f:
        return "__mypyc" in f.read()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200_000, help="requests per run, -P 1")
    parser.add_argument("--pipelined-requests", type=int, default=1_000_000)
    parser.add_argument("--only", choices=("pgserver", "gateway"))
    parser.add_argument("--tests", default="set,get")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="A runs from this checkout (e.g. a git worktree of an older commit, compiled "
        "or not) instead of a pure copy of this one: compares two versions",
    )
    parser.add_argument(
        "--reference",
        action="store_true",
        help="also run redis-server (pgserver) and twemproxy (gateway) for the x-ratios",
    )
    args = parser.parse_args()
    if not extension_modules(REPO):
        sys.exit("no compiled modules here: run `make compiled` first")

    procs: list[subprocess.Popen[bytes]] = []
    # (kind, side) -> (port, pid)
    systems: dict[tuple[str, str], tuple[int, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        side_a = args.baseline.resolve() if args.baseline else pure_copy(Path(tmp) / "pure")
        a_compiled = bool(args.baseline and extension_modules(side_a))
        try:
            roots = {PURE: side_a, COMPILED: REPO}
            if args.only in (None, "pgserver"):
                for side, root in roots.items():
                    data = Path(tmp) / f"data-{len(systems)}"
                    proc, port = spawn(root, "pgserver", "--data-dir", str(data))
                    procs.append(proc)
                    systems[("pgserver", side)] = (port, proc.pid)
                if args.reference:
                    proc, port = start_redis()
                    procs.append(proc)
                    systems[("pgserver", REFERENCE)] = (port, proc.pid)
            if args.only in (None, "gateway"):
                backend_ports = []
                for _ in range(2):
                    redis, redis_port = start_redis()
                    procs.append(redis)
                    backend_ports.append(redis_port)
                backends = [
                    "--backend",
                    f"0-4095=127.0.0.1:{backend_ports[0]}",
                    "--backend",
                    f"4096-8191=127.0.0.1:{backend_ports[1]}",
                ]
                for side, root in roots.items():
                    proc, port = spawn(root, "gateway", "--admin-port", str(free_port()), *backends)
                    procs.append(proc)
                    systems[("gateway", side)] = (port, proc.pid)
                if args.reference:
                    proc, port = start_nutcracker(Path(tmp), backend_ports)
                    procs.append(proc)
                    systems[("gateway", REFERENCE)] = (port, proc.pid)
            for (kind, side), (_port, pid) in systems.items():
                expected = a_compiled if side == PURE else side == COMPILED
                if side != REFERENCE and loads_compiled(pid) != expected:
                    sys.exit(f"{kind} {side}: compiled modules loaded = {loads_compiled(pid)}")
            results: dict[tuple[str, str, str, int], list[Result]] = {}
            kinds = sorted({kind for kind, _side in systems})
            for round_ in range(args.rounds):
                for kind in kinds:
                    for pipeline in (1, 16):
                        requests = args.requests if pipeline == 1 else args.pipelined_requests
                        for test in args.tests.split(","):
                            sides = [PURE, COMPILED] if round_ % 2 == 0 else [COMPILED, PURE]
                            if (kind, REFERENCE) in systems:
                                sides.append(REFERENCE)
                            for side in sides:
                                port, pid = systems[(kind, side)]
                                result = run_benchmark(port, test, pipeline, requests, [pid], 1)
                                results.setdefault((kind, side, test, pipeline), []).append(result)
                print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        finally:
            for proc in reversed(procs):
                stop(proc)
    a_name = f"A {args.baseline}" if args.baseline else "A pure"
    print_table(results, a_name)


def _cell(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def print_table(results: dict[tuple[str, str, str, int], list[Result]], a_name: str) -> None:
    b_name = "B this checkout"
    print(
        f"| server | test | -P | CPU µs/req {a_name} | CPU µs/req {b_name} | B/A CPU "
        f"| req/s {a_name} | req/s {b_name} | B/A req/s | A x ref | B x ref |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (kind, side, test, pipeline), a in results.items():
        if side != PURE:
            continue
        b = results[(kind, COMPILED, test, pipeline)]
        cpu_a = [r.cpu_us_per_req for r in a]
        cpu_b = [r.cpu_us_per_req for r in b]
        rps_a = [r.rps for r in a]
        rps_b = [r.rps for r in b]
        ref = results.get((kind, REFERENCE, test, pipeline))
        if ref is None:
            x_a = x_b = "-"
        else:
            ref_rps = statistics.median(r.rps for r in ref)
            x_a = f"{statistics.median(rps_a) / ref_rps:.2f}"
            x_b = f"{statistics.median(rps_b) / ref_rps:.2f}"
        print(
            f"| {kind} | {test.upper()} | {pipeline} | {_cell(cpu_a, '.2f')} | "
            f"{_cell(cpu_b, '.2f')} | "
            f"{statistics.median(cpu_b) / statistics.median(cpu_a):.2f} | "
            f"{_cell(rps_a, ',.0f')} | {_cell(rps_b, ',.0f')} | "
            f"{statistics.median(rps_b) / statistics.median(rps_a):.2f} | {x_a} | {x_b} |"
        )


if __name__ == "__main__":
    main()

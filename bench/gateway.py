"""Tessera gateway vs twemproxy with redis-benchmark (-c 50 -d 100), SET and GET, -P 1 and 16.

Run: .venv/bin/python -m bench.gateway [--runs 3] [--requests 200000] [--profile DIR]
     [--baseline DIR] [--fairness]
Systems, all in the same run:
  (a) twemproxy (nutcracker: fnv1a_64, ketama, server_connections 1, preconnect) in front
      of two redis-servers,
  (b) the Tessera gateway in front of the same two redis-servers (partitions 0-4095 on the
      first, 4096-8191 on the second),
  (c) the gateway in front of two pgservers (default options: log, fsync everysec),
  (d) one redis-server directly,
  (e) with --baseline DIR, the gateway of another checkout in front of the redis-servers of
      (b), to compare two versions in the same minutes.
Prints a markdown table: req/s, p50/p99, CPU µs/request of the proxy process only (the
gateway or nutcracker; redis-server itself for (d)), ratio to (a) and ratio to (d). Cells
are medians of --runs runs, interleaved (run k of every system, then run k+1) so that a
passing disturbance hits all systems alike; the script also reports the most CPU that
processes it did not start used during any run (the machine may be shared).

With --profile DIR it then profiles the gateway of (b) under a GET load with -P 16 and
without pipelining (py-spy record -r 200 -f raw --nonblocking for 6 s each), keeps the raw
files in DIR and prints the top self-time lines and the inclusive time of the gateway's
and tessera's functions.

With --fairness it measures instead a lone client among deep pipelines, on (b): four
redis-benchmark processes loop 1000-GET pipelines (-c 1 -P 1000 each) while this script
sends one GET per millisecond on its own connection for 10 s; it prints that GET's p50,
p99 and max round trip and the commands/s the two redis-servers served meanwhile.
"""

from __future__ import annotations

import argparse
import linecache
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import (
    CLOCK_TICKS,
    Result,
    cpu_seconds,
    free_port,
    run_benchmark,
    start_pgserver,
    start_redis,
    stop,
    wait_for_port,
)

REPO = Path(__file__).resolve().parent.parent
TWEMPROXY = "twemproxy → 2 redis"
GATEWAY_REDIS = "gateway → 2 redis"
GATEWAY_PG = "gateway → 2 pgserver"
REDIS = "redis-server (direct)"

NUTCRACKER_CONF = """\
bench:
  listen: 127.0.0.1:{port}
  hash: fnv1a_64
  distribution: ketama
  redis: true
  preconnect: true
  auto_eject_hosts: false
  server_connections: 1
  servers:
{servers}
"""


def start_nutcracker(
    workdir: Path, backend_ports: list[int]
) -> tuple[subprocess.Popen[bytes], int]:
    """nutcracker in front of redis-servers on 127.0.0.1; config, log and pid file in workdir."""
    binary = shutil.which("nutcracker") or "/usr/sbin/nutcracker"
    if not os.path.exists(binary):
        raise RuntimeError("nutcracker is not installed (apt-get install nutcracker)")
    port = free_port()
    servers = "\n".join(f"   - 127.0.0.1:{p}:1 r{i}" for i, p in enumerate(backend_ports, start=1))
    conf = workdir / "nutcracker.yml"
    conf.write_text(NUTCRACKER_CONF.format(port=port, servers=servers))
    proc = subprocess.Popen(
        [
            binary,
            "-c",
            str(conf),
            "-s",
            str(free_port()),
            "-a",
            "127.0.0.1",
            "-p",
            str(workdir / "nutcracker.pid"),
            "-o",
            str(workdir / "nutcracker.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, proc)
    return proc, port


def start_gateway(
    backend_ports: list[int], tree: Path = REPO
) -> tuple[subprocess.Popen[bytes], int]:
    """A gateway (the code in `tree`) splitting the 8192 partitions evenly over backends."""
    port = free_port()
    step = 8192 // len(backend_ports)
    backends: list[str] = []
    for i, backend_port in enumerate(backend_ports):
        last = 8191 if i == len(backend_ports) - 1 else (i + 1) * step - 1
        backends += ["--backend", f"{i * step}-{last}=127.0.0.1:{backend_port}"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "--port",
            str(port),
            "--admin-port",
            str(free_port()),
            *backends,
            "--log-level",
            "warning",
        ],
        cwd=tree,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    wait_for_port(port, proc)
    return proc, port


def machine_busy_seconds() -> float:
    """CPU time all processors spent outside idle and iowait since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


def own_seconds() -> float:
    """CPU time of this script and of its reaped children (the finished redis-benchmarks)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def measure(
    port: int, test: str, pipeline: int, requests: int, pid: int, ours: list[int]
) -> tuple[Result, float]:
    """One redis-benchmark run, and the cores that processes not of this run used meanwhile.

    "Ours" are the servers this script started, the script itself and the finished
    redis-benchmark (a reaped child); what the machine spent beyond that is someone else's.
    """
    started = time.monotonic()
    machine, mine = machine_busy_seconds(), cpu_seconds(ours) + own_seconds()
    result = run_benchmark(port, test, pipeline, requests, [pid], runs=1)
    machine = machine_busy_seconds() - machine
    mine = cpu_seconds(ours) + own_seconds() - mine
    return result, max(machine - mine, 0.0) / (time.monotonic() - started)


def median_result(results: list[Result]) -> Result:
    return Result(
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        cpu_us_per_req=statistics.median(r.cpu_us_per_req for r in results),
    )


# ---------------------------------------------------------------------- profiling

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short(path: str) -> str:
    """A frame's file relative to the repository, or its last two components."""
    for root in (str(REPO) + "/",):
        if path.startswith(root):
            return path[len(root) :]
    parts = path.split("/")
    return "/".join(parts[-2:])


def aggregate(raw: Path) -> tuple[int, Counter[str], Counter[str]]:
    """Samples, self samples per line ("func (file:line)"), inclusive samples per function.

    py-spy's raw format is one collapsed stack per line: "frame;frame;...;leaf COUNT".
    Without --idle py-spy leaves out samples where the thread sat idle (e.g. in epoll_wait),
    so the shares are of the time the gateway was busy.
    """
    total = 0
    self_lines: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for text in raw.read_text().splitlines():
        stack, _, count_text = text.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames: list[tuple[str, str, str]] = []
        for frame in stack.split(";"):
            m = _FRAME.match(frame)
            if m is None:
                continue  # process / thread header
            frames.append((m["func"], _short(m["file"]), m["line"] or "?"))
        if not frames:
            continue
        func, file, line = frames[-1]
        self_lines[f"{func} ({file}:{line})"] += count
        for name in {f"{func} ({file})" for func, file, _ in frames}:
            inclusive[name] += count
    return total, self_lines, inclusive


def profile(port: int, pid: int, pipeline: int, out: Path, seconds: int = 6) -> None:
    """py-spy the gateway while redis-benchmark loops GETs on it; print the aggregates."""
    py_spy = REPO / ".venv" / "bin" / "py-spy"
    load = subprocess.Popen(
        [
            "redis-benchmark",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-t",
            "get",
            "-c",
            "50",
            "-d",
            "100",
            "-r",
            "100000",
            "-P",
            str(pipeline),
            "-l",
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        subprocess.run(
            [
                str(py_spy),
                "record",
                "-p",
                str(pid),
                "-d",
                str(seconds),
                "-r",
                "200",
                "-f",
                "raw",
                "-o",
                str(out),
                "--nonblocking",
            ],
            check=True,
            capture_output=True,
            timeout=seconds + 60,
        )
    finally:
        stop(load)
    total, self_lines, inclusive = aggregate(out)
    busy = total / (200 * seconds)
    print(f"\n### gateway GET -P {pipeline}: {total} samples, busy {busy:.0%} of {seconds} s\n")
    print("| self % | line | source |")
    print("|---:|---|---|")
    for name, count in self_lines.most_common(15):
        print(f"| {100 * count / total:.1f} | `{name}` | `{_source(name)}` |")
    print("\n| inclusive % | function |")
    print("|---:|---|")
    ours = [
        (name, count)
        for name, count in inclusive.most_common()
        if name.rsplit("(", 1)[1].startswith(("gateway/", "tessera/"))
        and name.split(" (", 1)[0] not in _WRAPPERS
    ]
    for name, count in ours[:15]:
        print(f"| {100 * count / total:.1f} | `{name}` |")


_WRAPPERS = {"<module>", "main", "main.<locals>.body", "run_main", "GatewayServer.serve"}


def _source(name: str) -> str:
    """The source text of a "func (file:line)" entry when the file is in this repository."""
    location = name.rsplit("(", 1)[1].rstrip(")")
    file, _, line = location.rpartition(":")
    if not line.isdigit():
        return ""
    return linecache.getline(str(REPO / file), int(line)).strip().replace("|", "\\|")


# ---------------------------------------------------------------------- a lone client


def lone_round_trips(port: int, seconds: float) -> list[float]:
    """One GET per millisecond on its own connection; the round trips in ms."""
    request = b"*2\r\n$3\r\nGET\r\n$8\r\nlone:key\r\n"  # a miss: "$-1\r\n"
    times: list[float] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        end = time.monotonic() + seconds
        while (sent := time.monotonic()) < end:
            sock.sendall(request)
            reply = b""
            while not reply.endswith(b"\r\n"):
                reply += sock.recv(4096)
            took = time.monotonic() - sent
            times.append(took * 1000)
            time.sleep(max(0.0, 0.001 - took))
    return times


def commands_processed(ports: list[int]) -> int:
    """total_commands_processed of redis-servers, summed."""
    total = 0
    for port in ports:
        info = subprocess.run(
            ["redis-cli", "-p", str(port), "info", "stats"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        found = re.search(r"total_commands_processed:(\d+)", info)
        assert found is not None, info
        total += int(found.group(1))
    return total


def fairness(port: int, backend_ports: list[int], seconds: float = 10) -> None:
    """A lone GET per ms while 4 processes loop 1000-GET pipelines through the gateway."""
    floods = [
        subprocess.Popen(
            [
                *("redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "get", "-l"),
                *("-c", "1", "-P", "1000", "-d", "100", "-r", "100000", "-q"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(4)
    ]
    try:
        time.sleep(1.0)
        before, started = commands_processed(backend_ports), time.monotonic()
        times = sorted(lone_round_trips(port, seconds))
        rate = (commands_processed(backend_ports) - before) / (time.monotonic() - started)
    finally:
        for proc in floods:
            stop(proc)
    p50, p99 = (times[min(len(times) - 1, int(q * len(times)))] for q in (0.5, 0.99))
    print(
        f"lone GET among 4 x 1000-GET pipelines, {seconds:.0f} s: {len(times)} GETs, "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {times[-1]:.2f} ms; "
        f"the redis-servers served {rate:,.0f} commands/s"
    )


# ---------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per cell (median is reported)")
    parser.add_argument("--requests", type=int, default=200_000, help="requests per run, -P 1")
    parser.add_argument("--pipelined-requests", type=int, default=1_000_000)
    parser.add_argument("--profile", type=Path, help="also py-spy the gateway; raw files here")
    parser.add_argument("--no-table", action="store_true", help="only the profiles")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also run the gateway of this checkout (e.g. a git worktree of main) → 2 redis",
    )
    parser.add_argument(
        "--fairness", action="store_true", help="only a lone client among deep pipelines"
    )
    args = parser.parse_args()

    table: dict[tuple[str, str, int], Result] = {}
    disturbance: dict[tuple[str, str, int], float] = {}
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            redis_a, port_a = start_redis()
            procs.append(redis_a)
            redis_b, port_b = start_redis()
            procs.append(redis_b)
            twem, twem_port = start_nutcracker(Path(tmp), [port_a, port_b])
            procs.append(twem)
            gw_redis, gw_redis_port = start_gateway([port_a, port_b])
            procs.append(gw_redis)
            pg_a, pg_port_a = start_pgserver(Path(tmp) / "pg-a")
            procs.append(pg_a)
            pg_b, pg_port_b = start_pgserver(Path(tmp) / "pg-b")
            procs.append(pg_b)
            gw_pg, gw_pg_port = start_gateway([pg_port_a, pg_port_b])
            procs.append(gw_pg)
            direct, direct_port = start_redis()
            procs.append(direct)
            systems = {
                TWEMPROXY: (twem_port, twem.pid),
                GATEWAY_REDIS: (gw_redis_port, gw_redis.pid),
                GATEWAY_PG: (gw_pg_port, gw_pg.pid),
                REDIS: (direct_port, direct.pid),
            }
            if args.baseline is not None:
                baseline, baseline_port = start_gateway([port_a, port_b], args.baseline)
                procs.append(baseline)
                systems[f"gateway at {args.baseline} → 2 redis"] = (baseline_port, baseline.pid)
            if args.fairness:
                fairness(gw_redis_port, [port_a, port_b])
            elif not args.no_table:
                ours = [proc.pid for proc in procs]
                for pipeline in (1, 16):
                    requests = args.requests if pipeline == 1 else args.pipelined_requests
                    for test in ("set", "get"):
                        runs: dict[str, list[Result]] = {name: [] for name in systems}
                        for _ in range(args.runs):  # interleaved: a disturbance hits all
                            for name, (port, pid) in systems.items():
                                result, other = measure(port, test, pipeline, requests, pid, ours)
                                runs[name].append(result)
                                disturbance[(name, test, pipeline)] = max(
                                    other, disturbance.get((name, test, pipeline), 0.0)
                                )
                        for name, results in runs.items():
                            table[(name, test, pipeline)] = median_result(results)
                print_table(table, disturbance)
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
                for pipeline in (16, 1):
                    out = args.profile / f"gateway-get-P{pipeline}.raw"
                    profile(gw_redis_port, gw_redis.pid, pipeline, out)
        finally:
            for proc in reversed(procs):
                stop(proc)


def print_table(
    table: dict[tuple[str, str, int], Result], disturbance: dict[tuple[str, str, int], float]
) -> None:
    print(
        "| system | test | -P | req/s | p50 ms | p99 ms | proxy CPU µs/req "
        "| x twemproxy | x redis |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for (name, test, pipeline), r in table.items():
        x_twem = r.rps / table[(TWEMPROXY, test, pipeline)].rps
        x_redis = r.rps / table[(REDIS, test, pipeline)].rps
        print(
            f"| {name} | {test.upper()} | {pipeline} | {r.rps:,.0f} | {r.p50_ms:.2f} | "
            f"{r.p99_ms:.2f} | {r.cpu_us_per_req:.1f} | {x_twem:.2f} | {x_redis:.2f} |"
        )
    worst = max(disturbance.items(), key=lambda item: item[1])
    (name, test, pipeline), cores = worst
    print(
        f"\nOther processes used at most {cores:.2f} cores during a run "
        f"({name}, {test.upper()}, -P {pipeline}); above ~0.1 re-run on a quieter machine."
    )


if __name__ == "__main__":
    main()

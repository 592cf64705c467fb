"""Moving a quarter of the keyspace between two groups: Tessera next to Redis Cluster.

Run (from the repository root):
    PYTHONPATH=. .venv/bin/python -m bench.migration [--keys 1000000] [--value-size 100]
        [--load-clients 4] [--skip-redis] [--skip-tessera]

Both systems get `--keys` string keys `key:<i>` of `--value-size` bytes, split over two
groups, and move a quarter of the keyspace from one group to the other twice: once idle,
once under load (the second move goes back the other way).

- Tessera: ZooKeeper, a confmaster, two PGs of a master and one slave, one gateway
  (tests/cluster_fixtures.py). PG 0 owns partitions 0-4095, PG 1 owns 4096-8191. The idle
  run moves partitions 0-2047 to PG 1 (POST /clusters/default/migrations, unthrottled,
  block budget 3000 ms), the loaded run moves them back to PG 0. Total time is the job
  record's finished_ms - created_ms (the wall time from the POST to seeing `done` is shown
  too); the block time is the last element of the record's `block_ms`.
- Redis Cluster: two redis-server masters in cluster mode (slots 0-8191 and 8192-16383; the
  cluster is built with ADDSLOTSRANGE + MEET because `redis-cli --cluster create` wants at
  least three masters). The idle run is `redis-cli --cluster reshard` of 4096 slots from
  node 1 to node 2, the loaded run 4096 slots back; the total is the wall time of redis-cli.

Under load, `--load-clients` processes (processes, not threads, so that the GIL does not
add to the measured latencies) do a 50/50 mix of GET and SET on random keys: plain redis-py
clients on the Tessera gateway, redis-py `RedisCluster` clients (which follow MOVED/ASK) on
Redis. The load runs 1 s before the move, during it, and 1 s after. Every request started
during the move is counted in its key's class: "moving" if its partition (Tessera) or slot
(Redis) is one of the moved ones, else "other". Reported per class: the longest single
request (the longest client stall), p99, and errors (exceptions; GETs that returned nil are
counted separately as "nil"). "stall before" is the longest request of the second before
the move: the same load with no move, what the machine's CPU sharing alone costs. At the
end every key is read back (STRLEN) and keys missing or of the wrong size are counted.

Prints a plain table and the same numbers as a markdown snippet for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import multiprocessing.process
import multiprocessing.queues
import multiprocessing.synchronize
import os
import platform
import queue
import random
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import uuid
from array import array
from binascii import crc_hqx
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster

from tessera.partition import format_ranges, pn, runs
from tessera.zkserver import ZooKeeperServer
from tests.cluster_fixtures import LocalCluster, http_error_text, wait_until
from tests.procs import free_port, start_redis, stop

SLOTS = 16384
TESSERA_MOVING = (0, 2047)  # partitions moved between PG 0 and PG 1
REDIS_SLOTS_MOVED = 4096
RESHARD_PIPELINE = 1000  # keys per MIGRATE (redis-cli's default is 10)
FINAL_PHASES = ("done", "failed", "cancelled")
TARGETS = {"idle": 1.5, "loaded": 2.5}  # Tessera: total seconds
TARGET_STALL_MOVING_MS = 50.0
TARGET_STALL_OTHER_MS = 10.0
BATCH = 5000
OK, ERROR, NIL = 0, 1, 2  # request outcomes


def key_name(i: int) -> bytes:
    return b"key:%d" % i


def redis_slot(key: bytes) -> int:
    """Redis Cluster slot of a key without a hash tag (all of ours)."""
    return crc_hqx(key, 0) & (SLOTS - 1)


# ---------------------------------------------------------------------- results


@dataclass
class ClassStats:
    requests: int
    errors: int
    nils: int
    max_ms: float
    p99_ms: float
    worst_at_s: float  # start of the slowest request, seconds after the move started


@dataclass
class RunResult:
    system: str
    mode: str  # "idle" / "loaded"
    keys_moved: int
    value_size: int
    total_s: float | None = None  # None: the move did not finish
    wall_s: float | None = None
    block_ms: int | None = None
    moving: ClassStats | None = None
    other: ClassStats | None = None
    before: ClassStats | None = None  # every key, the second before the move
    error: str = ""
    details: str = ""

    @property
    def keys_per_s(self) -> float | None:
        return self.keys_moved / self.total_s if self.total_s else None

    @property
    def mb_per_s(self) -> float | None:
        if not self.total_s:
            return None
        return self.keys_moved * self.value_size / 1e6 / self.total_s


def class_stats(
    samples: list[Samples], is_moving: Callable[[int], bool], move_start: float, move_end: float
) -> tuple[ClassStats, ClassStats, ClassStats]:
    """Per-class stall, p99 and error counts of the requests started during the move, and
    the same for every request started in the second before it (the load without a move:
    what this machine's CPU sharing alone costs)."""
    lat: dict[str, list[float]] = {"moving": [], "other": [], "before": []}
    errors = dict.fromkeys(lat, 0)
    nils = dict.fromkeys(lat, 0)
    worst: dict[str, tuple[float, float]] = dict.fromkeys(lat, (0.0, 0.0))
    cache: dict[int, bool] = {}
    for s in samples:
        for i, latency, started, status in zip(s.keys, s.lat, s.started, s.status, strict=True):
            if started < move_start:
                kind = "before"
            elif started <= move_end:
                moving = cache.get(i)
                if moving is None:
                    moving = cache[i] = is_moving(i)
                kind = "moving" if moving else "other"
            else:
                continue
            lat[kind].append(latency)
            if status == ERROR:
                errors[kind] += 1
            elif status == NIL:
                nils[kind] += 1
            if latency > worst[kind][0]:
                worst[kind] = (latency, started - move_start)

    def stats(kind: str) -> ClassStats:
        values = sorted(lat[kind])
        p99 = values[max(0, math.ceil(len(values) * 0.99) - 1)] if values else 0.0
        return ClassStats(
            requests=len(values),
            errors=errors[kind],
            nils=nils[kind],
            max_ms=worst[kind][0] * 1000,
            p99_ms=p99 * 1000,
            worst_at_s=worst[kind][1],
        )

    return stats("moving"), stats("other"), stats("before")


# ---------------------------------------------------------------------- load clients


@dataclass(frozen=True)
class Target:
    kind: str  # "tessera": a plain client on the gateway; "redis": RedisCluster
    port: int


@dataclass
class Samples:
    keys: array[int]
    lat: array[float]  # seconds
    started: array[float]  # time.monotonic() at the request's start
    status: array[int]
    error_texts: list[str]


def make_client(target: Target) -> redis.Redis | RedisCluster:
    if target.kind == "redis":
        return RedisCluster(host="127.0.0.1", port=target.port, socket_timeout=10)
    return redis.Redis(host="127.0.0.1", port=target.port, socket_timeout=10)


def load_worker(
    target: Target,
    keys: int,
    value_size: int,
    seed: int,
    halt: multiprocessing.synchronize.Event,
    out: multiprocessing.queues.Queue[Any],
) -> None:
    """One load client (a process): GET/SET 50/50 on random keys until `halt`."""
    client = make_client(target)
    client.ping()
    rng = random.Random(seed)
    value = b"w" * value_size
    idx: array[int] = array("l")
    lat: array[float] = array("d")
    started: array[float] = array("d")
    status: array[int] = array("b")
    texts: list[str] = []
    out.put(("ready", os.getpid()))
    clock = time.monotonic
    while not halt.is_set():
        i = rng.randrange(keys)
        key = key_name(i)
        get = rng.random() < 0.5
        t0 = clock()
        outcome = OK
        try:
            if get:
                if client.get(key) is None:
                    outcome = NIL
            else:
                client.set(key, value)
        except (redis.RedisError, OSError) as exc:
            outcome = ERROR
            if len(texts) < 5:
                texts.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.001)
        t1 = clock()
        idx.append(i)
        lat.append(t1 - t0)
        started.append(t0)
        status.append(outcome)
    out.put(("done", idx.tobytes(), lat.tobytes(), started.tobytes(), status.tobytes(), texts))


def _array(typecode: str, data: bytes) -> array[Any]:
    result: array[Any] = array(typecode)
    result.frombytes(data)
    return result


@contextmanager
def running_load(target: Target, keys: int, value_size: int, clients: int) -> Iterator[LoadRun]:
    """Start the load processes (returns once all are sending); always stops them."""
    ctx = multiprocessing.get_context("spawn")
    halt = ctx.Event()
    out: multiprocessing.queues.Queue[Any] = ctx.Queue()
    procs: list[multiprocessing.process.BaseProcess] = [
        ctx.Process(
            target=load_worker,
            args=(target, keys, value_size, 1000 + n, halt, out),
            daemon=True,
        )
        for n in range(clients)
    ]
    run = LoadRun(halt, out, procs)
    try:
        for proc in procs:
            proc.start()
        for _ in procs:
            message = out.get(timeout=60)
            assert message[0] == "ready", message
        yield run
    finally:
        halt.set()
        if not run.collected:
            run.collect(timeout_s=30, raise_on_timeout=False)
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()


class LoadRun:
    def __init__(
        self,
        halt: multiprocessing.synchronize.Event,
        out: multiprocessing.queues.Queue[Any],
        procs: list[multiprocessing.process.BaseProcess],
    ) -> None:
        self.halt = halt
        self.out = out
        self.procs = procs
        self.samples: list[Samples] = []
        self.collected = False

    def collect(self, timeout_s: float = 60, raise_on_timeout: bool = True) -> list[Samples]:
        """Stop the clients and take their samples (read before joining: big messages)."""
        self.halt.set()
        self.collected = True
        deadline = time.monotonic() + timeout_s
        while len(self.samples) < len(self.procs):
            try:
                message = self.out.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                if raise_on_timeout:
                    raise
                break
            if message[0] != "done":
                continue
            self.samples.append(
                Samples(
                    keys=_array("l", message[1]),
                    lat=_array("d", message[2]),
                    started=_array("d", message[3]),
                    status=_array("b", message[4]),
                    error_texts=message[5],
                )
            )
        return self.samples


def error_texts(samples: list[Samples]) -> list[str]:
    seen: dict[str, None] = {}
    for s in samples:
        for text in s.error_texts:
            seen.setdefault(text[:200], None)
    return list(seen)[:5]


# ---------------------------------------------------------------------- bulk load / check


def _connections(ports: list[int]) -> list[redis.Redis]:
    return [redis.Redis(host="127.0.0.1", port=p, socket_timeout=60) for p in ports]


def fill_worker(
    ports: list[int], owner: bytes | None, first: int, last: int, value_size: int
) -> None:
    """SET keys first..last-1; with `owner` (slot -> index in `ports`) per Redis node."""
    clients = _connections(ports)
    pipes = [c.pipeline(transaction=False) for c in clients]
    value = b"v" * value_size
    queued = [0] * len(pipes)
    for i in range(first, last):
        key = key_name(i)
        n = owner[redis_slot(key)] if owner is not None else 0
        pipes[n].set(key, value)
        queued[n] += 1
        if queued[n] >= BATCH:
            pipes[n].execute()
            queued[n] = 0
    for n, pipe in enumerate(pipes):
        if queued[n]:
            pipe.execute()


def check_worker(
    ports: list[int], owner: bytes | None, first: int, last: int, value_size: int
) -> int:
    """How many of keys first..last-1 are missing or not `value_size` bytes long."""
    clients = _connections(ports)
    bad = 0
    for start in range(first, last, BATCH):
        pipes = [c.pipeline(transaction=False) for c in clients]
        for i in range(start, min(last, start + BATCH)):
            key = key_name(i)
            pipes[owner[redis_slot(key)] if owner is not None else 0].strlen(key)
        for pipe in pipes:
            bad += sum(1 for length in pipe.execute(raise_on_error=False) if length != value_size)
    return bad


def parallel(
    worker: Callable[[list[int], bytes | None, int, int, int], Any],
    ports: list[int],
    owner: bytes | None,
    keys: int,
    value_size: int,
    procs: int,
) -> list[Any]:
    ctx = multiprocessing.get_context("spawn")
    step = math.ceil(keys / procs)
    jobs = [(ports, owner, a, min(keys, a + step), value_size) for a in range(0, keys, step)]
    with ctx.Pool(procs) as pool:
        return pool.starmap(worker, jobs)


# ---------------------------------------------------------------------- Redis Cluster


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def cluster_info(client: redis.Redis) -> dict[str, str]:
    raw = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    fields = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k: v.strip() for k, v in fields}


def slot_owners(client: redis.Redis) -> list[int]:
    """Slot -> port of its master, as `client`'s node sees it (CLUSTER SLOTS)."""
    owners = [0] * SLOTS
    for entry in client.execute_command("CLUSTER", "SLOTS"):  # type: ignore[no-untyped-call]
        first, last, master = entry[0], entry[1], entry[2]
        for slot in range(int(first), int(last) + 1):
            owners[slot] = int(master[1])
    return owners


def wait_agreement(clients: list[redis.Redis], timeout_s: float = 30) -> list[int]:
    """Every node: cluster_state ok, all nodes known, the same slot table, nothing open."""

    def agreed() -> list[int] | None:
        tables = []
        for c in clients:
            info = cluster_info(c)
            if info.get("cluster_state") != "ok":
                return None
            if int(info.get("cluster_known_nodes", 0)) != len(clients):
                return None
            tables.append(slot_owners(c))
            nodes = c.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
            text = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
            if "->-" in text or "-<-" in text:  # a slot still migrating / importing
                return None
        return tables[0] if all(t == tables[0] for t in tables) else None

    result: list[int] = wait_until(agreed, timeout_s, "the Redis Cluster nodes to agree")
    return result


def node_id(client: redis.Redis) -> str:
    raw = client.execute_command("CLUSTER", "MYID")  # type: ignore[no-untyped-call]
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def reshard(
    ports: list[int],
    clients: list[redis.Redis],
    source: int,
    dest: int,
    mode: str,
    keys: int,
    value_size: int,
    load_clients: int,
) -> RunResult:
    """Move REDIS_SLOTS_MOVED slots from node `source` to node `dest`, idle or loaded."""
    before = wait_agreement(clients)
    cmd = [
        "redis-cli",
        "--cluster",
        "reshard",
        f"127.0.0.1:{ports[source]}",
        "--cluster-from",
        node_id(clients[source]),
        "--cluster-to",
        node_id(clients[dest]),
        "--cluster-slots",
        str(REDIS_SLOTS_MOVED),
        "--cluster-yes",
        "--cluster-pipeline",
        str(RESHARD_PIPELINE),
    ]
    result = RunResult("Redis Cluster", mode, 0, value_size)

    def move() -> tuple[float, float]:
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        elapsed = time.monotonic() - started
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            result.error = f"redis-cli exited {proc.returncode}: " + " | ".join(tail)
        return started, elapsed

    samples: list[Samples] = []
    if mode == "idle":
        started, elapsed = move()
    else:
        with running_load(Target("redis", ports[0]), keys, value_size, load_clients) as load:
            time.sleep(1)
            started, elapsed = move()
            time.sleep(1)
            samples = load.collect()
    after = wait_agreement(clients, 60)
    moved = bytearray(1 if a != b else 0 for a, b in zip(before, after, strict=True))
    result.keys_moved = sum(1 for i in range(keys) if moved[redis_slot(key_name(i))])
    if not result.error:
        result.total_s = result.wall_s = elapsed
    moved_runs = format_ranges(runs([s for s in range(SLOTS) if moved[s]])) or "none"
    result.details = (
        f"slots moved {moved_runs} ({sum(moved)} slots), "
        f"options: --cluster-pipeline {RESHARD_PIPELINE}"
    )
    if samples:
        result.moving, result.other, result.before = class_stats(
            samples, lambda i: bool(moved[redis_slot(key_name(i))]), started, started + elapsed
        )
        texts = error_texts(samples)
        if texts:
            result.details += "; client errors: " + " / ".join(texts)
    return result


def bench_redis(args: argparse.Namespace) -> tuple[list[RunResult], int | None]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        raise RuntimeError("redis-server / redis-cli are not installed")
    results: list[RunResult] = []
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            ports = []
            for _ in range(2):
                port = free_cluster_port()
                proc, port = start_redis(
                    port,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"{tmp}/nodes-{port}.conf",
                    "--dir",
                    tmp,
                )
                procs.append(proc)
                ports.append(port)
            clients = _connections(ports)
            clients[0].execute_command("CLUSTER", "ADDSLOTSRANGE", 0, SLOTS // 2 - 1)  # type: ignore[no-untyped-call]
            clients[1].execute_command("CLUSTER", "ADDSLOTSRANGE", SLOTS // 2, SLOTS - 1)  # type: ignore[no-untyped-call]
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", ports[1])  # type: ignore[no-untyped-call]
            owners = wait_agreement(clients, 60)
            owner = bytes(ports.index(p) for p in owners)
            print(f"Redis Cluster on ports {ports}: loading {args.keys} keys ...", flush=True)
            t0 = time.monotonic()
            parallel(fill_worker, ports, owner, args.keys, args.value_size, args.fill_procs)
            print(f"  loaded in {time.monotonic() - t0:.1f} s", flush=True)
            for mode, source, dest in (("idle", 0, 1), ("loaded", 1, 0)):
                print(f"  reshard {REDIS_SLOTS_MOVED} slots, {mode} ...", flush=True)
                result = reshard(
                    ports,
                    clients,
                    source,
                    dest,
                    mode,
                    args.keys,
                    args.value_size,
                    args.load_clients,
                )
                print("   ", one_line(result), flush=True)
                results.append(result)
            owners = wait_agreement(clients, 60)
            owner = bytes(ports.index(p) for p in owners)
            missing: int | None = sum(
                parallel(check_worker, ports, owner, args.keys, args.value_size, args.fill_procs)
            )
        finally:
            for proc in procs:
                stop(proc)
    return results, missing


# ---------------------------------------------------------------------- Tessera


# How often the job record is read while a move runs. The totals come from the record's
# own timestamps, so this only rounds the "wall" column; each read costs the confmaster a
# ZooKeeper read through a worker thread, which competes for the GIL with the mover.
POLL_S = 0.1


def tessera_move(
    cluster: LocalCluster, target_pg: int, mode: str, args: argparse.Namespace
) -> RunResult:
    """Move partitions TESSERA_MOVING to `target_pg` through the confmaster's job API."""
    first, last = TESSERA_MOVING
    result = RunResult("Tessera", mode, 0, args.value_size)
    result.keys_moved = sum(1 for i in range(args.keys) if first <= pn(key_name(i)) <= last)
    body = {
        "ranges": [[first, last, target_pg]],
        "rate_mb_s": args.rate_mb_s,
        "block_budget_ms": 3000,
    }
    records: dict[str, dict[str, Any]] = {}

    def move() -> float:
        started = time.monotonic()
        try:
            reply = cluster.api("POST", f"/clusters/{cluster.name}/migrations", body)
        except urllib.error.HTTPError as exc:
            result.error = f"POST refused: HTTP {exc.code} {http_error_text(exc)}"
            return started
        pending = [str(job) for job in reply["jobs"]]
        deadline = started + args.move_timeout
        while pending and time.monotonic() < deadline:
            for job in list(pending):
                try:
                    record = cluster.api("GET", f"/clusters/{cluster.name}/migrations/{job}")
                except (OSError, ValueError):
                    continue  # a confmaster hiccup: poll again
                if record.get("phase") in FINAL_PHASES:
                    records[job] = record
                    pending.remove(job)
            if pending:
                time.sleep(POLL_S)
        result.wall_s = time.monotonic() - started
        if pending:
            result.error = f"jobs {pending} not finished after {args.move_timeout} s"
        return started

    samples: list[Samples] = []
    if mode == "idle":
        started = move()
    else:
        target = Target("tessera", cluster.gateway_port)
        with running_load(target, args.keys, args.value_size, args.load_clients) as load:
            time.sleep(1)
            started = move()
            time.sleep(1)
            samples = load.collect()
    failed = [r for r in records.values() if r.get("phase") != "done"]
    for record in failed:
        result.error += (
            f"job {record.get('id')} {record.get('phase')}: {record.get('last_error')} "
        ).strip()
    if records and not failed and not result.error:
        created = min(int(r["created_ms"]) for r in records.values())
        finished = max(int(r["finished_ms"]) for r in records.values())
        result.total_s = (finished - created) / 1000
        blocks = [int(r["block_ms"][-1]) for r in records.values() if r.get("block_ms")]
        result.block_ms = max(blocks) if blocks else None
    if records:
        result.details = "; ".join(
            f"job {r.get('id')}: PG {r.get('source_pg')}->{r.get('target_pg')} "
            f"{r.get('ranges')}, keys_total {r.get('keys_total')}, "
            f"bytes_total {r.get('bytes_total')}, attempts {r.get('attempts')}, "
            f"block_ms {r.get('block_ms')}"
            for r in records.values()
        )
    if samples:
        result.moving, result.other, result.before = class_stats(
            samples,
            lambda i: first <= pn(key_name(i)) <= last,
            started,
            started + (result.wall_s or 0.0),
        )
        texts = error_texts(samples)
        if texts:
            result.details += "; client errors: " + " / ".join(texts)
    return result


def gc_pauses(cluster: LocalCluster) -> str:
    """Each process's full collections and longest collector pause (INFO stats)."""
    parts = []
    for member in cluster.members.values():
        fields = cluster.info(member)
        parts.append(
            f"{member.id} full {fields['gc_full_collections']} max {fields['gc_pause_max_ms']} ms"
        )
    fields = cluster.client(password=cluster.secret).info("stats")
    parts.append(f"gateway full {fields['gc_full_collections']} max {fields['gc_pause_max_ms']} ms")
    return ", ".join(parts)


def cpu_seconds(cluster: LocalCluster) -> dict[str, float]:
    """CPU seconds each cluster process has used so far, its reaped children (the dump
    children) included, by a short name: the module and its data dir or port."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    members = [member.proc for member in cluster.members.values() if member.proc is not None]
    for proc in [*members, *cluster.procs]:
        argv = [str(arg) for arg in proc.args] if isinstance(proc.args, list) else []
        module = argv[argv.index("-m") + 1] if "-m" in argv else "?"
        where = ""
        for flag in ("--data-dir", "--port"):
            if flag in argv:
                where = Path(argv[argv.index(flag) + 1]).name
                break
        try:
            with open(f"/proc/{proc.pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        # Fields after the name: state is the 3rd of stat(5); utime..cstime the 14th-17th.
        out[f"{module} {where}".strip()] = sum(int(x) for x in fields[11:15]) / tick
    return out


def cpu_used(before: dict[str, float], after: dict[str, float]) -> str:
    used = {name: after[name] - before.get(name, 0.0) for name in after}
    total = sum(used.values())
    parts = [f"{name} {seconds:.2f}" for name, seconds in sorted(used.items())]
    return f"{total:.2f} s in all: " + ", ".join(parts)


def bench_tessera(args: argparse.Namespace) -> tuple[list[RunResult], int | None]:
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        zk = ZooKeeperServer(Path(tmp) / "zk", port=free_port())
        try:
            zk.start()
            cluster = LocalCluster(
                zk, f"/bench-{uuid.uuid4().hex[:8]}", Path(tmp), pgs=2, replicas=1
            )
            if args.confmaster_log is not None:
                cluster.log_level = "info"  # every job step, with its time
                cluster.confmaster_log = args.confmaster_log
            try:
                cluster.start()
                ports = [cluster.gateway_port]
                print(
                    f"Tessera gateway on port {ports[0]}: loading {args.keys} keys ...",
                    flush=True,
                )
                t0 = time.monotonic()
                parallel(fill_worker, ports, None, args.keys, args.value_size, args.fill_procs)
                print(f"  loaded in {time.monotonic() - t0:.1f} s", flush=True)
                for mode, target_pg in (("idle", 1), ("loaded", 0)):
                    for pg in range(2):
                        wait_until(lambda pg=pg: cluster.in_sync(pg), 120, f"PG {pg} in sync")
                    print(f"  move partitions 0-2047 to PG {target_pg}, {mode} ...", flush=True)
                    cpu_before = cpu_seconds(cluster)
                    result = tessera_move(cluster, target_pg, mode, args)
                    cpu_after = cpu_seconds(cluster)
                    print("   ", one_line(result), flush=True)
                    print(
                        "    CPU seconds used by each process (the loaded run: 1 s of load "
                        "before and after included):",
                        cpu_used(cpu_before, cpu_after),
                        flush=True,
                    )
                    print("    cycle-collector pauses so far:", gc_pauses(cluster), flush=True)
                    results.append(result)
                missing: int | None = sum(
                    parallel(check_worker, ports, None, args.keys, args.value_size, args.fill_procs)
                )
            finally:
                cluster.stop()
        finally:
            zk.stop()
    return results, missing


# ---------------------------------------------------------------------- report


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _errors(stats: ClassStats | None) -> str:
    if stats is None:
        return "-"
    return f"{stats.errors}" + (f" +{stats.nils} nil" if stats.nils else "")


def verdict(result: RunResult) -> str:
    if result.system != "Tessera":
        return ""
    if result.total_s is None:
        return "failed"
    misses = []
    if result.total_s > TARGETS[result.mode]:
        misses.append("total")
    if result.moving is not None and result.moving.max_ms > TARGET_STALL_MOVING_MS:
        misses.append("stall moving")
    if result.other is not None and result.other.max_ms > TARGET_STALL_OTHER_MS:
        misses.append("stall other")
    return "met" if not misses else "missed: " + ", ".join(misses)


HEADERS = [
    "system",
    "mode",
    "keys moved",
    "total s",
    "wall s",
    "keys/s",
    "MB/s",
    "block ms",
    "stall moving ms",
    "stall other ms",
    "p99 moving ms",
    "p99 other ms",
    "errors moving",
    "errors other",
    "stall before ms",
    "targets",
]


def row(result: RunResult) -> list[str]:
    m, o = result.moving, result.other
    return [
        result.system,
        result.mode,
        str(result.keys_moved),
        _f(result.total_s),
        _f(result.wall_s),
        _f(result.keys_per_s, 0),
        _f(result.mb_per_s, 1),
        "n/a" if result.system != "Tessera" else _f(result.block_ms, 0),
        _f(m.max_ms if m else None, 1),
        _f(o.max_ms if o else None, 1),
        _f(m.p99_ms if m else None, 1),
        _f(o.p99_ms if o else None, 1),
        _errors(m),
        _errors(o),
        _f(result.before.max_ms if result.before else None, 1),
        verdict(result),
    ]


def one_line(result: RunResult) -> str:
    text = ", ".join(f"{h} {v}" for h, v in zip(HEADERS[2:], row(result)[2:], strict=True))
    if result.error:
        text += f"\n    ERROR: {result.error}"
    if result.details:
        text += f"\n    {result.details}"
    for name, stats in (
        ("moving", result.moving),
        ("other", result.other),
        ("before the move, every key", result.before),
    ):
        if stats is not None:
            text += (
                f"\n    {name}: {stats.requests} requests, slowest started "
                f"{stats.worst_at_s:+.2f} s from the move's start"
            )
    return text


def print_report(
    results: list[RunResult], missing: dict[str, int | None], args: argparse.Namespace
) -> None:
    rows = [HEADERS, *(row(r) for r in results)]
    widths = [max(len(cells[c]) for cells in rows) for c in range(len(HEADERS))]
    print()
    for cells in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(cells, widths, strict=True)))
    print(
        f"\nTessera targets: total <= {TARGETS['idle']} s idle, <= {TARGETS['loaded']} s "
        f"loaded; longest stall <= {TARGET_STALL_MOVING_MS:.0f} ms on moving keys, "
        f"<= {TARGET_STALL_OTHER_MS:.0f} ms on other keys."
    )
    for system, count in missing.items():
        print(f"{system}: keys missing or of the wrong size at the end: {count} of {args.keys}")
    for r in results:
        if r.error:
            print(f"{r.system} {r.mode}: FAILED: {r.error}")

    command = (
        f"python -m bench.migration --keys {args.keys} --value-size {args.value_size} "
        f"--load-clients {args.load_clients}"
    )
    print("\n--- markdown ---\n")
    print(
        f"Moving a quarter of the keyspace ({args.keys} keys of {args.value_size} bytes) "
        f"between two groups, `{command}`, {os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}. Tessera moves partitions 0-2047 of 8192 (PG 0 -> PG 1 "
        f"idle, back under load); Redis Cluster moves 4096 of 16384 slots with "
        f"`redis-cli --cluster reshard --cluster-pipeline {RESHARD_PIPELINE}` (node 1 -> "
        f"node 2 idle, back under load). Load: {args.load_clients} clients, GET/SET 50/50 on "
        "random keys, 1 s before and after the move. Stall: the longest single request "
        "started during the move; stall before: the longest of the second before it.\n"
    )
    md_headers = HEADERS[:-1]
    print("| " + " | ".join(md_headers) + " |")
    print("|" + "|".join("---" if i < 2 else "---:" for i in range(len(md_headers))) + "|")
    for r in results:
        print("| " + " | ".join(row(r)[:-1]) + " |")
    tessera = [r for r in results if r.system == "Tessera"]
    if tessera:
        print(
            f"\nTessera targets: total <= {TARGETS['idle']} s idle / {TARGETS['loaded']} s "
            f"loaded, stall <= {TARGET_STALL_MOVING_MS:.0f} ms moving / "
            f"{TARGET_STALL_OTHER_MS:.0f} ms other"
            + "".join(f"; {r.mode}: {verdict(r)}" for r in tessera)
            + "."
        )
    for system, count in missing.items():
        print(f"{system}: {count} keys missing or of the wrong size afterwards.")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--value-size", type=int, default=100)
    parser.add_argument("--load-clients", type=int, default=4)
    parser.add_argument("--fill-procs", type=int, default=4, help="processes loading keys")
    parser.add_argument("--move-timeout", type=float, default=600, help="seconds per move")
    parser.add_argument(
        "--rate-mb-s",
        type=float,
        default=0,
        help="Tessera's copy throttle (0: none): what a slower move buys the clients",
    )
    parser.add_argument(
        "--confmaster-log",
        type=Path,
        help="write the confmaster's log (info level: each job step with its time) here",
    )
    parser.add_argument("--skip-redis", action="store_true")
    parser.add_argument("--skip-tessera", action="store_true")
    args = parser.parse_args()
    results: list[RunResult] = []
    missing: dict[str, int | None] = {}
    if not args.skip_tessera:
        tessera, missing["Tessera"] = bench_tessera(args)
        results += tessera
    if not args.skip_redis:
        redis_results, missing["Redis Cluster"] = bench_redis(args)
        results += redis_results
    print_report(results, missing, args)


if __name__ == "__main__":
    main()

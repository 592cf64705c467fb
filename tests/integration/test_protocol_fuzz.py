"""Protocol fuzzing: generated hostile input against a real pgserver and a real gateway.

TESSERA_FUZZ_INPUTS inputs go to each target (default 4000: the CI size, seconds; `make
fuzz N=1000000` is the full run), TESSERA_FUZZ_SEED fixes the seed (default: from the
clock; every failure message names it). See tests/fuzzing.py for what is generated and
what must hold, and docs/fuzzing.md for the recorded full run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from tessera.partition import PARTITIONS
from tests.fuzzing import ConnectionScript, check, rss_kb, run_connection, script_for
from tests.procs import REPO, free_port, stop, wait_for_port

INPUTS = int(os.environ.get("TESSERA_FUZZ_INPUTS", "4000"))
SEED = int(os.environ.get("TESSERA_FUZZ_SEED", str(time.time_ns() % 1_000_000_007)))
CONCURRENCY = 8  # fuzz connections at a time
DEADLINE_S = 20.0  # for one connection to get its replies and be closed (2 busy cores)
STALL_LIMIT_MS = 3000  # the well-behaved client's slowest SET+GET
# RSS growth allowed from after the warm-up to the end: the fuzz keys' data (a few MB) plus
# allocator slack; a leak of one buffer per connection or per input would go far beyond.
RSS_GROWTH_LIMIT_KB = 96 * 1024
WARMUP_INPUTS = min(2000, INPUTS // 10)


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Target:
    port: int
    servers: list[Server] = field(default_factory=list)


def spawn(name: str, log_dir: Path, module: str, *args: str) -> Server:
    log = log_dir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args, "--log-level", "warning"],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return Server(name, proc, log)


def start_pgserver(name: str, tmp: Path) -> tuple[Server, int]:
    port = free_port()
    data = tmp / name
    data.mkdir()
    server = spawn(name, tmp, "pgserver", "--port", str(port), "--data-dir", str(data))
    wait_for_port(port, server.proc)
    return server, port


@pytest.fixture
def pgserver_target(tmp_path: Path) -> Iterator[Target]:
    server, port = start_pgserver("pgserver", tmp_path)
    yield Target(port, [server])
    stop(server.proc)


@pytest.fixture
def gateway_target(tmp_path: Path) -> Iterator[Target]:
    """A gateway in front of two pgservers (half of the partitions each)."""
    target = Target(free_port())
    try:
        backends = []
        for i in range(2):
            server, port = start_pgserver(f"pgserver{i}", tmp_path)
            target.servers.append(server)
            backends.append(port)
        half = PARTITIONS // 2
        gateway = spawn(
            "gateway",
            tmp_path,
            "gateway",
            *("--port", str(target.port), "--admin-port", "0"),
            *("--backend", f"0-{half - 1}=127.0.0.1:{backends[0]}"),
            *("--backend", f"{half}-{PARTITIONS - 1}=127.0.0.1:{backends[1]}"),
        )
        target.servers.append(gateway)
        wait_for_port(target.port, gateway.proc)
        yield target
    finally:
        for server in target.servers:
            stop(server.proc)


@dataclass
class Run:
    inputs: int = 0
    connections: int = 0
    failures: list[str] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    rss_warm_kb: dict[str, int] = field(default_factory=dict)


async def fuzz(target: Target, inputs: int) -> Run:
    """Connections from CONCURRENCY workers until `inputs` inputs were sent."""
    run = Run()
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while run.inputs < inputs and len(run.failures) < 20:
            index = next_index
            next_index += 1
            script = script_for(SEED, index)
            run.inputs += len(script.inputs)
            run.connections += 1
            run.kinds[script.bad_kind or "valid only"] = (
                run.kinds.get(script.bad_kind or "valid only", 0) + 1
            )
            outcome = await run_connection(target.port, script, DEADLINE_S)
            problem = check(script, outcome)
            if problem is not None:
                run.failures.append(describe(index, script, problem))
            if not run.rss_warm_kb and run.inputs >= WARMUP_INPUTS:
                run.rss_warm_kb = {s.name: rss_kb(s.proc.pid) for s in target.servers}

    async with trio.open_nursery() as nursery:
        for _ in range(CONCURRENCY):
            nursery.start_soon(worker)
    return run


def describe(index: int, script: ConnectionScript, problem: str) -> str:
    stream = b"".join(script.inputs)
    return (
        f"connection {index} (seed {SEED}; tests.fuzzing.script_for({SEED}, {index})): "
        f"{problem}; {script.valid} valid inputs then {script.bad_kind or 'EOF'}; "
        f"stream starts {stream[:300]!r}"
    )


def well_behaved_client(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fuzzing", str(port)], cwd=REPO, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n", "the well-behaved client did not start"
    return proc


def finish_well_behaved(proc: subprocess.Popen[bytes]) -> dict[str, object]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    result: dict[str, object] = json.loads(out)
    return result


async def fuzz_and_check(target: Target) -> None:
    client = well_behaved_client(target.port)
    started = time.monotonic()
    try:
        run = await fuzz(target, INPUTS)
    except BaseException:
        client.kill()
        client.wait()
        raise
    summary = finish_well_behaved(client)
    took = time.monotonic() - started
    rss_end = {s.name: rss_kb(s.proc.pid) for s in target.servers}
    report = {
        "seed": SEED,
        "inputs": run.inputs,
        "connections": run.connections,
        "seconds": round(took, 1),
        "rss_warm_kb": run.rss_warm_kb,
        "rss_end_kb": rss_end,
        "well_behaved": summary,
        "bad_inputs": run.kinds,
    }
    print(json.dumps(report))  # `make fuzz` shows it (pytest -s)
    assert not run.failures, "\n".join(run.failures)
    assert run.inputs >= INPUTS
    for server in target.servers:
        assert server.proc.poll() is None, f"{server.name} died (seed {SEED})"
        log = server.log.read_text(errors="replace")
        assert "Traceback" not in log, f"{server.name} logged a traceback (seed {SEED}):\n{log}"
        growth = rss_end[server.name] - run.rss_warm_kb[server.name]
        assert growth < RSS_GROWTH_LIMIT_KB, f"{server.name} RSS grew {growth} KB: {report}"
    assert summary["problems"] == [], summary
    assert int(str(summary["ops"])) > 0, summary
    assert float(str(summary["worst_ms"])) < STALL_LIMIT_MS, report


async def test_fuzz_pgserver(pgserver_target: Target) -> None:
    await fuzz_and_check(pgserver_target)


async def test_fuzz_gateway(gateway_target: Target) -> None:
    await fuzz_and_check(gateway_target)

"""Every console script fails on bad command lines and config with one line, never a traceback.

Each case is a real subprocess (`python -m <module>`, what the console script runs). They
start all at once and are awaited together, so the file takes about as long as the slowest
case: the gateway giving up on an unreachable ZooKeeper (10 s).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.procs import REPO, free_port

NOWHERE = "127.0.0.1:1"  # nothing listens on port 1
MIGRATE = ("--source", NOWHERE, "--target", "127.0.0.1:2")

CASES: list[tuple[str, tuple[str, ...], str]] = [
    # (module, arguments, a fragment the one line must contain)
    ("pgserver", ("--bogus",), "unrecognized arguments: --bogus"),
    ("pgserver", ("--port", "abc"), "argument --port: invalid int value: 'abc'"),
    ("pgserver", ("--port", "99999"), "port"),
    ("pgserver", ("--port", "-1"), "port"),
    ("pgserver", ("--fsync", "bogus"), "invalid choice: 'bogus'"),
    ("pgserver", ("--data-dir", "/proc/no/such/dir"), "cannot use --data-dir"),
    ("pgserver", ("--data-dir", "/etc/passwd"), "cannot use --data-dir /etc/passwd"),
    ("gateway", ("--bogus",), "unrecognized arguments: --bogus"),
    ("gateway", (), "no map"),
    ("gateway", ("--backend", "abc"), "bad --backend 'abc'"),
    ("gateway", ("--backend", f"9000-10={NOWHERE}"), "'9000-10' is not within 0-8191"),
    ("gateway", ("--backend", f"0-100={NOWHERE}"), "partitions 101-8191 have no backend"),
    ("gateway", ("--backend", "0-8191=127.0.0.1:99999"), "bad backend address"),
    ("gateway", ("--backend", f"0-8191={NOWHERE}", "--workers", "0"), "workers"),
    ("gateway", ("--zk", NOWHERE), f"cannot connect to ZooKeeper at {NOWHERE}"),
    ("confmaster", ("--bogus",), "unrecognized arguments: --bogus"),
    ("confmaster", ("--port", "abc"), "argument --port: invalid int value: 'abc'"),
    ("confmaster", ("--heartbeat-interval-ms", "-1"), "heartbeat_interval_ms"),
    ("confmaster", ("--zk", NOWHERE, "--port", "0"), f"cannot connect to ZooKeeper at {NOWHERE}"),
    ("confmaster.cli", ("--bogus",), "confmaster-cli: error:"),
    ("confmaster.cli", ("--confmaster", NOWHERE, "status"), "cannot reach the confmaster"),
    ("confmaster.cli", ("--confmaster", "127.0.0.1:abc", "status"), "bad --confmaster"),
    ("confmaster.cli", ("--confmaster", "no.such.host.invalid:1", "map", "show"), "cannot reach"),
    ("confmaster.cli", ("cluster", "create", "x", "--range", "9000-10:1"), "bad --range"),
    ("confmaster.cli", ("cluster", "create", "x", "--range", "abc"), "bad --range 'abc'"),
    ("confmaster.cli", ("pg", "del", "abc"), "invalid int value: 'abc'"),
    ("confmaster.cli", ("pgs", "add", "--pg", "1", "nonsense"), "bad address 'nonsense'"),
    ("migrator", ("--source", "a", "--target", "b", "--range", "1-2"), "bad address 'a'"),
    ("migrator", (*MIGRATE, "--range", "9000-10"), "'9000-10' is not within 0-8191"),
    ("migrator", (*MIGRATE, "--range", "abc"), "bad partition range 'abc'"),
    ("migrator", (*MIGRATE, "--range", "1", "--rate-mb-s", "x"), "invalid float value: 'x'"),
    ("migrator", (*MIGRATE, "--state-file", "/etc/passwd"), "not a migrator state file"),
    ("migrator", (*MIGRATE, "--state-file", "/tmp"), "cannot read the state file /tmp"),
    ("tessera.up", ("--bogus",), "tessera: error:"),
    ("tessera.up", ("up", "--pgs", "abc"), "invalid int value: 'abc'"),
    ("tessera.up", ("up", "--data-dir", "/etc/passwd"), "cannot use --data-dir"),
]


def test_every_script_fails_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TESSERA_CONFMASTER": NOWHERE}
    procs = []
    started = time.monotonic()
    for i, (module, case_args, expect) in enumerate(CASES):
        args = case_args
        workdir = tmp_path / str(i)  # `tessera up` and the migrator write beside them
        workdir.mkdir()
        if module == "tessera.up":
            ports = [str(free_port()) for _ in range(4)]
            args = (*args, "--port", ports[0], "--pgserver-port", ports[1])
            args = (*args, "--confmaster-port", ports[2], "--zk-port", ports[3])
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=workdir,
            env={**env, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        procs.append((module, args, expect, proc))
    problems = []
    for module, args, expect, proc in procs:
        _out, err = proc.communicate(timeout=60)
        text = err.decode(errors="replace").strip()
        command = " ".join((module, *args))
        lines = text.splitlines()
        if proc.returncode == 0:
            problems.append(f"{command}: exit status 0")
        elif "Traceback" in text or len(lines) != 1:
            problems.append(f"{command}: {len(lines)} lines on stderr:\n{text}")
        elif expect not in lines[0]:
            problems.append(f"{command}: {lines[0]!r} does not say {expect!r}")
    took = time.monotonic() - started
    assert not problems, "\n".join(problems)
    assert took < 40, f"the bad command lines took {took:.0f}s to be refused"

"""pgserver as a real process, driven by real clients (redis-py, redis-cli, raw sockets)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tessera.compiled import COMPILED_SETS, extension_path
from tests.procs import REPO, free_port, start_pgserver, stop


def test_redis_py_client_roundtrip(pgserver_port: int) -> None:
    client = redis.Redis(port=pgserver_port)
    assert client.ping() is True
    assert client.echo("héllo") == "héllo".encode()
    assert client.client_setname("app") is True
    assert client.client_getname() == "app"
    with client.pipeline(transaction=False) as pipe:
        for i in range(100):
            pipe.echo(str(i))
        assert pipe.execute() == [str(i).encode() for i in range(100)]


def test_redis_py_resp3(pgserver_port: int) -> None:
    client = redis.Redis(port=pgserver_port, protocol=3)
    assert client.ping() is True
    hello = client.execute_command("HELLO", "3")  # type: ignore[no-untyped-call]
    assert hello[b"proto"] == 3


def test_redis_cli_client(pgserver_port: int) -> None:
    def cli(*args: str, stdin: str | None = None) -> str:
        return subprocess.run(
            ["redis-cli", "-p", str(pgserver_port), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout

    assert cli("PING") == "PONG\n"
    assert cli("ECHO", "a b") == "a b\n"
    assert "ERR unknown command 'NOPE'" in cli("NOPE", "x")
    assert cli(stdin="PING\nECHO hi\n") == "PONG\nhi\n"
    assert int(cli("COMMAND", "COUNT")) > 10


def test_huge_bulk_header_is_refused_at_once(pgserver_port: int) -> None:
    with socket.create_connection(("127.0.0.1", pgserver_port), timeout=5) as sock:
        sock.sendall(b"*1\r\n$99999999999\r\n")
        assert sock.recv(1024) == b"-ERR Protocol error: invalid bulk length\r\n"
        assert sock.recv(1024) == b""


def test_requirepass(tmp_path: Path) -> None:
    proc, port = start_pgserver(tmp_path, None, "--requirepass", "s3cret")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"ECHO x\r\nAUTH nope\r\nAUTH s3cret\r\nECHO x\r\n")
            expected = (
                b"-NOAUTH Authentication required.\r\n"
                b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
                b"+OK\r\n$1\r\nx\r\n"
            )
            got = b""
            while len(got) < len(expected):
                got += sock.recv(1024)
            assert got == expected
        with pytest.raises(redis.AuthenticationError, match="must be called with the client"):
            redis.Redis(port=port).echo("x")
        with pytest.raises(redis.AuthenticationError, match="invalid username-password pair"):
            redis.Redis(port=port, password="wrong").echo("x")
        assert redis.Redis(port=port, password="s3cret").echo("x") == b"x"
    finally:
        stop(proc)


def test_sigterm_stops_promptly(tmp_path: Path) -> None:
    proc, _port = start_pgserver(tmp_path)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert time.monotonic() - start < 5


def test_slow_step_monitor_names_the_stalling_task(tmp_path: Path) -> None:
    """--slow-step-ms logs event-loop steps at least that long, naming the task."""
    log_path = tmp_path / "stderr.log"
    proc, port = start_pgserver(tmp_path / "data", None, "--slow-step-ms", "0.001", stderr=log_path)
    try:
        with redis.Redis(port=port) as client:
            client.set("k", "v")
    finally:
        stop(proc)
    logged = log_path.read_text()
    assert "task pgserver.server.PgServer.serve held the event loop for" in logged


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "notaport"], "invalid int value"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_command_line_is_one_line(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pgserver", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "pgserver", "--port", str(port), "--data-dir", str(tmp_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert free_port() > 0


def test_info_says_how_many_modules_run_compiled(tmp_path: Path) -> None:
    """Operators can tell a mypyc-compiled pgserver (make compiled) from a pure-Python one."""
    built = sum(1 for module in COMPILED_SETS["pgserver"] if extension_path(module, REPO).exists())
    proc, port = start_pgserver(tmp_path)
    try:
        assert redis.Redis(port=port).info("server")["tessera_compiled_modules"] == built
    finally:
        stop(proc)


@pytest.mark.parametrize("script", ["tessera", "pgserver", "gateway"])
def test_console_scripts_start_from_anywhere(script: str, tmp_path: Path) -> None:
    """`.venv/bin/tessera up` (what `make up` runs) imports the compiled modules, whose
    runtime library sits in the checkout's top directory, outside the script's path."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / script), "--help"],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()

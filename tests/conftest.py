"""Shared fixtures: one real redis-server and one pgserver per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tessera.compiled import extension_modules, stale_modules
from tests.differ import Differ, raw_client
from tests.procs import REPO, start_pgserver, start_redis, stop


def pytest_report_header() -> str:
    """Say whether this run tests mypyc-compiled modules (scripts/build_fast.py)."""
    count = len(extension_modules(REPO))
    return f"compiled modules (mypyc): {count}" if count else "compiled modules (mypyc): none"


def pytest_sessionstart(session: pytest.Session) -> None:
    stale = stale_modules(REPO)
    if stale:
        raise pytest.UsageError(
            f"compiled modules older than their source: {', '.join(stale)}; "
            "rebuild (make compiled) or remove them (make pure)"
        )


@pytest.fixture(scope="session")
def redis_port() -> Iterator[int]:
    proc, port = start_redis()
    yield port
    stop(proc)


@pytest.fixture(scope="session")
def pgserver_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    data_dir: Path = tmp_path_factory.mktemp("pgserver")
    proc, port = start_pgserver(data_dir)
    yield port
    stop(proc)


@pytest.fixture
def diff(redis_port: int, pgserver_port: int) -> Iterator[Differ]:
    """Both servers flushed, with raw (callback-free) RESP2 clients."""
    differ = Differ(raw_client(redis_port), raw_client(pgserver_port))
    differ.flush()
    yield differ
    differ.reference.close()
    differ.tessera.close()


@pytest.fixture
def diff3(redis_port: int, pgserver_port: int) -> Iterator[Differ]:
    """Like `diff`, but both clients speak RESP3 (HELLO 3)."""
    differ = Differ(raw_client(redis_port, protocol=3), raw_client(pgserver_port, protocol=3))
    differ.flush()
    yield differ
    differ.reference.close()
    differ.tessera.close()


@pytest.fixture
def tessera(pgserver_port: int) -> Iterator[redis.Redis]:
    client = redis.Redis(port=pgserver_port)
    client.flushall()
    yield client
    client.close()

"""In-process pgserver objects for pure tests (no sockets)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from pgserver.config import PgServerConfig
from pgserver.context import Context, execute
from pgserver.server import PgServer


class RecordingServer(PgServer):
    """A real PgServer that also keeps every logged write, to check deterministic replay."""

    def __init__(self) -> None:
        super().__init__(PgServerConfig(port=0, log_enabled=False))
        self.logged: list[list[bytes]] = []

    def log_write(self, argv: list[bytes], partitions: Iterable[int] | None = None) -> None:
        super().log_write(argv, partitions)
        self.logged.append(list(argv))


class Session:
    """Runs commands on a RecordingServer as one client, returning encoded replies."""

    def __init__(self) -> None:
        self.server = RecordingServer()
        self.ctx = Context(self.server)

    def __call__(self, *args: bytes | str | int) -> bytes:
        argv = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        self.server.keyspace.tick()
        return execute(self.ctx, argv)

    def replayed(self) -> RecordingServer:
        """A fresh server fed only the logged writes."""
        fresh = RecordingServer()
        ctx = Context(fresh)
        fresh.keyspace.now = self.server.keyspace.now
        for argv in self.server.logged:
            reply = execute(ctx, argv)
            assert not reply.startswith(b"-"), f"replaying {argv!r} failed: {reply!r}"
        return fresh

    def assert_replay_matches(self) -> None:
        """Replaying the log reproduces exactly this keyspace, TTLs included."""
        fresh = self.replayed()
        assert fresh.keyspace.data == self.server.keyspace.data
        assert fresh.keyspace.expires == self.server.keyspace.expires


@pytest.fixture
def session() -> Session:
    return Session()

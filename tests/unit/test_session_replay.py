from __future__ import annotations

from tests.unit.conftest import Session


def test_writes_are_logged_and_reads_are_not(session: Session) -> None:
    assert session("PING") == b"+PONG\r\n"
    assert session("FLUSHALL") == b"+OK\r\n"
    assert session.server.logged == [[b"FLUSHALL"]]
    session.assert_replay_matches()

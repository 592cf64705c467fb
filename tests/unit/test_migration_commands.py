"""The TSR.* migration marks as a client and a replaying node see them (no sockets)."""

from __future__ import annotations

from pgserver.commands import load_all
from tessera.partition import pn
from tests.unit.conftest import Session

load_all()


def _key_in(first: int, last: int, n: int = 0) -> bytes:
    i = found = 0
    while True:
        key = b"key:%d" % i
        if first <= pn(key) <= last:
            if found == n:
                return key
            found += 1
        i += 1


def test_importing_marks_are_listed_logged_and_replayed(session: Session) -> None:
    assert session("TSR.IMPORTING", "ADD", "10-20,15-30") == b"+OK\r\n"
    assert session("TSR.IMPORTING", "ADD", "12") == b"+OK\r\n"  # already: logs nothing
    assert session("TSR.IMPORTING", "DEL", "30") == b"+OK\r\n"
    assert session("TSR.IMPORTING", "list") == b"$5\r\n10-29\r\n"
    assert session.server.logged == [
        [b"TSR.IMPORTING", b"ADD", b"10-30"],
        [b"TSR.IMPORTING", b"DEL", b"30"],
    ]
    assert str(session.replayed().keyspace.importing) == "10-29"


def test_importing_keys_are_invisible_to_clients(session: Session) -> None:
    hidden, shown = _key_in(0, 99), _key_in(100, 8191)
    session("TSR.IMPORTING", "ADD", "0-99")
    session("SET", hidden, "v")  # the migrator's load
    session("SET", shown, "v")
    assert session("DBSIZE") == b":1\r\n"
    assert session("KEYS", "*") == b"*1\r\n$%d\r\n%b\r\n" % (len(shown), shown)
    assert session("SCAN", "0", "COUNT", "10000") == b"*2\r\n$1\r\n0\r\n*1\r\n$%d\r\n%b\r\n" % (
        len(shown),
        shown,
    )
    assert session("RANDOMKEY") == b"$%d\r\n%b\r\n" % (len(shown), shown)
    assert session("TSR.COUNT", "0-99")[:6] == b"*2\r\n:1"  # the migrator still counts them
    session("TSR.IMPORTING", "DEL", "0-99")  # commit: they become visible
    assert session("DBSIZE") == b":2\r\n"


def test_fenced_partitions_refuse_every_keyed_command(session: Session) -> None:
    fenced, free = _key_in(0, 99), _key_in(100, 8191)
    session("SET", fenced, "before")
    reply = session("TSR.FENCE", "ADD", "0-99")
    assert reply.startswith(b":")
    refusal = b"-TRYAGAIN partition %d is moving to another partition group; " % pn(fenced)
    assert session("GET", fenced).startswith(refusal)
    assert session("SET", fenced, "after").startswith(refusal)
    assert session("MSET", free, "1", fenced, "2").startswith(refusal)
    assert session("GET", free) == b"$-1\r\n"  # the MSET was refused whole
    assert session("SET", free, "ok") == b"+OK\r\n"
    assert session("PING") == b"+PONG\r\n"
    assert session("DBSIZE") == b":2\r\n"
    assert session("TSR.FENCE", "LIST") == b"$4\r\n0-99\r\n"
    assert session("TSR.FENCE", "DEL", "0-99") == b"+OK\r\n"  # rollback
    assert session("GET", fenced) == b"$6\r\nbefore\r\n"
    assert not session.server.restricted  # no per-command cost left behind


def test_fence_replays_on_another_node(session: Session) -> None:
    session("TSR.FENCE", "ADD", "5,7-9")
    replica = session.replayed()
    assert str(replica.keyspace.fenced) == "5,7-9"
    assert replica.restricted


def test_bad_arguments_get_clear_errors(session: Session) -> None:
    assert session("TSR.IMPORTING", "ADD", "0-9000").startswith(
        b"-ERR bad partition ranges '0-9000': partition range '0-9000' is not within 0-8191"
    )
    assert session("TSR.FENCE", "ADD", "x").startswith(b"-ERR bad partition ranges 'x'")
    assert session("TSR.IMPORTING", "MOVE", "1").startswith(b"-ERR syntax: TSR.IMPORTING ADD")
    assert session("TSR.FENCE", "ADD").startswith(b"-ERR syntax: TSR.FENCE ADD")
    assert session("TSR.DUMP", "0-1", "CHUNK", "0") == b"-ERR CHUNK must be at least 1\r\n"
    assert session("TSR.DUMPSTATUS", "nope").startswith(b"-ERR no dump 'nope'")
    assert session("TSR.DUMPDROP", "nope") == b":0\r\n"
    assert session("TSR.TAIL", "0", "0-1").startswith(b"-ERR TSR.TAIL needs a client connection")
    assert session.server.logged == []

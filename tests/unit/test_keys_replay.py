"""Key and expiry writes are logged deterministically and replay to the same keyspace and TTLs.

Relative expiries are logged as PEXPIREAT <absolute ms>, a deadline already past as DEL,
and writes that changed nothing are not logged at all.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.conftest import Session

FAR_MS = 4102444800123


def _logged_since(session: Session, mark: int) -> list[list[bytes]]:
    return session.server.logged[mark:]


def _run(session: Session, *args: str | int) -> tuple[bytes, list[list[bytes]]]:
    """One command: its reply and what it logged."""
    mark = len(session.server.logged)
    reply = session(*args)
    return reply, _logged_since(session, mark)


def test_relative_expiry_is_logged_as_absolute(session: Session) -> None:
    session("SET", "k", "v")
    reply, logged = _run(session, "EXPIRE", "k", "100")
    assert reply == b":1\r\n"
    when = session.server.keyspace.get_expire(b"k")
    assert when is not None
    assert logged == [[b"PEXPIREAT", b"k", str(when).encode()]]
    assert abs(when - session.server.keyspace.now - 100_000) <= 1
    reply, logged = _run(session, "PEXPIRE", "k", "5000", "LT")
    assert reply == b":1\r\n"
    assert logged == [[b"PEXPIREAT", b"k", str(session.server.keyspace.get_expire(b"k")).encode()]]
    _, logged = _run(session, "EXPIREAT", "k", str(FAR_MS // 1000), "gt")
    assert logged == [[b"PEXPIREAT", b"k", str(FAR_MS // 1000 * 1000).encode()]]
    _, logged = _run(session, "PEXPIREAT", "k", str(FAR_MS))
    assert logged == [[b"PEXPIREAT", b"k", str(FAR_MS).encode()]]
    session.assert_replay_matches()


def test_past_deadline_is_logged_as_del(session: Session) -> None:
    for args in (
        ("EXPIRE", "k", "-1"),
        ("PEXPIRE", "k", "0"),
        ("EXPIREAT", "k", "1"),
        ("PEXPIREAT", "k", "-9223372036854775808"),
        ("PEXPIRE", "k", "-5", "LT"),
    ):
        session("HSET", "k", "f", "v")
        reply, logged = _run(session, *args)
        assert reply == b":1\r\n", args
        assert logged == [[b"DEL", b"k"]], args
        assert b"k" not in session.server.keyspace.data
    session.assert_replay_matches()


def test_refused_expiry_logs_nothing(session: Session) -> None:
    session("SET", "k", "v")
    session("SET", "t", "v")
    session("EXPIRE", "t", "100")
    for args in (
        ("EXPIRE", "missing", "10"),
        ("EXPIRE", "k", "10", "XX"),
        ("EXPIRE", "k", "10", "GT"),
        ("EXPIRE", "t", "10", "NX"),
        ("EXPIRE", "t", "1000", "LT"),
        ("EXPIRE", "t", "10", "GT"),
        ("PEXPIREAT", "missing", "0"),
    ):
        reply, logged = _run(session, *args)
        assert reply == b":0\r\n", args
        assert logged == [], args
    session.assert_replay_matches()


def test_errors_log_nothing_and_change_nothing(session: Session) -> None:
    session("SET", "k", "v")
    session("EXPIRE", "k", "100")
    before = dict(session.server.keyspace.expires)
    for args in (
        ("EXPIRE", "k", "x"),
        ("EXPIRE", "k", "10", "NX", "XX"),
        ("EXPIRE", "k", "10", "GT", "LT"),
        ("EXPIRE", "k", "10", "bogus"),
        ("EXPIRE", "k", "9223372036854775807"),
        ("PEXPIRE", "k", "9223372036854775807"),
        ("RENAME", "missing", "k"),
        ("RENAMENX", "missing", "k"),
    ):
        reply, logged = _run(session, *args)
        assert reply.startswith(b"-ERR"), args
        assert logged == [], args
    assert session.server.keyspace.expires == before
    assert session.server.keyspace.get(b"k") == b"v"
    session.assert_replay_matches()


def test_no_op_writes_log_nothing(session: Session) -> None:
    session("SET", "a", "1")
    session("SET", "b", "2")
    for args, reply in (
        (("DEL", "missing", "other"), b":0\r\n"),
        (("UNLINK", "missing"), b":0\r\n"),
        (("PERSIST", "a"), b":0\r\n"),
        (("PERSIST", "missing"), b":0\r\n"),
        (("RENAME", "a", "a"), b"+OK\r\n"),
        (("RENAMENX", "a", "a"), b":0\r\n"),
        (("RENAMENX", "a", "b"), b":0\r\n"),
    ):
        got, logged = _run(session, *args)
        assert got == reply, args
        assert logged == [], args
    session.assert_replay_matches()


def test_effective_writes_are_logged_as_sent(session: Session) -> None:
    session("SET", "a", "1")
    session("SET", "b", "2")
    session("RPUSH", "l", "x")
    session("EXPIRE", "a", "100")
    for args in (
        ("PERSIST", "a"),
        ("RENAME", "a", "c"),
        ("RENAMENX", "c", "d"),
        ("DEL", "d", "missing"),
        ("UNLINK", "b", "l"),
    ):
        _, logged = _run(session, *args)
        assert logged == [[x.encode() for x in args]], args
    assert len(session.server.keyspace) == 0
    session.assert_replay_matches()


def test_rename_keeps_the_ttl_in_replay(session: Session) -> None:
    session("SET", "a", "1")
    session("PEXPIREAT", "a", str(FAR_MS))
    session("SET", "b", "2")
    session("EXPIRE", "b", "1000")
    session("RENAME", "a", "b")
    assert session.server.keyspace.get_expire(b"b") == FAR_MS
    session("HSET", "h", "f", "v")
    session("RENAMENX", "b", "n")
    session.assert_replay_matches()


def test_reads_are_not_logged(session: Session) -> None:
    session("SET", "a", "1")
    session("EXPIRE", "a", "100")
    mark = len(session.server.logged)
    for args in (
        ("EXISTS", "a"),
        ("TOUCH", "a"),
        ("TYPE", "a"),
        ("TTL", "a"),
        ("PTTL", "a"),
        ("EXPIRETIME", "a"),
        ("PEXPIRETIME", "a"),
        ("KEYS", "*"),
        ("SCAN", "0"),
        ("RANDOMKEY",),
        ("OBJECT", "ENCODING", "a"),
    ):
        session(*args)
    assert _logged_since(session, mark) == []


KEYS = ["a", "b", "c", "{a}x"]
keys = st.sampled_from(KEYS)
writes = st.one_of(
    st.tuples(st.just("SET"), keys, st.sampled_from(["1", "v"])).map(list),
    st.tuples(st.just("HSET"), keys, st.just("f"), st.just("v")).map(list),
    st.tuples(st.just("RPUSH"), keys, st.just("x")).map(list),
    st.tuples(st.sampled_from(["DEL", "UNLINK"]), st.lists(keys, min_size=1, max_size=3)).map(
        lambda t: [t[0], *t[1]]
    ),
    st.tuples(st.just("PERSIST"), keys).map(list),
    st.tuples(st.sampled_from(["RENAME", "RENAMENX"]), keys, keys).map(list),
    st.tuples(
        st.sampled_from(["EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"]),
        keys,
        st.sampled_from(["-1", "0", "3600", "100000", "x", "4102444800", "4102444800123"]),
        st.lists(st.sampled_from(["NX", "XX", "GT", "LT"]), max_size=2),
    ).map(lambda t: [t[0], t[1], t[2], *t[3]]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(writes, min_size=1, max_size=30))
def test_random_sequences_replay(commands: list[list[str]]) -> None:
    session = Session()
    for command in commands:
        session(*command)
    session.assert_replay_matches()

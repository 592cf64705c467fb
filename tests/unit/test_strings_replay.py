"""String writes are logged in a deterministic form: replaying the log rebuilds the keyspace.

GETEX and GETDEL are logged as PEXPIREAT / PERSIST / DEL, which belong to the keys family:
the checks that replay them run once those commands are registered.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgserver.commands import TABLE, load_all
from tests.unit.conftest import Session

load_all()

FAR_PXAT = 4102444800123  # 2100-01-01, in ms


def _missing(*names: str) -> bool:
    return any(name.encode() not in TABLE for name in names)


def _needs(*names: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(_missing(*names), reason=f"needs {', '.join(names)} to replay")


def _now(session: Session) -> int:
    return session.server.keyspace.now


def _expires(session: Session, key: bytes) -> int | None:
    return session.server.keyspace.expires.get(key)


def test_set_relative_ttl_is_logged_as_pxat(session: Session) -> None:
    assert session("SET", "k", "v", "EX", "100") == b"+OK\r\n"
    when = _now(session) + 100_000
    assert session.server.logged[-1] == [b"SET", b"k", b"v", b"PXAT", b"%d" % when]
    assert _expires(session, b"k") == when
    assert session("SET", "k", "w", "px", "5000", "GET") == b"$1\r\nv\r\n"
    when = _now(session) + 5000
    assert session.server.logged[-1] == [b"SET", b"k", b"w", b"PXAT", b"%d" % when]
    assert session("SET", "k", "x", "EXAT", "4102444800", "XX") == b"+OK\r\n"
    assert session.server.logged[-1] == [b"SET", b"k", b"x", b"PXAT", b"4102444800000"]
    assert session("SET", "n", "y", "NX", "PXAT", FAR_PXAT) == b"+OK\r\n"
    assert session.server.logged[-1] == [b"SET", b"n", b"y", b"PXAT", b"%d" % FAR_PXAT]
    session.assert_replay_matches()


def test_set_options_are_logged_as_their_effect(session: Session) -> None:
    session("SET", "k", "v", "EX", "100")
    assert session("SET", "k", "w", "KEEPTTL", "GET", "XX") == b"$1\r\nv\r\n"
    assert session.server.logged[-1] == [b"SET", b"k", b"w", b"KEEPTTL"]
    assert _expires(session, b"k") is not None
    assert session("SET", "k", "x", "GET") == b"$1\r\nw\r\n"
    assert session.server.logged[-1] == [b"SET", b"k", b"x"]
    assert _expires(session, b"k") is None
    assert session("SET", "fresh", "v", "NX") == b"+OK\r\n"
    assert session.server.logged[-1] == [b"SET", b"fresh", b"v"]
    session.assert_replay_matches()


def test_writes_that_change_nothing_are_not_logged(session: Session) -> None:
    session("SET", "k", "v")
    session("SET", "c", "1")
    before = len(session.server.logged)
    assert session("SET", "k", "w", "NX") == b"$-1\r\n"
    assert session("SET", "k", "w", "NX", "GET") == b"$1\r\nv\r\n"
    assert session("SET", "missing", "w", "XX", "EX", "10") == b"$-1\r\n"
    assert session("SETNX", "k", "w") == b":0\r\n"
    assert session("MSETNX", "new", "1", "k", "2") == b":0\r\n"
    assert session("SETRANGE", "k", "3", "") == b":1\r\n"
    assert session("SETRANGE", "missing", "3", "") == b":0\r\n"
    assert session("GETDEL", "missing") == b"$-1\r\n"
    assert session("GETEX", "k") == b"$1\r\nv\r\n"
    assert session("GETEX", "k", "PERSIST") == b"$1\r\nv\r\n"
    assert session("GETEX", "missing", "EX", "10") == b"$-1\r\n"
    assert session("SET", "k", "v", "EX", "0").startswith(b"-ERR invalid expire time")
    assert session("INCRBYFLOAT", "c", "inf").startswith(b"-ERR increment would produce")
    assert session("INCR", "k").startswith(b"-ERR value is not an integer")
    assert session.server.logged[before:] == []
    session.assert_replay_matches()


def test_setex_and_psetex_are_logged_as_pxat(session: Session) -> None:
    session("SETEX", "a", "100", "v")
    when = b"%d" % (_now(session) + 100_000)
    assert session.server.logged[-1] == [b"SET", b"a", b"v", b"PXAT", when]
    session("PSETEX", "b", "1500", "w")
    when = b"%d" % (_now(session) + 1500)
    assert session.server.logged[-1] == [b"SET", b"b", b"w", b"PXAT", when]
    assert _expires(session, b"b") == _now(session) + 1500
    session.assert_replay_matches()


def test_expire_time_in_the_past(session: Session) -> None:
    """SET with a past PXAT/EXAT replies as usual but the key is gone, also after replay."""
    session("SET", "k", "old")
    assert session("SET", "k", "v", "PXAT", "1", "GET") == b"$3\r\nold\r\n"
    assert session.server.logged[-1] == [b"SET", b"k", b"v", b"PXAT", b"1"]
    assert b"k" not in session.server.keyspace.data
    assert session("SET", "j", "v", "EXAT", "1") == b"+OK\r\n"
    assert b"j" not in session.server.keyspace.data
    assert session("GET", "j") == b"$-1\r\n"
    assert session.server.keyspace.expired_keys == 2
    session.assert_replay_matches()


def test_incrbyfloat_is_logged_as_set_keepttl(session: Session) -> None:
    session("SET", "f", "10.5", "EX", "100")
    assert session("INCRBYFLOAT", "f", "0.1") == b"$4\r\n10.6\r\n"
    assert session.server.logged[-1] == [b"SET", b"f", b"10.6", b"KEEPTTL"]
    assert session("INCRBYFLOAT", "g", "3.0e3") == b"$4\r\n3000\r\n"
    assert session.server.logged[-1] == [b"SET", b"g", b"3000", b"KEEPTTL"]
    assert _expires(session, b"f") is not None
    session.assert_replay_matches()


def test_ttl_is_kept_or_cleared_as_in_redis(session: Session) -> None:
    session("SET", "k", "5", "EX", "100")
    when = _expires(session, b"k")
    for cmd in (
        ("INCR", "k"),
        ("DECRBY", "k", "2"),
        ("INCRBYFLOAT", "k", "1"),
        ("APPEND", "k", "0"),
        ("SETRANGE", "k", "0", "9"),
        ("SET", "k", "7", "KEEPTTL"),
        ("GETEX", "k"),
    ):
        session(*cmd)
        assert _expires(session, b"k") == when, cmd
    for cmd in (("SET", "k", "1"), ("GETSET", "k", "2"), ("MSET", "k", "3")):
        session("SET", "k", "5", "EX", "100")
        session(*cmd)
        assert _expires(session, b"k") is None, cmd
    session("SET", "k", "5", "EX", "100")
    session("SETEX", "k", "200", "6")
    assert _expires(session, b"k") == _now(session) + 200_000
    session.assert_replay_matches()


def test_getdel_is_logged_as_del(session: Session) -> None:
    session("SET", "k", "v")
    assert session("GETDEL", "k") == b"$1\r\nv\r\n"
    assert session.server.logged[-1] == [b"DEL", b"k"]
    assert b"k" not in session.server.keyspace.data


@_needs("del")
def test_getdel_replay(session: Session) -> None:
    session("SET", "k", "v")
    session("SET", "j", "v")
    session("GETDEL", "k")
    session.assert_replay_matches()


def test_getex_is_logged_as_pexpireat_persist_or_del(session: Session) -> None:
    session("SET", "k", "v")
    session("GETEX", "k", "EX", "100")
    when = _now(session) + 100_000
    assert session.server.logged[-1] == [b"PEXPIREAT", b"k", b"%d" % when]
    assert _expires(session, b"k") == when
    session("GETEX", "k", "PXAT", FAR_PXAT)
    assert session.server.logged[-1] == [b"PEXPIREAT", b"k", b"%d" % FAR_PXAT]
    session("GETEX", "k", "PERSIST")
    assert session.server.logged[-1] == [b"PERSIST", b"k"]
    assert _expires(session, b"k") is None
    session("GETEX", "k", "EXAT", "1")
    assert session.server.logged[-1] == [b"DEL", b"k"]
    assert b"k" not in session.server.keyspace.data


@_needs("del", "pexpireat", "persist")
def test_getex_replay(session: Session) -> None:
    session("SET", "a", "v")
    session("SET", "b", "v", "EX", "100")
    session("SET", "c", "v")
    session("GETEX", "a", "PX", "100000")
    session("GETEX", "b", "PERSIST")
    session("GETEX", "c", "PXAT", "1")
    session.assert_replay_matches()


# --------------------------------------------------------------------------- random sequences

_KEYS = st.sampled_from(["a", "b", "c"])
_VALUES = st.sampled_from(["", "0", "7", "-2", "1.5", "abc"])
_TTL_OPTIONS = st.sampled_from(
    [[], ["EX", "100"], ["PX", "300000"], ["PXAT", "1"], ["EXAT", "4102444800"], ["KEEPTTL"]]
)
_FLAGS = st.sampled_from([[], ["NX"], ["XX"], ["GET"], ["NX", "GET"]])


def _commands() -> st.SearchStrategy[list[str]]:
    options = [
        st.builds(lambda k, v, t, f: ["SET", k, v, *t, *f], _KEYS, _VALUES, _TTL_OPTIONS, _FLAGS),
        st.builds(lambda k, v: ["SETNX", k, v], _KEYS, _VALUES),
        st.builds(lambda k, v: ["SETEX", k, "100", v], _KEYS, _VALUES),
        st.builds(lambda k, v: ["PSETEX", k, "200000", v], _KEYS, _VALUES),
        st.builds(lambda k, v: ["GETSET", k, v], _KEYS, _VALUES),
        st.builds(lambda k, v, j, w: ["MSET", k, v, j, w], _KEYS, _VALUES, _KEYS, _VALUES),
        st.builds(lambda k, v, j, w: ["MSETNX", k, v, j, w], _KEYS, _VALUES, _KEYS, _VALUES),
        st.builds(lambda k, v: ["APPEND", k, v], _KEYS, _VALUES),
        st.builds(lambda k, v: ["SETRANGE", k, "3", v], _KEYS, _VALUES),
        st.builds(lambda c, k: [c, k], st.sampled_from(["INCR", "DECR", "GET"]), _KEYS),
        st.builds(lambda k, n: ["INCRBY", k, n], _KEYS, st.sampled_from(["5", "-9"])),
        st.builds(lambda k, n: ["DECRBY", k, n], _KEYS, st.sampled_from(["5", "-9"])),
        st.builds(lambda k, n: ["INCRBYFLOAT", k, n], _KEYS, st.sampled_from(["0.1", "-2.5e3"])),
    ]
    if not _missing("del"):
        options.append(st.builds(lambda k: ["GETDEL", k], _KEYS))
    if not _missing("del", "pexpireat", "persist"):
        options.append(st.builds(lambda k, t: ["GETEX", k, *t], _KEYS, _TTL_OPTIONS))
        options.append(st.builds(lambda k: ["GETEX", k, "PERSIST"], _KEYS))
    return st.one_of(options)


@given(commands=st.lists(_commands(), min_size=1, max_size=30))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_random_sequences_replay(commands: list[list[str]]) -> None:
    session = Session()
    for cmd in commands:
        session(*cmd)
    session.assert_replay_matches()

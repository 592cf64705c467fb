"""List writes are logged as sent and replay to the same keyspace; empty lists vanish."""

from __future__ import annotations

from collections import deque

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.partition import pn
from tests.unit.conftest import Session

WRITES: list[tuple[str, ...]] = [
    ("RPUSH", "l", "a", "b", "c", "a", "b", "c", "a"),
    ("LPUSH", "l", "x", "y"),
    ("LPUSHX", "l", "p"),
    ("RPUSHX", "l", "q", "r"),
    ("LPUSHX", "missing", "p"),
    ("RPUSHX", "missing", "p"),
    ("LPOP", "l"),
    ("RPOP", "l"),
    ("LPOP", "l", "2"),
    ("RPOP", "l", "1"),
    ("LPOP", "l", "0"),
    ("LPOP", "missing", "3"),
    ("LSET", "l", "1", "set"),
    ("LSET", "l", "-1", "last"),
    ("LINSERT", "l", "BEFORE", "a", "ins"),
    ("LINSERT", "l", "after", "nope", "ins"),
    ("LINSERT", "missing", "after", "a", "ins"),
    ("LREM", "l", "-1", "a"),
    ("LREM", "l", "0", "b"),
    ("LTRIM", "l", "1", "-1"),
    ("LTRIM", "missing", "0", "1"),
    ("LMOVE", "l", "m", "LEFT", "RIGHT"),
    ("LMOVE", "l", "l", "right", "left"),
    ("LMOVE", "missing", "m", "left", "left"),
    ("RPOPLPUSH", "l", "m"),
    ("RPOPLPUSH", "m", "m"),
]


def test_every_write_is_logged_as_sent_and_replays(session: Session) -> None:
    for args in WRITES:
        reply = session(*args)
        assert not reply.startswith(b"-"), (args, reply)
    assert session.server.logged == [[a.encode() for a in args] for args in WRITES]
    session.assert_replay_matches()


def test_reads_are_not_logged(session: Session) -> None:
    session("RPUSH", "l", "a", "b")
    session.server.logged.clear()
    for args in [
        ("LLEN", "l"),
        ("LRANGE", "l", "0", "-1"),
        ("LINDEX", "l", "0"),
        ("LPOS", "l", "a", "COUNT", "0"),
    ]:
        session(*args)
    assert session.server.logged == []


def test_errors_are_not_logged_and_change_nothing(session: Session) -> None:
    session("RPUSH", "l", "a", "b")
    session.server.keyspace.set(b"s", b"string")
    value = session.server.keyspace.data[b"l"]
    assert isinstance(value, deque)
    before = deque(value)
    session.server.logged.clear()
    for args in [
        ("LPUSH", "s", "a"),
        ("LPOP", "l", "-1"),
        ("LSET", "l", "5", "v"),
        ("LSET", "missing", "0", "v"),
        ("LINSERT", "l", "middle", "a", "v"),
        ("LREM", "l", "x", "a"),
        ("LTRIM", "l", "0", "x"),
        ("LMOVE", "l", "s", "left", "left"),
        ("LMOVE", "l", "m", "up", "left"),
        ("RPOPLPUSH", "l", "s"),
        ("LPOP", "l", "1", "2"),
    ]:
        assert session(*args).startswith(b"-"), args
    assert session.server.logged == []
    assert session.server.keyspace.data[b"l"] == before
    assert b"m" not in session.server.keyspace.data


def test_emptied_lists_are_deleted_with_their_ttl(session: Session) -> None:
    ks = session.server.keyspace
    cases: list[tuple[str, ...]] = [
        ("LPOP", "k"),
        ("RPOP", "k", "5"),
        ("LREM", "k", "0", "v"),
        ("LREM", "k", "-1", "v"),
        ("LTRIM", "k", "1", "0"),
        ("LMOVE", "k", "other", "left", "left"),
        ("RPOPLPUSH", "k", "other"),
    ]
    for args in cases:
        session("RPUSH", "k", "v")
        ks.set_expire(b"k", ks.now + 60_000)
        session(*args)
        assert b"k" not in ks.data, args
        assert b"k" not in ks.expires, args
        assert b"k" not in ks.by_partition[pn(b"k")], args


def test_push_keeps_ttl_and_creates_partition_entry(session: Session) -> None:
    ks = session.server.keyspace
    assert session("RPUSH", "k", "a") == b":1\r\n"
    assert b"k" in ks.by_partition[pn(b"k")]
    deadline = ks.now + 60_000  # each command below refreshes ks.now: keep the value
    ks.set_expire(b"k", deadline)
    session("LPUSH", "k", "b")
    session("LSET", "k", "0", "c")
    assert ks.get_expire(b"k") == deadline
    assert type(ks.data[b"k"]) is deque


def test_list_writes_replay_with_ttls(session: Session) -> None:
    session("RPUSH", "l", "a", "b", "c", "d")
    session("EXPIRE", "l", "100")
    session("RPUSH", "m", "x")
    session("PEXPIRE", "m", "5000")
    for args in [
        ("LPUSH", "l", "z"),
        ("LMOVE", "l", "m", "LEFT", "LEFT"),
        ("LTRIM", "l", "0", "1"),
        ("RPOPLPUSH", "m", "n"),
        ("LPOP", "m", "5"),
        ("RPUSH", "m", "again"),
    ]:
        session(*args)
    ks = session.server.keyspace
    assert b"l" in ks.expires
    assert b"m" not in ks.expires
    session.assert_replay_matches()


def test_rotation_on_same_key(session: Session) -> None:
    session("RPUSH", "k", "a", "b", "c")
    assert session("LMOVE", "k", "k", "LEFT", "RIGHT") == b"$1\r\na\r\n"
    assert session("RPOPLPUSH", "k", "k") == b"$1\r\na\r\n"
    assert session("LRANGE", "k", "0", "-1") == b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"
    session.assert_replay_matches()


def _naive_lrem(items: list[str], limit: int, elem: str) -> tuple[list[str], int]:
    """LREM as written in the docs, for checking the two removal paths of the handler."""
    order = list(range(len(items)))
    if limit < 0:
        order.reverse()
    drop: set[int] = set()
    for i in order:
        if items[i] == elem and (limit == 0 or len(drop) < abs(limit)):
            drop.add(i)
    return [x for i, x in enumerate(items) if i not in drop], len(drop)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(st.sampled_from("ab"), min_size=1, max_size=60),
    st.integers(-40, 40),
    st.sampled_from("ab"),
)
def test_lrem_matches_model(items: list[str], limit: int, elem: str) -> None:
    session = Session()
    session("RPUSH", "k", *items)
    expected, removed = _naive_lrem(items, limit, elem)
    assert session("LREM", "k", limit, elem) == b":%d\r\n" % removed
    value = session.server.keyspace.data.get(b"k", deque())
    assert isinstance(value, deque)
    assert list(value) == [x.encode() for x in expected]


command_strategy = st.one_of(
    st.tuples(
        st.sampled_from(["LPUSH", "RPUSH", "LPUSHX", "RPUSHX"]),
        st.sampled_from(["a", "b", "c"]),
        st.lists(st.sampled_from("xyz"), min_size=1, max_size=5),
    ).map(lambda t: [t[0], t[1], *t[2]]),
    st.tuples(
        st.sampled_from(["LPOP", "RPOP"]), st.sampled_from(["a", "b", "c"]), st.integers(0, 4)
    ).map(lambda t: [t[0], t[1], str(t[2])]),
    st.tuples(st.sampled_from(["LPOP", "RPOP"]), st.sampled_from(["a", "b", "c"])).map(list),
    st.tuples(
        st.just("LSET"), st.sampled_from(["a", "b"]), st.integers(-4, 4), st.sampled_from("xyz")
    ).map(lambda t: [t[0], t[1], str(t[2]), t[3]]),
    st.tuples(
        st.just("LINSERT"),
        st.sampled_from(["a", "b"]),
        st.sampled_from(["BEFORE", "AFTER"]),
        st.sampled_from("xyz"),
        st.sampled_from("xyz"),
    ).map(list),
    st.tuples(
        st.just("LREM"), st.sampled_from(["a", "b"]), st.integers(-3, 3), st.sampled_from("xyz")
    ).map(lambda t: [t[0], t[1], str(t[2]), t[3]]),
    st.tuples(
        st.just("LTRIM"), st.sampled_from(["a", "b"]), st.integers(-5, 5), st.integers(-5, 5)
    ).map(lambda t: [t[0], t[1], str(t[2]), str(t[3])]),
    st.tuples(
        st.just("LMOVE"),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["LEFT", "RIGHT"]),
        st.sampled_from(["LEFT", "RIGHT"]),
    ).map(list),
    st.tuples(
        st.just("RPOPLPUSH"), st.sampled_from(["a", "b", "c"]), st.sampled_from(["a", "b", "c"])
    ).map(list),
)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(command_strategy, min_size=1, max_size=40))
def test_random_sequence_replays(sequence: list[list[str]]) -> None:
    session = Session()
    for args in sequence:
        session(*args)
    session.assert_replay_matches()
    for key, value in session.server.keyspace.data.items():
        assert type(value) is deque, key
        assert value, key

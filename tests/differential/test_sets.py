"""Set commands compared with redis-server.

Redis replies small all-integer sets (intsets) in ascending order, which is compared exactly;
other sets are hash tables with an arbitrary order, compared with unordered=True.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.differ import Differ
from tests.differential.test_hashes import raw_diff3, raw_kind3


def test_sadd_srem_scard_sismember(diff: Differ) -> None:
    diff("SADD", "s", "a", "b", "a", "c")
    diff("SADD", "s", "a", "d")
    diff("SCARD", "s")
    diff("SCARD", "nokey")
    diff("SISMEMBER", "s", "a")
    diff("SISMEMBER", "s", "z")
    diff("SISMEMBER", "nokey", "a")
    diff("SMISMEMBER", "s", "a", "z", "b", "a")
    diff("SMISMEMBER", "nokey", "a", "b")
    diff("SREM", "s", "a", "z", "a")
    diff("SREM", "nokey", "a")
    diff("SMEMBERS", "s", unordered=True)
    diff("SREM", "s", "b", "c", "d")
    diff("SCARD", "s")
    diff("SMEMBERS", "s")
    diff("SADD", "e", "")
    diff("SMEMBERS", "e")
    for bad in (
        ("SADD", "s"),
        ("SREM", "s"),
        ("SISMEMBER", "s"),
        ("SMISMEMBER", "s"),
        ("SCARD",),
        ("SMEMBERS",),
        ("SMOVE", "a", "b"),
        ("SINTER",),
        ("SINTERSTORE", "d"),
        ("SINTERCARD", "1"),
        ("SSCAN", "s"),
        ("SPOP",),
    ):
        diff(*bad)


def test_intset_order(diff: Differ) -> None:
    diff("SADD", "n", "5", "-3", "10", "2", "-9223372036854775808", "9223372036854775807")
    diff("SMEMBERS", "n")
    diff("SSCAN", "n", "0")
    diff("SUNION", "n")
    diff("SINTER", "n", "n")
    diff("SDIFF", "n")
    diff("SRANDMEMBER", "n", "100")
    diff("SADD", "m", "3", "2", "1", "10")
    diff("SUNION", "n", "m")
    diff("SINTER", "n", "m")
    diff("SDIFF", "n", "m")
    diff("SUNIONSTORE", "u", "n", "m")
    diff("SMEMBERS", "u")
    diff("SPOP", "m", "10")
    diff("SCARD", "m")
    # Not integers in Redis's sense: the set is a hash table, unordered.
    diff("SADD", "x", "1", "01", "+2", " 3", "9223372036854775808")
    diff("SMEMBERS", "x", unordered=True)
    big = [str(i) for i in range(600)]
    diff("SADD", "big", *big)
    diff("SMEMBERS", "big", unordered=True)
    diff("SCARD", "big")


def test_wrongtype(diff: Differ) -> None:
    diff("HSET", "h", "f", "v")
    diff("SADD", "s", "a")
    for cmd in (
        ("SADD", "h", "a"),
        ("SREM", "h", "a"),
        ("SMEMBERS", "h"),
        ("SISMEMBER", "h", "a"),
        ("SMISMEMBER", "h", "a"),
        ("SCARD", "h"),
        ("SPOP", "h"),
        ("SPOP", "h", "1"),
        ("SPOP", "h", "0"),
        ("SPOP", "h", "-1"),
        ("SPOP", "h", "x"),
        ("SRANDMEMBER", "h"),
        ("SRANDMEMBER", "h", "1"),
        ("SRANDMEMBER", "h", "0"),
        ("SRANDMEMBER", "h", "x"),
        ("SMOVE", "h", "s", "a"),
        ("SMOVE", "s", "h", "a"),
        ("SMOVE", "s", "h", "zz"),
        ("SMOVE", "nokey", "h", "a"),
        ("SMOVE", "h", "nokey", "a"),
        ("SINTER", "s", "h"),
        ("SINTER", "nokey", "h"),
        ("SINTER", "h", "nokey"),
        ("SUNION", "nokey", "h"),
        ("SDIFF", "nokey", "h"),
        ("SDIFF", "s", "h"),
        ("SINTERSTORE", "d", "nokey", "h"),
        ("SUNIONSTORE", "d", "s", "h"),
        ("SDIFFSTORE", "d", "s", "h"),
        ("SINTERCARD", "2", "nokey", "h"),
        ("SINTERCARD", "1", "h", "LIMIT", "1"),
        ("SSCAN", "h", "0"),
        ("SSCAN", "h", "0", "BAD"),
        ("SSCAN", "h", "x"),
    ):
        diff(*cmd)
    diff("HGETALL", "h")
    diff("SMEMBERS", "s")
    diff("SCARD", "d")


def test_other_families(diff: Differ) -> None:
    """String keys are WRONGTYPE too; STORE clears the destination's TTL; SPOP keeps it."""
    diff("SET", "str", "v")
    diff("SADD", "str", "a")
    diff("SINTER", "nokey", "str")
    diff("SMOVE", "nokey", "str", "a")
    diff("SADD", "a", "1", "2", "x")
    diff("SADD", "d", "z")
    diff("EXPIRE", "a", "100")
    diff("EXPIRE", "d", "100")
    diff("SUNIONSTORE", "d", "a")
    diff("TTL", "d")
    diff.both("SPOP", "a", "1")
    diff("SREM", "a", "x", "1", "2")
    diff("SMOVE", "d", "a", "x")
    diff("TTL", "a")
    diff("SUNIONSTORE", "str", "d")
    diff("TYPE", "str")
    diff("SREM", "d", "1", "2")
    diff("EXISTS", "d")


def test_smove(diff: Differ) -> None:
    diff("SADD", "a", "x", "y")
    diff("SMOVE", "a", "b", "x")
    diff("SMOVE", "a", "b", "zz")
    diff("SMOVE", "nokey", "b", "x")
    diff("SMOVE", "a", "a", "y")
    diff("SMOVE", "a", "a", "zz")
    diff("SMOVE", "a", "b", "y")
    diff("SCARD", "a")
    diff("SMEMBERS", "b", unordered=True)
    diff("SADD", "c", "y")
    diff("SMOVE", "b", "c", "y")
    diff("SMEMBERS", "b")
    diff("SMEMBERS", "c")


def test_algebra(diff: Differ) -> None:
    diff("SADD", "a", "1", "2", "3", "x", "y")
    diff("SADD", "b", "2", "3", "4", "y", "z")
    diff("SADD", "c", "3", "y", "q")
    for op in ("SINTER", "SUNION", "SDIFF"):
        diff(op, "a", unordered=True)
        diff(op, "a", "b", unordered=True)
        diff(op, "a", "b", "c", unordered=True)
        diff(op, "b", "a", unordered=True)
        diff(op, "a", "nokey", unordered=True)
        diff(op, "nokey", "a", unordered=True)
        diff(op, "nokey", unordered=True)
        diff(op, "a", "a", unordered=True)


def test_store(diff: Differ) -> None:
    diff("SADD", "a", "1", "2", "3", "x")
    diff("SADD", "b", "2", "3", "4")
    diff("HSET", "h", "f", "v")
    diff("SINTERSTORE", "d", "a", "b")
    diff("SMEMBERS", "d")
    diff("SUNIONSTORE", "d", "a", "b")
    diff("SMEMBERS", "d", unordered=True)
    diff("SDIFFSTORE", "d", "a", "b")
    diff("SMEMBERS", "d", unordered=True)
    diff("SINTERSTORE", "d", "a", "nokey")
    diff("SCARD", "d")
    # The destination may hold any type: it is replaced, or deleted on an empty result.
    diff("SUNIONSTORE", "h", "b")
    diff("SMEMBERS", "h")
    diff("HSET", "h2", "f", "v")
    diff("SDIFFSTORE", "h2", "b", "b")
    diff("SCARD", "h2")
    diff("SDIFFSTORE", "d", "nokey", "a")
    diff("SUNIONSTORE", "d", "nokey")
    diff("SCARD", "d")
    # The destination may be one of the sources.
    diff("SUNIONSTORE", "a", "a", "b")
    diff("SMEMBERS", "a", unordered=True)
    diff("SDIFFSTORE", "a", "a", "b")
    diff("SMEMBERS", "a", unordered=True)
    diff("SINTERSTORE", "b", "b", "b")
    diff("SMEMBERS", "b")
    diff("SINTERSTORE", "b", "a", "b")
    diff("SCARD", "b")
    diff("SUNIONSTORE", "c", "a")
    diff("SREM", "a", "x")
    diff("SMEMBERS", "c", unordered=True)


def test_sintercard(diff: Differ) -> None:
    diff("SADD", "a", "1", "2", "3", "x", "y")
    diff("SADD", "b", "2", "3", "4", "y", "z")
    diff("SINTERCARD", "1", "a")
    diff("SINTERCARD", "2", "a", "b")
    diff("SINTERCARD", "2", "a", "b", "LIMIT", "0")
    diff("SINTERCARD", "2", "a", "b", "LIMIT", "2")
    diff("SINTERCARD", "2", "a", "b", "limit", "100")
    diff("SINTERCARD", "1", "a", "LIMIT", "3")
    diff("SINTERCARD", "2", "a", "b", "LIMIT", "5", "LIMIT", "1")
    diff("SINTERCARD", "2", "a", "nokey")
    diff("SINTERCARD", "1", "nokey", "LIMIT", "1")
    for bad in (
        ("0", "a"),
        ("-1", "a"),
        ("x", "a"),
        ("", "a"),
        ("9223372036854775808", "a"),
        ("3", "a", "b"),
        ("2", "a"),
        ("1", "a", "LIMIT"),
        ("1", "a", "LIMIT", "-1"),
        ("1", "a", "LIMIT", "x"),
        ("1", "a", "LIMIT", "9223372036854775808"),
        ("1", "a", "BAD"),
        ("1", "a", "BAD", "1"),
        ("1", "a", "LIMIT", "1", "BAD"),
    ):
        diff("SINTERCARD", *bad)


def test_sscan(diff: Differ) -> None:
    diff("SADD", "s", "a1", "a2", "b1", "", "A1")
    diff("SADD", "n", "3", "1", "12", "2")
    diff("SSCAN", "n", "0")
    diff("SSCAN", "n", "0", "MATCH", "1*")
    diff("SSCAN", "s", "0", unordered=True)
    for cursor in ("", "5", "+7", "-1", "18446744073709551616", " 1", "x", "+", "1.0"):
        diff("SSCAN", "n", cursor)
        diff("SSCAN", "nokey", cursor)
    diff("SSCAN", "s", "0", "MATCH", "a*", unordered=True)
    diff("SSCAN", "s", "0", "match", "*1", unordered=True)
    # Redis pages hash-table sets by COUNT; intsets (like ours, always) come back whole.
    diff("SSCAN", "n", "0", "COUNT", "1")
    diff("SSCAN", "n", "0", "count", "2", "MATCH", "1*")
    diff("SSCAN", "s", "0", "MATCH", "?", unordered=True)
    diff("SSCAN", "s", "0", "MATCH", "*", unordered=True)
    for bad in (
        ("COUNT", "0"),
        ("COUNT", "x"),
        ("COUNT",),
        ("MATCH",),
        ("TYPE", "set"),
        ("NOVALUES",),
        ("COUNT", "1", "BAD"),
    ):
        diff("SSCAN", "s", "0", *bad)
        diff("SSCAN", "nokey", "0", *bad)


def test_spop_srandmember_deterministic(diff: Differ) -> None:
    diff("SPOP", "nokey")
    diff("SPOP", "nokey", "3")
    diff("SPOP", "nokey", "0")
    diff("SRANDMEMBER", "nokey")
    diff("SRANDMEMBER", "nokey", "3")
    diff("SRANDMEMBER", "nokey", "-3")
    diff("SADD", "s", "a", "b", "c")
    diff("SADD", "n", "3", "1", "2")
    for bad in (("x",), ("1.5",), ("9223372036854775808",), ("1", "2"), ("-9223372036854775808",)):
        diff("SPOP", "s", *bad)
        diff("SPOP", "nokey", *bad)
        diff("SRANDMEMBER", "s", *bad)
        diff("SRANDMEMBER", "nokey", *bad)
    diff("SPOP", "s", "-1")
    diff("SPOP", "nokey", "-1")
    diff("SPOP", "s", "0")
    diff("SRANDMEMBER", "s", "0")
    diff("SRANDMEMBER", "s", "3", unordered=True)
    diff("SRANDMEMBER", "n", "9223372036854775807")
    diff("SCARD", "s")
    diff("SPOP", "s", "3", unordered=True)
    diff("SCARD", "s")
    diff("SPOP", "n", "9223372036854775807")
    diff("SCARD", "n")


def test_spop_srandmember_random(diff: Differ) -> None:
    members = {b"a", b"b", b"c", b"d", b"e"}
    diff("SADD", "s", *sorted(members))
    for count in (1, 2, 4, -1, -3, -20):
        for kind, reply in diff.both("SRANDMEMBER", "s", str(count)):
            assert kind == "ok"
            assert isinstance(reply, list)
            assert len(reply) == abs(count)
            assert set(reply) <= members
            if count > 0:
                assert len(set(reply)) == count
    for kind, reply in diff.both("SRANDMEMBER", "s"):
        assert kind == "ok"
        assert reply in members
    popped: list[set[bytes]] = [set(), set()]
    for i, (kind, reply) in enumerate(diff.both("SPOP", "s")):
        assert kind == "ok"
        assert reply in members
        popped[i].add(reply)
    for i, (kind, reply) in enumerate(diff.both("SPOP", "s", "2")):
        assert kind == "ok"
        assert isinstance(reply, list)
        assert len(reply) == 2
        assert not popped[i] & set(reply)
        popped[i] |= set(reply)
    for i, (kind, reply) in enumerate(diff.both("SMEMBERS", "s")):
        assert kind == "ok"
        assert isinstance(reply, list)
        assert set(reply) | popped[i] == members
        assert len(reply) == 2
    diff("SCARD", "s")


def test_resp3_raw(diff: Differ, redis_port: int, pgserver_port: int) -> None:
    diff("SADD", "s", "a", "b")
    diff("SADD", "n", "3", "2", "1")
    raw_diff3(
        redis_port,
        pgserver_port,
        ("SMEMBERS", "n"),
        ("SMEMBERS", "nokey"),
        ("SINTER", "n", "nokey"),
        ("SUNION", "n"),
        ("SDIFF", "n", "s"),
        ("SINTER", "n", "n"),
        ("SSCAN", "n", "0"),
        ("SRANDMEMBER", "n", "5"),
        ("SRANDMEMBER", "nokey", "5"),
        ("SRANDMEMBER", "nokey"),
        ("SPOP", "nokey"),
        ("SPOP", "nokey", "2"),
        ("SPOP", "s", "0"),
        ("SMISMEMBER", "n", "1", "7"),
    )
    random_cmds = (
        ("SMEMBERS", "s"),
        ("SUNION", "s", "n"),
        ("SRANDMEMBER", "n", "-3"),
        ("SRANDMEMBER", "n", "1"),
        ("SRANDMEMBER", "n", "2"),
        ("SRANDMEMBER", "n"),
        ("SPOP", "s", "1"),
        ("SPOP", "n"),
        ("SPOP", "n", "5"),
    )
    assert raw_kind3(pgserver_port, *random_cmds) == raw_kind3(redis_port, *random_cmds)


def test_resp3_shapes(diff3: Differ) -> None:
    diff3("SADD", "s", "a", "b")
    diff3("SADD", "n", "2", "1")
    diff3("SMEMBERS", "s", unordered=True)
    diff3("SMEMBERS", "nokey")
    diff3("SINTER", "s", "nokey")
    diff3("SUNION", "s", "n", unordered=True)
    diff3("SDIFF", "s", "n", unordered=True)
    diff3("SMISMEMBER", "s", "a", "z")
    diff3("SSCAN", "n", "0")
    diff3("SSCAN", "nokey", "0")
    diff3("SRANDMEMBER", "n", "5")
    diff3("SRANDMEMBER", "nokey", "5")
    diff3("SRANDMEMBER", "nokey")
    diff3("SPOP", "nokey")
    diff3("SPOP", "nokey", "2")
    diff3("SPOP", "s", "0")
    diff3("SINTERCARD", "2", "s", "n")
    for kind, reply in diff3.both("SRANDMEMBER", "s", "-3"):
        assert kind == "ok"
        assert isinstance(reply, list)
    for kind, reply in diff3.both("SPOP", "s", "1"):
        assert kind == "ok"
        assert isinstance(reply, list)
    diff3("SPOP", "n", "5")


# --------------------------------------------------------------------------- random sequences

_SET_KEYS = ["s1", "s2", "s3", "h"]
_KEYS = st.sampled_from(_SET_KEYS)
_MEMBERS = st.sampled_from(["a", "b", "c", "1", "2", "10", "-5", "01"])
_PATTERNS = st.sampled_from(["*", "a*", "?", "1*", "[ab]"])


@st.composite
def _command(draw: st.DrawFn) -> tuple[tuple[str, ...], bool]:
    """A command and whether its reply is an unordered collection."""
    key = draw(_KEYS)
    keys = draw(st.lists(_KEYS, min_size=1, max_size=3))
    members = draw(st.lists(_MEMBERS, min_size=1, max_size=4))
    kind = draw(st.integers(0, 16))
    if kind == 0:
        return ("SADD", key, *members), False
    if kind == 1:
        return ("SREM", key, *members), False
    if kind == 2:
        return ("SMEMBERS", key), True
    if kind == 3:
        return ("SISMEMBER", key, members[0]), False
    if kind == 4:
        return ("SMISMEMBER", key, *members), False
    if kind == 5:
        return ("SCARD", key), False
    if kind == 6:
        return ("SMOVE", key, draw(_KEYS), members[0]), False
    if kind == 7:
        return (draw(st.sampled_from(["SINTER", "SUNION", "SDIFF"])), *keys), True
    if kind == 8:
        op = draw(st.sampled_from(["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"]))
        return (op, key, *keys), False
    if kind == 9:
        extra = ("LIMIT", str(draw(st.integers(0, 3)))) if draw(st.booleans()) else ()
        return ("SINTERCARD", str(len(keys)), *keys, *extra), False
    if kind == 10:
        return ("SSCAN", key, "0", "MATCH", draw(_PATTERNS)), True
    if kind == 11:
        return ("SPOP", key, draw(st.sampled_from(["100", "0"]))), True
    if kind == 12:
        return ("SRANDMEMBER", key, draw(st.sampled_from(["100", "0"]))), True
    if kind == 13:
        return ("HSET", key, "f", "v"), False
    if kind == 14:
        return ("SPOP", key, draw(st.sampled_from(["-1", "x"]))), False
    if kind == 15:
        return ("SRANDMEMBER", key, draw(st.sampled_from(["x", "-9223372036854775808"]))), False
    return ("SINTERCARD", draw(st.sampled_from(["0", "5", "x"])), *keys), False


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_command(), min_size=1, max_size=25))
def test_random_sequences(diff: Differ, commands: list[tuple[tuple[str, ...], bool]]) -> None:
    diff.flush()
    diff("HSET", "h", "f", "v")
    for cmd, unordered in commands:
        diff(*cmd, unordered=unordered)
    for key in _SET_KEYS:
        diff("SMEMBERS", key, unordered=True)

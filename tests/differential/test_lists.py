"""List commands compared with redis-server, RESP2 and RESP3."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.differ import Differ

LONG_MIN = "-9223372036854775808"
LONG_MAX = "9223372036854775807"


def _exists(diff: Differ, key: str) -> None:
    """Redis never keeps an empty list: compare existence and type after removals."""
    diff("EXISTS", key)
    diff("TYPE", key)


def test_push_and_len(diff: Differ) -> None:
    diff("LPUSH", "l", "a", "b", "c")
    diff("RPUSH", "l", "d", "e")
    diff("LRANGE", "l", "0", "-1")
    diff("LLEN", "l")
    diff("LLEN", "missing")
    diff("LPUSHX", "missing", "a")
    diff("RPUSHX", "missing", "a", "b")
    diff("LLEN", "missing")
    diff("LPUSHX", "l", "x", "y")
    diff("RPUSHX", "l", "z")
    diff("LRANGE", "l", "0", "-1")
    diff("RPUSH", "r", "")
    diff("LRANGE", "r", "0", "-1")
    diff("lpush", "l", "lower")
    diff("LINDEX", "l", "0")


def test_pop(diff: Differ) -> None:
    diff("RPUSH", "l", "a", "b", "c", "d", "e", "f")
    diff("LPOP", "l")
    diff("RPOP", "l")
    diff("LPOP", "l", "2")
    diff("RPOP", "l", "1")
    diff("LPOP", "l", "0")
    diff("RPOP", "l", "0")
    diff("RPOP", "l", "10")
    _exists(diff, "l")
    diff("RPUSH", "l", "a", "b", "c")
    diff("LPOP", "l", "3")
    _exists(diff, "l")
    diff("RPUSH", "l", "a", "b", "c")
    diff("RPOP", "l", LONG_MAX)
    diff("RPUSH", "l", "only")
    diff("RPOP", "l")
    diff("LLEN", "l")
    diff("LPOP", "missing")
    diff("RPOP", "missing")
    diff("LPOP", "missing", "1")
    diff("LPOP", "missing", "0")
    diff("RPOP", "missing", "5")


def test_pop_count_errors(diff: Differ) -> None:
    diff("RPUSH", "l", "a", "b")
    for bad in ("-1", "abc", "", "1.5", "+1", "-0", "9223372036854775808", LONG_MIN):
        diff("LPOP", "l", bad)
        diff("RPOP", "missing", bad)
    diff("LPOP", "l", "1", "2")
    diff("RPOP", "l", "1", "2", "3")
    diff("LPOP")
    diff("LRANGE", "l", "0", "-1")


def test_lrange_bounds(diff: Differ) -> None:
    diff("RPUSH", "l", *[str(i) for i in range(10)])
    for start, end in [
        ("0", "-1"),
        ("0", "0"),
        ("-1", "-1"),
        ("2", "5"),
        ("-3", "-1"),
        ("-100", "2"),
        ("5", "100"),
        ("7", "3"),
        ("10", "20"),
        ("-100", "-50"),
        ("8", "9"),
        ("1", "8"),
        (LONG_MIN, LONG_MAX),
        ("0", LONG_MIN),
        (LONG_MAX, LONG_MAX),
        ("-5", "-6"),
    ]:
        diff("LRANGE", "l", start, end)
    diff("LRANGE", "missing", "0", "-1")
    diff("LRANGE", "l", "x", "1")
    diff("LRANGE", "l", "0", "1.0")
    diff("LRANGE", "missing", "x", "1")
    diff("LRANGE", "l", "9223372036854775808", "1")


def test_lindex_lset(diff: Differ) -> None:
    diff("RPUSH", "l", "a", "b", "c")
    for index in ("0", "2", "3", "-1", "-3", "-4", LONG_MIN, LONG_MAX):
        diff("LINDEX", "l", index)
        diff("LSET", "l", index, "new" + index)
    diff("LRANGE", "l", "0", "-1")
    diff("LINDEX", "l", "x")
    diff("LINDEX", "missing", "x")
    diff("LINDEX", "missing", "0")
    diff("LSET", "l", "x", "v")
    diff("LSET", "missing", "0", "v")
    diff("LSET", "missing", "x", "v")
    diff("LLEN", "missing")


def test_linsert(diff: Differ) -> None:
    diff("RPUSH", "l", "a", "b", "a")
    diff("LINSERT", "l", "BEFORE", "a", "x")
    diff("LINSERT", "l", "after", "a", "y")
    diff("LINSERT", "l", "After", "b", "z")
    diff("LINSERT", "l", "before", "nope", "z")
    diff("LINSERT", "l", "after", "a", "")
    diff("LRANGE", "l", "0", "-1")
    diff("LINSERT", "missing", "before", "a", "x")
    diff("LLEN", "missing")
    diff("LINSERT", "l", "middle", "a", "x")
    diff("LINSERT", "missing", "middle", "a", "x")
    diff("LINSERT", "l", "before", "a")


def test_lrem(diff: Differ) -> None:
    items = ["a", "b", "a", "c", "a", "b", "a"]
    for count in ("0", "1", "2", "-1", "-2", "100", "-100", LONG_MIN, LONG_MAX):
        diff("LTRIM", "l", "1", "0")
        diff("RPUSH", "l", *items)
        diff("LREM", "l", count, "a")
        diff("LRANGE", "l", "0", "-1")
    diff("LREM", "l", "0", "nope")
    diff("LREM", "l", "0", "b")
    diff("LREM", "l", "0", "c")
    _exists(diff, "l")
    diff("LREM", "missing", "1", "a")
    diff("LREM", "missing", "x", "a")
    diff("LREM", "l", "1.5", "a")


def test_lrem_many_matches(diff: Differ) -> None:
    """More matches than are deleted one by one, from both ends."""
    items = [("a" if i % 3 else "b") for i in range(120)]
    for count in ("30", "-30", "17", "-17", "16", "-16", "0"):
        diff("LTRIM", "l", "1", "0")
        diff("RPUSH", "l", *items)
        diff("LREM", "l", count, "a")
        diff("LRANGE", "l", "0", "-1")
        diff("LREM", "l", count, "b")
        diff("LRANGE", "l", "0", "-1")


def test_ltrim(diff: Differ) -> None:
    items = [str(i) for i in range(12)]
    for start, end in [
        ("0", "-1"),
        ("1", "-2"),
        ("2", "3"),
        ("-3", "-1"),
        ("0", "0"),
        ("-100", "100"),
        ("5", "2"),
        ("12", "20"),
        ("-1", "-1"),
        ("1", "10"),
        (LONG_MIN, LONG_MAX),
        ("0", LONG_MIN),
    ]:
        diff("LTRIM", "l", "1", "0")
        diff("RPUSH", "l", *items)
        diff("LTRIM", "l", start, end)
        diff("LRANGE", "l", "0", "-1")
    diff("LTRIM", "l", "1", "0")
    _exists(diff, "l")
    diff("LTRIM", "missing", "0", "1")
    diff("LTRIM", "missing", "x", "1")
    diff("LTRIM", "l", "0", "y")


def test_lpos(diff: Differ) -> None:
    diff("RPUSH", "l", "a", "b", "c", "a", "b", "c", "a", "x", "a")
    cases = [
        [],
        ["RANK", "1"],
        ["RANK", "2"],
        ["RANK", "4"],
        ["RANK", "5"],
        ["RANK", "-1"],
        ["RANK", "-3"],
        ["rank", "-5"],
        ["COUNT", "0"],
        ["COUNT", "2"],
        ["count", "10"],
        ["RANK", "2", "COUNT", "2"],
        ["RANK", "-2", "COUNT", "0"],
        ["MAXLEN", "3"],
        ["MAXLEN", "1", "COUNT", "0"],
        ["MAXLEN", "0"],
        ["RANK", "-1", "MAXLEN", "3"],
        ["RANK", "-1", "MAXLEN", "3", "COUNT", "0"],
        ["RANK", "1", "RANK", "3"],
        ["COUNT", "1", "COUNT", "0"],
        ["RANK", LONG_MAX],
        ["RANK", LONG_MAX, "COUNT", "0"],
        ["RANK", LONG_MIN],
        ["RANK", LONG_MIN, "COUNT", "1"],
        ["RANK", LONG_MIN, "COUNT", "2", "MAXLEN", "5"],
        ["RANK", "-9223372036854775807"],
        ["COUNT", LONG_MAX],
        ["MAXLEN", LONG_MAX],
    ]
    for opts in cases:
        for elem in ("a", "x", "nope"):
            diff("LPOS", "l", elem, *opts)
            diff("LPOS", "missing", elem, *opts)


def test_lpos_errors(diff: Differ) -> None:
    diff("RPUSH", "l", "a")
    for opts in [
        ["RANK", "0"],
        ["RANK", "x"],
        ["RANK"],
        ["COUNT", "-1"],
        ["COUNT", "abc"],
        ["COUNT"],
        ["MAXLEN", "-1"],
        ["MAXLEN", "x"],
        ["MAXLEN", "9223372036854775808"],
        ["FOO", "1"],
        ["FOO"],
        ["COUNT", "1", "RANK", "0"],
        ["COUNT", "-1", "RANK", "0"],
        ["RANK", "0", "COUNT", "-1"],
        ["RANK", "1", "COUNT"],
        ["RANK", "9223372036854775808"],
    ]:
        diff("LPOS", "l", "a", *opts)
        diff("LPOS", "missing", "a", *opts)
    diff("LPOS", "l")


def test_lmove_rpoplpush(diff: Differ) -> None:
    diff("RPUSH", "src", "a", "b", "c")
    for wherefrom, whereto in [
        ("LEFT", "RIGHT"),
        ("right", "left"),
        ("Left", "left"),
        ("RIGHT", "RIGHT"),
    ]:
        diff("LMOVE", "src", "dst", wherefrom, whereto)
        diff("LRANGE", "src", "0", "-1")
        diff("LRANGE", "dst", "0", "-1")
    _exists(diff, "src")
    diff("LMOVE", "src", "dst", "left", "right")
    diff("LMOVE", "dst", "dst", "left", "right")
    diff("LMOVE", "dst", "dst", "right", "left")
    diff("LMOVE", "dst", "dst", "left", "left")
    diff("LRANGE", "dst", "0", "-1")
    diff("RPOPLPUSH", "dst", "dst")
    diff("RPOPLPUSH", "dst", "other")
    diff("LRANGE", "dst", "0", "-1")
    diff("LRANGE", "other", "0", "-1")
    diff("RPUSH", "one", "x")
    diff("LMOVE", "one", "one", "left", "right")
    diff("LRANGE", "one", "0", "-1")
    diff("RPOPLPUSH", "one", "two")
    _exists(diff, "one")
    diff("LMOVE", "missing", "dst", "left", "right")
    diff("RPOPLPUSH", "missing", "dst")
    diff("LMOVE", "two", "dst", "up", "right")
    diff("LMOVE", "two", "dst", "left", "down")
    diff("LMOVE", "missing", "dst", "up", "right")
    diff("LRANGE", "two", "0", "-1")


def test_wrong_type(diff: Differ) -> None:
    diff("SET", "s", "v")
    diff("HSET", "h", "f", "v")
    diff("RPUSH", "l", "a")
    for args in [
        ["LPUSH", "s", "a"],
        ["RPUSH", "s", "a"],
        ["LPUSHX", "s", "a"],
        ["RPUSHX", "s", "a"],
        ["LPOP", "s"],
        ["RPOP", "s"],
        ["LPOP", "s", "0"],
        ["LPOP", "s", "x"],
        ["LLEN", "s"],
        ["LRANGE", "s", "0", "-1"],
        ["LRANGE", "s", "x", "0"],
        ["LINDEX", "s", "0"],
        ["LINDEX", "s", "x"],
        ["LSET", "s", "0", "v"],
        ["LSET", "s", "x", "v"],
        ["LINSERT", "s", "before", "a", "b"],
        ["LINSERT", "s", "x", "a", "b"],
        ["LREM", "s", "0", "a"],
        ["LREM", "s", "x", "a"],
        ["LTRIM", "s", "0", "1"],
        ["LTRIM", "s", "x", "1"],
        ["LPOS", "s", "a"],
        ["LPOS", "s", "a", "COUNT", "1"],
        ["LPOS", "s", "a", "RANK", "0"],
        ["LMOVE", "s", "l", "left", "left"],
        ["LMOVE", "l", "s", "left", "left"],
        ["LMOVE", "missing", "s", "left", "left"],
        ["LMOVE", "l", "s", "up", "left"],
        ["RPOPLPUSH", "s", "l"],
        ["RPOPLPUSH", "l", "s"],
        ["RPOPLPUSH", "missing", "s"],
        ["LPUSH", "h", "a"],
        ["LRANGE", "h", "0", "1"],
        ["LMOVE", "l", "h", "right", "left"],
    ]:
        diff(*args)
    diff("GET", "s")
    diff("TYPE", "h")
    diff("LRANGE", "l", "0", "-1")


def test_ttl_survives_writes_and_dies_with_the_list(diff: Differ) -> None:
    diff("RPUSH", "l", "a", "b", "c")
    diff("EXPIRE", "l", "100")
    for args in [
        ("LPUSH", "l", "x"),
        ("RPOP", "l"),
        ("LSET", "l", "0", "y"),
        ("LINSERT", "l", "after", "y", "z"),
        ("LREM", "l", "1", "z"),
        ("LTRIM", "l", "0", "-1"),
        ("LMOVE", "l", "l", "left", "right"),
        ("LMOVE", "l", "other", "left", "right"),
    ]:
        diff(*args)
        diff("TTL", "l")
    diff("TTL", "other")
    diff("LPOP", "l", "10")
    diff("TTL", "l")
    diff("RPUSH", "l", "new")
    diff("TTL", "l")
    diff("PEXPIRE", "l", "1")
    time.sleep(0.01)
    for args in [("LLEN", "l"), ("LPUSHX", "l", "x"), ("RPOPLPUSH", "l", "l"), ("EXISTS", "l")]:
        diff(*args)


def test_arity(diff: Differ) -> None:
    for args in [
        ["LPUSH", "l"],
        ["RPUSH"],
        ["LPUSHX", "l"],
        ["RPUSHX", "l"],
        ["LPOP"],
        ["RPOP"],
        ["LLEN"],
        ["LLEN", "a", "b"],
        ["LRANGE", "l", "0"],
        ["LINDEX", "l"],
        ["LSET", "l", "0"],
        ["LINSERT", "l", "before", "a"],
        ["LREM", "l", "0"],
        ["LTRIM", "l", "0"],
        ["LPOS", "l"],
        ["LMOVE", "a", "b", "left"],
        ["RPOPLPUSH", "a"],
        ["RPOPLPUSH", "a", "b", "c"],
    ]:
        diff(*args)


def test_resp3(diff3: Differ) -> None:
    diff3("RPUSH", "l", "a", "b", "c", "a")
    diff3("LPOP", "missing")
    diff3("LPOP", "missing", "1")
    diff3("RPOP", "missing", "0")
    diff3("LPOP", "l", "0")
    diff3("LPOP", "l", "1")
    diff3("RPOP", "l")
    diff3("LRANGE", "l", "0", "-1")
    diff3("LRANGE", "missing", "0", "-1")
    diff3("LINDEX", "l", "10")
    diff3("LINDEX", "missing", "0")
    diff3("LPOS", "l", "a")
    diff3("LPOS", "l", "zz")
    diff3("LPOS", "l", "a", "COUNT", "0")
    diff3("LPOS", "missing", "a")
    diff3("LPOS", "missing", "a", "COUNT", "1")
    diff3("LMOVE", "missing", "x", "left", "right")
    diff3("RPOPLPUSH", "missing", "x")
    diff3("LSET", "l", "0", "z")
    diff3("LTRIM", "l", "0", "0")
    diff3("LINSERT", "l", "after", "z", "y")
    diff3("LREM", "l", "0", "y")


# --------------------------------------------------------------------------- random

KEYS = ["k1", "k2", "k3", "str"]
elems = st.sampled_from(["a", "b", "c", "", "1"])
keys = st.sampled_from(KEYS)
ints = st.one_of(
    st.integers(-6, 6).map(str), st.sampled_from(["x", LONG_MIN, LONG_MAX, "-0", "1.5"])
)
sides = st.sampled_from(["LEFT", "right", "Left", "middle"])
lpos_opts = st.lists(
    st.tuples(st.sampled_from(["RANK", "COUNT", "MAXLEN", "count", "bogus"]), ints), max_size=3
).map(lambda pairs: [part for pair in pairs for part in pair])

commands = st.one_of(
    st.tuples(st.sampled_from(["LPUSH", "RPUSH", "LPUSHX", "RPUSHX"]), keys).flatmap(
        lambda t: st.lists(elems, min_size=1, max_size=20).map(lambda e: [*t, *e])
    ),
    st.tuples(st.sampled_from(["LPOP", "RPOP"]), keys).map(list),
    st.tuples(st.sampled_from(["LPOP", "RPOP"]), keys, ints).map(list),
    st.tuples(st.just("LLEN"), keys).map(list),
    st.tuples(st.sampled_from(["LRANGE", "LTRIM"]), keys, ints, ints).map(list),
    st.tuples(st.just("LINDEX"), keys, ints).map(list),
    st.tuples(st.just("LSET"), keys, ints, elems).map(list),
    st.tuples(
        st.just("LINSERT"), keys, st.sampled_from(["BEFORE", "after", "x"]), elems, elems
    ).map(list),
    st.tuples(st.just("LREM"), keys, ints, elems).map(list),
    st.tuples(st.just("LPOS"), keys, elems, lpos_opts).map(lambda t: [t[0], t[1], t[2], *t[3]]),
    st.tuples(st.just("LMOVE"), keys, keys, sides, sides).map(list),
    st.tuples(st.just("RPOPLPUSH"), keys, keys).map(list),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(commands, min_size=1, max_size=30))
def test_random_sequences(diff: Differ, sequence: list[list[str]]) -> None:
    diff.flush()
    diff("SET", "str", "v")
    diff("RPUSH", "k1", "a", "b", "c", "a")
    for args in sequence:
        diff(*args)
    for key in KEYS[:3]:
        diff("LRANGE", key, "0", "-1")

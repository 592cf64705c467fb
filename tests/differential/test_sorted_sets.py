"""Sorted set commands compared with redis-server, RESP2 and RESP3."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.differ import Differ, Outcome

LONG_MIN = "-9223372036854775808"
LONG_MAX = "9223372036854775807"
LONG_MEMBER = "m" * 70  # longer than zset-max-listpack-value: a skiplist in Redis


def _state(diff: Differ, *keys: str) -> None:
    """Compare the whole content, type and existence of `keys`."""
    for key in keys:
        diff("EXISTS", key)
        diff("TYPE", key)
        diff("ZRANGE", key, "0", "-1", "WITHSCORES")


def _ok(outcome: Outcome) -> object:
    kind, value = outcome
    assert kind == "ok", value
    return value


# --------------------------------------------------------------------------- ZADD / ZINCRBY


def test_zadd_basic(diff: Differ) -> None:
    diff("ZADD", "z", "1", "a", "2", "b", "3", "c")
    diff("ZADD", "z", "1", "a", "5", "b")
    diff("ZADD", "z", "1.5", "d", "-2", "e", "1", "a")
    diff("zadd", "z", "10", "a", "10", "a")
    diff("ZADD", "z", "+inf", "pinf", "-inf", "ninf", "Infinity", "x", "-INF", "y")
    diff("ZADD", "z", "0x10", "hex", "1e3", "exp", ".5", "dot", "5.", "dot2", "-.5e1", "neg")
    diff("ZADD", "z", "1e-310", "tiny", "1.1", "f", "0.1", "g", "1e300", "huge")
    _state(diff, "z")
    diff("ZCARD", "z")
    diff("ZSCORE", "z", "f")
    diff("ZSCORE", "z", "tiny")
    diff("ZSCORE", "z", "pinf")
    diff("ZSCORE", "z", "ninf")


def test_zadd_flags(diff: Differ) -> None:
    diff("ZADD", "z", "XX", "1", "a")
    diff("EXISTS", "z")
    diff("ZADD", "z", "XX", "INCR", "1", "a")
    diff("EXISTS", "z")
    diff("ZADD", "z", "NX", "1", "a", "2", "b")
    diff("ZADD", "z", "NX", "5", "a", "3", "c")
    diff("ZADD", "z", "XX", "5", "a", "3", "d")
    diff("ZADD", "z", "XX", "CH", "7", "a", "2", "b", "9", "q")
    diff("ZADD", "z", "CH", "7", "a", "8", "b", "1", "r")
    diff("ZADD", "z", "GT", "CH", "5", "a", "9", "b")
    diff("ZADD", "z", "LT", "CH", "5", "a", "10", "b", "0", "new")
    diff("ZADD", "z", "GT", "XX", "CH", "100", "a", "100", "zz")
    diff("ZADD", "z", "LT", "XX", "-1", "a", "-1", "zz")
    diff("ZADD", "z", "gt", "ch", "nx", "1", "a")
    diff("ZADD", "z", "ch", "ch", "xx", "xx", "3", "a")
    _state(diff, "z")


def test_zadd_incr(diff: Differ) -> None:
    diff("ZADD", "z", "INCR", "1", "a")
    diff("ZADD", "z", "INCR", "1.1", "a")
    diff("ZADD", "z", "NX", "INCR", "1", "a")
    diff("ZADD", "z", "XX", "INCR", "1", "nope")
    diff("ZADD", "z", "XX", "INCR", "-1", "a")
    diff("ZADD", "z", "GT", "INCR", "-1", "a")
    diff("ZADD", "z", "GT", "INCR", "1", "a")
    diff("ZADD", "z", "LT", "INCR", "1", "a")
    diff("ZADD", "z", "LT", "INCR", "-5", "a")
    diff("ZADD", "z", "LT", "INCR", "0", "a")
    diff("ZADD", "z", "GT", "INCR", "3", "brand")
    diff("ZADD", "z", "CH", "INCR", "0", "a")
    diff("ZADD", "z", "inf", "i")
    diff("ZADD", "z", "INCR", "-inf", "i")
    diff("ZADD", "z", "INCR", "inf", "i")
    diff("ZADD", "z", "INCR", "1", "i")
    _state(diff, "z")


def test_zincrby(diff: Differ) -> None:
    diff("ZINCRBY", "z", "1", "a")
    diff("ZINCRBY", "z", "1.1", "a")
    diff("ZINCRBY", "z", "-3", "a")
    diff("ZINCRBY", "z", "0x1p3", "b")
    diff("ZINCRBY", "z", "inf", "c")
    diff("ZINCRBY", "z", "-inf", "c")
    diff("ZINCRBY", "z", "+inf", "c")
    diff("ZINCRBY", "z", "nan", "a")
    diff("ZINCRBY", "z", "abc", "a")
    diff("ZINCRBY", "z", "1e400", "a")
    diff("ZINCRBY", "z", "NX", "a")
    diff("ZINCRBY", "z", "incr", "a")
    diff("ZINCRBY", "z", "1", "nx")
    diff("ZINCRBY", "z", "1", "a", "b")
    diff("ZINCRBY", "z", "1")
    _state(diff, "z")


def test_zadd_errors(diff: Differ) -> None:
    diff("ZADD", "z", "NX", "XX", "1", "a")
    diff("ZADD", "z", "GT", "LT", "1", "a")
    diff("ZADD", "z", "NX", "GT", "1", "a")
    diff("ZADD", "z", "LT", "NX", "1", "a")
    diff("ZADD", "z", "NX", "XX", "GT", "1", "a")
    diff("ZADD", "z", "INCR", "1", "a", "2", "b")
    diff("ZADD", "z", "INCR", "NX", "XX", "1", "a", "2", "b")
    diff("ZADD", "z", "NX", "XX")
    diff("ZADD", "z", "1")
    diff("ZADD", "z", "1", "a", "2")
    diff("ZADD", "z", "NX", "1")
    diff("ZADD", "z")
    diff("ZADD", "z", "1", "a", "x", "b")
    diff("ZADD", "z", "nan", "a")
    diff("ZADD", "z", "NaN", "a")
    diff("ZADD", "z", "", "a")
    diff("ZADD", "z", " 1", "a")
    diff("ZADD", "z", "1 ", "a")
    diff("ZADD", "z", "1\x00", "a")
    diff("ZADD", "z", "1e400", "a")
    diff("ZADD", "z", "-1e400", "a")
    diff("ZADD", "z", "1e-400", "a")
    diff("ZADD", "z", "0x1p-2000", "a")
    diff("ZADD", "z", "0x1p2000", "a")
    diff("ZADD", "z", "1_0", "a")
    diff("ZADD", "z", "1e", "a")
    diff("ZADD", "z", "0x", "a")
    diff("ZADD", "z", "infinit", "a")
    diff("ZADD", "z", "--1", "a")
    diff("EXISTS", "z")
    diff("ZADD", "z", "0e0", "zero", "0e-400", "alsozero", "-0x0p0", "hexzero")
    _state(diff, "z")


def test_negative_zero(diff: Differ) -> None:
    """A small set (listpack) stores -0 as 0; a big one (skiplist) keeps the sign."""
    diff("ZADD", "small", "-0", "a")
    diff("ZSCORE", "small", "a")
    diff("ZADD", "small", "5", "b")
    diff("ZADD", "small", "-0.0", "b")
    diff("ZSCORE", "small", "b")
    diff("ZINCRBY", "small", "-0", "c")
    diff("ZSCORE", "small", "c")
    diff("ZADD", "small", "INCR", "-0", "d")
    diff("ZSCAN", "small", "0")
    diff("ZADD", "big", "-0", LONG_MEMBER)
    diff("ZSCORE", "big", LONG_MEMBER)
    diff("ZADD", "big", "-0", "a", "0", "b")
    diff("ZRANGE", "big", "0", "-1", "WITHSCORES")
    diff("ZADD", "mixed", "-0", "a", "1", LONG_MEMBER)
    diff("ZADD", "mixed", "-0", "b")
    diff("ZRANGE", "mixed", "0", "-1", "WITHSCORES")
    diff("ZADD", "z", "0", "a")
    diff("ZADD", "z", "-0", "a")
    diff("ZSCORE", "z", "a")
    diff("ZUNIONSTORE", "u", "1", "big")
    diff("ZRANGE", "u", "0", "-1", "WITHSCORES")
    diff("ZREM", "big", LONG_MEMBER)
    diff("ZUNIONSTORE", "u", "1", "big")
    diff("ZRANGE", "u", "0", "-1", "WITHSCORES")
    diff("ZRANGEBYSCORE", "big", "0", "0", "WITHSCORES")
    diff("ZRANGEBYSCORE", "big", "-0", "(0")


def test_many_members(diff: Differ) -> None:
    """Past 128 members Redis switches to a skiplist; results must not change."""
    args: list[str] = []
    for i in range(200):
        args += [str(i % 7), f"m{i:03d}"]
    diff("ZADD", "z", *args)
    diff("ZCARD", "z")
    diff("ZRANGE", "z", "10", "20", "WITHSCORES")
    diff("ZREVRANGE", "z", "0", "5")
    diff("ZRANGEBYSCORE", "z", "(2", "3", "LIMIT", "5", "10")
    diff("ZCOUNT", "z", "1", "(4")
    diff("ZRANK", "z", "m150")
    diff("ZREVRANK", "z", "m150")
    diff("ZREMRANGEBYRANK", "z", "0", "9")
    diff("ZREMRANGEBYSCORE", "z", "5", "+inf")
    diff("ZPOPMAX", "z", "3")
    diff("ZPOPMIN", "z", "2")
    diff("ZADD", "lex", *[x for i in range(150) for x in ("0", f"k{i:03d}")])
    diff("ZRANGEBYLEX", "lex", "[k010", "(k020")
    diff("ZREVRANGEBYLEX", "lex", "+", "[k140", "LIMIT", "2", "3")
    diff("ZLEXCOUNT", "lex", "(k100", "+")
    diff("ZREMRANGEBYLEX", "lex", "-", "(k050")
    diff("ZCARD", "lex")
    diff("ZRANDMEMBER", "lex", "500")
    diff("ZINCRBY", "lex", "1", "k060")
    diff("ZRANGE", "lex", "-3", "-1", "WITHSCORES")


# --------------------------------------------------------------------------- simple access


def test_zrem_zscore_zmscore_zcard(diff: Differ) -> None:
    diff("ZADD", "z", "1", "a", "2", "b", "3", "c")
    diff("ZREM", "z", "a", "nope", "a")
    diff("ZREM", "z", "nope")
    diff("ZREM", "missing", "a")
    diff("ZSCORE", "z", "b")
    diff("ZSCORE", "z", "a")
    diff("ZSCORE", "missing", "a")
    diff("ZMSCORE", "z", "b", "a", "c", "b")
    diff("ZMSCORE", "missing", "a", "b")
    diff("ZMSCORE", "z")
    diff("ZCARD", "z")
    diff("ZCARD", "missing")
    diff("ZREM", "z", "b", "c", "d")
    _state(diff, "z")
    diff("ZREM", "z")


def test_zrank(diff: Differ) -> None:
    diff("ZADD", "z", "1", "a", "1", "b", "0", "c", "5", "d")
    for member in ("a", "b", "c", "d", "nope"):
        diff("ZRANK", "z", member)
        diff("ZREVRANK", "z", member)
    diff("ZRANK", "missing", "a")
    diff("ZREVRANK", "missing", "a")
    diff("ZRANK", "z", "a", "WITHSCORE")
    diff("ZREVRANK", "z", "a", "WITHSCORE")


# --------------------------------------------------------------------------- ranges


def test_zrange_by_rank(diff: Differ) -> None:
    diff("ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e")
    for start, stop in [
        ("0", "-1"),
        ("1", "3"),
        ("-2", "-1"),
        ("-100", "1"),
        ("3", "1"),
        ("5", "10"),
        ("0", "0"),
        ("-1", "-5"),
        (LONG_MIN, LONG_MAX),
        (LONG_MAX, LONG_MIN),
        ("2", "100"),
    ]:
        diff("ZRANGE", "z", start, stop)
        diff("ZRANGE", "z", start, stop, "WITHSCORES")
        diff("ZRANGE", "z", start, stop, "REV")
        diff("ZREVRANGE", "z", start, stop, "withscores")
    diff("ZRANGE", "z", "0", "1", "LIMIT", "0", "-1")
    diff("ZRANGE", "z", "0", "1", "WITHSCORES", "WITHSCORES")
    diff("ZRANGE", "missing", "0", "-1")
    diff("ZRANGE", "z", "a", "1")
    diff("ZRANGE", "z", "0", "1.5")
    diff("ZRANGE", "z", "0", "9223372036854775808")
    diff("ZRANGE", "missing", "x", "1")


def test_zrange_by_score(diff: Differ) -> None:
    diff("ZADD", "z", "1", "a", "2", "b", "2", "bb", "3", "c", "-inf", "ni", "+inf", "pi")
    ranges = [
        ("-inf", "+inf"),
        ("1", "2"),
        ("(1", "2"),
        ("1", "(2"),
        ("(1", "(3"),
        ("2", "2"),
        ("(2", "2"),
        ("2", "(2"),
        ("(2", "(2"),
        ("3", "1"),
        ("inf", "inf"),
        ("(inf", "inf"),
        ("-inf", "-inf"),
        ("-inf", "(-inf"),
        ("(-inf", "(+inf"),
        ("", "2"),
        ("(", "2"),
        (" 1", "2"),
        ("( 1", "+inf"),
        ("0x1", "0x2"),
        ("1e400", "+inf"),
        ("-1e400", "0"),
        ("1\x00junk", "3"),
        ("2.0", "2.00000"),
        ("-0", "(1"),
    ]
    for lo, hi in ranges:
        diff("ZRANGEBYSCORE", "z", lo, hi)
        diff("ZRANGEBYSCORE", "z", lo, hi, "WITHSCORES")
        diff("ZREVRANGEBYSCORE", "z", hi, lo, "WITHSCORES")
        diff("ZRANGE", "z", lo, hi, "BYSCORE")
        diff("ZRANGE", "z", hi, lo, "BYSCORE", "REV")
        diff("ZCOUNT", "z", lo, hi)
    for bad in ["a", "(a", "nan", "(nan", " ", "1 ", "1e", "((1", "+-1", "[1"]:
        diff("ZRANGEBYSCORE", "z", bad, "1")
        diff("ZRANGEBYSCORE", "z", "1", bad)
        diff("ZCOUNT", "z", bad, "1")
        diff("ZCOUNT", "missing", "1", bad)
        diff("ZREMRANGEBYSCORE", "missing", bad, "1")


def test_zrange_limit(diff: Differ) -> None:
    diff("ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e")
    for offset, count in [
        ("0", "2"),
        ("1", "2"),
        ("1", "-1"),
        ("1", "-5"),
        ("1", "0"),
        ("-1", "2"),
        ("4", "5"),
        ("5", "1"),
        ("100", "1"),
        ("0", LONG_MAX),
        (LONG_MAX, "1"),
        (LONG_MIN, "1"),
    ]:
        diff("ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", offset, count)
        diff("ZRANGEBYSCORE", "z", "(1", "4", "WITHSCORES", "LIMIT", offset, count)
        diff("ZREVRANGEBYSCORE", "z", "+inf", "-inf", "LIMIT", offset, count, "WITHSCORES")
        diff("ZREVRANGEBYSCORE", "z", "(5", "2", "LIMIT", offset, count)
        diff("ZRANGE", "z", "2", "+inf", "BYSCORE", "LIMIT", offset, count)
        diff("ZRANGE", "z", "+inf", "2", "BYSCORE", "REV", "LIMIT", offset, count)
    diff("ZRANGEBYSCORE", "z", "0", "5", "LIMIT", "1", "1", "LIMIT", "0", "3")
    diff("ZRANGEBYSCORE", "z", "0", "5", "LIMIT", "1")
    diff("ZRANGEBYSCORE", "z", "0", "5", "LIMIT")
    diff("ZRANGEBYSCORE", "z", "0", "5", "LIMIT", "x", "1")
    diff("ZRANGEBYSCORE", "z", "0", "5", "LIMIT", "1", "x")
    diff("ZRANGEBYSCORE", "z", "0", "5", "LIMIT", "1", "1.5")
    diff("ZRANGEBYSCORE", "z", "0", "5", "limit", "0", "2", "withscores")


def test_zrange_option_errors(diff: Differ) -> None:
    diff("ZADD", "z", "1", "a", "2", "b", "3", "c")
    diff("SET", "str", "x")
    cases = [
        ("ZRANGE", "z", "0", "-1", "LIMIT", "0", "1"),
        ("ZRANGE", "z", "0", "-1", "LIMIT", "0", "-1"),
        ("ZRANGE", "z", "0", "-1", "LIMIT", "x", "1"),
        ("ZRANGE", "z", "-", "+", "BYLEX", "WITHSCORES"),
        ("ZRANGE", "z", "0", "-1", "BYLEX"),
        ("ZRANGE", "z", "a", "b", "BYSCORE"),
        ("ZRANGE", "z", "0", "1", "BYSCORE", "BYLEX"),
        ("ZRANGE", "z", "0", "1", "BYSCORE", "BYSCORE"),
        ("ZRANGE", "z", "0", "1", "REV", "REV"),
        ("ZRANGE", "z", "0", "1", "FOO"),
        ("ZRANGE", "z", "0", "1", "WITHSCORE"),
        ("ZRANGE", "str", "0", "1"),
        ("ZRANGE", "str", "0", "1", "LIMIT", "0", "1"),
        ("ZRANGE", "str", "a", "1", "BYSCORE"),
        ("ZRANGE", "str", "-", "+", "BYLEX"),
        ("ZRANGE", "str", "x", "1"),
        ("ZRANGEBYSCORE", "z", "0", "1", "BYSCORE"),
        ("ZRANGEBYSCORE", "z", "0", "1", "BYLEX"),
        ("ZRANGEBYSCORE", "z", "0", "1", "REV"),
        ("ZRANGEBYSCORE", "z", "0", "1", "WITHSCORES", "FOO"),
        ("ZREVRANGE", "z", "0", "1", "REV"),
        ("ZREVRANGE", "z", "0", "1", "BYSCORE"),
        ("ZREVRANGE", "z", "0", "1", "LIMIT", "0", "1"),
        ("ZRANGEBYLEX", "z", "-", "+", "WITHSCORES"),
        ("ZRANGEBYLEX", "z", "-", "+", "BYLEX"),
        ("ZREVRANGEBYLEX", "z", "+", "-", "REV"),
        ("ZREVRANGEBYSCORE", "z", "1", "0", "REV"),
        ("ZRANGE", "z", "0"),
        ("ZRANGEBYSCORE", "z", "0"),
        ("zrange", "z", "0", "1", "withscores", "rev"),
        ("zrange", "z", "(1", "+inf", "byscore", "rev", "limit", "0", "1"),
        ("zrange", "z", "+inf", "(1", "byscore", "rev", "limit", "0", "1", "withscores"),
    ]
    for args in cases:
        diff(*args)


def test_zrange_by_lex(diff: Differ) -> None:
    diff("ZADD", "z", *[x for m in "abcdefg" for x in ("0", m)])
    diff("ZADD", "z", "0", "", "0", "aa", "0", "b\x00")
    ranges = [
        ("-", "+"),
        ("[a", "[c"),
        ("(a", "(c"),
        ("[b", "[b"),
        ("(b", "[b"),
        ("[b", "(b"),
        ("+", "-"),
        ("-", "-"),
        ("+", "+"),
        ("[", "["),
        ("(", "("),
        ("[", "+"),
        ("-", "[a"),
        ("[c", "[a"),
        ("[aa", "+"),
        ("-", "(aa"),
        ("[b", "[b\x00"),
        ("+\x00", "[a"),
        ("[a", "+\x00x"),
        ("[zz", "+"),
        ("-", "[0"),
    ]
    for lo, hi in ranges:
        diff("ZRANGEBYLEX", "z", lo, hi)
        diff("ZREVRANGEBYLEX", "z", hi, lo)
        diff("ZRANGE", "z", lo, hi, "BYLEX")
        diff("ZRANGE", "z", hi, lo, "BYLEX", "REV")
        diff("ZLEXCOUNT", "z", lo, hi)
        for offset, count in [("1", "2"), ("0", "-1"), ("-1", "1"), ("2", "0"), ("20", "1")]:
            diff("ZRANGEBYLEX", "z", lo, hi, "LIMIT", offset, count)
            diff("ZREVRANGEBYLEX", "z", hi, lo, "LIMIT", offset, count)
    for bad in ["a", "", "+a", "-a", "++", "{a", "1"]:
        diff("ZRANGEBYLEX", "z", bad, "+")
        diff("ZRANGEBYLEX", "z", "-", bad)
        diff("ZLEXCOUNT", "z", bad, "+")
        diff("ZLEXCOUNT", "missing", "-", bad)
        diff("ZREMRANGEBYLEX", "missing", bad, "+")
    diff("ZRANGEBYLEX", "missing", "-", "+")
    diff("ZLEXCOUNT", "missing", "-", "+")


def test_lex_with_mixed_scores(diff: Differ) -> None:
    """Undefined in Redis, but deterministic for small sets: reproduce the listpack walk."""
    diff("ZADD", "m", "1", "b", "2", "z", "3", "a", "4", "c", "5", "d", "6", "aa")
    for lo, hi in [("[a", "[c"), ("-", "+"), ("(b", "+"), ("-", "(c"), ("[c", "[z"), ("[d", "+")]:
        diff("ZRANGEBYLEX", "m", lo, hi)
        diff("ZREVRANGEBYLEX", "m", hi, lo)
        diff("ZLEXCOUNT", "m", lo, hi)
        for offset, count in [("1", "1"), ("2", "1"), ("2", "5"), ("1", "-1"), ("4", "2")]:
            diff("ZRANGEBYLEX", "m", lo, hi, "LIMIT", offset, count)
            diff("ZREVRANGEBYLEX", "m", hi, lo, "LIMIT", offset, count)
    diff("ZREMRANGEBYLEX", "m", "[b", "[c")
    _state(diff, "m")
    diff("ZREMRANGEBYLEX", "m", "(a", "+")
    _state(diff, "m")


def test_zremrange(diff: Differ) -> None:
    members = [x for i, m in enumerate("abcdefghij") for x in (str(i), m)]
    diff("ZADD", "z", *members)
    diff("ZREMRANGEBYRANK", "z", "0", "1")
    diff("ZREMRANGEBYRANK", "z", "-1", "-1")
    diff("ZREMRANGEBYRANK", "z", "3", "2")
    diff("ZREMRANGEBYRANK", "z", "10", "20")
    diff("ZREMRANGEBYRANK", "z", "-100", "0")
    diff("ZREMRANGEBYRANK", "z", "x", "1")
    diff("ZREMRANGEBYRANK", "missing", "0", "-1")
    _state(diff, "z")
    diff("ZREMRANGEBYSCORE", "z", "(4", "6")
    diff("ZREMRANGEBYSCORE", "z", "100", "200")
    diff("ZREMRANGEBYSCORE", "z", "5", "1")
    diff("ZREMRANGEBYSCORE", "missing", "-inf", "+inf")
    _state(diff, "z")
    diff("ZADD", "l", *[x for m in "abcdefgh" for x in ("0", m)])
    diff("ZREMRANGEBYLEX", "l", "[b", "(d")
    diff("ZREMRANGEBYLEX", "l", "(g", "+")
    diff("ZREMRANGEBYLEX", "l", "+", "-")
    diff("ZREMRANGEBYLEX", "missing", "-", "+")
    _state(diff, "l")
    diff("ZREMRANGEBYLEX", "l", "-", "+")
    diff("ZREMRANGEBYSCORE", "z", "-inf", "+inf")
    _state(diff, "z", "l")
    diff("ZADD", "r", "1", "a", "2", "b")
    diff("ZREMRANGEBYRANK", "r", "0", "-1")
    _state(diff, "r")


# --------------------------------------------------------------------------- pops and random


def test_zpop(diff: Differ) -> None:
    diff("ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e", "1", "a2")
    diff("ZPOPMIN", "z")
    diff("ZPOPMAX", "z")
    diff("ZPOPMIN", "z", "2")
    diff("ZPOPMAX", "z", "1")
    diff("ZPOPMIN", "z", "0")
    diff("ZPOPMAX", "z", "10")
    _state(diff, "z")
    diff("ZPOPMIN", "z")
    diff("ZPOPMIN", "missing", "3")
    diff("ZPOPMAX", "missing")
    for bad in ["-1", "x", "1.5", LONG_MIN, "9223372036854775808"]:
        diff("ZPOPMIN", "z", bad)
        diff("ZPOPMAX", "missing", bad)
    diff("ZPOPMIN", "z", "1", "2")
    diff("ZPOPMAX", "z", "1", "2", "3")
    diff("ZADD", "big", *[x for i in range(20) for x in (str(i), f"m{i}")])
    diff("ZPOPMIN", "big", LONG_MAX)
    _state(diff, "big")


def test_zrandmember_deterministic_and_errors(diff: Differ) -> None:
    diff("ZADD", "z", "1", "a", "2", "b", "3", "c")
    diff("ZRANDMEMBER", "z", "3")
    diff("ZRANDMEMBER", "z", "10", "WITHSCORES")
    diff("ZRANDMEMBER", "z", LONG_MAX)
    diff("ZRANDMEMBER", "z", "0")
    diff("ZRANDMEMBER", "z", "0", "withscores")
    diff("ZRANDMEMBER", "missing")
    diff("ZRANDMEMBER", "missing", "3")
    diff("ZRANDMEMBER", "missing", "-3", "WITHSCORES")
    diff("ZRANDMEMBER", "z", "x")
    diff("ZRANDMEMBER", "z", "1.5")
    diff("ZRANDMEMBER", "z", LONG_MIN)
    diff("ZRANDMEMBER", "z", "1", "WITHSCORE")
    diff("ZRANDMEMBER", "z", "1", "WITHSCORES", "x")
    diff("ZRANDMEMBER", "z", "x", "WITHSCORES")
    diff("ZRANDMEMBER", "z", LONG_MAX, "WITHSCORES")
    diff("ZRANDMEMBER", "z", "-4611686018427387904", "WITHSCORES")
    diff("ZRANDMEMBER", "z", "4611686018427387904", "WITHSCORES")
    diff("ZRANDMEMBER", "missing", "4611686018427387903", "WITHSCORES")
    diff("ZRANDMEMBER", "missing", "-4611686018427387903", "WITHSCORES")


def test_zrandmember_random(diff: Differ) -> None:
    diff("ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e")
    scores = {b"a": b"1", b"b": b"2", b"c": b"3", b"d": b"4", b"e": b"5"}
    for _ in range(5):
        ref, got = diff.both("ZRANDMEMBER", "z")
        assert _ok(ref) in scores
        assert _ok(got) in scores
        ref, got = diff.both("ZRANDMEMBER", "z", "3")
        for outcome in (ref, got):
            members = _ok(outcome)
            assert isinstance(members, list)
            assert len(members) == 3
            assert len(set(members)) == 3
            assert set(members) <= set(scores)
        ref, got = diff.both("ZRANDMEMBER", "z", "-8")
        for outcome in (ref, got):
            members = _ok(outcome)
            assert isinstance(members, list)
            assert len(members) == 8
            assert set(members) <= set(scores)
        for count in ("2", "-7", "1", "-1"):
            ref, got = diff.both("ZRANDMEMBER", "z", count, "WITHSCORES")
            for outcome in (ref, got):
                flat = _ok(outcome)
                assert isinstance(flat, list)
                assert len(flat) == 2 * abs(int(count))
                pairs = list(zip(flat[::2], flat[1::2], strict=True))
                assert all(scores[m] == s for m, s in pairs)
                if int(count) > 0:
                    assert len({m for m, _ in pairs}) == len(pairs)


def test_zrandmember_random_resp3(diff3: Differ) -> None:
    diff3("ZADD", "z", "1", "a", "2", "b", "3", "c")
    diff3("ZRANDMEMBER", "z", "5", "WITHSCORES")
    for count in ("2", "-5", "1", "-1"):
        ref, got = diff3.both("ZRANDMEMBER", "z", count, "WITHSCORES")
        for outcome in (ref, got):
            pairs = _ok(outcome)
            assert isinstance(pairs, list)
            assert len(pairs) == abs(int(count))
            for pair in pairs:
                assert isinstance(pair, list)
                assert len(pair) == 2
                assert pair[1] == {b"a": 1.0, b"b": 2.0, b"c": 3.0}[pair[0]]
    ref, got = diff3.both("ZRANDMEMBER", "z", "-2")
    assert len(_ok(ref)) == len(_ok(got)) == 2  # type: ignore[arg-type]


# --------------------------------------------------------------------------- ZSCAN


def test_zscan(diff: Differ) -> None:
    diff("ZADD", "z", "1", "a", "2", "b", "1.5", "ab", "-inf", "c", "0", "d", "1e-310", "e")
    diff("ZSCAN", "z", "0")
    diff("ZSCAN", "z", "0", "MATCH", "a*")
    diff("ZSCAN", "z", "0", "MATCH", "[bc]", "COUNT", "100")
    diff("ZSCAN", "z", "0", "COUNT", "1")
    diff("ZSCAN", "z", "0", "match", "*", "count", "2", "match", "?")
    diff("ZSCAN", "z", "12345")
    for cursor in [
        "",
        "-1",
        "+7",
        "007",
        "18446744073709551615",
        "-18446744073709551615",
        "18446744073709551616",
        " 0",
        "0 ",
        "x",
        "+",
        "-",
        "1.0",
        "0\x00x",
    ]:
        diff("ZSCAN", "z", cursor)
    diff("ZSCAN", "z", "0", "COUNT", "0")
    diff("ZSCAN", "z", "0", "COUNT", "-1")
    diff("ZSCAN", "z", "0", "COUNT", "x")
    diff("ZSCAN", "z", "0", "MATCH")
    diff("ZSCAN", "z", "0", "TYPE", "zset")
    diff("ZSCAN", "z", "0", "FOO", "bar")
    diff("ZSCAN", "missing", "0")
    diff("ZSCAN", "missing", "0", "FOO")
    diff("ZSCAN", "missing", "x")
    diff("SET", "str", "v")
    diff("ZSCAN", "str", "0")
    diff("ZSCAN", "str", "0", "FOO")
    diff("ZSCAN", "str", "bad")


# ------------------------------------------------------------------------- ZUNIONSTORE ZINTERSTORE


def test_zunionstore_zinterstore(diff: Differ) -> None:
    diff("ZADD", "z1", "1", "a", "2", "b", "3", "c")
    diff("ZADD", "z2", "10", "b", "20", "c", "30", "d")
    diff("ZADD", "z3", "100", "c", "200", "e")
    for cmd in ("ZUNIONSTORE", "ZINTERSTORE"):
        diff(cmd, "d", "2", "z1", "z2")
        _state(diff, "d")
        diff(cmd, "d", "3", "z1", "z2", "z3", "WEIGHTS", "1", "2", "0.5")
        _state(diff, "d")
        for agg in ("SUM", "MIN", "MAX", "min", "Max"):
            diff(cmd, "d", "3", "z1", "z2", "z3", "AGGREGATE", agg)
            _state(diff, "d")
            diff(cmd, "d", "2", "z1", "z2", "weights", "-1", "2", "aggregate", agg)
            _state(diff, "d")
        diff(cmd, "d", "2", "z1", "missing")
        _state(diff, "d")
        diff(cmd, "d", "1", "missing")
        _state(diff, "d")
        diff(cmd, "d", "2", "z1", "z1", "WEIGHTS", "2", "3")
        _state(diff, "d")
        diff(cmd, "z1", "2", "z1", "z2")
        _state(diff, "z1")
        diff(cmd, "d", "2", "z1", "z2", "WEIGHTS", "1", "2", "WEIGHTS", "3", "4")
        diff(cmd, "d", "2", "z1", "z2", "AGGREGATE", "MIN", "AGGREGATE", "MAX")
        _state(diff, "d")


def test_zstore_infinities(diff: Differ) -> None:
    diff("ZADD", "p", "inf", "a", "-inf", "b", "1", "c", "0", "z")
    diff("ZADD", "n", "-inf", "a", "inf", "b", "-inf", "c", "5", "z")
    for cmd in ("ZUNIONSTORE", "ZINTERSTORE"):
        diff(cmd, "d", "2", "p", "n")
        _state(diff, "d")
        diff(cmd, "d", "2", "p", "n", "WEIGHTS", "0", "1")
        _state(diff, "d")
        diff(cmd, "d", "2", "p", "n", "WEIGHTS", "inf", "-inf", "AGGREGATE", "MIN")
        _state(diff, "d")
        diff(cmd, "d", "2", "p", "n", "WEIGHTS", "-0", "0", "AGGREGATE", "MAX")
        _state(diff, "d")
        diff(cmd, "d", "2", "p", "p", "WEIGHTS", "1", "-1")
        _state(diff, "d")


def test_zstore_with_sets(diff: Differ) -> None:
    diff("ZADD", "z", "1", "a", "2", "b")
    diff("SADD", "s", "a", "c", "d")
    diff("SADD", "nums", "1", "2", "3")
    diff("ZUNIONSTORE", "d", "2", "z", "s")
    _state(diff, "d")
    diff("ZINTERSTORE", "d", "2", "z", "s", "WEIGHTS", "3", "5")
    _state(diff, "d")
    diff("ZUNIONSTORE", "d", "3", "s", "nums", "z", "AGGREGATE", "MAX", "WEIGHTS", "2", "3", "4")
    _state(diff, "d")
    diff("ZINTERSTORE", "d", "2", "s", "s")
    _state(diff, "d")
    diff("ZUNIONSTORE", "s", "1", "s")
    _state(diff, "s")


def test_zstore_errors_and_destination(diff: Differ) -> None:
    diff("ZADD", "z", "1", "a")
    diff("SET", "str", "x")
    diff("HSET", "h", "f", "v")
    for cmd in ("ZUNIONSTORE", "ZINTERSTORE", "zunionstore"):
        diff(cmd, "d", "0", "z")
        diff(cmd, "d", "-1", "z")
        diff(cmd, "d", "x", "z")
        diff(cmd, "d", "2", "z")
        diff(cmd, "d", "3", "z", "z")
        diff(cmd, "d", LONG_MAX, "z")
        diff(cmd, "d", "2", "z", "str")
        diff(cmd, "d", "2", "z", "h", "FOO")
        diff(cmd, "d", "1", "z", "FOO")
        diff(cmd, "d", "1", "z", "WEIGHTS")
        diff(cmd, "d", "2", "z", "z", "WEIGHTS", "1")
        diff(cmd, "d", "1", "z", "WEIGHTS", "x")
        diff(cmd, "d", "1", "z", "WEIGHTS", "nan")
        diff(cmd, "d", "1", "z", "WEIGHTS", "1e400")
        diff(cmd, "d", "1", "z", "WEIGHTS", " 1")
        diff(cmd, "d", "1", "z", "AGGREGATE")
        diff(cmd, "d", "1", "z", "AGGREGATE", "AVG")
        diff(cmd, "d", "1", "z", "WITHSCORES")
        diff(cmd, "d", "1", "z", "WEIGHTS", "2", "AGGREGATE", "SUM", "extra")
        diff("EXISTS", "d")
    diff("SET", "dest", "old")
    diff("PEXPIRE", "dest", "100000")
    diff("ZUNIONSTORE", "dest", "1", "z")
    diff("TTL", "dest")
    _state(diff, "dest")
    diff("ZADD", "dest2", "1", "x")
    diff("ZINTERSTORE", "dest2", "2", "z", "missing")
    _state(diff, "dest2")
    diff("ZINTERSTORE", "nope", "2", "z", "missing")
    _state(diff, "nope")


# --------------------------------------------------------------------------- types, TTL, RESP3


def test_wrong_type(diff: Differ) -> None:
    diff("SET", "str", "x")
    diff("HSET", "h", "f", "v")
    diff("RPUSH", "l", "a")
    calls = [
        "ZADD {} 1 a",
        "ZADD {} XX INCR 1 a",
        "ZINCRBY {} 1 a",
        "ZREM {} a",
        "ZSCORE {} a",
        "ZMSCORE {} a",
        "ZCARD {}",
        "ZCOUNT {} 0 1",
        "ZLEXCOUNT {} - +",
        "ZRANK {} a",
        "ZREVRANK {} a",
        "ZRANGE {} 0 -1",
        "ZRANGEBYSCORE {} 0 1",
        "ZREVRANGEBYSCORE {} 1 0",
        "ZRANGEBYLEX {} - +",
        "ZREVRANGEBYLEX {} + -",
        "ZREVRANGE {} 0 1",
        "ZREMRANGEBYRANK {} 0 1",
        "ZREMRANGEBYSCORE {} 0 1",
        "ZREMRANGEBYLEX {} - +",
        "ZPOPMIN {}",
        "ZPOPMAX {} 0",
        "ZPOPMAX {} 2",
        "ZRANDMEMBER {}",
        "ZRANDMEMBER {} 0",
        "ZRANDMEMBER {} 2 WITHSCORES",
        "ZSCAN {} 0",
        "ZUNIONSTORE d 1 {}",
        "ZINTERSTORE d 2 missing {}",
    ]
    for key in ("str", "h", "l"):
        for call in calls:
            diff(*call.format(key).split())
    diff("GET", "str")


def test_ttl_kept_by_writes(diff: Differ) -> None:
    diff("ZADD", "z", "1", "a", "2", "b", "3", "c")
    diff("EXPIRE", "z", "1000")
    diff("ZADD", "z", "4", "d")
    diff("ZINCRBY", "z", "1", "a")
    diff("ZREM", "z", "b")
    diff("ZPOPMIN", "z")
    diff("ZREMRANGEBYRANK", "z", "0", "0")
    diff("TTL", "z")
    diff("ZPOPMAX", "z")
    diff("EXISTS", "z")
    diff("TTL", "z")


def test_arity(diff: Differ) -> None:
    for args in [
        ("ZADD", "z", "1"),
        ("ZCARD",),
        ("ZCARD", "a", "b"),
        ("ZCOUNT", "z", "1"),
        ("ZINCRBY", "z", "1"),
        ("ZINTERSTORE", "d", "1"),
        ("ZLEXCOUNT", "z", "-"),
        ("ZMSCORE", "z"),
        ("ZPOPMAX",),
        ("ZPOPMIN",),
        ("ZRANDMEMBER",),
        ("ZRANGE", "z", "0"),
        ("ZRANGEBYLEX", "z", "-"),
        ("ZRANGEBYSCORE", "z", "0"),
        ("ZRANK", "z"),
        ("ZREM", "z"),
        ("ZREMRANGEBYLEX", "z", "-"),
        ("ZREMRANGEBYRANK", "z", "0", "1", "2"),
        ("ZREMRANGEBYSCORE", "z"),
        ("ZREVRANGE", "z", "0"),
        ("ZREVRANGEBYLEX", "z", "+"),
        ("ZREVRANGEBYSCORE", "z", "1"),
        ("ZREVRANK", "z"),
        ("ZSCAN", "z"),
        ("ZSCORE", "z"),
        ("ZUNIONSTORE", "d", "1"),
    ]:
        diff(*args)


def test_resp3(diff3: Differ) -> None:
    diff3("ZADD", "z", "1", "a", "2.5", "b", "3", "c", "-inf", "n", "inf", "p")
    diff3("ZADD", "z", "INCR", "1.1", "a")
    diff3("ZADD", "z", "XX", "INCR", "1", "nope")
    diff3("ZINCRBY", "z", "-0.5", "b")
    diff3("ZSCORE", "z", "a")
    diff3("ZSCORE", "z", "n")
    diff3("ZSCORE", "z", "p")
    diff3("ZSCORE", "z", "nope")
    diff3("ZSCORE", "missing", "a")
    diff3("ZMSCORE", "z", "a", "nope", "p")
    diff3("ZMSCORE", "missing", "a")
    diff3("ZRANK", "z", "nope")
    diff3("ZRANK", "missing", "a")
    diff3("ZREVRANK", "z", "a")
    diff3("ZRANGE", "z", "0", "-1")
    diff3("ZRANGE", "z", "0", "-1", "WITHSCORES")
    diff3("ZRANGE", "z", "-inf", "+inf", "BYSCORE", "WITHSCORES", "LIMIT", "1", "2")
    diff3("ZREVRANGE", "z", "0", "1", "WITHSCORES")
    diff3("ZRANGEBYSCORE", "z", "1", "3", "WITHSCORES")
    diff3("ZREVRANGEBYSCORE", "z", "3", "1", "WITHSCORES")
    diff3("ZRANGEBYLEX", "z", "-", "+")
    diff3("ZRANGE", "missing", "0", "-1", "WITHSCORES")
    diff3("ZSCAN", "z", "0")
    diff3("ZRANDMEMBER", "z", "10", "WITHSCORES")
    diff3("ZRANDMEMBER", "z", "10")
    diff3("ZRANDMEMBER", "missing")
    diff3("ZRANDMEMBER", "missing", "2", "WITHSCORES")
    diff3("ZPOPMIN", "z")
    diff3("ZPOPMIN", "z", "1")
    diff3("ZPOPMAX", "z", "2")
    diff3("ZPOPMAX", "z", "0")
    diff3("ZPOPMAX", "missing")
    diff3("ZPOPMAX", "missing", "2")
    diff3("ZUNIONSTORE", "d", "1", "z")
    diff3("ZCARD", "d")
    diff3("ZCOUNT", "d", "-inf", "+inf")


# --------------------------------------------------------------------------- random sequences

_KEYS = st.sampled_from(["z1", "z2", "z3", "str"])
_MEMBERS = st.sampled_from(["a", "b", "c", "d", "e", ""])
_SCORES = st.sampled_from(["0", "-0", "1", "2", "2.5", "-1", "inf", "-inf", "3", "x"])
_ENDS = st.sampled_from(["-inf", "+inf", "0", "1", "(1", "2", "(2.5", "-1", "(-inf", "x"])
_LEX = st.sampled_from(["-", "+", "[a", "(a", "[c", "(c", "[", "[e", "a"])
_INTS = st.sampled_from(["0", "1", "2", "-1", "-2", "5", "-10", "x"])
_AGG = st.sampled_from([[], ["AGGREGATE", "MIN"], ["AGGREGATE", "MAX"], ["AGGREGATE", "SUM"]])
_SOURCES = st.sampled_from(["z1", "z2", "z3", "str", "s", "missing"])
_WS = ["WITHSCORES"]
_FLAGS = st.lists(st.sampled_from(["NX", "XX", "GT", "LT", "CH", "INCR"]), max_size=2)


def _pairs(draw_pairs: list[tuple[str, str]]) -> list[str]:
    return [x for pair in draw_pairs for x in pair]


_commands = st.one_of(
    st.builds(
        lambda k, f, p: ["ZADD", k, *f, *_pairs(p)],
        _KEYS,
        _FLAGS,
        st.lists(st.tuples(_SCORES, _MEMBERS), min_size=1, max_size=3),
    ),
    st.builds(lambda k, s, m: ["ZINCRBY", k, s, m], _KEYS, _SCORES, _MEMBERS),
    st.builds(lambda k, m: ["ZREM", k, *m], _KEYS, st.lists(_MEMBERS, min_size=1, max_size=3)),
    st.builds(lambda k, m: ["ZSCORE", k, m], _KEYS, _MEMBERS),
    st.builds(lambda k, m: ["ZMSCORE", k, *m], _KEYS, st.lists(_MEMBERS, min_size=1, max_size=3)),
    st.builds(lambda k: ["ZCARD", k], _KEYS),
    st.builds(lambda k, m, r: ["ZREVRANK" if r else "ZRANK", k, m], _KEYS, _MEMBERS, st.booleans()),
    st.builds(lambda k, a, b: ["ZCOUNT", k, a, b], _KEYS, _ENDS, _ENDS),
    st.builds(lambda k, a, b: ["ZLEXCOUNT", k, a, b], _KEYS, _LEX, _LEX),
    st.builds(
        lambda k, a, b, opts: ["ZRANGE", k, a, b, *opts],
        _KEYS,
        _INTS,
        _INTS,
        st.lists(st.sampled_from(["WITHSCORES", "REV"]), max_size=2, unique=True),
    ),
    st.builds(
        lambda k, a, b, w, lim, rev: [
            "ZREVRANGEBYSCORE" if rev else "ZRANGEBYSCORE",
            k,
            a,
            b,
            *w,
            *lim,
        ],
        _KEYS,
        _ENDS,
        _ENDS,
        st.sampled_from([[], ["WITHSCORES"]]),
        st.sampled_from([[], ["LIMIT", "0", "2"], ["LIMIT", "1", "-1"], ["LIMIT", "-1", "1"]]),
        st.booleans(),
    ),
    st.builds(
        lambda k, a, b, lim, rev: ["ZREVRANGEBYLEX" if rev else "ZRANGEBYLEX", k, a, b, *lim],
        _KEYS,
        _LEX,
        _LEX,
        st.sampled_from([[], ["LIMIT", "0", "2"], ["LIMIT", "1", "-1"], ["LIMIT", "2", "1"]]),
        st.booleans(),
    ),
    st.builds(lambda k, a, b: ["ZREMRANGEBYRANK", k, a, b], _KEYS, _INTS, _INTS),
    st.builds(lambda k, a, b: ["ZREMRANGEBYSCORE", k, a, b], _KEYS, _ENDS, _ENDS),
    st.builds(lambda k, a, b: ["ZREMRANGEBYLEX", k, a, b], _KEYS, _LEX, _LEX),
    st.builds(
        lambda k, mx, c: ["ZPOPMAX" if mx else "ZPOPMIN", k, *c],
        _KEYS,
        st.booleans(),
        st.sampled_from([[], ["0"], ["1"], ["2"], ["10"], ["-1"]]),
    ),
    st.builds(lambda k, w: ["ZRANDMEMBER", k, "10", *w], _KEYS, st.sampled_from([[], _WS])),
    st.builds(lambda k, p: ["ZSCAN", k, "0", *p], _KEYS, st.sampled_from([[], ["MATCH", "[a-c]"]])),
    st.builds(
        lambda inter, d, srcs, weights, agg: [
            "ZINTERSTORE" if inter else "ZUNIONSTORE",
            d,
            str(len(srcs)),
            *srcs,
            *(["WEIGHTS", *weights[: len(srcs)]] if len(weights) >= len(srcs) else []),
            *agg,
        ],
        st.booleans(),
        _KEYS,
        st.lists(_SOURCES, min_size=1, max_size=3),
        st.lists(st.sampled_from(["1", "2", "-1", "0", "0.5", "inf"]), max_size=3),
        _AGG,
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_commands, min_size=1, max_size=30))
def test_random_sequences(diff: Differ, sequence: list[list[str]]) -> None:
    diff.flush()
    diff("SET", "str", "not a zset")
    diff("SADD", "s", "a", "c", "q")
    for args in sequence:
        diff(*args)
    for key in ("z1", "z2", "z3", "str"):
        diff("TYPE", key)
        if key != "str":
            diff("ZRANGE", key, "0", "-1", "WITHSCORES")

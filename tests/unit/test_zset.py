"""The ZSet value type, and deterministic logging/replay of the sorted set commands."""

from __future__ import annotations

import math
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgserver.commands.sorted_sets_ranges import parse_lex_range, range_float, strict_float
from pgserver.zset import LEX_MAX, LEX_MIN, LEX_STR, LexRange, ZSet
from tests.unit.conftest import Session

# --------------------------------------------------------------------------- ZSet


def _zset(*pairs: tuple[float, str]) -> ZSet:
    zset = ZSet()
    for score, member in pairs:
        zset.add(member.encode(), score)
    return zset


def test_add_remove_and_order() -> None:
    zset = _zset((2, "b"), (1, "z"), (1, "a"), (3, "c"))
    assert [m for _s, m in zset] == [b"a", b"z", b"b", b"c"]
    assert zset.add(b"a", 5) is False
    assert zset.add(b"a", 5) is False
    assert zset.add(b"n", 0) is True
    assert [m for _s, m in zset] == [b"n", b"z", b"b", b"c", b"a"]
    assert zset.remove(b"z") is True
    assert zset.remove(b"z") is False
    assert len(zset) == 4
    assert zset == _zset((0, "n"), (2, "b"), (3, "c"), (5, "a"))
    assert zset != _zset((0, "n"))


def test_rank() -> None:
    zset = _zset(*[(i % 3, f"m{i}") for i in range(10)])
    ordered = [m for _s, m in zset]
    for pos, member in enumerate(ordered):
        assert zset.rank(member) == pos
        assert zset.rank(member, reverse=True) == len(ordered) - 1 - pos
    assert zset.rank(b"nope") is None


def test_score_bounds_match_a_linear_scan() -> None:
    rng = random.Random(7)
    values = [-math.inf, -1.0, -0.0, 0.0, 0.5, 1.0, 2.0, math.inf]
    zset = _zset(*[(rng.choice(values), f"m{i}") for i in range(40)])
    items = list(zset)
    for lo in values:
        for hi in values:
            for loex in (False, True):
                for hiex in (False, True):
                    start, stop = zset.score_bounds(lo, loex, hi, hiex)
                    want = [
                        m
                        for s, m in items
                        if (s > lo if loex else s >= lo) and (s < hi if hiex else s <= hi)
                    ]
                    assert [m for _s, m in zset.items(start, stop)] == want


def test_lex_bounds_match_a_linear_scan_when_scores_are_equal() -> None:
    zset = _zset(*[(0, m) for m in ["", "a", "aa", "b", "c", "d\x00", "e"]])
    items = [m for _s, m in zset]
    ends = [b"-", b"+", b"[", b"(", b"[a", b"(a", b"[b", b"(c", b"[zz", b"(aa"]
    for lo in ends:
        for hi in ends:
            r = parse_lex_range(lo, hi)
            start, stop = zset.lex_bounds(r)
            want = [] if r.empty() else [m for m in items if r.gte_min(m) and r.lte_max(m)]
            assert items[start:stop] == want, (lo, hi)


def test_lex_range_special_ends() -> None:
    assert LexRange(LEX_MIN, b"", True, LEX_MIN, b"", True).empty()
    assert LexRange(LEX_MAX, b"", True, LEX_MIN, b"", True).empty()
    assert not LexRange(LEX_MIN, b"", True, LEX_MAX, b"", True).empty()
    assert LexRange(LEX_STR, b"a", True, LEX_STR, b"a", False).empty()
    assert not LexRange(LEX_STR, b"a", False, LEX_STR, b"a", False).empty()


def test_pop_and_delete_slice() -> None:
    zset = _zset(*[(i, f"m{i}") for i in range(10)])
    assert zset.pop(2, highest=False) == [(0, b"m0"), (1, b"m1")]
    assert zset.pop(2, highest=True) == [(9, b"m9"), (8, b"m8")]
    assert zset.delete_slice(1, 3) == 2
    assert [m for _s, m in zset] == [b"m2", b"m5", b"m6", b"m7"]
    assert zset.scores == {b"m2": 2, b"m5": 5, b"m6": 6, b"m7": 7}
    assert zset.pop(10, highest=True) == [(7, b"m7"), (6, b"m6"), (5, b"m5"), (2, b"m2")]
    assert len(zset) == 0


def test_encoding_and_negative_zero() -> None:
    small = _zset((-0.0, "a"))
    assert small.encoding == b"listpack"
    assert math.copysign(1, small.scores[b"a"]) == 1
    small.add(b"x" * 65, -0.0)
    assert small.encoding == b"skiplist"
    assert math.copysign(1, small.scores[b"x" * 65]) == -1
    big = _zset(*[(i, f"m{i}") for i in range(129)])
    assert big.encoding == b"skiplist"
    assert ZSet.from_scores({b"a": -0.0}).scores[b"a"].hex() == "0x0.0p+0"
    assert ZSet.from_scores({b"a" * 65: -0.0}).scores[b"a" * 65].hex() == "-0x0.0p+0"
    loaded = ZSet.load({b"a": -0.0, b"b": 1.0}, listpack=False)
    assert loaded.encoding == b"skiplist"
    assert loaded.scores[b"a"].hex() == "-0x0.0p+0"
    assert [m for _s, m in loaded] == [b"a", b"b"]


def test_float_parsing() -> None:
    assert strict_float(b"1.5") == 1.5
    assert strict_float(b"-inf") == -math.inf
    assert strict_float(b"0x10") == 16
    assert strict_float(b"1e-310") == 1e-310
    for bad in [b"", b" 1", b"1 ", b"nan", b"1e400", b"1e-400", b"0x1p2000", b"1_0", b"0x"]:
        assert strict_float(bad) is None, bad
    assert range_float(b"") == 0
    assert range_float(b" 1") == 1
    assert range_float(b"1e400") == math.inf
    assert range_float(b"2\x00junk") == 2
    assert range_float(b"nan") is None
    assert range_float(b" ") is None


# --------------------------------------------------------------------------- logging and replay


def test_increments_are_logged_as_results(session: Session) -> None:
    session("ZINCRBY", "z", "1.1", "a")
    session("ZINCRBY", "z", "2.2", "a")
    session("ZADD", "z", "INCR", "-0.5", "b")
    session("ZADD", "z", "GT", "INCR", "-1", "a")  # aborted: nothing logged
    session("ZADD", "z", "XX", "INCR", "1", "nope")  # aborted: nothing logged
    session("ZADD", "z", "inf", "i")
    assert session("ZINCRBY", "z", "-inf", "i").startswith(b"-ERR resulting score")
    assert session.server.logged == [
        [b"ZADD", b"z", b"1.1000000000000001", b"a"],
        [b"ZADD", b"z", b"3.3000000000000003", b"a"],
        [b"ZADD", b"z", b"-0.5", b"b"],
        [b"ZADD", b"z", b"inf", b"i"],
    ]
    session.assert_replay_matches()


def test_noop_writes_are_not_logged(session: Session) -> None:
    session("ZADD", "z", "1", "a")
    for args in [
        ("ZADD", "z", "1", "a"),
        ("ZADD", "z", "NX", "5", "a"),
        ("ZADD", "missing", "XX", "1", "a"),
        ("ZREM", "z", "nope"),
        ("ZREM", "missing", "a"),
        ("ZPOPMIN", "missing"),
        ("ZPOPMAX", "z", "0"),
        ("ZREMRANGEBYRANK", "z", "5", "10"),
        ("ZREMRANGEBYSCORE", "z", "5", "10"),
        ("ZREMRANGEBYLEX", "missing", "-", "+"),
    ]:
        session(*args)
    assert session.server.logged == [[b"ZADD", b"z", b"1", b"a"]]
    session.assert_replay_matches()


def test_every_write_replays(session: Session) -> None:
    writes: list[tuple[str, ...]] = [
        ("ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "-0", "e"),
        ("ZADD", "z", "CH", "GT", "5", "a", "0", "b"),
        ("ZADD", "y", "1", "x" * 70, "-0", "neg"),
        ("ZINCRBY", "z", "0.1", "c"),
        ("ZREM", "z", "d", "nope"),
        ("ZPOPMIN", "z"),
        ("ZPOPMAX", "z", "1"),
        ("SADD", "s", "a", "q"),
        ("ZUNIONSTORE", "u", "3", "z", "y", "s", "WEIGHTS", "1", "2", "0.3"),
        ("ZINTERSTORE", "i", "2", "z", "s", "AGGREGATE", "MAX"),
        ("ZADD", "l", "0", "a", "0", "b", "0", "c", "0", "d"),
        ("ZREMRANGEBYLEX", "l", "[b", "(d"),
        ("ZREMRANGEBYSCORE", "u", "-inf", "(1"),
        ("ZREMRANGEBYRANK", "y", "0", "0"),
        ("PEXPIRE", "u", "100000"),
        ("ZUNIONSTORE", "i", "1", "u"),
    ]
    for args in writes:
        reply = session(*args)
        assert not reply.startswith(b"-"), (args, reply)
    session.assert_replay_matches()


_MEMBERS = st.sampled_from(["a", "b", "c", "d", "", "x" * 70])
_KEYS = st.sampled_from(["z1", "z2", "z3"])
_SCORES = st.sampled_from(["0", "-0", "1", "0.1", "1.1", "-2.5", "inf", "-inf", "1e300"])
_ENDS = st.sampled_from(["-inf", "+inf", "0", "(1", "1.1"])
_LEX = st.sampled_from(["-", "+", "[a", "(b", "[c"])

_writes = st.one_of(
    st.builds(lambda k, s, m: ["ZADD", k, s, m], _KEYS, _SCORES, _MEMBERS),
    st.builds(
        lambda k, f, s, m: ["ZADD", k, *f, "INCR", s, m],
        _KEYS,
        st.sampled_from([[], ["NX"], ["XX"], ["GT"], ["LT"]]),
        _SCORES,
        _MEMBERS,
    ),
    st.builds(lambda k, s, m: ["ZINCRBY", k, s, m], _KEYS, _SCORES, _MEMBERS),
    st.builds(lambda k, m: ["ZREM", k, m], _KEYS, _MEMBERS),
    st.builds(lambda k, c: ["ZPOPMIN", k, c], _KEYS, st.sampled_from(["1", "2"])),
    st.builds(lambda k, c: ["ZPOPMAX", k, c], _KEYS, st.sampled_from(["1", "2"])),
    st.builds(lambda k, a, b: ["ZREMRANGEBYSCORE", k, a, b], _KEYS, _ENDS, _ENDS),
    st.builds(lambda k, a, b: ["ZREMRANGEBYLEX", k, a, b], _KEYS, _LEX, _LEX),
    st.builds(lambda k: ["ZREMRANGEBYRANK", k, "0", "0"], _KEYS),
    st.builds(
        lambda inter, d, a, b, w: [
            "ZINTERSTORE" if inter else "ZUNIONSTORE",
            d,
            "2",
            a,
            b,
            "WEIGHTS",
            w,
            "1.5",
        ],
        st.booleans(),
        _KEYS,
        _KEYS,
        _KEYS,
        st.sampled_from(["1", "0.1", "-3", "inf"]),
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_writes, min_size=1, max_size=40))
def test_random_sequences_replay(sequence: list[list[str]]) -> None:
    session = Session()
    for args in sequence:
        session(*args)
        session("ZRANDMEMBER", args[1], "-3", "WITHSCORES")
    session.assert_replay_matches()
    fresh = session.replayed()
    for key, value in session.server.keyspace.data.items():
        replayed = fresh.keyspace.data[key]
        assert isinstance(value, ZSet)
        assert isinstance(replayed, ZSet)
        assert list(value) == list(replayed)
        assert value.encoding == replayed.encoding
        for member, score in value.scores.items():
            assert math.copysign(1, score) == math.copysign(1, replayed.scores[member])

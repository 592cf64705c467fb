"""String commands compared with redis-server, RESP2 and RESP3.

A few checks need commands of other families (PTTL for TTLs; LPUSH, SADD, HSET or ZADD to
make a key of another type). They run only when Tessera has those commands, so this file
also passes while those families are still being written.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.differ import Differ, Outcome, call

LONG_MIN = "-9223372036854775808"
LONG_MAX = "9223372036854775807"
FAR_EXAT = "4102444800"  # 2100-01-01, in seconds
FAR_PXAT = "4102444800123"

BAD_INTEGERS = ("abc", "", "1.5", "+1", "-0", "01", " 1", "1 ", "9223372036854775808", "1e3")


def _unknown(outcome: Outcome) -> bool:
    return outcome[0].startswith("error") and "unknown command" in str(outcome[1])


def _wrongtype(diff: Differ, key: str) -> None:
    """Make `key` a non-string on both servers, with the first collection type Tessera has."""
    for cmd in (("LPUSH", key, "x"), ("SADD", key, "x"), ("HSET", key, "f", "x")):
        if not _unknown(call(diff.tessera, cmd)):
            assert call(diff.reference, cmd)[0] == "ok"
            return
    pytest.skip("Tessera has no collection command yet")


def _ttl(diff: Differ, key: str) -> None:
    """Compare the TTL of `key` (when Tessera has PTTL): same state, within a second."""
    ref, got = diff.both("PTTL", key)
    if _unknown(got):
        return
    assert ref[0] == got[0] == "ok", (ref, got)
    expected, actual = ref[1], got[1]
    assert isinstance(expected, int)
    assert isinstance(actual, int)
    if expected < 0:
        assert actual == expected, (key, ref, got)
    else:
        assert actual >= 0, (key, ref, got)
        assert abs(actual - expected) < 1000, (key, ref, got)


# --------------------------------------------------------------------------- GET / SET


def test_get_set_basics(diff: Differ) -> None:
    diff("GET", "k")
    diff("SET", "k", "v")
    diff("GET", "k")
    diff("SET", "k", "")
    diff("GET", "k")
    diff("SET", "k", b"\x00\xff\r\n binary")
    diff("GET", "k")
    diff("SET", "big", "x" * 100_000)
    diff("GET", "big")
    diff("set", "lower", "1")
    diff("GeT", "lower")
    diff("GET")
    diff("GET", "a", "b")
    diff("SET", "k")
    diff("SET")


def test_set_on_wrong_type(diff: Differ) -> None:
    _wrongtype(diff, "w")
    diff("GET", "w")
    diff("SET", "w", "v", "GET")
    diff("SET", "w", "v", "NX", "GET")
    diff("SET", "w", "v", "XX", "GET")
    diff("SET", "w", "v", "GET", "EX", "-1")
    diff("SET", "w", "v", "GET", "EX", "abc")
    diff("SET", "w", "v", "NX")
    diff("SET", "w", "v", "XX")
    diff("GET", "w")
    _wrongtype(diff, "w2")
    diff("SET", "w2", "v")
    diff("GET", "w2")


_OPTION_TOKENS: tuple[tuple[str, ...], ...] = (
    ("NX",),
    ("xx",),
    ("GET",),
    ("KEEPTTL",),
    ("EX", "100"),
    ("px", "100000"),
    ("EXAT", FAR_EXAT),
    ("PXAT", FAR_PXAT),
    ("PERSIST",),
    ("EX",),
    ("FOO",),
)


def test_set_option_combinations(diff: Differ) -> None:
    """Every sequence of up to three option tokens, on an absent and on a present key."""
    for size in (1, 2, 3):
        for combo in itertools.product(_OPTION_TOKENS, repeat=size):
            args = [arg for token in combo for arg in token]
            for present in (False, True):
                diff.both("GETDEL", "k")
                if present:
                    diff.both("SET", "k", "old", "PXAT", FAR_PXAT)
                diff("SET", "k", "new", *args)
                diff("GET", "k")
    _ttl(diff, "k")


def test_set_expire_values(diff: Differ) -> None:
    for option in ("EX", "PX", "EXAT", "PXAT", "ex", "pXaT"):
        for bad in (*BAD_INTEGERS, "0", "-1", LONG_MIN, LONG_MAX):
            diff("SET", "k", "v", option, bad)
    for big in ("9223372036854775", "9223372036854776", "9223372036854775807"):
        diff("SET", "k", "v", "EXAT", big)
        diff("SET", "k", "v", "EX", big)
    diff("SET", "k", "v", "PXAT", LONG_MAX)
    diff("SET", "k", "v", "PX", "9223372036854775000")
    diff("GET", "k")
    # the syntax check of every option comes before the value check
    diff("SET", "k", "v", "EX", "abc", "NX", "XX")
    diff("SET", "k", "v", "EX", "px")
    diff("SET", "k", "v", "EX", "10", "EX", "20")
    diff("SET", "k", "v", "PXAT", "1", "PXAT", FAR_PXAT)
    diff("GET", "k")
    _ttl(diff, "k")


def test_set_nx_xx_get(diff: Differ) -> None:
    diff("SET", "k", "v", "XX")
    diff("SET", "k", "v", "XX", "GET")
    diff("GET", "k")
    diff("SET", "k", "v", "NX", "GET")
    diff("SET", "k", "w", "NX", "GET")
    diff("SET", "k", "w", "NX")
    diff("SET", "k", "w", "XX", "GET")
    diff("SET", "k", "x", "GET", "GET")
    diff("SET", "k", "y", "GeT", "nX", "Ex", "100")
    diff("SET", "k", "y", "xx", "keepttl")
    diff("GET", "k")
    diff("SET", "k", "v", "NX", "NX")
    diff("SET", "k", "v", "NX", "XX")
    diff("SET", "k", "v", "XX", "NX")
    diff("SET", "k", "v", "GET", "NX", "XX")


def test_set_expire_in_the_past(diff: Differ) -> None:
    diff("SET", "k", "v", "PXAT", "1")
    diff("GET", "k")
    diff("SET", "k", "v")
    diff("SET", "k", "w", "EXAT", "1", "GET")
    diff("GET", "k")
    diff("STRLEN", "k")
    diff("SET", "k", "v", "PXAT", "1", "NX")
    diff("SET", "k", "v", "XX", "PXAT", "1")
    diff("MGET", "k")
    diff("INCR", "k")


def test_set_ttl_handling(diff: Differ) -> None:
    diff("SET", "k", "v", "EX", "100")
    _ttl(diff, "k")
    diff("SET", "k", "v", "KEEPTTL")
    _ttl(diff, "k")
    diff("SET", "k", "v", "GET")
    _ttl(diff, "k")
    diff("SET", "k", "v", "PX", "100000", "XX")
    _ttl(diff, "k")
    diff("SET", "k", "v")
    _ttl(diff, "k")
    diff("SET", "k", "v", "EXAT", FAR_EXAT)
    _ttl(diff, "k")
    diff("SET", "k", "v", "NX", "EX", "5")
    _ttl(diff, "k")


def test_setnx_setex_psetex(diff: Differ) -> None:
    diff("SETNX", "k", "v")
    diff("SETNX", "k", "w")
    diff("GET", "k")
    diff("SETNX", "k")
    diff("SETEX", "k", "100", "v1")
    diff("GET", "k")
    _ttl(diff, "k")
    diff("PSETEX", "k", "100000", "v2")
    diff("GET", "k")
    _ttl(diff, "k")
    for bad in (*BAD_INTEGERS, "0", "-5", LONG_MAX, LONG_MIN, "9223372036854775"):
        diff("SETEX", "k", bad, "v")
        diff("PSETEX", "k", bad, "v")
    diff("PSETEX", "k", "9223372036854775000", "v")
    diff("SETEX", "k", "10")
    diff("PSETEX", "k", "10", "v", "x")
    diff("GET", "k")
    _wrongtype(diff, "w")
    diff("SETNX", "w", "v")
    diff("SETEX", "w", "100", "v")
    diff("GET", "w")
    _wrongtype(diff, "w2")
    diff("PSETEX", "w2", "100000", "v")
    diff("GET", "w2")


# --------------------------------------------------------------------------- GETSET GETDEL GETEX


def test_getset_getdel(diff: Differ) -> None:
    diff("GETSET", "k", "a")
    diff("GETSET", "k", "b")
    diff("GET", "k")
    diff("SET", "k", "v", "EX", "100")
    diff("GETSET", "k", "c")
    _ttl(diff, "k")
    diff("GETDEL", "k")
    diff("GETDEL", "k")
    diff("GET", "k")
    diff("GETDEL", "k", "x")
    diff("GETSET", "k")
    _wrongtype(diff, "w")
    diff("GETSET", "w", "v")
    diff("GETDEL", "w")


def test_getex(diff: Differ) -> None:
    diff("GETEX", "missing")
    diff("GETEX", "missing", "EX", "-1")
    diff("GETEX", "missing", "EX", "abc")
    diff("GETEX", "missing", "FOO")
    diff("SET", "s", "hello")
    diff("GETEX", "s")
    _ttl(diff, "s")
    diff("GETEX", "s", "EX", "100")
    _ttl(diff, "s")
    diff("GETEX", "s", "px", "50000")
    _ttl(diff, "s")
    diff("GETEX", "s", "PERSIST")
    _ttl(diff, "s")
    diff("GETEX", "s", "persist")
    diff("GETEX", "s", "EXAT", FAR_EXAT)
    _ttl(diff, "s")
    diff("GETEX", "s", "PXAT", FAR_PXAT)
    _ttl(diff, "s")
    diff("GETEX", "s", "EX", "10", "EX", "20")
    _ttl(diff, "s")
    diff("GETEX", "s", "PERSIST", "PERSIST")
    for tokens in (
        ("EX", "10", "PX", "10"),
        ("PERSIST", "EX", "1"),
        ("EX", "1", "PERSIST"),
        ("KEEPTTL",),
        ("GET",),
        ("NX",),
        ("XX",),
        ("EX",),
        ("PXAT",),
        ("FOO",),
    ):
        diff("GETEX", "s", *tokens)
    for option in ("EX", "PX", "EXAT", "PXAT"):
        for bad in (*BAD_INTEGERS, "0", "-1", LONG_MAX, LONG_MIN):
            diff("GETEX", "s", option, bad)
    diff("GETEX", "s", "EXAT", "9223372036854775")
    diff("GETEX", "s", "EXAT", "1")
    diff("GET", "s")
    diff("SET", "s", "v")
    diff("GETEX", "s", "PXAT", "1")
    diff("GETEX", "s")
    diff("GETEX")
    _wrongtype(diff, "w")
    diff("GETEX", "w")
    diff("GETEX", "w", "EX", "abc")
    diff("GETEX", "w", "FOO")


# --------------------------------------------------------------------------- multi-key


def test_mget_mset_msetnx(diff: Differ) -> None:
    diff("MSET", "a", "1", "b", "2", "c", "3")
    diff("MGET", "a", "b", "c", "missing", "a")
    diff("MSET", "a", "x", "a", "y")
    diff("GET", "a")
    diff("MSET", "a", "1", "b")
    diff("MSET", "a")
    diff("MSETNX", "a", "1", "b")
    diff("MSETNX", "a", "9", "new", "1")
    diff("GET", "new")
    diff("MSETNX", "n1", "1", "n2", "2", "n1", "3")
    diff("MGET", "n1", "n2")
    diff("SET", "t", "v", "EX", "100")
    diff("MSET", "t", "w")
    _ttl(diff, "t")
    diff("MGET")
    _wrongtype(diff, "w")
    diff("MGET", "a", "w", "missing")
    diff("MSETNX", "w", "1", "fresh", "2")
    diff("GET", "fresh")
    diff("MSET", "w", "now-a-string")
    diff("GET", "w")


# --------------------------------------------------------------------------- byte ranges


def test_append_strlen(diff: Differ) -> None:
    diff("APPEND", "k", "abc")
    diff("APPEND", "k", "def")
    diff("APPEND", "k", "")
    diff("GET", "k")
    diff("STRLEN", "k")
    diff("STRLEN", "missing")
    diff("APPEND", "e", "")
    diff("STRLEN", "e")
    diff("GET", "e")
    diff("SET", "n", "12345")
    diff("APPEND", "n", "6")
    diff("INCR", "n")
    diff("SET", "t", "v", "EX", "100")
    diff("APPEND", "t", "w")
    _ttl(diff, "t")
    diff("APPEND", "k")
    diff("STRLEN")
    _wrongtype(diff, "w")
    diff("APPEND", "w", "x")
    diff("STRLEN", "w")


def test_getrange_bounds(diff: Differ) -> None:
    """Every small start/end pair on strings of length 0 to 4."""
    bounds = [str(i) for i in range(-6, 7)] + [LONG_MIN, LONG_MAX]
    diff("GETRANGE", "missing", "0", "-1")
    for length in range(5):
        diff("SET", "k", "abcd"[:length])
        for start in bounds:
            for end in bounds:
                diff("GETRANGE", "k", start, end)
    for bad in BAD_INTEGERS:
        diff("GETRANGE", "k", bad, "1")
        diff("GETRANGE", "k", "1", bad)
        diff("GETRANGE", "missing", bad, "1")
    diff("SET", "n", "-12345")
    diff("GETRANGE", "n", "1", "3")
    diff("GETRANGE", "k", "0")
    _wrongtype(diff, "w")
    diff("GETRANGE", "w", "0", "-1")
    diff("GETRANGE", "w", "x", "-1")


def test_setrange(diff: Differ) -> None:
    diff("SETRANGE", "k", "0", "hello")
    diff("SETRANGE", "k", "2", "XY")
    diff("SETRANGE", "k", "4", "1234")
    diff("SETRANGE", "k", "10", "z")
    diff("GET", "k")
    diff("SETRANGE", "k", "0", "")
    diff("SETRANGE", "k", "100", "")
    diff("SETRANGE", "missing", "0", "")
    diff("SETRANGE", "missing", "5", "")
    diff("GET", "missing")
    diff("SETRANGE", "new", "3", "x")
    diff("GET", "new")
    diff("SETRANGE", "k", "-1", "x")
    diff("SETRANGE", "k", "-1", "")
    diff("SETRANGE", "missing", "-1", "")
    for bad in BAD_INTEGERS:
        diff("SETRANGE", "k", bad, "x")
    diff("SETRANGE", "k", "536870912", "x")
    diff("SETRANGE", "k", "536870911", "xy")
    diff("SETRANGE", "k", LONG_MAX, "x")
    diff("SETRANGE", "missing", "536870912", "x")
    diff("SETRANGE", "missing", "536870912", "")
    diff("SET", "t", "v", "EX", "100")
    diff("SETRANGE", "t", "1", "w")
    _ttl(diff, "t")
    diff("SET", "n", "12345")
    diff("SETRANGE", "n", "1", "0")
    diff("INCR", "n")
    diff("SETRANGE", "k", "1")
    _wrongtype(diff, "w")
    diff("SETRANGE", "w", "0", "x")
    diff("SETRANGE", "w", "0", "")
    diff("SETRANGE", "w", "-1", "x")


# --------------------------------------------------------------------------- counters


def test_incr_decr(diff: Differ) -> None:
    diff("INCR", "c")
    diff("INCR", "c")
    diff("DECR", "c")
    diff("INCRBY", "c", "10")
    diff("DECRBY", "c", "-5")
    diff("DECRBY", "c", "100")
    diff("INCRBY", "c", "0")
    diff("GET", "c")
    diff("DECR", "fresh")
    diff("INCRBY", "fresh2", LONG_MIN)
    diff("DECRBY", "fresh3", LONG_MAX)
    for bad in BAD_INTEGERS:
        diff("INCRBY", "c", bad)
        diff("DECRBY", "c", bad)
        diff("SET", "bad", bad)
        diff("INCR", "bad")
        diff("DECRBY", "bad", "1")
    diff("GET", "c")
    diff("INCR")
    diff("INCRBY", "c")
    diff("DECR", "c", "1")


def test_incr_overflow(diff: Differ) -> None:
    diff("SET", "max", LONG_MAX)
    diff("INCR", "max")
    diff("INCRBY", "max", "0")
    diff("DECR", "max")
    diff("INCRBY", "max", "2")
    diff("SET", "min", LONG_MIN)
    diff("DECR", "min")
    diff("INCRBY", "min", "-1")
    diff("DECRBY", "min", "1")
    diff("INCRBY", "min", LONG_MAX)
    diff("DECRBY", "min", LONG_MIN)
    diff("DECRBY", "missing", LONG_MIN)
    diff("SET", "zero", "0")
    diff("DECRBY", "zero", LONG_MIN)
    diff("INCRBY", "zero", LONG_MIN)
    diff("DECRBY", "zero", "-9223372036854775807")
    diff("GET", "min")
    diff("GET", "max")
    diff("GET", "zero")


def test_counters_keep_ttl_and_type(diff: Differ) -> None:
    diff("SET", "t", "5", "EX", "100")
    diff("INCR", "t")
    _ttl(diff, "t")
    diff("INCRBYFLOAT", "t", "1.5")
    _ttl(diff, "t")
    _wrongtype(diff, "w")
    diff("INCR", "w")
    diff("DECR", "w")
    diff("INCRBY", "w", "abc")
    diff("DECRBY", "w", "abc")
    diff("DECRBY", "w", LONG_MIN)
    diff("INCRBY", "w", "1")
    diff("INCRBYFLOAT", "w", "abc")
    diff("INCRBYFLOAT", "w", "1")


INCRBYFLOAT_CASES = [
    ("10.5", "0.1"),
    ("0.1", "0.2"),
    ("3.0e3", "0"),
    ("1e300", "1e300"),
    ("1e4932", "1e4932"),
    ("1.18973149535723176502e+4932", "0"),
    ("1.2e4932", "0"),
    ("inf", "1"),
    ("-inf", "inf"),
    ("0", "inf"),
    ("nan", "1"),
    ("0", "nan"),
    (" 1", "1"),
    ("1 ", "1"),
    ("1", " 1"),
    ("1", "1 "),
    ("", "1"),
    ("1", ""),
    ("0x1p3", "0X.8P-1"),
    ("0x", "1"),
    ("1e", "1"),
    (".", "1"),
    ("+.5", "5."),
    ("-0.0", "0"),
    ("1e-20", "0"),
    ("-1e-20", "0"),
    ("-5e-18", "0"),
    ("1e-4940", "1"),
    ("1e-5000", "1"),
    ("0e99999999999", "1"),
    ("1_0", "1"),
    ("12345678901234567890123", "1"),
    ("9223372036854775807", "1"),
    ("1.00000000000000000001", "0"),
    ("0.000003814697265625", "0"),
    ("0.000003814697265635", "0"),
    ("1" * 5119, "0"),
    ("1" * 5120, "0"),
    ("0." + "0" * 5000 + "1", "0"),
    ("1" + "0" * 4400, "1"),
    ("1.5\x00abc", "1"),
    ("\x00", "1"),
    ("infinity", "1"),
    ("INF", "-1"),
]


def test_incrbyfloat_cases(diff: Differ) -> None:
    for start, increment in INCRBYFLOAT_CASES:
        diff.both("GETDEL", "f")
        diff("SET", "f", start)
        diff("INCRBYFLOAT", "f", increment)
        diff("GET", "f")
        diff("INCRBYFLOAT", "missing", increment)
        diff("GETDEL", "missing")
    diff("INCRBYFLOAT", "f")
    diff("INCRBYFLOAT", "f", "1", "2")


_FLOAT_TEXT = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(0, 25)
    .flatmap(lambda places: st.decimals(allow_nan=False, allow_infinity=False, places=places))
    .map(str),
    st.builds(
        "{}{}.{}e{}".format,
        st.sampled_from(["", "-", "+"]),
        st.integers(0, 10**6),
        st.integers(0, 10**20),
        st.integers(-4960, 4935),
    ),
    st.builds(
        "{}0x{:x}p{}".format,
        st.sampled_from(["", "-"]),
        st.integers(0, 2**70),
        st.integers(-16500, 16400),
    ),
    st.integers(-(2**70), 2**70).map(str),
)


@given(start=_FLOAT_TEXT, increments=st.lists(_FLOAT_TEXT, min_size=1, max_size=3))
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
def test_incrbyfloat_random(diff: Differ, start: str, increments: list[str]) -> None:
    diff.both("GETDEL", "f")
    diff("SET", "f", start)
    for increment in increments:
        diff("INCRBYFLOAT", "f", increment)
    diff("GET", "f")


# --------------------------------------------------------------------------- RESP3


def test_resp3_replies(diff3: Differ) -> None:
    diff3("GET", "k")
    diff3("SET", "k", "v")
    diff3("SET", "k", "w", "NX")
    diff3("SET", "k", "w", "GET")
    diff3("SET", "x", "w", "XX", "GET")
    diff3("SETNX", "k", "v")
    diff3("MGET", "k", "missing")
    diff3("GETEX", "missing")
    diff3("GETEX", "k", "EX", "100")
    diff3("GETDEL", "missing")
    diff3("GETDEL", "k")
    diff3("INCRBYFLOAT", "f", "1.5")
    diff3("INCR", "n")
    diff3("GETRANGE", "missing", "0", "-1")
    diff3("SETRANGE", "missing", "0", "")
    diff3("MSETNX", "a", "1")
    diff3("GETSET", "a", "2")
    diff3("INCRBYFLOAT", "f", "x")


# --------------------------------------------------------------------------- random sequences

_KEYS = st.sampled_from(["a", "b", "c", "w"])
_VALUES = st.sampled_from(["", "0", "1", "-1", "10", "1.5", "abc", LONG_MAX, "x" * 20])
_INTS = st.sampled_from(["0", "1", "-1", "2", "-3", "100", LONG_MAX, LONG_MIN, "x", "1.5"])
_FLOATS = st.sampled_from(["0", "1.5", "-0.1", "1e3", "0.2", "x", "1e4932", "inf"])
_INDEXES = st.sampled_from(["0", "1", "2", "-1", "-2", "5", "-10", "x"])
_SET_OPTIONS = st.lists(
    st.sampled_from(
        [
            ("NX",),
            ("XX",),
            ("GET",),
            ("KEEPTTL",),
            ("EX", "100"),
            ("PX", "200000"),
            ("EXAT", "1"),
            ("PXAT", FAR_PXAT),
            ("EX", "0"),
        ]
    ),
    max_size=3,
).map(lambda tokens: [arg for token in tokens for arg in token])

_COMMANDS = st.one_of(
    st.tuples(st.just("GET"), _KEYS),
    st.tuples(st.just("SET"), _KEYS, _VALUES).map(list),
    st.builds(lambda k, v, opts: ["SET", k, v, *opts], _KEYS, _VALUES, _SET_OPTIONS),
    st.tuples(st.just("SETNX"), _KEYS, _VALUES),
    st.tuples(st.just("SETEX"), _KEYS, st.sampled_from(["100", "0", "x"]), _VALUES),
    st.tuples(st.just("PSETEX"), _KEYS, st.sampled_from(["100000", "-1"]), _VALUES),
    st.tuples(st.just("GETSET"), _KEYS, _VALUES),
    st.tuples(st.just("GETDEL"), _KEYS),
    st.builds(
        lambda k, opts: ["GETEX", k, *opts],
        _KEYS,
        st.sampled_from(
            [[], ["PERSIST"], ["EX", "100"], ["PXAT", "1"], ["EXAT", FAR_EXAT], ["PX", "x"]]
        ),
    ),
    st.builds(lambda ks: ["MGET", *ks], st.lists(_KEYS, min_size=1, max_size=4)),
    st.builds(
        lambda kv: ["MSET", *[x for pair in kv for x in pair]],
        st.lists(st.tuples(_KEYS, _VALUES), min_size=1, max_size=3),
    ),
    st.builds(
        lambda kv: ["MSETNX", *[x for pair in kv for x in pair]],
        st.lists(st.tuples(_KEYS, _VALUES), min_size=1, max_size=3),
    ),
    st.tuples(st.just("APPEND"), _KEYS, _VALUES),
    st.tuples(st.just("STRLEN"), _KEYS),
    st.tuples(st.just("GETRANGE"), _KEYS, _INDEXES, _INDEXES),
    st.tuples(st.just("SETRANGE"), _KEYS, _INDEXES, _VALUES),
    st.tuples(st.sampled_from(["INCR", "DECR"]), _KEYS),
    st.tuples(st.sampled_from(["INCRBY", "DECRBY"]), _KEYS, _INTS),
    st.tuples(st.just("INCRBYFLOAT"), _KEYS, _FLOATS),
)


@given(commands=st.lists(_COMMANDS, min_size=1, max_size=25))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_random_sequences(diff: Differ, commands: list[list[str]]) -> None:
    diff.flush()
    _wrongtype(diff, "w")
    for cmd in commands:
        diff(*cmd)
    diff("MGET", "a", "b", "c", "w")

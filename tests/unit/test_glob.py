"""Glob matching agrees with Redis's stringmatchlen, quirks included.

The fixed cases were checked on redis-server 7.0.15; the hypothesis test asks the
reference server itself (KEYS over a fixed key set) for random patterns.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgserver.glob import compile_glob, glob_match

CASES: list[tuple[bytes, bytes, bool]] = [
    (b"*", b"", True),  # the KEYS/SCAN shortcut
    (b"**", b"", False),  # stringmatchlen never matches an empty string...
    (b"", b"", True),  # ...except with the empty pattern
    (b"", b"a", False),
    (b"?", b"", False),
    (b"*", b"anything", True),
    (b"a*", b"a", True),
    (b"a**", b"a", True),
    (b"*a", b"a", True),
    (b"a*b*c", b"aXbYc", True),
    (b"a*b*c", b"acb", False),
    (b"h?llo", b"hello", True),
    (b"h?llo", b"hllo", False),
    (b"h[ae]llo", b"hallo", True),
    (b"h[ae]llo", b"hillo", False),
    (b"h[^e]llo", b"hallo", True),
    (b"h[^e]llo", b"hello", False),
    (b"h[a-b]llo", b"hbllo", True),
    (b"h[b-a]llo", b"hbllo", True),  # reversed ranges are swapped
    (b"a\\*c", b"a*c", True),
    (b"a\\*c", b"abc", False),
    (b"a[\\]]c", b"a]c", True),
    (b"a\\", b"a\\", True),  # a trailing backslash is literal
    (b"[", b"a", False),  # an unclosed empty class matches nothing
    (b"[^", b"a", True),
    (b"[]", b"a", False),
    (b"[^]", b"a", True),
    (b"a[bc", b"ab", True),  # an unclosed class ends with the pattern
    (b"a[bc", b"abc", False),
    (b"[a-]b", b"b", True),  # "a-]" is a range (] .. a): the class runs on, eating "b"
    (b"[a-]b", b"^", True),
    (b"[a-]b", b"-", False),
    (b"[a-]b", b"]b", False),
    (b"[a-\xff]", b"\x00", True),  # chars are signed: \xff is -1, the range is -1 .. 'a'
    (b"[a-\xff]", b"b", False),
    (b"[a-\xff]", b"\xff", True),
    (b"[a-\xff]", b"\x80", False),
    (b"[\x80-\xff]", b"\x90", True),
    (b"*\xff*", b"a\xffb", True),
    (b"a\nb", b"a\nb", True),
    (b"a?b", b"a\nb", True),
    (b"a*", b"a\n\n", True),
]


@pytest.mark.parametrize(("pattern", "value", "expected"), CASES)
def test_known_cases(pattern: bytes, value: bytes, expected: bool) -> None:
    assert glob_match(pattern, value) is expected


def test_compile_glob_star_matches_everything() -> None:
    assert compile_glob(b"*").match(b"") is not None
    assert compile_glob(b"**").match(b"") is None


def test_nocase() -> None:
    assert glob_match(b"HELLO", b"hello", nocase=True)
    assert glob_match(b"h\\Ello", b"hello", nocase=True)
    assert glob_match(b"h[A-Z]llo", b"hello", nocase=True)
    assert glob_match(b"h[E]llo", b"hello", nocase=True)
    assert not glob_match(b"h[\\E]llo", b"hello", nocase=True)  # escaped class chars: exact
    assert not glob_match(b"[Z-a]", b"b", nocase=True)  # swapped before lowering: empty range
    assert not glob_match(b"HELLO", b"hello")
    assert glob_match(b"maxmemory*", b"MAXMEMORY-policy", nocase=True)


def test_recursion_guard() -> None:
    value = b"a" * 1005
    assert glob_match(b"*a" * 1000, value)
    assert glob_match(b"*a" * 1000 + b"*", value)
    assert not glob_match(b"*a" * 1001, value)
    assert not glob_match(b"*a" * 1001 + b"*", value)


def test_no_catastrophic_backtracking() -> None:
    start = time.perf_counter()
    assert not glob_match(b"*a*a*a*a*a*a*a*a*a*a*a*a*b", b"a" * 20_000)
    assert not glob_match(b"a*" * 200 + b"b", b"a" * 5000)
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------------------- against Redis

ALPHABET = [
    b"a",
    b"b",
    b"A",
    b"-",
    b"]",
    b"[",
    b"\\",
    b"^",
    b"*",
    b"?",
    b"\xff",
    b"\x80",
    b"z",
    b"\x00",
    b"\n",
]
KEYS = sorted(
    {b""}
    | {a for a in ALPHABET}
    | {a + b for a in ALPHABET[:8] for b in ALPHABET[:8]}
    | {b"ab" + a + b"z" for a in ALPHABET}
    | {b"a-z", b"hello", b"\xffa", b"a\\b", b"a]b", b"aaa", b"abab"}
)


@pytest.fixture(scope="module")
def reference(redis_port: int) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_port)
    client.flushall()
    with client.pipeline(transaction=False) as pipe:
        for key in KEYS:
            pipe.set(key, b"1")
        pipe.execute()
    yield client
    client.flushall()
    client.close()


def test_fixed_cases_agree_with_redis(reference: redis.Redis) -> None:
    for pattern, _value, _expected in CASES:
        expected = set(reference.keys(pattern))
        assert {k for k in KEYS if glob_match(pattern, k)} == expected, pattern


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(ALPHABET), max_size=7).map(b"".join))
def test_random_patterns_agree_with_redis(reference: redis.Redis, pattern: bytes) -> None:
    expected = set(reference.keys(pattern))
    assert {k for k in KEYS if glob_match(pattern, k)} == expected

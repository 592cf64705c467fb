"""Deterministic replay of hash and set writes, and the long double arithmetic of HINCRBYFLOAT."""

from __future__ import annotations

import random

import pytest

from pgserver.commands.hashes import format_long_double, ld_add, parse_long_double
from tests.unit.conftest import Session


def test_hincrbyfloat_is_logged_as_hset_of_the_result(session: Session) -> None:
    assert session("HINCRBYFLOAT", "h", "f", "10.5") == b"$4\r\n10.5\r\n"
    assert session("HINCRBYFLOAT", "h", "f", "0.1") == b"$4\r\n10.6\r\n"
    assert session("HINCRBYFLOAT", "h", "g", "3e3") == b"$4\r\n3000\r\n"
    assert session.server.logged == [
        [b"HSET", b"h", b"f", b"10.5"],
        [b"HSET", b"h", b"f", b"10.6"],
        [b"HSET", b"h", b"g", b"3000"],
    ]
    session.assert_replay_matches()


def test_failed_hincrbyfloat_logs_nothing(session: Session) -> None:
    session("HSET", "h", "s", "abc")
    assert session("HINCRBYFLOAT", "h", "s", "1").startswith(b"-ERR hash value is not a float")
    assert session("HINCRBYFLOAT", "h", "s", "inf").startswith(b"-ERR value is NaN")
    assert session("HINCRBYFLOAT", "h", "s", "x").startswith(b"-ERR value is not a valid float")
    assert session.server.logged == [[b"HSET", b"h", b"s", b"abc"]]


def test_spop_is_logged_as_srem_of_what_it_popped(session: Session) -> None:
    session("SADD", "s", "a", "b", "c", "d", "e")
    session("SPOP", "s")
    session("SPOP", "s", "2")
    session("SPOP", "s", "0")
    session("SPOP", "nokey")
    session("SPOP", "nokey", "3")
    logged = session.server.logged[1:]
    assert [cmd[:2] for cmd in logged] == [[b"SREM", b"s"], [b"SREM", b"s"]]
    assert len(logged[0]) == 3
    assert len(logged[1]) == 4
    remaining = session.server.keyspace.data[b"s"]
    assert isinstance(remaining, set)
    assert remaining.isdisjoint(logged[0][2:] + logged[1][2:])
    session.assert_replay_matches()
    session("SPOP", "s", "100")
    assert b"s" not in session.server.keyspace.data
    session.assert_replay_matches()


def test_spop_of_last_member_deletes_on_replay(session: Session) -> None:
    session("SADD", "s", "only")
    session("SPOP", "s")
    assert session.server.logged[-1] == [b"SREM", b"s", b"only"]
    session.assert_replay_matches()


def test_ttls_survive_replay(session: Session) -> None:
    when = session.server.keyspace.now + 100_000
    session("HSET", "h", "f", "1")
    session("SADD", "s", "a", "b")
    session("SADD", "d", "x")
    for key in ("h", "s", "d"):
        session("PEXPIREAT", key, when)
    session("HINCRBYFLOAT", "h", "f", "1.5")
    session("SPOP", "s")
    session("SINTERSTORE", "d", "s", "s")
    assert session.server.keyspace.get_expire(b"h") == when
    assert session.server.keyspace.get_expire(b"d") is None
    session.assert_replay_matches()


_MEMBERS = ["a", "b", "c", "1", "2", "10"]
_KEYS = ["k1", "k2", "k3"]


def _random_command(rng: random.Random) -> list[str]:
    key = rng.choice(_KEYS)
    other = rng.choice(_KEYS)
    member = rng.choice(_MEMBERS)
    some = rng.sample(_MEMBERS, rng.randint(1, 3))
    return rng.choice(
        [
            ["SADD", key, *some],
            ["SREM", key, *some],
            ["SPOP", key],
            ["SPOP", key, str(rng.randint(0, 4))],
            ["SMOVE", key, other, member],
            ["SINTERSTORE", key, other, rng.choice(_KEYS)],
            ["SUNIONSTORE", key, other, rng.choice(_KEYS)],
            ["SDIFFSTORE", key, other, rng.choice(_KEYS)],
            ["HSET", key, member, str(rng.randint(-5, 5))],
            ["HMSET", key, member, "v"],
            ["HSETNX", key, member, "nx"],
            ["HDEL", key, *some],
            ["HINCRBY", key, member, str(rng.randint(-3, 3))],
            ["HINCRBYFLOAT", key, member, rng.choice(["0.1", "-1.5", "2e-3", "1e20", "x"])],
        ]
    )


@pytest.mark.parametrize("seed", range(5))
def test_random_writes_replay(session: Session, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        session(*_random_command(rng))
    session.assert_replay_matches()


@pytest.mark.parametrize(
    ("old", "incr", "expected"),
    [
        (None, b"10.5", b"10.5"),
        (b"10.5", b"0.1", b"10.6"),
        (b"1.1", b"2.2", b"3.3"),
        (None, b"3e3", b"3000"),
        (None, b"0x1p3", b"8"),
        (None, b"0.000003814697265625", b"0.00000381469726562"),  # ties to even
        (None, b"-0.0000000000000000001", b"0"),
        (None, b"1e30", b"1000000000000000000024696061952"),
        (None, b"1e-4940", b"0"),
        (b"5e4931", b"5e4931", None),
    ],
)
def test_long_double(old: bytes | None, incr: bytes, expected: bytes | None) -> None:
    value = parse_long_double(incr)
    assert value is not None
    if old is not None:
        base = parse_long_double(old)
        assert base is not None
        value = ld_add(base, value)
    if expected is None:
        assert value is not None
        assert format_long_double(value).startswith(b"10000000000000000000060189")
    else:
        assert value is not None
        assert format_long_double(value) == expected


@pytest.mark.parametrize(
    "raw",
    [b"", b"nan", b" 1", b"1 ", b"1e", b"0x", b".", b"1e5000", b"1e-5000", b"1\x00", b"1" * 5120],
)
def test_long_double_rejects(raw: bytes) -> None:
    assert parse_long_double(raw) is None


@pytest.mark.parametrize(
    "command",
    [
        ("SRANDMEMBER", "s", "-10000000001"),
        ("HRANDFIELD", "h", "-10000000001"),
        ("HRANDFIELD", "h", "-10000000001", "WITHVALUES"),
        ("ZRANDMEMBER", "z", "-10000000001"),
        ("ZRANDMEMBER", "z", "-10000000001", "WITHSCORES"),
    ],
)
def test_a_huge_negative_count_is_refused_not_built(
    session: Session, command: tuple[str, ...]
) -> None:
    """Ten billion picks would take the machine's memory before a reply went out."""
    session("SADD", "s", "a")
    session("HSET", "h", "f", "v")
    session("ZADD", "z", "1", "m")
    reply = session(*command)
    assert reply.startswith(b"-ERR value is out of range, a negative count may ask for at most")
    assert session("SRANDMEMBER", "s", "-3") == b"*3\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n"
    assert session(command[0], "missing", "-10000000001") == b"*0\r\n"  # as Redis: empty

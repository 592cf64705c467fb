"""Hash commands compared with redis-server."""

from __future__ import annotations

import socket

import hiredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.resp import encode_command
from tests.differ import Differ


def raw_resp3(port: int, *commands: tuple[str, ...]) -> list[bytes]:
    """Each command's reply exactly as sent over RESP3 (redis-py hides '~' vs '*')."""
    replies: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for args in (("HELLO", "3"), *commands):
            sock.sendall(encode_command([a.encode() for a in args]))
            reader = hiredis.Reader(notEnoughData=False)
            data = b""
            while True:
                chunk = sock.recv(65536)
                assert chunk, "connection closed"
                data += chunk
                reader.feed(chunk)
                if reader.gets() is not False:
                    break
            replies.append(data)
    return replies[1:]


def raw_diff3(redis_port: int, pgserver_port: int, *commands: tuple[str, ...]) -> None:
    """Identical RESP3 bytes for each command (sequenced on one connection per server)."""
    expected = raw_resp3(redis_port, *commands)
    got = raw_resp3(pgserver_port, *commands)
    for cmd, want, have in zip(commands, expected, got, strict=True):
        assert have == want, f"{cmd!r}: redis sent {want!r}, tessera sent {have!r}"


def raw_kind3(port: int, *commands: tuple[str, ...]) -> list[bytes]:
    """The first line (type byte and length) of each RESP3 reply."""
    return [reply.split(b"\r\n", 1)[0] for reply in raw_resp3(port, *commands)]


def test_hset_hget_hmset_hsetnx(diff: Differ) -> None:
    diff("HSET", "h", "a", "1")
    diff("HSET", "h", "a", "2", "b", "3", "a", "4")
    diff("HSET", "h", "c", "")
    diff("HGET", "h", "a")
    diff("HGET", "h", "c")
    diff("HGET", "h", "nosuch")
    diff("HGET", "nokey", "a")
    diff("HMSET", "h", "d", "5", "e", "6")
    diff("HMSET", "h2", "x", "y")
    diff("HSETNX", "h", "a", "new")
    diff("HSETNX", "h", "z", "new")
    diff("HSETNX", "h3", "f", "v")
    diff("HGETALL", "h")
    diff("HGETALL", "h3")
    for bad in (
        ("HSET", "h"),
        ("HSET", "h", "a"),
        ("HSET", "h", "a", "b", "c"),
        ("HMSET", "h", "a"),
        ("HMSET", "h", "a", "b", "c"),
        ("HSETNX", "h", "a"),
        ("HGET", "h"),
        ("HMGET", "h"),
    ):
        diff(*bad)


def test_wrongtype(diff: Differ) -> None:
    diff("SADD", "s", "m")
    for cmd in (
        ("HSET", "s", "a", "b"),
        ("HSET", "s", "a", "b", "c"),
        ("HMSET", "s", "a", "b"),
        ("HSETNX", "s", "a", "b"),
        ("HGET", "s", "a"),
        ("HMGET", "s", "a", "b"),
        ("HDEL", "s", "a"),
        ("HEXISTS", "s", "a"),
        ("HLEN", "s"),
        ("HGETALL", "s"),
        ("HKEYS", "s"),
        ("HVALS", "s"),
        ("HINCRBY", "s", "a", "1"),
        ("HINCRBY", "s", "a", "x"),
        ("HINCRBYFLOAT", "s", "a", "1"),
        ("HINCRBYFLOAT", "s", "a", "x"),
        ("HSTRLEN", "s", "a"),
        ("HSCAN", "s", "0"),
        ("HSCAN", "s", "0", "BAD"),
        ("HSCAN", "s", "x"),
        ("HRANDFIELD", "s"),
        ("HRANDFIELD", "s", "1"),
        ("HRANDFIELD", "s", "x"),
        ("HRANDFIELD", "s", "1", "BAD"),
    ):
        diff(*cmd)
    diff("SMEMBERS", "s")


def test_other_families(diff: Differ) -> None:
    """String keys are WRONGTYPE too; hash writes keep the TTL; an emptied hash is gone."""
    diff("SET", "str", "v")
    diff("HSET", "str", "a", "1")
    diff("HGETALL", "str")
    diff("HSET", "h", "f", "1", "g", "2")
    diff("EXPIRE", "h", "100")
    diff("HINCRBYFLOAT", "h", "f", "1.5")
    diff("HINCRBY", "h", "g", "1")
    diff("HSET", "h", "x", "y")
    diff("HDEL", "h", "x")
    diff("TTL", "h")
    diff("TYPE", "h")
    diff("HDEL", "h", "f", "g")
    diff("EXISTS", "h")
    diff("TYPE", "h")


def test_hdel_hlen_hexists_hstrlen_hmget(diff: Differ) -> None:
    diff("HSET", "h", "a", "1", "b", "hello", "c", "-12345", "n", "007")
    diff("HLEN", "h")
    diff("HLEN", "nokey")
    diff("HEXISTS", "h", "a")
    diff("HEXISTS", "h", "zz")
    diff("HEXISTS", "nokey", "a")
    for field in ("a", "b", "c", "n", "zz"):
        diff("HSTRLEN", "h", field)
    diff("HSTRLEN", "nokey", "a")
    diff("HMGET", "h", "a", "zz", "b", "a")
    diff("HMGET", "nokey", "a", "b")
    diff("HDEL", "h", "a", "zz", "a")
    diff("HDEL", "nokey", "a")
    diff("HGETALL", "h")
    diff("HDEL", "h", "b", "c", "n")
    diff("HLEN", "h")
    diff("HGETALL", "h")
    diff("HSET", "h", "a", "1")
    diff("HGETALL", "h")


def test_order_follows_insertion(diff: Differ) -> None:
    diff("HSET", "h", "z", "1", "a", "2", "m", "3", "b", "4")
    diff("HSET", "h", "a", "changed")
    diff("HDEL", "h", "m")
    diff("HSET", "h", "m", "back")
    diff("HINCRBY", "h", "z", "5")
    diff("HINCRBYFLOAT", "h", "b", "0.5")
    diff("HGETALL", "h")
    diff("HKEYS", "h")
    diff("HVALS", "h")
    diff("HKEYS", "nokey")
    diff("HVALS", "nokey")
    diff("HGETALL", "nokey")


def test_big_hash_unordered(diff: Differ) -> None:
    args: list[object] = []
    for i in range(300):
        args += [f"f{i}", "v" * (i % 70)]
    diff("HSET", "big", *args)
    diff("HLEN", "big")
    diff("HGETALL", "big", unordered=True)
    diff("HKEYS", "big", unordered=True)
    diff("HSCAN", "big", "0", "COUNT", "1000", "MATCH", "f1*", unordered=True)


def test_hincrby(diff: Differ) -> None:
    diff("HINCRBY", "h", "a", "5")
    diff("HINCRBY", "h", "a", "-12")
    diff("HINCRBY", "h", "a", "0")
    for bad in ("1.5", "x", "", " 1", "+1", "01", "-0", "9223372036854775808"):
        diff("HINCRBY", "h", "a", bad)
    diff(
        "HSET",
        "h",
        "s",
        "abc",
        "f",
        "1.5",
        "sp",
        " 1",
        "big",
        "9223372036854775807",
        "small",
        "-9223372036854775808",
        "lead",
        "01",
        "empty",
        "",
    )
    for field in ("s", "f", "sp", "lead", "empty"):
        diff("HINCRBY", "h", field, "1")
    diff("HINCRBY", "h", "big", "1")
    diff("HINCRBY", "h", "big", "-1")
    diff("HINCRBY", "h", "small", "-1")
    diff("HINCRBY", "h", "small", "9223372036854775807")
    diff("HINCRBY", "h2", "x", "-9223372036854775808")
    diff("HINCRBY", "nokey", "x", "bad")
    diff("HGETALL", "h")
    diff("HGETALL", "h2")
    diff("HGETALL", "nokey")


def test_hincrbyfloat(diff: Differ) -> None:
    for incr in (
        "10.5",
        "0.1",
        "0.2",
        "-3",
        "3e3",
        "1e-3",
        "0x1p3",
        "5.",
        ".5",
        "+.5e+2",
        "-0",
        "0.000003814697265625",
        "1.5e300",
        "-1.5e300",
        "1e400",
        "-1e400",
    ):
        diff("HINCRBYFLOAT", "h", "x", incr)
        diff("HGET", "h", "x")
    for incr in (
        "inf",
        "-inf",
        "Infinity",
        "nan",
        "",
        " 1",
        "1 ",
        "1e",
        "0x",
        ".",
        "abc",
        "1e5000",
        "1e-5000",
        "1" * 5200,
    ):
        diff("HINCRBYFLOAT", "h", "y", incr)
    diff("HEXISTS", "h", "y")
    diff(
        "HSET",
        "h",
        "s",
        "abc",
        "inf",
        "inf",
        "ninf",
        "-inf",
        "int",
        "17",
        "big",
        "1.1e4932",
        "sp",
        " 2",
        "e",
        "",
    )
    for field in ("s", "inf", "ninf", "int", "sp", "e"):
        diff("HINCRBYFLOAT", "h", field, "1.25")
    diff("HINCRBYFLOAT", "h", "big", "1e4932")
    diff("HINCRBYFLOAT", "h", "big", "-1e4932")
    diff("HINCRBYFLOAT", "h", "int", "0.1")
    diff("HINCRBYFLOAT", "h", "tiny", "1e-4940")
    diff("HINCRBYFLOAT", "h", "neg", "-0.0000000000000000001")
    diff("HINCRBYFLOAT", "h", "i", "1")
    diff("HINCRBY", "h", "i", "1")
    # Values over 64 bytes turned the hash into a hash table: Redis's order is arbitrary.
    diff("HGETALL", "h", unordered=True)


def test_hscan(diff: Differ) -> None:
    diff("HSET", "h", "a1", "1", "a2", "2", "b1", "3", "", "empty", "A1", "4")
    diff("HSCAN", "h", "0")
    for cursor in (
        "",
        "5",
        "+7",
        "-1",
        "00012",
        "18446744073709551615",
        "18446744073709551616",
        "-18446744073709551615",
        " 1",
        "1 ",
        "x",
        "+",
        "-",
        "0x1",
        "1.0",
    ):
        diff("HSCAN", "h", cursor)
        diff("HSCAN", "nokey", cursor)
    diff("HSCAN", "h", "0", "MATCH", "a*")
    diff("HSCAN", "h", "0", "match", "*1")
    diff("HSCAN", "h", "0", "MATCH", "*")
    diff("HSCAN", "h", "0", "MATCH", "?1")
    diff("HSCAN", "h", "0", "MATCH", "[ab]1", "COUNT", "1")
    diff("HSCAN", "h", "0", "MATCH", "a*", "MATCH", "b*")
    diff("HSCAN", "h", "0", "COUNT", "1")
    diff("HSCAN", "h", "0", "count", "100")
    for bad in (
        ("COUNT", "0"),
        ("COUNT", "-1"),
        ("COUNT", "x"),
        ("COUNT",),
        ("MATCH",),
        ("NOVALUES",),
        ("TYPE", "hash"),
        ("COUNT", "1", "BAD"),
        ("BAD", "1"),
        ("COUNT", "x", "BAD"),
    ):
        diff("HSCAN", "h", "0", *bad)
        diff("HSCAN", "nokey", "0", *bad)


def test_hrandfield_deterministic(diff: Differ) -> None:
    diff("HRANDFIELD", "nokey")
    diff("HRANDFIELD", "nokey", "3")
    diff("HRANDFIELD", "nokey", "-3", "WITHVALUES")
    diff("HSET", "h", "a", "1", "b", "2", "c", "3")
    diff("HRANDFIELD", "h", "0")
    diff("HRANDFIELD", "h", "0", "WITHVALUES")
    diff("HRANDFIELD", "h", "3")
    diff("HRANDFIELD", "h", "10", "withvalues")
    diff("HRANDFIELD", "h", "9223372036854775807")
    diff("HRANDFIELD", "h", "4611686018427387903", "WITHVALUES")
    for bad in (
        ("x",),
        ("1.5",),
        ("-9223372036854775808",),
        ("9223372036854775808",),
        ("1", "BAD"),
        ("1", "WITHVALUES", "x"),
        ("4611686018427387904", "WITHVALUES"),
        ("-4611686018427387904", "WITHVALUES"),
        ("x", "BAD"),
    ):
        diff("HRANDFIELD", "h", *bad)
        diff("HRANDFIELD", "nokey", *bad)


def test_hrandfield_random(diff: Differ) -> None:
    fields = {b"a": b"1", b"b": b"2", b"c": b"3", b"d": b"4"}
    diff("HSET", "h", *[x for pair in fields.items() for x in pair])
    for args, withvalues in (
        (("1",), False),
        (("2",), False),
        (("-10",), False),
        (("1", "WITHVALUES"), True),
        (("3", "WITHVALUES"), True),
        (("-10", "WITHVALUES"), True),
    ):
        count = int(args[0])
        for outcome in diff.both("HRANDFIELD", "h", *args):
            kind, reply = outcome
            assert kind == "ok"
            assert isinstance(reply, list)
            if withvalues:
                pairs = list(zip(reply[::2], reply[1::2], strict=True))
                assert all(fields[f] == v for f, v in pairs)
                picked = [f for f, _ in pairs]
            else:
                picked = reply
            assert len(picked) == abs(count)
            assert set(picked) <= set(fields)
            if count > 0:
                assert len(set(picked)) == len(picked)
    for outcome in diff.both("HRANDFIELD", "h"):
        assert outcome[0] == "ok"
        assert outcome[1] in fields


def test_resp3_raw(diff: Differ, redis_port: int, pgserver_port: int) -> None:
    diff("HSET", "h", "a", "1", "b", "2")
    raw_diff3(
        redis_port,
        pgserver_port,
        ("HGETALL", "h"),
        ("HGETALL", "nokey"),
        ("HKEYS", "nokey"),
        ("HMGET", "h", "a", "zz"),
        ("HGET", "h", "zz"),
        ("HSCAN", "h", "0"),
        ("HSCAN", "nokey", "0"),
        ("HRANDFIELD", "nokey"),
        ("HRANDFIELD", "nokey", "2"),
        ("HRANDFIELD", "h", "5", "WITHVALUES"),
        ("HRANDFIELD", "h", "0", "WITHVALUES"),
        ("HINCRBYFLOAT", "h", "a", "1.5"),
        ("HMSET", "h", "c", "3"),
    )
    random_cmds = (
        ("HRANDFIELD", "h", "-3", "WITHVALUES"),
        ("HRANDFIELD", "h", "1"),
        ("HRANDFIELD", "h", "2", "WITHVALUES"),
        ("HRANDFIELD", "h"),
    )
    assert raw_kind3(pgserver_port, *random_cmds) == raw_kind3(redis_port, *random_cmds)


def test_resp3_shapes(diff3: Differ) -> None:
    diff3("HSET", "h", "a", "1", "b", "2")
    diff3("HGETALL", "h")
    diff3("HGETALL", "nokey")
    diff3("HKEYS", "h")
    diff3("HVALS", "nokey")
    diff3("HMGET", "h", "a", "zz")
    diff3("HGET", "h", "zz")
    diff3("HSCAN", "h", "0")
    diff3("HSCAN", "nokey", "0")
    diff3("HRANDFIELD", "nokey")
    diff3("HRANDFIELD", "nokey", "2")
    diff3("HRANDFIELD", "h", "5")
    diff3("HRANDFIELD", "h", "5", "WITHVALUES")
    diff3("HRANDFIELD", "h", "0", "WITHVALUES")
    diff3("HINCRBYFLOAT", "h", "a", "1.5")
    diff3("HINCRBY", "h", "b", "2")
    diff3("HMSET", "h", "c", "3")
    for outcome in diff3.both("HRANDFIELD", "h", "-3", "WITHVALUES"):
        kind, reply = outcome
        assert kind == "ok"
        assert isinstance(reply, list)
        assert len(reply) == 3
        assert all(isinstance(pair, list) and len(pair) == 2 for pair in reply)


# --------------------------------------------------------------------------- random sequences

_KEYS = st.sampled_from(["h1", "h2", "h3", "s"])
_FIELDS = st.sampled_from(["a", "b", "c", "1", "10", ""])
_VALUES = st.sampled_from(["x", "1", "-3", "2.5", "10", "", "9223372036854775807", "1e3", " 1"])
_INTS = st.sampled_from(["1", "-1", "100", "0", "9223372036854775807", "x", "1.5"])
_FLOATS = st.sampled_from(["1.5", "-0.25", "1e3", "0.1", "3", "x", "inf", "-7"])
_PATTERNS = st.sampled_from(["*", "a*", "?", "[ab]", "1*"])


def _pairs(draw: st.DrawFn) -> list[str]:
    out: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        out += [draw(_FIELDS), draw(_VALUES)]
    return out


@st.composite
def _command(draw: st.DrawFn) -> tuple[str, ...]:
    key = draw(_KEYS)
    kind = draw(st.integers(0, 17))
    fields = draw(st.lists(_FIELDS, min_size=1, max_size=3))
    if kind == 0:
        return ("HSET", key, *_pairs(draw))
    if kind == 1:
        return ("HMSET", key, *_pairs(draw))
    if kind == 2:
        return ("HSETNX", key, fields[0], draw(_VALUES))
    if kind == 3:
        return ("HGET", key, fields[0])
    if kind == 4:
        return ("HMGET", key, *fields)
    if kind == 5:
        return ("HDEL", key, *fields)
    if kind == 6:
        return ("HEXISTS", key, fields[0])
    if kind == 7:
        return ("HLEN", key)
    if kind == 8:
        return ("HGETALL", key)
    if kind == 9:
        return (draw(st.sampled_from(["HKEYS", "HVALS"])), key)
    if kind == 10:
        return ("HINCRBY", key, fields[0], draw(_INTS))
    if kind == 11:
        return ("HINCRBYFLOAT", key, fields[0], draw(_FLOATS))
    if kind == 12:
        return ("HSTRLEN", key, fields[0])
    if kind == 13:
        return ("HSCAN", key, "0", "MATCH", draw(_PATTERNS), "COUNT", "1")
    if kind == 14:
        extra = ("WITHVALUES",) if draw(st.booleans()) else ()
        return ("HRANDFIELD", key, "100", *extra)
    if kind == 15:
        return ("SADD", key, "m")
    if kind == 16:
        return ("HSCAN", key, draw(st.sampled_from(["0", "x", "7"])))
    return ("HRANDFIELD", key, draw(st.sampled_from(["0", "x", "-0"])))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_command(), min_size=1, max_size=25))
def test_random_sequences(diff: Differ, commands: list[tuple[str, ...]]) -> None:
    diff.flush()
    diff("SADD", "s", "x")
    for cmd in commands:
        diff(*cmd)
    for key in ("h1", "h2", "h3", "s"):
        diff("HGETALL", key)

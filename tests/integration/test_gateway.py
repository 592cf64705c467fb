"""The gateway as a real process in front of two real pgservers, driven by real clients.

Partitions 0-4095 live on the first pgserver, 4096-8191 on the second; every test uses keys
on both. Replies are compared with a real redis-server where Redis defines the answer.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tessera.partition import pn
from tessera.resp import encode_command
from tests.differ import Differ, call, raw_client
from tests.gateway_fixtures import (
    Cluster,
    cluster,
    connect,
    gw,
    keys_in,
    owner_index,
    recv_exactly,
    recv_until_closed,
    running_cluster,
)

__all__ = ["cluster", "gw"]  # fixtures used by this module

LOW = keys_in(0, 4095, 2, "low:")  # owned by backend 0
HIGH = keys_in(4096, 8191, 2, "high:")  # owned by backend 1
BOTH = [LOW[0], HIGH[0], LOW[1], HIGH[1]]
TAGS = [f"{{{LOW[0]}}}", f"{{{HIGH[0]}}}"]  # hash tags for partitions on backend 0 and 1


def test_test_keys_land_on_both_backends() -> None:
    assert [owner_index(k) for k in BOTH] == [0, 1, 0, 1]


# ---------------------------------------------------------------------- command families

Script = list[tuple[tuple[object, ...], bool]]  # (command with {k} placeholders, unordered)


def _(*args: object, unordered: bool = False) -> tuple[tuple[object, ...], bool]:
    return args, unordered


FAMILIES: dict[str, Script] = {
    "strings": [
        _("SET", "{k}", "v1"),
        _("GET", "{k}"),
        _("SET", "{k}", "v2", "GET"),
        _("SET", "{k}", "x", "NX"),
        _("SETNX", "{k}", "y"),
        _("APPEND", "{k}", "-tail"),
        _("STRLEN", "{k}"),
        _("GETRANGE", "{k}", "1", "3"),
        _("SETRANGE", "{k}", "1", "ZZ"),
        _("GETSET", "{k}", "10"),
        _("INCR", "{k}"),
        _("INCRBY", "{k}", "5"),
        _("DECR", "{k}"),
        _("DECRBY", "{k}", "3"),
        _("INCRBYFLOAT", "{k}", "1.5"),
        _("GET", "{k}"),
        _("GETDEL", "{k}"),
        _("GET", "{k}"),
        _("SETEX", "{k}", "100", "e"),
        _("GETEX", "{k}", "PERSIST"),
        _("TTL", "{k}"),
        _("HSET", "{k}", "f", "v"),  # WRONGTYPE
        _("SET", "{k}"),  # arity
    ],
    "hashes": [
        _("HSET", "{k}", "a", "1", "b", "2", "c", "3"),
        _("HGET", "{k}", "a"),
        _("HMGET", "{k}", "a", "nope", "c"),
        _("HGETALL", "{k}", unordered=True),
        _("HSETNX", "{k}", "a", "x"),
        _("HINCRBY", "{k}", "b", "40"),
        _("HINCRBYFLOAT", "{k}", "c", "0.25"),
        _("HEXISTS", "{k}", "b"),
        _("HSTRLEN", "{k}", "c"),
        _("HLEN", "{k}"),
        _("HKEYS", "{k}", unordered=True),
        _("HVALS", "{k}", unordered=True),
        _("HDEL", "{k}", "a", "nope"),
        _("HMSET", "{k}", "d", "4"),
        _("HGETALL", "{k}", unordered=True),
        _("GET", "{k}"),  # WRONGTYPE
    ],
    "lists": [
        _("RPUSH", "{k}", "a", "b", "c", "d"),
        _("LPUSH", "{k}", "z"),
        _("LRANGE", "{k}", "0", "-1"),
        _("LLEN", "{k}"),
        _("LINDEX", "{k}", "2"),
        _("LINSERT", "{k}", "BEFORE", "c", "bb"),
        _("LPOS", "{k}", "c"),
        _("LSET", "{k}", "0", "zz"),
        _("RPUSH", "{k}", "a"),
        _("LREM", "{k}", "0", "a"),
        _("LPOP", "{k}"),
        _("RPOP", "{k}", "2"),
        _("LPUSHX", "{k}", "p"),
        _("RPUSHX", "{k}", "q"),
        _("LTRIM", "{k}", "0", "1"),
        _("LRANGE", "{k}", "0", "-1"),
        _("LSET", "{k}", "9", "x"),  # index out of range
    ],
    "sets": [
        _("SADD", "{k}", "a", "b", "c", "a"),
        _("SMEMBERS", "{k}", unordered=True),
        _("SCARD", "{k}"),
        _("SISMEMBER", "{k}", "b"),
        _("SMISMEMBER", "{k}", "a", "x"),
        _("SREM", "{k}", "a", "x"),
        _("SPOP", "{k}", "0"),
        _("SRANDMEMBER", "{k}", "0"),
        _("SMEMBERS", "{k}", unordered=True),
        _("LPUSH", "{k}", "x"),  # WRONGTYPE
    ],
    "sorted sets": [
        _("ZADD", "{k}", "1", "a", "2", "b", "3", "c", "2.5", "d"),
        _("ZRANGE", "{k}", "0", "-1", "WITHSCORES"),
        _("ZREVRANGE", "{k}", "0", "1"),
        _("ZRANGEBYSCORE", "{k}", "(1", "3", "WITHSCORES"),
        _("ZREVRANGEBYSCORE", "{k}", "+inf", "-inf", "LIMIT", "1", "2"),
        _("ZRANGEBYLEX", "{k}", "-", "+"),
        _("ZSCORE", "{k}", "d"),
        _("ZMSCORE", "{k}", "a", "nope"),
        _("ZINCRBY", "{k}", "10", "a"),
        _("ZRANK", "{k}", "a"),
        _("ZREVRANK", "{k}", "a"),
        _("ZCOUNT", "{k}", "2", "3"),
        _("ZLEXCOUNT", "{k}", "-", "+"),
        _("ZCARD", "{k}"),
        _("ZPOPMIN", "{k}"),
        _("ZPOPMAX", "{k}", "2"),
        _("ZREM", "{k}", "d", "nope"),
        _("ZADD", "{k}", "XX", "CH", "5", "b", "7", "new"),
        _("ZREMRANGEBYRANK", "{k}", "0", "0"),
        _("ZRANGE", "{k}", "0", "-1", "WITHSCORES"),
        _("ZADD", "{k}", "nan", "a"),  # not a float
    ],
    "keys and ttl": [
        _("SET", "{k}", "v"),
        _("EXISTS", "{k}"),
        _("TYPE", "{k}"),
        _("TTL", "{k}"),
        _("EXPIREAT", "{k}", "4000000000"),
        _("EXPIRETIME", "{k}"),
        _("PEXPIREAT", "{k}", "4000000000123"),
        _("PEXPIRETIME", "{k}"),
        _("PERSIST", "{k}"),
        _("TTL", "{k}"),
        _("PEXPIRE", "{k}", "100000"),
        _("PERSIST", "{k}"),
        _("EXPIRE", "{k}", "100", "XX"),
        _("EXPIRE", "{k}", "-1"),  # deletes the key
        _("EXISTS", "{k}"),
        _("TTL", "{k}"),
        _("PTTL", "{k}"),
        _("TYPE", "{k}"),
        _("DEL", "{k}"),
    ],
}


@pytest.fixture
def reference(redis_port: int) -> int:
    with redis.Redis(port=redis_port) as client:
        client.flushall()
    return redis_port


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_command_family_matches_redis(
    cluster: Cluster, gw: redis.Redis, reference: int, family: str, protocol: int
) -> None:
    diff = Differ(raw_client(reference, protocol), raw_client(cluster.gateway.port, protocol))
    try:
        for key in BOTH:
            for args, unordered in FAMILIES[family]:
                diff(*(key if a == "{k}" else a for a in args), unordered=unordered)
    finally:
        diff.reference.close()
        diff.tessera.close()


def test_relative_ttls(gw: redis.Redis) -> None:
    for key in BOTH:
        assert gw.set(key, "v", ex=100)
        assert 99 <= gw.ttl(key) <= 100
        assert 99_000 <= gw.pttl(key) <= 100_000
        assert gw.expire(key, 50)
        assert 49 <= gw.ttl(key) <= 50
        assert gw.set(key, "v", px=50)
    time.sleep(0.1)
    assert gw.mget(BOTH) == [None] * 4


def test_hash_tags_and_multi_key_commands_on_one_partition(
    cluster: Cluster, gw: redis.Redis, reference: int
) -> None:
    """Multi-key commands whose keys share a {tag} work, on either backend."""
    diff = Differ(raw_client(reference), raw_client(cluster.gateway.port))
    try:
        for tag in TAGS:
            a, b, c = f"{tag}a", f"{tag}b", f"{tag}c"
            for args in [
                ("SADD", a, "1", "2", "3"),
                ("SADD", b, "2", "3", "4"),
                ("SINTER", a, b),
                ("SUNIONSTORE", c, a, b),
                ("SDIFFSTORE", c, a, b),
                ("SINTERCARD", "2", a, b),
                ("SMOVE", a, b, "1"),
                ("SMEMBERS", b),
                ("DEL", a, b, c),
                ("RPUSH", a, "x", "y"),
                ("LMOVE", a, b, "LEFT", "RIGHT"),
                ("RPOPLPUSH", a, b),
                ("LRANGE", b, "0", "-1"),
                ("RENAME", b, c),
                ("RENAMENX", c, a),
                ("MSETNX", f"{tag}m1", "1", f"{tag}m2", "2"),
                ("ZADD", f"{tag}z1", "1", "a", "2", "b"),
                ("ZADD", f"{tag}z2", "5", "b"),
                ("ZUNIONSTORE", f"{tag}zu", "2", f"{tag}z1", f"{tag}z2", "WEIGHTS", "1", "2"),
                ("ZINTERSTORE", f"{tag}zi", "2", f"{tag}z1", f"{tag}z2"),
                ("ZRANGE", f"{tag}zu", "0", "-1", "WITHSCORES"),
                ("ZRANGE", f"{tag}zi", "0", "-1", "WITHSCORES"),
            ]:
                diff(*args, unordered=args[0] in ("SINTER", "SMEMBERS"))
    finally:
        diff.reference.close()
        diff.tessera.close()
    for index, tag in enumerate(TAGS):
        with (
            cluster.backends[index].client() as owner,
            cluster.backends[1 - index].client() as other,
        ):
            assert owner.lrange(f"{tag}a", 0, -1) == [b"y", b"x"]
            assert owner.exists(f"{tag}m1", f"{tag}m2", f"{tag}zu", f"{tag}zi") == 4
            assert other.exists(f"{tag}a", f"{tag}m1", f"{tag}zu") == 0


# ---------------------------------------------------------------------- placement


def test_each_key_is_stored_on_the_backend_owning_its_partition(
    cluster: Cluster, gw: redis.Redis
) -> None:
    keys = keys_in(0, 8191, 60, "placed:")
    assert {owner_index(k) for k in keys} == {0, 1}
    for i, key in enumerate(keys):
        assert gw.set(key, f"value-{i}")
    clients = [backend.client() for backend in cluster.backends]
    try:
        for i, key in enumerate(keys):
            owner = owner_index(key)
            assert clients[owner].get(key) == f"value-{i}".encode(), (key, pn(key.encode()))
            assert clients[1 - owner].get(key) is None, (key, pn(key.encode()))
        assert sum(c.dbsize() for c in clients) == len(keys)
        # Written directly on the owner, visible through the gateway.
        clients[owner_index(HIGH[1])].set(HIGH[1], "direct")
        assert gw.get(HIGH[1]) == b"direct"
    finally:
        for c in clients:
            c.close()


# ---------------------------------------------------------------------- pipelining


@pytest.mark.parametrize("protocol", [2, 3])
def test_pipeline_of_ten_thousand_mixed_commands_replies_in_order(
    cluster: Cluster, gw: redis.Redis, protocol: int
) -> None:
    expected: list[Any] = []
    counters: dict[str, int] = {}
    hashes: dict[str, int] = {}
    with (
        cluster.gateway.client(protocol=protocol) as client,
        client.pipeline(transaction=False) as pipe,
    ):
        for i in range(2000):
            key = f"p:{i}"
            counter = f"c:{i % 37}"
            hkey = f"h:{i % 11}"
            pipe.set(key, f"v{i}")
            expected.append(True)
            pipe.get(key)
            expected.append(f"v{i}".encode())
            pipe.incr(counter)
            counters[counter] = counters.get(counter, 0) + 1
            expected.append(counters[counter])
            pipe.hset(hkey, str(i), i)
            hashes[hkey] = hashes.get(hkey, 0) + 1
            expected.append(1)
            if i % 2:
                pipe.mget(key, f"p:{i - 1}", "p:missing")
                expected.append([f"v{i}".encode(), f"v{i - 1}".encode(), None])
            else:
                pipe.hlen(hkey)
                expected.append(hashes[hkey])
        assert len(pipe) == 10_000
        replies = pipe.execute()
    assert len(replies) == len(expected)
    for n, (got, want) in enumerate(zip(replies, expected, strict=True)):
        assert got == want, f"reply {n}: expected {want!r}, got {got!r}"
    with cluster.backends[0].client() as a, cluster.backends[1].client() as b:
        assert a.dbsize() > 500  # both backends took part
        assert b.dbsize() > 500
        assert a.dbsize() + b.dbsize() == 2000 + 37 + 11


@pytest.mark.parametrize("protocol", [2, 3])
def test_pipeline_for_one_backend_replies_in_order(
    cluster: Cluster, gw: redis.Redis, protocol: int
) -> None:
    """Reads holding only single-key commands for one backend (forwarded as they came)."""
    keys = keys_in(0, 4095, 50, "one:")
    with cluster.gateway.client(protocol=protocol) as client:
        for round_ in range(4):
            with client.pipeline(transaction=False) as pipe:
                for i, key in enumerate(keys * 10):
                    pipe.set(key, f"{round_}:{i}")
                    pipe.get(key)
                    pipe.append(key, "+")
                replies = pipe.execute()
            want: list[object] = []
            for i in range(len(keys) * 10):
                value = f"{round_}:{i}".encode()
                want += [True, value, len(value) + 1]
            assert replies == want
    with cluster.backends[1].client() as other:
        assert other.dbsize() == 0


def test_one_write_alternating_backends_is_cut_between_commands(
    cluster: Cluster, gw: redis.Redis
) -> None:
    """A read forwarded in pieces (runs per backend) cut at the right bytes, whatever the
    argument sizes (lengths of 1-5 digits, around the sizes the gateway has tabulated)."""
    sizes = [0, 1, 9, 10, 99, 100, 999, 1000, 4095, 4096, 4097, 20_000]
    keys = [f"{LOW[i % 2]}:{n}" if i % 3 else f"{HIGH[i % 2]}:{n}" for n, i in enumerate(sizes)]
    request = b"".join(
        encode_command([b"SET", key.encode(), b"v" * size])
        for key, size in zip(keys, sizes, strict=True)
    ) + b"".join(encode_command([b"STRLEN", key.encode()]) for key in keys)
    with socket.create_connection(("127.0.0.1", cluster.gateway.port), timeout=10) as sock:
        sock.sendall(request)  # one read, forwarded in pieces: the sizes must be right
        expected = b"+OK\r\n" * len(sizes) + b"".join(b":%d\r\n" % size for size in sizes)
        assert recv_exactly(sock, len(expected)) == expected
    assert {owner_index(key) for key in keys} == {0, 1}


def test_concurrent_pipelining_clients_get_their_own_replies(
    cluster: Cluster, gw: redis.Redis
) -> None:
    errors: list[str] = []

    def worker(n: int) -> None:
        with cluster.gateway.client() as client:
            for round_ in range(10):
                with client.pipeline(transaction=False) as pipe:
                    for i in range(100):
                        pipe.set(f"w{n}:{i}", f"{n}:{round_}:{i}")
                        pipe.get(f"w{n}:{i}")
                    replies = pipe.execute()
                want = [x for i in range(100) for x in (True, f"{n}:{round_}:{i}".encode())]
                if replies != want:
                    errors.append(f"client {n} round {round_}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []


def test_a_lone_request_is_answered_while_deep_pipelines_are_served(
    cluster: Cluster, gw: redis.Redis
) -> None:
    """Every client gets a share of each round: a lone GET, sent once four clients' deep
    pipelines of INCR are all under way, is answered before they are done; each pipeline
    still gets all its replies, in order."""
    key = f"{LOW[0]}:flood".encode()
    gw.delete(key)
    flooders = 4
    request = encode_command([b"INCR", key])
    depth = (200 << 10) // len(request)  # one pipeline fits one read of the gateway
    address = ("127.0.0.1", cluster.gateway.port)
    socks = [socket.create_connection(address, timeout=30) for _ in range(flooders + 1)]
    *floods, lone = socks
    got: list[list[int]] = [[] for _ in floods]
    answered = [0] * flooders

    def flood(n: int) -> None:
        sock = floods[n]
        sock.sendall(request * depth)
        data = b""
        while answered[n] < depth:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
            answered[n] = data.count(b"\r\n")
        got[n] = [int(line[1:]) for line in data.split(b"\r\n")[:-1]]

    try:
        for sock in socks:  # the backend connection is up before the floods
            sock.sendall(encode_command([b"GET", key]))
            assert recv_exactly(sock, 5) == b"$-1\r\n"
        threads = [threading.Thread(target=flood, args=(n,)) for n in range(flooders)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while not all(answered):
            assert time.monotonic() < deadline, f"pipelines not answered: {answered}"
            time.sleep(0.001)
        lone.sendall(encode_command([b"GET", key]))
        reply = lone.recv(64)
        for thread in threads:
            thread.join(60)
    finally:
        for sock in socks:
            sock.close()
    total = flooders * depth
    assert reply.startswith(b"$")
    seen = int(reply.split(b"\r\n")[1])
    assert seen < total, "the lone GET waited for every pipeline to finish"
    for replies in got:
        assert len(replies) == depth
        assert replies == sorted(set(replies))  # in request order
    assert gw.get(key) == str(total).encode()


def test_large_values_and_binary_keys(cluster: Cluster, gw: redis.Redis) -> None:
    big = bytes(range(256)) * 8192  # 2 MiB, every byte value
    keys = [b"\xff\x00bin\r\n" + LOW[0].encode(), b"\x00" + HIGH[0].encode()]
    for key in keys:
        assert gw.set(key, big)
    assert gw.mget(keys) == [big, big]
    with gw.pipeline(transaction=False) as pipe:
        for _ in range(10):
            pipe.get(keys[0])
            pipe.strlen(keys[1])
        assert pipe.execute() == [big, len(big)] * 10
    assert sorted(gw.keys("*")) == sorted(keys)
    assert gw.delete(*keys) == 2


def test_command_names_in_any_case(gw: redis.Redis) -> None:
    assert gw.execute_command("sEt", LOW[0], "1") is True  # type: ignore[no-untyped-call]
    assert gw.execute_command("Mset", HIGH[0], "2", LOW[1], "3") is True  # type: ignore[no-untyped-call]
    assert gw.execute_command("mGeT", LOW[0], HIGH[0], LOW[1]) == [b"1", b"2", b"3"]  # type: ignore[no-untyped-call]
    assert gw.execute_command("dbSIZE") == 3  # type: ignore[no-untyped-call]


# ---------------------------------------------------------------------- multi-key commands


def test_multi_key_commands_across_backends(cluster: Cluster, gw: redis.Redis) -> None:
    keys = keys_in(0, 8191, 20, "mk:")
    assert {owner_index(k) for k in keys} == {0, 1}
    assert gw.mset({k: f"v-{k}" for k in keys})
    with cluster.backends[0].client() as a, cluster.backends[1].client() as b:
        assert a.dbsize() + b.dbsize() == 20
        assert a.dbsize() > 0
        assert b.dbsize() > 0
    asked = [keys[0], "mk:none", *keys[1:], keys[3], "mk:none2"]
    assert gw.mget(asked) == [None if k.startswith("mk:none") else f"v-{k}".encode() for k in asked]
    assert gw.exists(*keys, "mk:none", keys[0], keys[-1]) == 22  # duplicates count twice
    assert gw.touch(*keys[:10], "mk:none") == 10
    assert gw.delete(*keys[:5], "mk:none") == 5
    assert gw.unlink(*keys[5:10], keys[0]) == 5
    assert gw.exists(*keys) == 10
    assert gw.delete(*keys) == 10
    assert gw.dbsize() == 0


def test_mset_with_a_missing_value_writes_nothing(cluster: Cluster, gw: redis.Redis) -> None:
    """MSET k1 v1 k2 (odd arguments) is an arity error in Redis and must not write k1."""
    low, high = LOW[0], HIGH[0]
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'mset'"):
        gw.execute_command("MSET", high, "1", low)  # type: ignore[no-untyped-call]
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'mset'"):
        gw.execute_command("MSET", low, "1", high)  # type: ignore[no-untyped-call]
    assert gw.mget(low, high) == [None, None]
    assert gw.dbsize() == 0


def test_wrong_type_in_one_part_of_mget_is_not_an_error(gw: redis.Redis) -> None:
    gw.rpush(LOW[0], "x")
    gw.set(HIGH[0], "h")
    assert gw.mget(LOW[0], HIGH[0]) == [None, b"h"]  # as in Redis: MGET never fails on type


@pytest.mark.parametrize(
    "args",
    [
        ("RENAME", LOW[0], HIGH[0]),
        ("RENAMENX", LOW[0], LOW[1]),
        ("SMOVE", LOW[0], HIGH[0], "m"),
        ("LMOVE", LOW[0], HIGH[0], "LEFT", "LEFT"),
        ("RPOPLPUSH", HIGH[0], HIGH[1]),
        ("SINTERSTORE", LOW[0], LOW[0], HIGH[0]),
        ("SUNION", LOW[0], HIGH[0]),
        ("SINTERCARD", "2", LOW[0], HIGH[0]),
        ("MSETNX", LOW[0], "1", HIGH[0], "2"),
        ("ZUNIONSTORE", "{t}dst", "2", LOW[0], HIGH[0]),
    ],
    ids=lambda args: str(args[0]),
)
def test_multi_key_commands_across_partitions_are_crossslot(
    cluster: Cluster, gw: redis.Redis, args: tuple[str, ...]
) -> None:
    gw.set(LOW[0], "keep")
    with socket.create_connection(("127.0.0.1", cluster.gateway.port), timeout=5) as sock:
        sock.sendall(encode_command([a.encode() for a in args]))
        expected = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
        assert recv_exactly(sock, len(expected)) == expected
    assert gw.get(LOW[0]) == b"keep"
    assert gw.dbsize() == 1
    assert gw.ping()  # the connection is fine


# ---------------------------------------------------------------------- refused commands


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("MULTI",), "transactions"),
        (("EXEC",), "transactions"),
        (("WATCH", "k"), "transactions"),
        (("EVAL", "return 1", "0"), "scripting"),
        (("SUBSCRIBE", "ch"), "pub/sub"),
        (("PUBLISH", "ch", "m"), "pub/sub"),
        (("BLPOP", "k", "0"), "blocking commands"),
        (("BZPOPMIN", "k", "0"), "blocking commands"),
        (("BGSAVE",), "per-node persistence"),
    ],
    ids=lambda v: v[0] if isinstance(v, tuple) else v,
)
def test_unsupported_commands_are_refused_by_name(
    gw: redis.Redis, args: tuple[str, ...], reason: str
) -> None:
    name = args[0].lower()
    with pytest.raises(redis.ResponseError) as info:
        gw.execute_command(*args)  # type: ignore[no-untyped-call]
    assert str(info.value) == (
        f"command '{name}' is not supported by the Tessera gateway ({reason})"
    )
    assert gw.ping()  # the connection stays usable (no MULTI or SUBSCRIBE state)
    assert gw.set("after", "1")
    assert gw.get("after") == b"1"


def test_unsupported_command_without_a_reason(gw: redis.Redis) -> None:
    with pytest.raises(redis.ResponseError, match=r"^command 'object' is not supported by the"):
        gw.execute_command("OBJECT", "ENCODING", "k")  # type: ignore[no-untyped-call]


def test_unknown_command_gets_redis_text(cluster: Cluster, reference: int) -> None:
    gateway = raw_client(cluster.gateway.port)
    real = raw_client(reference)
    try:
        for args in [("NOPE",), ("nope", "x", "y z"), ("Foo", "a" * 300)]:
            assert call(gateway, args) == call(real, args)
        assert call(gateway, ("GET",)) == call(real, ("GET",))
        assert call(gateway, ("MGET",)) == call(real, ("MGET",))
        assert call(gateway, ("PING", "a", "b")) == call(real, ("PING", "a", "b"))
    finally:
        gateway.close()
        real.close()


# ---------------------------------------------------------------------- keyspace-wide commands


def test_dbsize_keys_scan_and_randomkey_see_both_backends(
    cluster: Cluster, gw: redis.Redis
) -> None:
    keys = {f"s:{i}".encode() for i in range(600)}
    with gw.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.set(key, "x")
        pipe.execute()
    with cluster.backends[0].client() as a, cluster.backends[1].client() as b:
        sizes = a.dbsize(), b.dbsize()
    assert min(sizes) > 200
    assert gw.dbsize() == sum(sizes) == 600
    assert sorted(gw.keys("*")) == sorted(keys)
    assert sorted(gw.keys("s:1?")) == sorted(f"s:{i}".encode() for i in range(10, 20))
    scanned = list(gw.scan_iter(count=50))
    assert len(scanned) == len(set(scanned)) == 600  # every key exactly once
    assert set(scanned) == keys
    matched = list(gw.scan_iter(match="s:5*", count=1000))
    assert sorted(matched) == sorted(k for k in keys if k.startswith(b"s:5"))
    assert gw.randomkey() in keys


def test_scan_of_an_empty_keyspace_and_bad_cursors(gw: redis.Redis) -> None:
    assert list(gw.scan_iter()) == []
    assert gw.randomkey() is None
    with pytest.raises(redis.ResponseError, match="invalid cursor"):
        gw.execute_command("SCAN", "abc")  # type: ignore[no-untyped-call]
    with pytest.raises(redis.ResponseError, match="invalid cursor"):
        gw.execute_command("SCAN", "-1")  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("command", ["FLUSHALL", "FLUSHDB"])
def test_flush_is_refused_without_allow_flush(gw: redis.Redis, command: str) -> None:
    gw.mset({LOW[0]: "1", HIGH[0]: "2"})
    with pytest.raises(redis.ResponseError, match=f"{command} through the gateway is disabled"):
        gw.execute_command(command)  # type: ignore[no-untyped-call]
    assert gw.dbsize() == 2


# ---------------------------------------------------------------------- protocol and clients


def test_malformed_input_gets_protocol_error_and_close_while_others_work(
    cluster: Cluster, gw: redis.Redis
) -> None:
    gw.set(HIGH[0], "still here")
    other = socket.create_connection(("127.0.0.1", cluster.gateway.port), timeout=5)
    with socket.create_connection(("127.0.0.1", cluster.gateway.port), timeout=5) as bad:
        bad.sendall(b"*1\r\n$abc\r\n")
        assert recv_until_closed(bad) == b"-ERR Protocol error: invalid bulk length\r\n"
    with socket.create_connection(("127.0.0.1", cluster.gateway.port), timeout=5) as bad:
        # Commands before the garbage in the same read are answered first, in order.
        key = HIGH[0].encode()
        bad.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n*1\r\n$abc\r\n" % (len(key), key))
        assert recv_until_closed(bad) == (
            b"$10\r\nstill here\r\n-ERR Protocol error: invalid bulk length\r\n"
        )
    with other:
        other.sendall(b"*2\r\n$4\r\nECHO\r\n$2\r\nok\r\n")
        assert recv_exactly(other, 8) == b"$2\r\nok\r\n"
    assert gw.get(HIGH[0]) == b"still here"


def test_inline_commands_and_quit(cluster: Cluster, gw: redis.Redis) -> None:
    with socket.create_connection(("127.0.0.1", cluster.gateway.port), timeout=5) as sock:
        sock.sendall(f"SET {LOW[0]} inline\r\nGET {LOW[0]}\r\nQUIT\r\n".encode())
        assert recv_until_closed(sock) == b"+OK\r\n$6\r\ninline\r\n+OK\r\n"
    assert gw.get(LOW[0]) == b"inline"


def test_resp3_client_gets_resp3_replies(cluster: Cluster, gw: redis.Redis) -> None:
    with cluster.gateway.client(protocol=3) as r3:
        hello = r3.execute_command("HELLO", "3")
        assert hello[b"proto"] == 3
        for key in (LOW[0], HIGH[0]):
            r3.hset(key, mapping={"a": "1", "b": "2"})
            assert r3.hgetall(key) == {b"a": b"1", b"b": b"2"}
        r3.sadd(LOW[1], "x", "y")
        assert r3.smembers(LOW[1]) == {b"x", b"y"}
        r3.zadd(HIGH[1], {"m": 1.5})
        assert r3.zscore(HIGH[1], "m") == 1.5
        assert r3.get("missing") is None
        assert r3.mget(LOW[0] + "x", HIGH[0] + "x") == [None, None]
        assert sorted(r3.keys("*")) == sorted(k.encode() for k in BOTH)
    # On the wire: a map (%), a set (~), a double (,) and nulls (_).
    with socket.create_connection(("127.0.0.1", cluster.gateway.port), timeout=5) as sock:
        sock.sendall(b"HELLO 3\r\n")
        time.sleep(0.05)
        sock.recv(65536)
        sock.sendall(
            f"HGETALL {HIGH[0]}\r\nSMEMBERS {LOW[1]}\r\nZSCORE {HIGH[1]} m\r\n"
            f"MGET nope1 nope2 {LOW[0]}\r\nGET nope\r\n".encode()
        )
        tail = b"*3\r\n_\r\n_\r\n_\r\n_\r\n"  # MGET of three nils (merged), GET nil
        data = b""
        deadline = time.monotonic() + 5
        while not data.endswith(tail) and time.monotonic() < deadline:
            data += sock.recv(65536)
        assert data.startswith(b"%2\r\n")
        assert b"~2\r\n" in data
        assert b",1.5\r\n" in data
        assert data.endswith(tail)


def test_hello_setname_client_commands(cluster: Cluster) -> None:
    with cluster.gateway.client() as client:
        hello = client.execute_command("HELLO", "2", "SETNAME", "app")
        assert b"proto" in hello
        assert client.client_getname() == "app"
        assert isinstance(client.client_id(), int)
        assert client.echo("héllo") == "héllo".encode()
        assert client.select(0)
        with pytest.raises(redis.ResponseError, match="DB index is out of range"):
            client.select(1)
        assert client.command_count() > 50
        assert client.info("server")["redis_mode"] == "cluster-proxy"


def test_redis_cli_through_the_gateway(cluster: Cluster, gw: redis.Redis) -> None:
    lo, hi = LOW[0], HIGH[0]
    script = "\n".join(
        [
            f"SET {lo} one",
            f"SET {hi} two",
            f"MGET {lo} {hi} nope",
            f"HSET h{lo} f v",
            f"HGET h{lo} f",
            f"RPUSH l{hi} a b c",
            f"LRANGE l{hi} 0 -1",
            f"SADD s{lo} m",
            f"SCARD s{lo}",
            f"ZADD z{hi} 2 m",
            f"ZSCORE z{hi} m",
            f"EXPIRE {lo} 100",
            f"TTL {lo}",
            "DBSIZE",
            "MULTI",
            "NOPE",
        ]
    )
    out = subprocess.run(
        ["redis-cli", "-p", str(cluster.gateway.port)],
        input=script + "\n",
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    assert out.splitlines() == [
        "OK",
        "OK",
        "one",
        "two",
        "",
        "1",
        "v",
        "3",
        "a",
        "b",
        "c",
        "1",
        "1",
        "1",
        "2",
        "1",
        "100",
        "6",
        "ERR command 'multi' is not supported by the Tessera gateway (transactions)",
        "",  # redis-cli prints an empty line after an error when not on a terminal
        "ERR unknown command 'NOPE', with args beginning with: ",
        "",
    ]
    single = subprocess.run(
        ["redis-cli", "-p", str(cluster.gateway.port), "GET", hi],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    assert single.stdout == "two\n"


# ---------------------------------------------------------------------- AUTH and --allow-flush


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("secured"), "--requirepass", "s3cret", "--allow-flush"
    ) as started:
        yield started


def test_requirepass(secured: Cluster) -> None:
    port = secured.gateway.port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            f"GET {LOW[0]}\r\nPING\r\nAUTH nope\r\nAUTH s3cret\r\nSET {LOW[0]} v\r\n"
            f"GET {LOW[0]}\r\n".encode()
        )
        expected = (
            b"-NOAUTH Authentication required.\r\n"
            b"-NOAUTH Authentication required.\r\n"
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
            b"+OK\r\n+OK\r\n$1\r\nv\r\n"
        )
        assert recv_exactly(sock, len(expected)) == expected
    with pytest.raises(redis.AuthenticationError):
        connect(port).get(LOW[0])
    with pytest.raises(redis.AuthenticationError, match="invalid username-password pair"):
        connect(port, password="wrong").get(LOW[0])
    with connect(port, password="s3cret") as ok:
        assert ok.get(LOW[0]) == b"v"
    with connect(port, username="default", password="s3cret", protocol=3) as ok3:
        assert ok3.hgetall("nothing") == {}
        assert ok3.get(LOW[0]) == b"v"


def test_auth_inside_one_read_lets_only_the_commands_after_it_through(secured: Cluster) -> None:
    """The inline path binds "authenticated" per read: an AUTH in the middle of one read of
    keyed commands for both backends must take effect exactly there."""
    keys = keys_in(0, 4095, 2, "unset-lo:") + keys_in(4096, 8191, 2, "unset-hi:")
    get = b"".join(encode_command([b"GET", key.encode()]) for key in keys)
    rounds = 50  # 200 GETs on either side: more than one round's share
    wire = get * rounds + encode_command([b"AUTH", b"s3cret"]) + get * rounds
    with socket.create_connection(("127.0.0.1", secured.gateway.port), timeout=10) as sock:
        sock.sendall(wire)
        expected = (
            b"-NOAUTH Authentication required.\r\n" * (len(keys) * rounds)
            + b"+OK\r\n"
            + b"$-1\r\n" * (len(keys) * rounds)
        )
        assert recv_exactly(sock, len(expected)) == expected


def test_flushall_with_allow_flush_empties_both_backends(secured: Cluster) -> None:
    with secured.gateway.client(password="s3cret") as client:
        client.mset({k: "1" for k in BOTH})
        assert client.dbsize() == 4
        assert client.flushall() is True
        assert client.dbsize() == 0
        client.mset({k: "1" for k in BOTH})
        assert client.flushdb() is True
    for backend in secured.backends:
        with backend.client() as direct:
            assert direct.dbsize() == 0


# ---------------------------------------------------------------------- backend trouble


@pytest.fixture(scope="module")
def fragile_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("fragile"), "--backend-timeout-ms", "500"
    ) as started:
        yield started


@pytest.fixture
def fragile(fragile_cluster: Cluster) -> Cluster:
    """A cluster of these tests' own (they kill or stop backends), healthy at the start."""
    for backend in fragile_cluster.backends:
        if backend.proc.poll() is not None:  # a failed test left it dead
            backend.restart()
    deadline = time.monotonic() + 5
    with fragile_cluster.gateway.client(socket_timeout=2) as client:
        while True:
            try:
                client.mget(LOW[0], HIGH[0])
                break
            except redis.ResponseError:
                assert time.monotonic() < deadline, "the gateway did not reach its backends"
                time.sleep(0.05)
    fragile_cluster.flush()
    return fragile_cluster


def test_killed_backend_fails_fast_and_recovers_after_restart(fragile: Cluster) -> None:
    victim = fragile.backends[0]
    with fragile.gateway.client(socket_timeout=3) as client:
        assert client.mset({k: f"v-{k}" for k in BOTH})
        victim.kill()
        unavailable = f"^backend 127.0.0.1:{victim.port} unavailable$"
        for _ in range(20):
            started = time.monotonic()
            with pytest.raises(redis.ResponseError, match=unavailable):
                client.get(LOW[0])
            assert time.monotonic() - started < 1.0
            assert client.get(HIGH[0]) == f"v-{HIGH[0]}".encode()  # the other one works
        with pytest.raises(redis.ResponseError, match=unavailable):
            client.mget(LOW[0], HIGH[0])
        with pytest.raises(redis.ResponseError, match=unavailable):
            client.dbsize()
        assert client.set(HIGH[1], "during outage")

        victim.restart()
        restarted = time.monotonic()
        errors: set[str] = set()
        while True:
            try:
                value = client.get(LOW[0])
                break
            except redis.ResponseError as exc:
                errors.add(str(exc))
            assert time.monotonic() - restarted < 5, "gateway did not reconnect"
            time.sleep(0.05)
        assert errors <= {f"backend 127.0.0.1:{victim.port} unavailable"}
        assert value == f"v-{LOW[0]}".encode()  # acknowledged before the kill, recovered
        assert client.mget(BOTH) == [
            f"v-{LOW[0]}".encode(),
            f"v-{HIGH[0]}".encode(),
            f"v-{LOW[1]}".encode(),
            b"during outage",
        ]
        assert client.dbsize() == 4
    with fragile.gateway.client(protocol=3) as r3:  # fresh RESP3 backend connections too
        assert r3.get(LOW[1]) == f"v-{LOW[1]}".encode()


def test_request_in_flight_on_a_stopped_backend_never_poisons_the_connection(
    fragile: Cluster,
) -> None:
    """The gateway gives up on a stuck backend; a late reply must not answer another request."""
    victim = fragile.backends[0]
    port = fragile.gateway.port
    with fragile.gateway.client() as client:
        client.mset({LOW[0]: "first", LOW[1]: "second"})
    with victim.stopped(), socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(f"GET {LOW[0]}\r\n".encode())
        reply = sock.recv(1024)
        assert reply == f"-ERR backend 127.0.0.1:{victim.port} unavailable\r\n".encode()
        assert time.monotonic() - started < 2.0  # --backend-timeout-ms 500, checked per 100 ms
    with fragile.gateway.client(socket_timeout=5) as fresh:
        assert fresh.get(LOW[1]) == b"second"
        assert fresh.get(LOW[0]) == b"first"
        assert fresh.mget(LOW[1], LOW[0]) == [b"second", b"first"]


def test_client_that_times_out_does_not_leave_a_stale_reply_behind(fragile: Cluster) -> None:
    """The client gives up first (before --backend-timeout-ms): its late reply is dropped."""
    victim = fragile.backends[0]
    with fragile.gateway.client() as client:
        client.mset({LOW[0]: "first", LOW[1]: "second"})
    impatient = fragile.gateway.client(socket_timeout=0.15)
    with victim.stopped():
        with pytest.raises(redis.TimeoutError):
            impatient.get(LOW[0])
        impatient.close()
        time.sleep(0.1)
    with fragile.gateway.client(socket_timeout=5) as fresh:
        for _ in range(3):
            assert fresh.get(LOW[1]) == b"second"
            assert fresh.get(LOW[0]) == b"first"


def test_backend_timeout_counts_from_the_request_not_from_the_last_reply(
    fragile: Cluster,
) -> None:
    """A backend that answers within --backend-timeout-ms (500) after an idle spell is fine.

    Here the backend is idle for longer than the timeout, then takes 250 ms to answer.
    """
    victim = fragile.backends[0]
    with fragile.gateway.client(socket_timeout=5) as client:
        client.set(LOW[0], "slow but fine")
        time.sleep(0.8)  # longer than the backend timeout, nothing in flight
        result: list[object] = []

        def ask() -> None:
            try:
                result.append(client.get(LOW[0]))
            except redis.RedisError as exc:
                result.append(exc)

        with victim.stopped():
            thread = threading.Thread(target=ask)
            thread.start()
            time.sleep(0.25)
        thread.join(5)
        assert result == [b"slow but fine"]

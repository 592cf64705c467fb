"""Crash recovery of an in-process PgServer: checkpoint + log replay rebuild the keyspace."""

from __future__ import annotations

import time
from pathlib import Path

import hiredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgserver.config import PgServerConfig
from pgserver.context import Context, execute
from pgserver.log_format import SEGMENT_HEADER_SIZE, decode_records, segment_name
from pgserver.server import PgServer


def server_at(data_dir: Path, **overrides: object) -> PgServer:
    server = PgServer(PgServerConfig(port=0, data_dir=data_dir, **overrides))  # type: ignore[arg-type]
    server.recover()
    return server


def run(server: PgServer, *args: str | bytes) -> bytes:
    """Execute one command as the server's one client and write the log, as the reactor
    does after each wakeup. (The client is registered in server.clients as the reactor
    does, not kept in an ad-hoc attribute: a mypyc-compiled PgServer has none.)"""
    ctx = next(iter(server.clients.values()), None)
    if ctx is None:
        ctx = Context(server)
        server.clients[ctx.client_id] = ctx
    server.keyspace.tick()
    reply = execute(ctx, [a if isinstance(a, bytes) else a.encode() for a in args])
    server.durability.write()
    return reply


WORKLOAD: list[tuple[str, ...]] = [
    ("SET", "s", "1"),
    ("INCRBY", "s", "41"),
    ("SET", "ttl", "x", "EX", "1000"),
    ("HSET", "h", "a", "1", "b", "2"),
    ("HINCRBYFLOAT", "h", "a", "0.5"),
    ("RPUSH", "l", "a", "b", "c"),
    ("LPOP", "l"),
    ("SADD", "set", "x", "y", "z"),
    ("SPOP", "set"),
    ("ZADD", "z", "1", "one", "2", "two"),
    ("ZINCRBY", "z", "5", "one"),
    ("EXPIRE", "h", "5000"),
    ("MSET", "m1", "a", "m2", "b"),
    ("DEL", "m1"),
    ("RENAME", "m2", "m3"),
    ("INCRBYFLOAT", "f", "1.25"),
    ("APPEND", "s", "!"),
]


def snapshot(server: PgServer) -> tuple[dict[bytes, object], dict[bytes, int]]:
    return dict(server.keyspace.data), dict(server.keyspace.expires)


def test_restart_replays_the_log(tmp_path: Path) -> None:
    first = server_at(tmp_path)
    for cmd in WORKLOAD:
        assert not run(first, *cmd).startswith(b"-"), cmd
    expected = snapshot(first)
    first.durability.close()
    second = server_at(tmp_path)
    assert snapshot(second) == expected
    assert second.recovery is not None
    assert second.recovery.replayed_records >= len(WORKLOAD)
    second.durability.close()


def test_restart_from_checkpoint_plus_log(tmp_path: Path) -> None:
    first = server_at(tmp_path)
    for cmd in WORKLOAD[:8]:
        run(first, *cmd)
    assert run(first, "SAVE") == b"+OK\r\n"
    for cmd in WORKLOAD[8:]:
        run(first, *cmd)
    expected = snapshot(first)
    first.durability.close()
    second = server_at(tmp_path)
    assert second.recovery is not None
    assert second.recovery.checkpoint_lsn > 0
    assert second.recovery.replayed_records == len(WORKLOAD) - 8
    assert snapshot(second) == expected
    second.durability.close()


def test_bgsave_in_a_forked_child(tmp_path: Path) -> None:
    first = server_at(tmp_path)
    for i in range(2000):
        run(first, "SET", f"key:{i}", f"value:{i}")
    assert run(first, "BGSAVE") == b"+Background saving started\r\n"
    run(first, "SET", "after", "checkpoint")
    deadline = time.monotonic() + 30
    while first.durability.poll_checkpoint() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert first.durability.checkpoint_status == "ok"
    expected = snapshot(first)
    first.durability.close()
    second = server_at(tmp_path)
    assert second.recovery is not None
    assert second.recovery.checkpoint_keys == 2000
    assert second.recovery.replayed_records == 1
    assert snapshot(second) == expected
    second.durability.close()


def test_expiry_deletions_are_logged(tmp_path: Path) -> None:
    first = server_at(tmp_path)
    run(first, "SET", "gone", "v", "PX", "1")
    time.sleep(0.01)
    assert run(first, "GET", "gone") == b"$-1\r\n"
    logged = [r.payload for r in first.durability.log.read(0)]
    assert logged[-1] == b"*2\r\n$3\r\nDEL\r\n$4\r\ngone\r\n"
    first.durability.close()


def test_checkpoint_failure_falls_back_to_the_log(tmp_path: Path) -> None:
    first = server_at(tmp_path, keep_log_mb=64)
    run(first, "SET", "a", "1")
    run(first, "SAVE")
    run(first, "SET", "b", "2")
    expected = snapshot(first)
    first.durability.close()
    (ckpt,) = tmp_path.glob("checkpoint-*.tsnap")
    raw = bytearray(ckpt.read_bytes())
    raw[-20] ^= 0xFF
    ckpt.write_bytes(bytes(raw))
    second = server_at(tmp_path)
    assert snapshot(second) == expected
    second.durability.close()


commands = st.lists(
    st.one_of(
        st.tuples(st.just("SET"), st.sampled_from("abcd"), st.text("xyz", min_size=1, max_size=3)),
        st.tuples(st.just("INCR"), st.sampled_from("efg")),
        st.tuples(st.just("RPUSH"), st.sampled_from("hij"), st.sampled_from("uvw")),
        st.tuples(st.just("SADD"), st.sampled_from("klm"), st.sampled_from("uvw")),
        st.tuples(st.just("DEL"), st.sampled_from("abcdhk")),
        st.tuples(st.just("PEXPIRE"), st.sampled_from("abeh"), st.just("100000")),
        st.tuples(
            st.just("ZADD"), st.just("z"), st.sampled_from(["1", "2.5"]), st.sampled_from("pq")
        ),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(commands, st.data())
def test_crash_at_random_byte_recovers_exactly_the_complete_records(
    tmp_path_factory: pytest.TempPathFactory, cmds: list[tuple[str, ...]], data: st.DataObject
) -> None:
    directory = tmp_path_factory.mktemp("crash")
    first = server_at(directory)
    for cmd in cmds:
        run(first, *cmd)
    first.durability.close()
    path = directory / "log" / segment_name(0)
    cut = data.draw(st.integers(SEGMENT_HEADER_SIZE, path.stat().st_size))
    with open(path, "r+b") as f:
        f.truncate(cut)
    complete, _consumed, _problem = decode_records(path.read_bytes()[SEGMENT_HEADER_SIZE:], 0)
    reference = PgServer(PgServerConfig(port=0, data_dir=directory / "unused"))
    ctx = Context(reference)
    reader = hiredis.Reader()
    for record in complete:
        reader.feed(record.payload)
        reference.keyspace.now = record.timestamp_ms
        while (argv := reader.gets()) is not False:
            execute(ctx, argv)
    recovered = server_at(directory)
    assert snapshot(recovered) == snapshot(reference)
    recovered.durability.close()

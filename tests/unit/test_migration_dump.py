"""Range dumps: the commands each type becomes, chunking, TTLs, and that replaying a dump
into an empty (or dirty) pgserver rebuilds exactly the dumped range."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import hiredis
import pytest

from pgserver.commands import load_all
from pgserver.context import Context, execute
from pgserver.dump import (
    DEFAULT_FRAME_BYTES,
    estimate_range,
    key_commands,
    range_entries,
    write_dump,
    write_framed_dump,
)
from pgserver.keyspace import Keyspace, Value
from pgserver.string_blocks import MAGIC, decode_block
from pgserver.zset import ZSet
from tessera.partition import pn
from tessera.resp import encode_command
from tests.unit.conftest import RecordingServer, Session

load_all()

FAR = 4102444800123  # 2100-01-01, in ms


def test_string_is_one_set_with_its_deadline() -> None:
    assert list(key_commands(b"k", b"v", None)) == [[b"SET", b"k", b"v"]]
    assert list(key_commands(b"k", b"v", FAR)) == [[b"SET", b"k", b"v", b"PXAT", b"%d" % FAR]]


def test_big_string_is_set_then_appended_in_pieces() -> None:
    value = bytes(range(256)) * 10
    commands = list(key_commands(b"k", value, FAR, chunk_bytes=1000))
    assert commands[0] == [b"SET", b"k", value[:1000]]
    assert commands[1] == [b"APPEND", b"k", value[1000:2000]]
    assert commands[2] == [b"APPEND", b"k", value[2000:]]
    assert commands[3] == [b"PEXPIREAT", b"k", b"%d" % FAR]
    assert len(commands) == 4


@pytest.mark.parametrize(
    ("value", "verb"),
    [
        ({b"f%d" % i: b"v%d" % i for i in range(7)}, b"HSET"),
        (deque(b"e%d" % i for i in range(7)), b"RPUSH"),
        ({b"m%d" % i for i in range(7)}, b"SADD"),
        (ZSet.from_scores({b"m%d" % i: i / 3 for i in range(7)}), b"ZADD"),
    ],
)
def test_collections_start_with_del_and_come_in_chunks(value: Value, verb: bytes) -> None:
    commands = list(key_commands(b"c", value, FAR, chunk_elements=3))
    assert commands[0] == [b"DEL", b"c"]
    body = commands[1:-1]
    assert [argv[:2] for argv in body] == [[verb, b"c"]] * 3  # 3 + 3 + 1 elements
    width = 1 if verb in (b"RPUSH", b"SADD") else 2  # arguments per element
    assert [len(argv) - 2 for argv in body] == [3 * width, 3 * width, width]
    assert commands[-1] == [b"PEXPIREAT", b"c", b"%d" % FAR]


def test_chunks_are_also_cut_by_size() -> None:
    value = deque([b"x" * 600] * 5)
    commands = list(key_commands(b"l", value, None, chunk_elements=100, chunk_bytes=1000))
    assert [len(argv) - 2 for argv in commands[1:]] == [2, 2, 1]


def test_scores_round_trip_exactly() -> None:
    scores = {b"a": 0.1, b"b": -0.0, b"c": float("inf"), b"d": -1e300, b"e": 1 / 3}
    (_del, zadd) = key_commands(b"z", ZSet.from_scores(dict(scores)), None)
    pairs = zadd[2:]
    assert {pairs[i + 1]: float(pairs[i]) for i in range(0, len(pairs), 2)} == scores


def _populated() -> Session:
    """A pgserver holding every type, with and without TTLs, big and small, in all PNs."""
    session = Session()
    for i in range(400):
        session("SET", f"s{i}", f"value{i}")
        if i % 3 == 0:
            session("PEXPIREAT", f"s{i}", FAR + i)
    for i in range(40):
        session("HSET", f"h{i}", *(x for j in range(i * 7 + 1) for x in (f"f{j}", f"v{j}")))
        session("RPUSH", f"l{i}", *(f"e{j % 5}" for j in range(i * 9 + 1)))
        session("SADD", f"set{i}", *(f"m{j}" for j in range(i * 5 + 1)))
        session("ZADD", f"z{i}", *(x for j in range(i * 6 + 1) for x in (f"{j / 7}", f"m{j}")))
        if i % 4 == 0:
            for kind in ("h", "l", "set", "z"):
                session("PEXPIREAT", f"{kind}{i}", FAR)
    session("SET", "big", "B" * 3000)
    return session


def _range_state(ks: Keyspace, first: int, last: int) -> dict[bytes, tuple[object, int | None]]:
    return {
        key: (value, ks.expires.get(key))
        for key, value in ks.data.items()
        if first <= pn(key) <= last
    }


def _replay(commands: list[list[bytes]], server: RecordingServer) -> None:
    ctx = Context(server)
    for argv in commands:
        reply = execute(ctx, argv)
        assert not reply.startswith(b"-"), (argv[:2], reply)


@pytest.mark.parametrize("chunk", [1, 4, 256])
def test_replaying_a_dump_rebuilds_exactly_the_range(tmp_path: Path, chunk: int) -> None:
    source = _populated()
    ks = source.server.keyspace
    ranges = [(0, 3000), (5000, 5000), (6000, 8191)]
    expected: dict[bytes, tuple[object, int | None]] = {}
    for first, last in ranges:
        expected |= _range_state(ks, first, last)
    path = tmp_path / "dump.resp"
    assert write_dump(path, range_entries(ks, ranges), chunk) == len(expected) > 200
    reader = hiredis.Reader()
    reader.feed(path.read_bytes())
    commands: list[list[bytes]] = []
    while (argv := reader.gets()) is not False:
        commands.append(argv)
    target = RecordingServer()
    # Leftovers of an earlier, cancelled attempt must not merge into the copies.
    a_list = next(k for k, (v, _) in expected.items() if isinstance(v, deque))
    a_set = next(k for k, (v, _) in expected.items() if isinstance(v, set))
    a_hash = next(k for k, (v, _) in expected.items() if isinstance(v, dict))
    _replay([[b"RPUSH", a_list, b"junk"], [b"SADD", a_set, b"junk"]], target)
    _replay([[b"SET", a_hash, b"wrong type"], [b"PEXPIREAT", a_hash, b"%d" % FAR]], target)
    _replay(commands, target)
    got: dict[bytes, tuple[object, int | None]] = {}
    for first, last in ranges:
        got |= _range_state(target.keyspace, first, last)
    assert got == expected
    assert len(target.keyspace.data) == len(expected)


def test_keys_already_past_their_deadline_are_not_dumped() -> None:
    ks = Keyspace(clock=lambda: 10_000)
    ks.set(b"dead", b"v")
    ks.set_expire(b"dead", 9_999)
    ks.set(b"alive", b"v")
    ks.set_expire(b"alive", 10_000)  # alive during its deadline millisecond, as in Redis
    assert [key for key, _, _ in range_entries(ks, [(0, 8191)])] == [b"alive"]


def test_estimate_counts_keys_exactly_and_bytes_roughly() -> None:
    ks = _populated().server.keyspace
    keys, size = estimate_range(ks, [(0, 8191)])
    assert keys == len(ks.data)
    exact = sum(
        len(b"".join(encode_command(argv) for argv in key_commands(k, v, e)))
        for k, v, e in range_entries(ks, [(0, 8191)])
    )
    assert exact / 3 < size < exact * 3
    empty = next(p for p in range(8192) if not ks.by_partition[p])
    assert estimate_range(ks, [(empty, empty)]) == (0, 0)


def _parse(data: bytes) -> list[list[bytes]]:
    reader = hiredis.Reader()
    reader.feed(data)
    commands: list[list[bytes]] = []
    while (argv := reader.gets()) is not False:
        commands.append(argv)
    assert not reader.has_data()
    return commands


def _load_frames(frames: list[list[bytes]], server: RecordingServer) -> int:
    """Execute a framed dump's frames as the migrator sends them; returns the keys counted."""
    ctx = Context(server)
    keys = 0
    for frame in frames:
        reply = execute(ctx, frame)
        assert reply == b":%b\r\n" % frame[1], (frame[:2], reply)
        keys += int(frame[1])
    return keys


@pytest.mark.parametrize("frame_bytes", [1, 200, 5000, DEFAULT_FRAME_BYTES])
def test_a_framed_dump_loaded_into_a_dirty_target_rebuilds_exactly_the_range(
    tmp_path: Path, frame_bytes: int
) -> None:
    ks = _populated().server.keyspace
    ranges = [(0, 3000), (6000, 8191)]
    expected: dict[bytes, tuple[object, int | None]] = {}
    for first, last in ranges:
        expected |= _range_state(ks, first, last)
    path = tmp_path / "framed.resp"
    assert write_framed_dump(path, ks, ranges, 4, frame_bytes) == len(expected)
    frames = _parse(path.read_bytes())
    assert {frame[0] for frame in frames} == {b"TSR.LOAD", b"TSR.LOADSTRINGS"}
    target = RecordingServer()
    # Leftovers of an earlier attempt: a hash where a plain string goes, a TTL to clear.
    plain = next(k for k, (v, ttl) in expected.items() if isinstance(v, bytes) and ttl is None)
    a_hash = next(k for k, (v, _) in expected.items() if isinstance(v, dict))
    _replay([[b"HSET", plain, b"f", b"v"], [b"SET", a_hash, b"x", b"PXAT", b"%d" % FAR]], target)
    assert _load_frames(frames, target) == len(expected)
    got: dict[bytes, tuple[object, int | None]] = {}
    for first, last in ranges:
        got |= _range_state(target.keyspace, first, last)
    assert got == expected
    assert len(target.keyspace.data) == len(expected)
    for name, _keys, blob in frames:
        if name == b"TSR.LOADSTRINGS":
            # Only plain strings without a TTL travel in string blocks.
            for _partition, keys, values in decode_block(blob):
                pairs = zip(keys, values, strict=True)
                assert all(expected[key] == (value, None) for key, value in pairs)
            pieces = len(decode_block(blob))
        else:
            pieces = len(_parse(blob))
        if pieces > 1:
            assert len(blob) <= frame_bytes + len(MAGIC)


def test_a_partition_bigger_than_a_frame_is_cut_into_sections(tmp_path: Path) -> None:
    session = Session()
    for i in range(300):
        session("SET", f"{{tag}}:{i}", "v" * (i % 50))
    ks = session.server.keyspace
    partition = pn(b"{tag}")
    path = tmp_path / "framed.resp"
    assert write_framed_dump(path, ks, [(partition, partition)], 4, 1000) == 300
    frames = _parse(path.read_bytes())
    assert len(frames) > 5
    assert all(len(frame[2]) <= 1000 + len(MAGIC) for frame in frames)
    target = RecordingServer()
    assert _load_frames(frames, target) == 300
    assert target.keyspace.data == ks.data


def test_keys_past_their_deadline_are_not_in_a_framed_dump(tmp_path: Path) -> None:
    ks = Keyspace(clock=lambda: 10_000)
    for key in (b"dead", b"alive", b"plain"):
        ks.set(key, b"v")
    ks.set_expire(b"dead", 9_999)
    ks.set_expire(b"alive", 10_000)
    path = tmp_path / "framed.resp"
    assert write_framed_dump(path, ks, [(0, 8191)], 4, DEFAULT_FRAME_BYTES) == 2
    text = path.read_bytes()
    assert b"alive" in text
    assert b"plain" in text
    assert b"dead" not in text


def test_framed_dump_of_nothing_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.resp"
    ks = Keyspace()
    assert write_framed_dump(path, ks, [(0, 8191)], 256, DEFAULT_FRAME_BYTES) == 0
    assert path.read_bytes() == b""

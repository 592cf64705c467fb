"""Checkpoint files: round trip of every type, TTLs, damage detection."""

from __future__ import annotations

import zlib
from collections import deque
from pathlib import Path

import pytest

from pgserver.checkpoint import (
    SnapshotInfo,
    list_snapshots,
    read_snapshot,
    snapshot_name,
    write_snapshot,
)
from pgserver.zset import ZSet
from tessera.errors import StorageError


def sample() -> list[tuple[bytes, object, int | None]]:
    z = ZSet()
    z.add(b"m1", 1.5)
    z.add(b"m2", float("-inf"))
    return [
        (b"s", b"value", None),
        (b"h", {b"f": b"v", b"g": b""}, 1_900_000_000_000),
        (b"l", deque([b"a", b"b", b"a"]), None),
        (b"set", {b"x", b"y"}, None),
        (b"z", z, 5),
        (b"", b"", None),
    ]


def test_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / snapshot_name(1234)
    info = SnapshotInfo(lsn=1234, timestamp_ms=99, first_pn=0, last_pn=8191)
    entries = sample()
    assert write_snapshot(path, entries, info) == len(entries)  # type: ignore[arg-type]
    got_info, got = read_snapshot(path)
    assert got_info == info
    assert list(got) == entries
    assert list_snapshots(tmp_path) == [(1234, path)]


def test_many_entries_span_blocks(tmp_path: Path) -> None:
    path = tmp_path / snapshot_name(1)
    entries = [(b"key:%d" % i, b"v" * 100, None) for i in range(30_000)]
    write_snapshot(path, entries, SnapshotInfo(1, 0, 0, 8191))
    assert list(read_snapshot(path)[1]) == entries


def test_damage_is_detected(tmp_path: Path) -> None:
    path = tmp_path / snapshot_name(7)
    write_snapshot(path, sample(), SnapshotInfo(7, 0, 0, 8191))  # type: ignore[arg-type]
    good = path.read_bytes()
    raw = bytearray(good)
    raw[-40] ^= 0xFF  # inside the last block of entries
    path.write_bytes(bytes(raw))
    with pytest.raises(StorageError, match="block checksum mismatch"):
        list(read_snapshot(path)[1])
    raw = bytearray(good)
    raw[50] ^= 0xFF  # inside the partition marks
    path.write_bytes(bytes(raw))
    with pytest.raises(StorageError, match="partition marks checksum mismatch"):
        read_snapshot(path)


def test_partition_marks_survive_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / snapshot_name(9)
    info = SnapshotInfo(9, 0, 0, 8191, importing="0-2047,4096", fenced="5000-5001")
    write_snapshot(path, sample(), info)  # type: ignore[arg-type]
    got_info, entries = read_snapshot(path)
    assert got_info == info
    assert list(entries) == sample()


def test_version_1_checkpoints_are_still_read(tmp_path: Path) -> None:
    """A data directory written before the marks existed still starts."""
    path = tmp_path / snapshot_name(9)
    write_snapshot(path, sample(), SnapshotInfo(9, 5, 0, 8191))  # type: ignore[arg-type]
    raw = path.read_bytes()
    marks_size = int.from_bytes(raw[40:44], "little")
    head = bytearray(raw[:36])
    head[8] = 1
    v1 = bytes(head) + zlib.crc32(bytes(head)).to_bytes(4, "little") + raw[44 + marks_size + 4 :]
    path.write_bytes(v1)
    got_info, entries = read_snapshot(path)
    assert got_info == SnapshotInfo(9, 5, 0, 8191)
    assert list(entries) == sample()


def test_unknown_version(tmp_path: Path) -> None:
    path = tmp_path / snapshot_name(7)
    write_snapshot(path, sample(), SnapshotInfo(7, 0, 0, 8191))  # type: ignore[arg-type]
    raw = bytearray(path.read_bytes())
    raw[8] = 3
    path.write_bytes(bytes(raw))
    with pytest.raises(StorageError, match="checkpoint format version 3 is not supported"):
        read_snapshot(path)

"""Checkpoint files: round trip of every type, TTLs, damage detection."""

from __future__ import annotations

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
    raw = bytearray(path.read_bytes())
    raw[60] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(StorageError, match="checksum mismatch"):
        list(read_snapshot(path)[1])


def test_unknown_version(tmp_path: Path) -> None:
    path = tmp_path / snapshot_name(7)
    write_snapshot(path, sample(), SnapshotInfo(7, 0, 0, 8191))  # type: ignore[arg-type]
    raw = bytearray(path.read_bytes())
    raw[8] = 3
    path.write_bytes(bytes(raw))
    with pytest.raises(StorageError, match="checkpoint format version 3 is not supported"):
        read_snapshot(path)

"""Checkpoints: a snapshot of the keyspace (or of a partition range) at a log LSN.

Format (little-endian), versioned and checksummed, no pickle:
    header  magic "TSNAP\\r\\n\\0", u16 version, 6 pad, u64 lsn, u64 timestamp_ms,
            u16 first_pn, u16 last_pn, u32 crc32 of the preceding header bytes
    marks   (version 2) u32 length, a JSON object {"importing": ranges, "fenced": ranges},
            u32 crc32 of it: partition state that is not in any key
    blocks  u32 length, u32 crc32(data), data = entries; a block of length 0 ends the body
    trailer u64 entry count, u32 crc32 of the count
Entry: u8 type, i64 expire_ms (-1: none), u32 key length, key, then the value:
    string: u32 len + bytes;  hash: u32 n, n * (field, value);  list/set: u32 n, n * item;
    zset: u32 n, n * (member, f64 score); every item as u32 len + bytes. Type 5 is a small
    (listpack) sorted set, 6 a large one: the difference shows in -0 scores and OBJECT ENCODING.

Why the migration marks live here and not in a side file: a checkpoint lets the log before
it be deleted, and the marks were set by log records; a slave too far behind receives only
the checkpoint file and the log after it (full sync). Keeping them in the header keeps the
rule "checkpoint + log after it = the whole state" true for them as well, on every node.
Version 1 files (no marks) are still read.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from pgserver.keyspace import Value
from pgserver.zset import ZSet
from tessera.errors import StorageError

MAGIC: Final = b"TSNAP\r\n\x00"
VERSION: Final = 2
_READABLE_VERSIONS: Final = (1, 2)
_HEADER = struct.Struct("<8sH6xQQHH")
_CRC = struct.Struct("<I")
_BLOCK = struct.Struct("<II")
_ENTRY = struct.Struct("<BqI")
_U32 = struct.Struct("<I")
_F64 = struct.Struct("<d")
_BLOCK_BYTES: Final = 1 << 20

T_STRING, T_HASH, T_LIST, T_SET, T_ZSET, T_ZSET_SKIPLIST = 1, 2, 3, 4, 5, 6

Entry = tuple[bytes, Value, int | None]


@dataclass(frozen=True)
class SnapshotInfo:
    lsn: int
    timestamp_ms: int
    first_pn: int
    last_pn: int
    importing: str = ""  # migration marks as partition ranges, e.g. "0-2047,4096"
    fenced: str = ""


def _encode_entry(key: bytes, value: Value, expire: int | None, out: list[bytes]) -> None:
    u32 = _U32.pack
    exp = -1 if expire is None else expire
    if isinstance(value, bytes):
        out += (_ENTRY.pack(T_STRING, exp, len(key)), key, u32(len(value)), value)
    elif isinstance(value, dict):
        out += (_ENTRY.pack(T_HASH, exp, len(key)), key, u32(len(value)))
        for field, item in value.items():
            out += (u32(len(field)), field, u32(len(item)), item)
    elif isinstance(value, ZSet):
        kind = T_ZSET if value.listpack else T_ZSET_SKIPLIST  # keeps -0 and the encoding
        out += (_ENTRY.pack(kind, exp, len(key)), key, u32(len(value)))
        for member, score in value.scores.items():
            out += (u32(len(member)), member, _F64.pack(score))
    else:
        kind = T_LIST if isinstance(value, deque) else T_SET
        out += (_ENTRY.pack(kind, exp, len(key)), key, u32(len(value)))
        for element in value:
            out += (u32(len(element)), element)


def write_snapshot(path: Path, entries: Iterable[Entry], info: SnapshotInfo) -> int:
    """Write atomically (temp file, fsync, rename); returns the number of entries."""
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with open(tmp, "wb") as f:
        head = _HEADER.pack(
            MAGIC, VERSION, info.lsn, info.timestamp_ms, info.first_pn, info.last_pn
        )
        f.write(head + _CRC.pack(zlib.crc32(head)))
        marks = json.dumps({"importing": info.importing, "fenced": info.fenced}).encode()
        f.write(_U32.pack(len(marks)) + marks + _CRC.pack(zlib.crc32(marks)))
        parts: list[bytes] = []
        size = 0
        for key, value, expire in entries:
            before = len(parts)
            _encode_entry(key, value, expire, parts)
            size += sum(len(p) for p in parts[before:])
            count += 1
            if size >= _BLOCK_BYTES:
                _write_block(f, parts)
                parts, size = [], 0
        if parts:
            _write_block(f, parts)
        f.write(_BLOCK.pack(0, 0))
        tail = struct.pack("<Q", count)
        f.write(tail + _CRC.pack(zlib.crc32(tail)))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return count


def _write_block(f: BinaryIO, parts: list[bytes]) -> None:
    data = b"".join(parts)
    f.write(_BLOCK.pack(len(data), zlib.crc32(data)))
    f.write(data)


def read_info(path: Path) -> SnapshotInfo:
    with open(path, "rb") as f:
        return _read_header(f, path)


def _read_header(f: BinaryIO, path: Path) -> SnapshotInfo:
    raw = f.read(_HEADER.size + _CRC.size)
    if len(raw) < _HEADER.size + _CRC.size:
        raise StorageError(f"{path}: checkpoint header is truncated")
    magic, version, lsn, ts, first, last = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise StorageError(f"{path}: not a Tessera checkpoint (bad magic)")
    if version not in _READABLE_VERSIONS:
        raise StorageError(
            f"{path}: checkpoint format version {version} is not supported "
            f"(this pgserver reads versions {', '.join(map(str, _READABLE_VERSIONS))})"
        )
    (crc,) = _CRC.unpack_from(raw, _HEADER.size)
    if zlib.crc32(raw[: _HEADER.size]) != crc:
        raise StorageError(f"{path}: checkpoint header checksum mismatch")
    if version == 1:
        return SnapshotInfo(lsn, ts, first, last)
    size_raw = f.read(_U32.size)
    size = _U32.unpack(size_raw)[0] if len(size_raw) == _U32.size else -1
    marks_raw = f.read(size + _CRC.size) if 0 <= size <= 1 << 20 else b""
    if len(marks_raw) != size + _CRC.size or (
        zlib.crc32(marks_raw[:size]) != _CRC.unpack_from(marks_raw, size)[0]
    ):
        raise StorageError(f"{path}: checkpoint partition marks checksum mismatch")
    try:
        marks = json.loads(marks_raw[:size])
        return SnapshotInfo(lsn, ts, first, last, str(marks["importing"]), str(marks["fenced"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"{path}: checkpoint partition marks are unreadable: {exc}") from exc


def read_snapshot(path: Path) -> tuple[SnapshotInfo, Iterator[Entry]]:
    """Header now, entries lazily; any damage raises StorageError naming file and offset."""
    f = open(path, "rb")  # noqa: SIM115 - closed by the generator
    try:
        info = _read_header(f, path)
    except BaseException:
        f.close()
        raise
    return info, _entries(f, path)


def _entries(f: BinaryIO, path: Path) -> Iterator[Entry]:
    with f:
        count = 0
        while True:
            offset = f.tell()
            head = f.read(_BLOCK.size)
            if len(head) < _BLOCK.size:
                raise StorageError(f"{path}: offset {offset}: checkpoint ends without a trailer")
            length, crc = _BLOCK.unpack(head)
            if length == 0:
                break
            data = f.read(length)
            if len(data) < length or zlib.crc32(data) != crc:
                raise StorageError(f"{path}: offset {offset}: checkpoint block checksum mismatch")
            for entry in _decode_block(data):
                count += 1
                yield entry
        tail = f.read(12)
        if len(tail) < 12 or zlib.crc32(tail[:8]) != _CRC.unpack_from(tail, 8)[0]:
            raise StorageError(f"{path}: checkpoint trailer is damaged")
        (expected,) = struct.unpack_from("<Q", tail)
        if expected != count:
            raise StorageError(f"{path}: checkpoint holds {count} entries, trailer says {expected}")


def _decode_block(data: bytes) -> Iterator[Entry]:
    pos = 0
    end = len(data)
    u32 = _U32.unpack_from

    def item() -> bytes:
        nonlocal pos
        (n,) = u32(data, pos)
        pos += 4
        value = data[pos : pos + n]
        pos += n
        return value

    while pos < end:
        kind, exp, key_len = _ENTRY.unpack_from(data, pos)
        pos += _ENTRY.size
        key = data[pos : pos + key_len]
        pos += key_len
        expire = None if exp < 0 else exp
        value: Value
        if kind == T_STRING:
            value = item()
        else:
            (n,) = u32(data, pos)
            pos += 4
            if kind == T_HASH:
                h: dict[bytes, bytes] = {}
                for _ in range(n):
                    field = item()
                    h[field] = item()
                value = h
            elif kind == T_LIST:
                value = deque(item() for _ in range(n))
            elif kind == T_SET:
                value = {item() for _ in range(n)}
            elif kind in (T_ZSET, T_ZSET_SKIPLIST):
                scores: dict[bytes, float] = {}
                for _ in range(n):
                    member = item()
                    (scores[member],) = _F64.unpack_from(data, pos)
                    pos += 8
                value = ZSet.load(scores, listpack=kind == T_ZSET)
            else:
                raise StorageError(f"unknown checkpoint entry type {kind}")
        yield key, value, expire


def snapshot_name(lsn: int) -> str:
    return f"checkpoint-{lsn:020d}.tsnap"


def list_snapshots(directory: Path) -> list[tuple[int, Path]]:
    """(lsn, path) of complete checkpoints, newest first."""
    found = []
    for path in directory.glob("checkpoint-*.tsnap"):
        try:
            lsn = int(path.stem.split("-", 1)[1])
        except ValueError:
            continue
        found.append((lsn, path))
    found.sort(reverse=True)
    return found

"""Range dumps for migration: keys written as the commands that rebuild them elsewhere.

A dump is a plain RESP stream of commands (what `redis-cli --pipe` would send), so the
migrator loads it into the target master as any client would, through the target's log
and so to the target's slaves too. Per key, in this order:

    string      SET key value [PXAT t]; a value over `chunk_bytes` is SET with its first
                piece and APPENDed in pieces, then PEXPIREAT key t if it has a TTL
    collection  DEL key (so nothing left on the target merges in), then RPUSH / HSET /
                SADD / ZADD in chunks of at most `chunk_elements` elements and about
                `chunk_bytes` bytes, then PEXPIREAT key t if it has a TTL

so no single command, on either side, costs more than one chunk. Keys whose deadline had
already passed when the dump was taken are left out: the source logs their DEL anyway.
Sorted-set scores are written with repr(), which round-trips every double exactly.

A framed dump (TSR.DUMP ... FRAMED) is what a migrator loads. Plain string keys without a
TTL (most keys) go in string blocks (pgserver/string_blocks.py), each wrapped in one
`TSR.LOADSTRINGS <keys> <block>` command of about `frame_bytes`, which the target and its
slave install a partition at a time. Every other key is written as the commands above,
their RESP concatenated into blobs of about `frame_bytes`, each blob wrapped in one
`TSR.LOAD <keys> <blob>` command (<keys>: the keys whose first command is in the blob); the
target parses one small command per frame and logs the blob as it is
(pgserver/commands/migration.py). A key is in exactly one frame kind, so the two kinds may
come in any order.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final

from pgserver.keyspace import Keyspace, Value
from pgserver.string_blocks import MAGIC, encode_section, section_size, split_for_size
from pgserver.zset import ZSet
from tessera.resp import encode_command

DEFAULT_CHUNK_ELEMENTS: Final = 256
CHUNK_BYTES: Final = 1 << 20
DEFAULT_FRAME_BYTES: Final = 32 << 10
MAX_FRAME_BYTES: Final = 64 << 20
# The commands a dump writes, so the only ones TSR.LOAD accepts (upper case).
DUMP_COMMANDS: Final = frozenset(
    {b"SET", b"APPEND", b"PEXPIREAT", b"DEL", b"HSET", b"RPUSH", b"SADD", b"ZADD"}
)
_WRITE_BYTES: Final = 1 << 20

Entry = tuple[bytes, Value, int | None]


def key_commands(
    key: bytes,
    value: Value,
    expire_ms: int | None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[list[bytes]]:
    """The commands that recreate `key` exactly (value and TTL) on an empty or dirty target."""
    if isinstance(value, bytes):
        if len(value) <= chunk_bytes:
            if expire_ms is None:
                yield [b"SET", key, value]
            else:
                yield [b"SET", key, value, b"PXAT", b"%d" % expire_ms]
            return
        yield [b"SET", key, value[:chunk_bytes]]
        for start in range(chunk_bytes, len(value), chunk_bytes):
            yield [b"APPEND", key, value[start : start + chunk_bytes]]
    else:
        yield [b"DEL", key]
        head, items = _collection_items(key, value)
        chunk: list[bytes] = []
        size = elements = 0
        for item in items:
            chunk.extend(item)
            elements += 1
            size += sum(len(part) for part in item)
            if elements >= chunk_elements or size >= chunk_bytes:
                yield [*head, *chunk]
                chunk, size, elements = [], 0, 0
        if chunk:
            yield [*head, *chunk]
    if expire_ms is not None:
        yield [b"PEXPIREAT", key, b"%d" % expire_ms]


def _collection_items(key: bytes, value: Value) -> tuple[list[bytes], Iterable[tuple[bytes, ...]]]:
    """The command that appends to this kind of collection, and its elements as arguments."""
    if isinstance(value, dict):
        return [b"HSET", key], value.items()
    if isinstance(value, deque):
        return [b"RPUSH", key], ((item,) for item in value)
    if isinstance(value, ZSet):
        return [b"ZADD", key], ((repr(s).encode(), m) for m, s in value.scores.items())
    assert isinstance(value, set)
    return [b"SADD", key], ((item,) for item in value)


def range_entries(ks: Keyspace, ranges: Iterable[tuple[int, int]]) -> Iterator[Entry]:
    """Every live key of the partition ranges with its value and deadline."""
    now = ks.now
    for first, last in ranges:
        for key, value, expire_ms in ks.iter_range(first, last):
            if expire_ms is None or expire_ms >= now:
                yield key, value, expire_ms


def write_dump(path: Path, entries: Iterable[Entry], chunk_elements: int) -> int:
    """Write the commands of every entry to `path`; returns the number of keys written.

    Runs in a forked child. Writes go out about a megabyte at a time, so the parent can
    hand out the beginning of the file while the rest is still being written.
    """
    keys = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        pending: list[bytes] = []
        size = 0
        for key, value, expire_ms in entries:
            keys += 1
            for argv in key_commands(key, value, expire_ms, chunk_elements):
                encoded = encode_command(argv)
                pending.append(encoded)
                size += len(encoded)
            if size >= _WRITE_BYTES:
                _write_all(fd, b"".join(pending))
                pending, size = [], 0
        if pending:
            _write_all(fd, b"".join(pending))
    finally:
        os.close(fd)
    return keys


def write_framed_dump(
    path: Path,
    ks: Keyspace,
    ranges: Iterable[tuple[int, int]],
    chunk_elements: int,
    frame_bytes: int,
) -> int:
    """Write the ranges' live keys to `path` as frames (see the module docstring); returns
    the number of keys written. Runs in a forked child.

    A partition whose keys are all plain strings without a TTL (the common case) costs a
    few C-level operations: its keys and values are listed, checked and joined as one
    section, with no Python step per key.
    """
    writer = _FrameWriter(path, frame_bytes)
    data = ks.data
    expires = ks.expires
    by_partition = ks.by_partition
    now = ks.now
    written = 0
    try:
        for first, last in ranges:
            for partition in range(first, last + 1):
                index = by_partition[partition]
                if not index:
                    continue
                keys = list(index)
                values: list[Value] = list(map(data.__getitem__, keys))
                with_ttl = index.keys() & expires.keys() if expires else set()
                if (
                    with_ttl
                    or set(map(type, values)) != {bytes}
                    or max(map(len, values)) > CHUNK_BYTES
                ):
                    plain_keys: list[bytes] = []
                    plain_values: list[Value] = []
                    for key, value in zip(keys, values, strict=True):
                        if key in with_ttl:
                            expire_ms = expires[key]
                            if expire_ms < now:
                                continue  # its DEL is logged by the source anyway
                            writer.add_commands(key_commands(key, value, expire_ms, chunk_elements))
                        elif type(value) is bytes and len(value) <= CHUNK_BYTES:
                            plain_keys.append(key)
                            plain_values.append(value)
                        else:
                            writer.add_commands(key_commands(key, value, None, chunk_elements))
                        written += 1
                    keys, values = plain_keys, plain_values
                else:
                    written += len(keys)
                if keys:
                    writer.add_strings(partition, keys, values)  # type: ignore[arg-type]
        writer.finish()
    finally:
        writer.close()
    return written


class _FrameWriter:
    """The two open frames of a framed dump, and the bytes waiting for the file."""

    def __init__(self, path: Path, frame_bytes: int) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._frame_bytes = frame_bytes
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._sections: list[bytes] = []
        self._sections_size = self._sections_keys = 0
        self._commands: list[bytes] = []
        self._commands_size = self._commands_keys = 0

    def add_strings(self, partition: int, keys: list[bytes], values: list[bytes]) -> None:
        limit = self._frame_bytes
        if section_size(keys, values) <= limit:
            pieces: Iterable[tuple[Sequence[bytes], Sequence[bytes]]] = [(keys, values)]
        else:
            pieces = split_for_size(keys, values, limit)
        for piece_keys, piece_values in pieces:
            section = encode_section(partition, piece_keys, piece_values)
            if self._sections_size and self._sections_size + len(section) > limit:
                self._close_strings()
            self._sections.append(section)
            self._sections_size += len(section)
            self._sections_keys += len(piece_keys)

    def add_commands(self, commands: Iterable[list[bytes]]) -> None:
        """The commands of one key."""
        first = 1
        for argv in commands:
            encoded = encode_command(argv)
            if self._commands_size and self._commands_size + len(encoded) > self._frame_bytes:
                self._close_commands()
            self._commands.append(encoded)
            self._commands_size += len(encoded)
            self._commands_keys += first
            first = 0

    def _close_strings(self) -> None:
        count = b"%d" % self._sections_keys
        size = len(MAGIC) + self._sections_size
        self._out(
            b"*3\r\n$15\r\nTSR.LOADSTRINGS\r\n$%d\r\n%b\r\n$%d\r\n%b"
            % (len(count), count, size, MAGIC)
        )
        self._out(*self._sections, b"\r\n")
        self._sections, self._sections_size, self._sections_keys = [], 0, 0

    def _close_commands(self) -> None:
        frame: list[bytes] = []
        _close_frame(frame, self._commands, self._commands_size, self._commands_keys)
        self._out(*frame)
        self._commands, self._commands_size, self._commands_keys = [], 0, 0

    def _out(self, *parts: bytes) -> None:
        self._pending.extend(parts)
        self._pending_size += sum(map(len, parts))
        if self._pending_size >= _WRITE_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            _write_all(self._fd, b"".join(self._pending))
            self._pending, self._pending_size = [], 0

    def finish(self) -> None:
        if self._sections:
            self._close_strings()
        if self._commands:
            self._close_commands()
        self._flush()

    def close(self) -> None:
        os.close(self._fd)


def _close_frame(out: list[bytes], commands: list[bytes], size: int, keys: int) -> int:
    """Append `TSR.LOAD <keys> <commands joined>` to `out`; returns its size in bytes."""
    count = b"%d" % keys
    head = b"*3\r\n$8\r\nTSR.LOAD\r\n$%d\r\n%b\r\n$%d\r\n" % (len(count), count, size)
    out.append(head)
    out.extend(commands)
    out.append(b"\r\n")
    return len(head) + size + 2


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_SAMPLE_KEYS: Final = 512
_SAMPLE_ELEMENTS: Final = 64
_FRAMING: Final = 16  # RESP framing bytes per argument, roughly


def estimate_range(ks: Keyspace, ranges: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """(keys, estimated dump bytes) of the ranges, for a progress bar.

    Keys are counted exactly; bytes are estimated from at most one key per partition and
    _SAMPLE_KEYS keys in all (and the first _SAMPLE_ELEMENTS elements of a collection),
    so the cost does not grow with the size of the range.
    """
    by_partition = ks.by_partition
    data = ks.data
    keys = 0
    sampled = sampled_bytes = 0
    for first, last in ranges:
        for p in range(first, last + 1):
            partition = by_partition[p]
            if not partition:
                continue
            keys += len(partition)
            if sampled < _SAMPLE_KEYS:
                key = next(iter(partition))
                sampled += 1
                sampled_bytes += len(key) + _FRAMING + _value_bytes(data[key])
    if not sampled:
        return keys, 0
    return keys, sampled_bytes * keys // sampled


def _value_bytes(value: Value) -> int:
    if isinstance(value, bytes):
        return len(value) + _FRAMING
    if isinstance(value, dict):
        items: Iterable[bytes] = (k + v for k, v in value.items())
    elif isinstance(value, ZSet):
        items = value.scores
    else:
        items = value
    total = sample = 0
    for item in items:
        total += len(item) + _FRAMING
        sample += 1
        if sample >= _SAMPLE_ELEMENTS:
            break
    return total * len(value) // sample if sample else 0

"""String blocks: plain string keys of a migration dump in a form installed without
executing a command per key (TSR.LOADSTRINGS), without I/O.

Most keys a migration moves are plain strings without a TTL. Sent as `SET key value`
commands, each costs the target a parse, a dispatch and a handler call, and the target's
slave the same again. A string block carries them as lengths and bytes, grouped by
partition, so that the dump child, the target and its slave handle a partition's keys with
a few C-level operations (joins, slices, dict updates) instead of a Python step per key.

Block:
    4 bytes            MAGIC, which names the format and its version
    then sections, each one partition's keys (a partition may have several sections):
        u16            partition                         (little-endian)
        u16            reserved, 0
        u32            count of keys, at least 1
        u32            size in bytes of the RESP array that follows
        RESP array     2 * count bulk strings: key 0, value 0, key 1, value 1, ...

The keys and values are RESP because hiredis turns an array of bulk strings into bytes
objects in C, several times faster than slicing them out of the block in Python. A decoder
checks everything before anything is used: the magic, the partitions, that each array
holds exactly its strings, and that every key hashes to its section's partition. (Like
hiredis, the decoder takes a RESP simple string where a bulk string is expected; a dump
never writes one, and either way the item is a byte string.)
"""

from __future__ import annotations

import struct
from binascii import crc_hqx
from collections.abc import Iterator, Sequence
from itertools import repeat
from typing import Final

import hiredis

from tessera.errors import TesseraError
from tessera.partition import PARTITIONS, pn

MAGIC: Final = b"TSS1"
SECTION_HEAD = struct.Struct("<HHII")
# At most this many keys per section, a sanity bound on a header's count.
MAX_SECTION_KEYS: Final = 1 << 24
# "$<n>" for the lengths most keys and values have, made once.
_BULK_HEADS: Final = [b"$%d" % n for n in range(4096)]
_ITEM_FRAMING: Final = 8  # "$", the length's digits (usually 1-3), two CRLFs


class BlockError(TesseraError):
    """A string block that is not well-formed; nothing of it may be applied."""


Section = tuple[int, list[bytes], list[bytes]]  # partition, keys, values


def encode_section(partition: int, keys: Sequence[bytes], values: Sequence[bytes]) -> bytes:
    """One section holding `keys` (all of `partition`) with their `values`."""
    count = len(keys)
    items: list[bytes] = [b""] * (2 * count)
    items[0::2] = keys
    items[1::2] = values
    # "$<len>" and the item alternate, joined by CRLF: the bulk strings of a RESP array.
    lengths = list(map(len, items))
    if max(lengths) < len(_BULK_HEADS):
        heads = list(map(_BULK_HEADS.__getitem__, lengths))  # no Python step per item
    else:
        heads = [b"$%d" % length for length in lengths]
    parts: list[bytes] = [b""] * (4 * count)
    parts[0::2] = heads
    parts[1::2] = items
    body = b"*%d\r\n%b\r\n" % (2 * count, b"\r\n".join(parts))
    return SECTION_HEAD.pack(partition, 0, count, len(body)) + body


def section_size(keys: Sequence[bytes], values: Sequence[bytes]) -> int:
    """About the bytes encode_section would produce for these keys."""
    items = sum(map(len, keys)) + sum(map(len, values))
    return SECTION_HEAD.size + 16 + items + 2 * _ITEM_FRAMING * len(keys)


def split_for_size(
    keys: Sequence[bytes], values: Sequence[bytes], max_bytes: int
) -> Iterator[tuple[Sequence[bytes], Sequence[bytes]]]:
    """The keys cut into consecutive pieces whose sections hold at most about `max_bytes`
    (at least one key each). A Python step per key: used only for partitions too big for
    one section."""
    start, n = 0, len(keys)
    while start < n:
        size = SECTION_HEAD.size + 16
        end = start
        while end < n:
            size += 2 * _ITEM_FRAMING + len(keys[end]) + len(values[end])
            if size > max_bytes and end > start:
                break
            end += 1
        yield keys[start:end], values[start:end]
        start = end


def decode_block(block: bytes, check_partitions: bool = True) -> list[Section]:
    """The sections of a block, every one checked; BlockError if anything is wrong.

    `check_partitions=False` skips hashing every key, for a block that was checked before
    it was logged (a slave applying its master's log, a replay)."""
    if block[:4] != MAGIC:
        raise BlockError("the block does not start with the string block magic")
    size = len(block)
    pos = len(MAGIC)
    sections: list[Section] = []
    head_size = SECTION_HEAD.size
    while pos < size:
        if pos + head_size > size:
            raise BlockError(f"the block ends inside a section header at byte {pos}")
        partition, reserved, count, body_size = SECTION_HEAD.unpack_from(block, pos)
        if partition >= PARTITIONS or reserved:
            raise BlockError(f"bad section header at byte {pos} (partition {partition})")
        if not 1 <= count <= MAX_SECTION_KEYS:
            raise BlockError(f"bad key count {count} in the section at byte {pos}")
        pos += head_size
        end = pos + body_size
        if end > size:
            raise BlockError(f"the section at byte {pos} runs {end - size} bytes past the block")
        reader = hiredis.Reader()
        try:
            reader.feed(block, pos, body_size)
            items = reader.gets()
        except hiredis.ProtocolError as exc:
            raise BlockError(f"the section at byte {pos} is not RESP ({exc})") from None
        if (
            type(items) is not list
            or len(items) != 2 * count
            or reader.has_data()
            or set(map(type, items)) != {bytes}
        ):
            raise BlockError(
                f"the section at byte {pos} is not one array of {2 * count} bulk strings"
            )
        keys = items[0::2]
        values = items[1::2]
        if check_partitions and (found := _partitions(keys)) != {partition}:
            wrong = sorted(found - {partition})[:5]
            raise BlockError(f"keys of partitions {wrong} in the section of partition {partition}")
        sections.append((partition, keys, values))
        pos = end
    return sections


def block_partitions(block: bytes) -> set[int]:
    """The partitions a block's sections name, reading only the headers (best effort: a
    malformed block yields what could be read)."""
    found: set[int] = set()
    size = len(block)
    pos = len(MAGIC)
    head_size = SECTION_HEAD.size
    while pos + head_size <= size:
        partition, _, _, body_size = SECTION_HEAD.unpack_from(block, pos)
        found.add(partition)
        pos += head_size + body_size
    return found


def _partitions(keys: list[bytes]) -> set[int]:
    """The partitions of `keys`; C-level work only, unless a key has a hash tag."""
    if b"{" in b"".join(keys):
        return set(map(pn, keys))
    # A partition is the low 13 bits of the key's 16-bit CRC: first the distinct CRCs.
    mask = PARTITIONS - 1
    return {crc & mask for crc in set(map(crc_hqx, keys, repeat(0)))}

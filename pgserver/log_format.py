"""The replication log's byte format, without I/O.

The log is one endless byte stream; a record's LSN is the stream offset of its first byte
(as in nbase-arc), so LSNs are monotonic and never reused. The stream is cut into segment
files, each starting with a fixed header that is not part of the stream.

Record (little-endian):
    u32 payload_length    bytes after the fixed header and the partition list
    u32 crc32             of every byte after this field (header rest + pns + payload)
    u8  version           RECORD_VERSION
    u8  kind              KIND_*
    u16 partition_count   0 means "every partition" (FLUSHALL)
    u64 timestamp_ms      the master's clock when it executed the write
    u16 * partition_count the partitions the record touches, so readers filter a
                          partition range without parsing the command
    payload               the command as a RESP array of bulk strings
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from tessera.errors import StorageError

RECORD_VERSION: Final = 1
KIND_COMMAND: Final = 1
KIND_NOOP: Final = 2  # carries no command (epoch or checkpoint markers, later)

HEADER = struct.Struct("<IIBBHQ")
HEADER_SIZE: Final = HEADER.size  # 20
_CRC_FROM: Final = 8  # the crc covers bytes [8, end)
MAX_PAYLOAD: Final = 1 << 31

SEGMENT_MAGIC: Final = b"TSRLOG\r\n"
SEGMENT_VERSION: Final = 1
SEGMENT_HEADER = struct.Struct("<8sHxxxxxxQQ")  # magic, version, pad, first_lsn, reserved
SEGMENT_HEADER_SIZE: Final = SEGMENT_HEADER.size  # 32

ALL_PARTITIONS: tuple[int, ...] = ()

if sys.byteorder != "little":  # array("H") is written in native byte order
    raise ImportError("the log format code assumes a little-endian machine")


@dataclass(frozen=True, slots=True)
class Record:
    lsn: int
    kind: int
    timestamp_ms: int
    partitions: tuple[int, ...]  # empty: every partition
    payload: bytes

    @property
    def size(self) -> int:
        return HEADER_SIZE + 2 * len(self.partitions) + len(self.payload)

    @property
    def end_lsn(self) -> int:
        return self.lsn + self.size

    def touches(self, first: int, last: int) -> bool:
        """Whether the record touches any partition in first..last."""
        if not self.partitions:
            return True
        return any(first <= p <= last for p in self.partitions)


_PREFIX = struct.Struct("<II")
_HEAD = struct.Struct("<BBHQ")


def encode_record(kind: int, timestamp_ms: int, partitions: Sequence[int], payload: bytes) -> bytes:
    count = len(partitions)
    head = _HEAD.pack(RECORD_VERSION, kind, count, timestamp_ms)
    if count:
        head += array("H", partitions).tobytes()
    crc = zlib.crc32(payload, zlib.crc32(head))
    return b"".join((_PREFIX.pack(len(payload), crc), head, payload))


class CorruptRecord(StorageError):
    """A record whose checksum or fields are wrong (as opposed to merely incomplete)."""


class UnknownVersion(StorageError):
    """A record or segment written by a newer format version."""


def decode_records(
    buf: bytes | memoryview, base_lsn: int, start: int = 0
) -> tuple[list[Record], int, StorageError | None]:
    """Decode whole records in buf[start:]; LSN of buf[start] is base_lsn.

    Returns (records, bytes consumed, problem). problem is None when the buffer simply
    ends (possibly inside a record: an incomplete tail), else the error found at
    buf[start + consumed].
    """
    records: list[Record] = []
    pos = start
    end = len(buf)
    unpack = HEADER.unpack_from
    while end - pos >= HEADER_SIZE:
        length, crc, version, kind, count, ts = unpack(buf, pos)
        if version != RECORD_VERSION:
            if version > RECORD_VERSION:
                return (
                    records,
                    pos - start,
                    UnknownVersion(
                        f"log record format version {version} is newer than this pgserver "
                        f"understands ({RECORD_VERSION})"
                    ),
                )
            return records, pos - start, CorruptRecord(f"bad record version byte {version}")
        if length > MAX_PAYLOAD:
            return records, pos - start, CorruptRecord(f"record length {length} is implausible")
        total = HEADER_SIZE + 2 * count + length
        if end - pos < total:
            break
        if zlib.crc32(buf[pos + _CRC_FROM : pos + total]) != crc:
            return records, pos - start, CorruptRecord("record checksum mismatch")
        pn_end = pos + HEADER_SIZE + 2 * count
        partitions = struct.unpack_from(f"<{count}H", buf, pos + HEADER_SIZE) if count else ()
        records.append(
            Record(base_lsn + pos - start, kind, ts, partitions, bytes(buf[pn_end : pos + total]))
        )
        pos += total
    return records, pos - start, None


def encode_segment_header(first_lsn: int) -> bytes:
    return SEGMENT_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION, first_lsn, 0)


def decode_segment_header(raw: bytes, name: str) -> int:
    """The first LSN stored in a segment header; StorageError naming the file if invalid."""
    if len(raw) < SEGMENT_HEADER_SIZE:
        raise CorruptRecord(f"{name}: segment header is truncated")
    magic, version, first_lsn, _ = SEGMENT_HEADER.unpack_from(raw)
    if magic != SEGMENT_MAGIC:
        raise CorruptRecord(f"{name}: not a Tessera log segment (bad magic)")
    if version != SEGMENT_VERSION:
        raise UnknownVersion(
            f"{name}: log segment format version {version} is not supported "
            f"(this pgserver reads version {SEGMENT_VERSION})"
        )
    return int(first_lsn)


def segment_name(first_lsn: int) -> str:
    return f"{first_lsn:020d}.log"

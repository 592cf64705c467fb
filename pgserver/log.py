"""The on-disk replication log: segment files, recovery, appends, readers.

Appends are buffered in memory and written with one os.write per batch (group commit);
the server decides when to fsync (policy always / everysec / no). Recovery validates
every record's checksum: a torn tail is truncated and reported, damage anywhere else stops
the start-up with an error naming the file and offset.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pgserver.log_format import (
    SEGMENT_HEADER_SIZE,
    Record,
    decode_records,
    decode_segment_header,
    encode_record,
    encode_segment_header,
    segment_name,
)
from tessera.errors import StorageError

log = logging.getLogger("tessera.pgserver.log")

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
_READ_CHUNK = 4 * 1024 * 1024


class LogTruncated(StorageError):
    """A reader asked for an LSN older than the oldest kept segment."""


@dataclass(frozen=True, slots=True)
class Segment:
    first_lsn: int
    path: Path


@dataclass(frozen=True, slots=True)
class SyncBatch:
    """What one fsync round makes durable: run `sync()` in a worker thread."""

    lsn: int
    fds: tuple[int, ...]
    close_after: tuple[int, ...]

    def sync(self) -> int:
        for fd in self.fds:
            os.fsync(fd)
        for fd in self.close_after:
            os.close(fd)
        return self.lsn


class ReplicationLog:
    """The log of one pgserver. Owned by the event loop thread; only SyncBatch.sync is threaded."""

    def __init__(self, directory: Path, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.segments: list[Segment] = []
        self.first_lsn = 0
        self.end_lsn = 0  # after the last appended record
        self.written_lsn = 0  # after the last record handed to the OS
        self.durable_lsn = 0  # after the last fsynced record
        self.truncated_bytes = 0  # torn tail removed at recovery
        self._pending: list[bytes] = []
        self._fd = -1
        self._segment_used = 0
        self._retired: list[int] = []
        # Called with (bytes, their first LSN) after every write: a master streams these
        # to slaves that are caught up, without reading its files back.
        self.on_write: Callable[[bytes, int], None] | None = None

    # ------------------------------------------------------------------ open / recover

    def open(self, start_lsn: int = 0) -> None:
        """Find the segments, validate them, cut a torn tail, and open the last for append.

        start_lsn: where a brand-new log starts (a checkpoint's LSN when the log was lost).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segments = self._list_segments()
        if not self.segments:
            self._start_segment(start_lsn)
            self.first_lsn = start_lsn
            return
        self.first_lsn = self.segments[0].first_lsn
        end = self.first_lsn
        for index, segment in enumerate(self.segments):
            if segment.first_lsn != end:
                raise StorageError(
                    f"{segment.path}: segment starts at LSN {segment.first_lsn} but the "
                    f"previous one ends at {end}; a segment is missing"
                )
            end = self._validate(segment, last=index == len(self.segments) - 1)
        self.end_lsn = self.written_lsn = self.durable_lsn = end
        last = self.segments[-1]
        self._fd = os.open(last.path, os.O_WRONLY | os.O_APPEND)
        self._segment_used = end - last.first_lsn
        if start_lsn > end:
            # The checkpoint is ahead of the surviving log (a crash lost the log's tail
            # after the checkpoint was taken): continue the stream at the checkpoint.
            self._start_segment(start_lsn)

    def _list_segments(self) -> list[Segment]:
        found: list[Segment] = []
        for path in self.directory.glob("*.log"):
            try:
                first = int(path.stem)
            except ValueError:
                continue
            found.append(Segment(first, path))
        found.sort(key=lambda s: s.first_lsn)
        return found

    def _validate(self, segment: Segment, last: bool) -> int:
        """Check every record of a segment; returns the LSN after its last good record."""
        with open(segment.path, "rb") as f:
            header = f.read(SEGMENT_HEADER_SIZE)
            first = decode_segment_header(header, str(segment.path))
            if first != segment.first_lsn:
                raise StorageError(
                    f"{segment.path}: header says LSN {first}, file name says {segment.first_lsn}"
                )
            data = f.read()
        _records, consumed, problem = decode_records(data, first)
        if problem is None and consumed == len(data):
            return first + consumed
        offset = SEGMENT_HEADER_SIZE + consumed
        tail = memoryview(data)[consumed:]
        if problem is not None and not last:
            raise StorageError(f"{segment.path}: offset {offset}: {problem}")
        if problem is not None and not _looks_torn(tail):
            raise StorageError(
                f"{segment.path}: offset {offset}: {problem}, followed by more data; "
                "refusing to start (the log is damaged in the middle, not at its tail)"
            )
        if problem is None and not last:
            raise StorageError(f"{segment.path}: offset {offset}: incomplete record")
        log.warning(
            "%s: truncating a torn tail of %d bytes at offset %d (%s)",
            segment.path,
            len(tail),
            offset,
            problem or "incomplete record",
        )
        self.truncated_bytes += len(tail)
        with open(segment.path, "r+b") as f:
            f.truncate(offset)
            f.flush()
            os.fsync(f.fileno())
        return first + consumed

    def _start_segment(self, first_lsn: int) -> None:
        if self._fd >= 0:
            self._retired.append(self._fd)
        path = self.directory / segment_name(first_lsn)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        os.write(fd, encode_segment_header(first_lsn))
        os.fsync(fd)
        _fsync_dir(self.directory)
        self._fd = fd
        self._segment_used = 0
        self.segments.append(Segment(first_lsn, path))
        self.end_lsn = self.written_lsn = self.durable_lsn = max(self.end_lsn, first_lsn)

    def close(self) -> None:
        self.write()
        for fd in [*self._retired, self._fd]:
            if fd >= 0:
                os.fsync(fd)
                os.close(fd)
        self._retired.clear()
        self._fd = -1
        self.durable_lsn = self.written_lsn

    # ------------------------------------------------------------------ append / write

    def append(
        self, kind: int, timestamp_ms: int, partitions: tuple[int, ...], payload: bytes
    ) -> int:
        """Buffer one record; returns its LSN (start offset)."""
        record = encode_record(kind, timestamp_ms, partitions, payload)
        size = len(record)
        if self._segment_used and self._segment_used + size > self.segment_bytes:
            self.write()
            self._start_segment(self.end_lsn)
        lsn = self.end_lsn
        self._pending.append(record)
        self._segment_used += size
        self.end_lsn = lsn + size
        return lsn

    def append_raw(self, records: bytes) -> int:
        """Append records exactly as another node's log holds them (a slave copying its
        master: same bytes, so same LSNs). Returns the new end LSN."""
        size = len(records)
        if self._segment_used and self._segment_used + size > self.segment_bytes:
            self.write()
            self._start_segment(self.end_lsn)
        self._pending.append(records)
        self._segment_used += size
        self.end_lsn += size
        return self.end_lsn

    def truncate(self, lsn: int) -> None:
        """Drop everything after `lsn` (a record boundary): an uncommitted tail from an
        older epoch. Segments starting after it are deleted."""
        self.write()
        if lsn >= self.end_lsn:
            return
        if lsn < self.first_lsn:
            raise StorageError(f"cannot truncate to LSN {lsn}: the log starts at {self.first_lsn}")
        for fd in [*self._retired, self._fd]:
            if fd >= 0:
                os.close(fd)
        self._retired = []
        self._fd = -1
        while len(self.segments) > 1 and self.segments[-1].first_lsn > lsn:
            self.segments.pop().path.unlink(missing_ok=True)
        last = self.segments[-1]
        if last.first_lsn == lsn and len(self.segments) > 1:
            self.segments.pop().path.unlink(missing_ok=True)
            last = self.segments[-1]
        with open(last.path, "r+b") as f:
            f.truncate(SEGMENT_HEADER_SIZE + lsn - last.first_lsn)
            f.flush()
            os.fsync(f.fileno())
        self._fd = os.open(last.path, os.O_WRONLY | os.O_APPEND)
        self._segment_used = lsn - last.first_lsn
        self.end_lsn = self.written_lsn = lsn
        self.durable_lsn = min(self.durable_lsn, lsn)

    def read_bytes(self, from_lsn: int, max_bytes: int) -> bytes:
        """Raw written stream bytes from `from_lsn` (a record boundary), at most max_bytes,
        ending on a record boundary: what a master streams to a slave."""
        if from_lsn < self.first_lsn:
            raise LogTruncated(
                f"LSN {from_lsn} is older than the oldest kept log segment (LSN {self.first_lsn})"
            )
        out: list[bytes] = []
        size = 0
        for record in self.read(from_lsn):
            raw_size = record.size
            if out and size + raw_size > max_bytes:
                break
            out.append(
                encode_record(record.kind, record.timestamp_ms, record.partitions, record.payload)
            )
            size += raw_size
        return b"".join(out)

    @property
    def has_unwritten(self) -> bool:
        return bool(self._pending)

    def write(self) -> int:
        """Hand every buffered record to the OS in one write (survives kill -9)."""
        if self._pending:
            data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending.clear()
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            start = self.written_lsn
            self.written_lsn = self.end_lsn
            if self.on_write is not None:
                self.on_write(data, start)
        return self.written_lsn

    def sync_batch(self) -> SyncBatch:
        """Everything written so far, ready to be fsynced off the event loop."""
        batch = SyncBatch(self.written_lsn, (*self._retired, self._fd), tuple(self._retired))
        self._retired = []
        return batch

    def mark_durable(self, lsn: int) -> None:
        self.durable_lsn = max(self.durable_lsn, lsn)

    # ------------------------------------------------------------------ reading

    def read(
        self, from_lsn: int, first_pn: int = 0, last_pn: int = 8191, upto_lsn: int | None = None
    ) -> Iterator[Record]:
        """Records starting at or after from_lsn (which must be a record boundary).

        Only written records are read; optionally only those touching first_pn..last_pn.
        """
        if from_lsn < self.first_lsn:
            raise LogTruncated(
                f"LSN {from_lsn} is older than the oldest kept log segment (LSN {self.first_lsn})"
            )
        limit = self.written_lsn if upto_lsn is None else min(upto_lsn, self.written_lsn)
        everything = first_pn == 0 and last_pn == 8191
        for index, segment in enumerate(self.segments):
            seg_end = (
                self.segments[index + 1].first_lsn if index + 1 < len(self.segments) else limit
            )
            if seg_end <= from_lsn or segment.first_lsn >= limit:
                continue
            start = max(from_lsn, segment.first_lsn)
            for record in _read_segment(segment, start, min(seg_end, limit)):
                if everything or record.touches(first_pn, last_pn):
                    yield record

    def remove_segments_before(self, lsn: int) -> int:
        """Delete segments wholly before `lsn` (never the one being appended to)."""
        removed = 0
        while len(self.segments) > 1 and self.segments[1].first_lsn <= lsn:
            segment = self.segments.pop(0)
            segment.path.unlink(missing_ok=True)
            removed += 1
        if removed:
            self.first_lsn = self.segments[0].first_lsn
        return removed

    def size_bytes(self) -> int:
        return self.end_lsn - self.first_lsn


def _read_segment(segment: Segment, start: int, end: int) -> Iterator[Record]:
    with open(segment.path, "rb") as f:
        f.seek(SEGMENT_HEADER_SIZE + start - segment.first_lsn)
        lsn = start
        carry = b""
        while lsn < end:
            chunk = f.read(min(_READ_CHUNK, end - lsn - len(carry)))
            if not chunk:
                break
            buf = carry + chunk if carry else chunk
            records, consumed, problem = decode_records(buf, lsn)
            if problem is not None:
                raise StorageError(
                    f"{segment.path}: offset "
                    f"{SEGMENT_HEADER_SIZE + lsn + consumed - segment.first_lsn}: {problem}"
                )
            yield from records
            lsn += consumed
            carry = buf[consumed:]


def _looks_torn(tail: memoryview) -> bool:
    """A damaged record is a torn write if nothing meaningful follows it."""
    from pgserver.log_format import HEADER

    if len(tail) < HEADER.size:
        return True
    length, _crc, _v, _k, count, _ts = HEADER.unpack_from(tail)
    declared = HEADER.size + 2 * count + length
    return declared >= len(tail) or not any(tail[declared:])


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

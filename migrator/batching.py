"""Pure helpers of the data path: the target's resume marker, frame groups, dump parsing and
the load throttle. No I/O.

The resume marker
-----------------
Commands replayed from the log are not idempotent (INCR, RPUSH), so a new migrator must
resume the tail exactly where the target stopped applying, not where the old one last
*saved* its progress (the target may have applied more since, or, if the old one died in
the middle of a write, only part of a frame). The pgserver has no transactions, so the
target itself records how far it got, in a key of the moving ranges (hidden while they are
importing, removed by TSR.DELRANGE on cancel and by the commit):

    SET <marker> "open:<lsn>"   # a group of frames after <lsn> starts
    <the group's commands>
    SET <marker> "<end_lsn>"    # ... and ended: everything up to <end_lsn> is applied

One connection executes in order, so a marker reading "<lsn>" means the frames up to
<lsn> were applied and nothing after them; "open:<lsn>" means an unknown part of the next
group was, and the copy must be redone. Two small writes per group (a group is every frame
at hand, up to `batch_bytes`), none during the dump load (an interrupted load is redone).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Final

import hiredis

from tessera.errors import MigrationError
from tessera.partition import pn

Command = list[bytes]

_NOT_ENOUGH: Final = object()
_MARKER_PREFIX: Final = b"__tessera_migrator__:"
# Commands of a dump that start a key (the rest add to it): SET for strings, DEL first for
# collections (docs/migration-pgserver.md).
_KEY_STARTS: Final = frozenset({b"SET", b"DEL", b"set", b"del"})
# A framed dump's frames: TSR.LOAD <keys> <blob of commands> and TSR.LOADSTRINGS <keys>
# <string block>, forwarded to the target as they are.
_FRAME: Final = frozenset({b"TSR.LOAD", b"tsr.load", b"TSR.LOADSTRINGS", b"tsr.loadstrings"})


# ---------------------------------------------------------------------------- marker


@cache
def _tag_for(partition: int) -> bytes:
    """A short hash tag whose key falls in `partition` (found by counting; ~8k tries)."""
    for i in itertools.count():
        tag = b"m%d" % i
        if pn(tag) == partition:
            return tag
    raise AssertionError("unreachable")


def marker_key(ranges: str) -> bytes:
    """The resume marker's key: in the first partition of `ranges` (canonical text)."""
    first = int(ranges.split(",", 1)[0].split("-", 1)[0])
    return _MARKER_PREFIX + b"{" + _tag_for(first) + b"}:" + ranges.encode()


def marker_done(key: bytes, lsn: int) -> Command:
    return [b"SET", key, b"%d" % lsn]


def marker_open(key: bytes, lsn: int) -> Command:
    return [b"SET", key, b"open:%d" % lsn]


def parse_marker(value: bytes | None) -> tuple[int | None, bool]:
    """(lsn, clean) from the marker's value; (None, False) if there is none."""
    if value is None:
        return None, False
    clean = not value.startswith(b"open:")
    try:
        return int(value[5:] if not clean else value), clean
    except ValueError:
        raise MigrationError(f"the target's resume marker holds {value!r}") from None


# ---------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class Frame:
    """One TSR.TAIL frame: the commands of one source log record, and where it ends."""

    end_lsn: int
    timestamp_ms: int
    commands: list[Command]


@dataclass
class Group:
    """Frames applied together: `commands` (markers included) then `end_lsn` is applied."""

    end_lsn: int
    commands: list[Command] = field(default_factory=list)
    frames: int = 0  # frames with commands
    data_commands: int = 0  # commands of the frames (markers not counted)


def command_size(argv: Command) -> int:
    """Bytes of a command in RESP: `*<n>\r\n`, then `$<len>\r\n<arg>\r\n` per argument."""
    size = 3 + len(str(len(argv)))
    for arg in argv:
        n = len(arg)
        size += 5 + n + len(str(n))
    return size


def group_frames(
    frames: Iterable[Frame], marker: bytes, start_lsn: int, max_bytes: int
) -> list[Group]:
    """Frames in order, as groups of at most about `max_bytes` (a frame is never split).

    `start_lsn` is where the marker stands (the end of the previous group). A group of
    frames without commands has no commands either: it only moves the applied LSN.
    """
    groups: list[Group] = []
    current: Group | None = None
    size = 0
    prev = start_lsn
    for frame in frames:
        frame_size = sum(command_size(argv) for argv in frame.commands)
        if current is not None and frame.commands and size and size + frame_size > max_bytes:
            _close(current, marker, prev)
            groups.append(current)
            prev = current.end_lsn
            current = None
        if current is None:
            current = Group(frame.end_lsn)
            size = 0
        current.end_lsn = frame.end_lsn
        if frame.commands:
            current.commands.extend(frame.commands)
            current.frames += 1
            current.data_commands += len(frame.commands)
            size += frame_size
    if current is not None:
        _close(current, marker, prev)
        groups.append(current)
    return groups


def _close(group: Group, marker: bytes, prev: int) -> None:
    if group.commands:
        group.commands = [marker_open(marker, prev), *group.commands]
        group.commands.append(marker_done(marker, group.end_lsn))


def parse_frame(item: object) -> Frame:
    """A frame from the tail's parsed reply (MigrationError if it is not one)."""
    if isinstance(item, list) and len(item) == 3:
        end, timestamp, commands = item
        if isinstance(end, int) and isinstance(timestamp, int) and isinstance(commands, list):
            return Frame(end, timestamp, commands)
    raise MigrationError(f"the source sent something that is not a tail frame: {item!r:.200}")


# ---------------------------------------------------------------------------- dumps


@dataclass
class LoadBatch:
    """Dump commands sent to the target in one write."""

    commands: list[Command]
    size: int  # their bytes in RESP (the dump's own encoding)
    keys: int  # keys they start


class DumpParser:
    """Dump bytes, cut anywhere, in; batches of whole commands out.

    A framed dump's `TSR.LOAD <keys> <blob>` frames are commands like the others here: each
    is sent to the target whole (the blob is not parsed), and counts <keys> keys.
    """

    def __init__(self, batch_bytes: int) -> None:
        self._reader = hiredis.Reader(notEnoughData=_NOT_ENOUGH)
        self._batch_bytes = batch_bytes
        self._pending: list[Command] = []
        self._pending_size = 0
        self._pending_keys = 0

    def feed(self, data: bytes) -> list[LoadBatch]:
        """Batches completed by `data` (the rest waits for more or for finish())."""
        self._reader.feed(data)
        batches: list[LoadBatch] = []
        gets = self._reader.gets
        while (argv := gets()) is not _NOT_ENOUGH:
            if (
                type(argv) is list
                and len(argv) == 3
                and type(argv[0]) is bytes
                and argv[0] in _FRAME
            ):
                self._pending.append(argv)
                self._pending_size += command_size(argv)
                self._pending_keys += _frame_keys(argv)
            elif (
                not isinstance(argv, list)
                or not argv
                or not all(isinstance(arg, bytes) for arg in argv)
            ):
                raise MigrationError(
                    f"the dump holds something that is not a command: {argv!r:.200}"
                )
            else:
                self._pending.append(argv)
                self._pending_size += command_size(argv)
                self._pending_keys += argv[0] in _KEY_STARTS
            if self._pending_size >= self._batch_bytes:
                batches.append(self._take())
        return batches

    def finish(self) -> list[LoadBatch]:
        """The last batch; MigrationError if the dump ended in the middle of a command."""
        if self._reader.has_data():
            raise MigrationError("the dump ends in the middle of a command")
        return [self._take()] if self._pending else []

    def _take(self) -> LoadBatch:
        batch = LoadBatch(self._pending, self._pending_size, self._pending_keys)
        self._pending, self._pending_size, self._pending_keys = [], 0, 0
        return batch


def _frame_keys(argv: list[object]) -> int:
    """<keys> of a TSR.LOAD frame (MigrationError if it is not a frame)."""
    keys, blob = argv[1], argv[2]
    if type(keys) is bytes and type(blob) is bytes and keys.isdigit():
        return int(keys)
    raise MigrationError(f"the dump holds a malformed TSR.LOAD frame: {argv!r:.200}")


# ---------------------------------------------------------------------------- throttle


class TokenBucket:
    """Bytes per second with a burst; `take` says how long to wait before going on.

    Taking more than is in the bucket is allowed (a batch is never split): the debt is paid
    by waiting, so the long-run rate holds. A rate of 0 means no limit.
    """

    def __init__(self, rate_bytes_s: float, burst_bytes: float, now: float) -> None:
        self.rate = rate_bytes_s
        self.burst = burst_bytes
        self.tokens = burst_bytes
        self.stamp = now

    def take(self, nbytes: int, now: float) -> float:
        if self.rate <= 0:
            return 0.0
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= nbytes
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

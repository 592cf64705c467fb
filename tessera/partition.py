"""Key -> partition number: CRC16-XMODEM of the key (or its {hash tag}) modulo 8192.

Identical to Redis Cluster's CLUSTER KEYSLOT modulo 8192, so hash tags co-locate keys the
same way users already know from Redis Cluster.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Iterable
from typing import Final

PARTITIONS: Final = 8192
_MASK: Final = PARTITIONS - 1
# ord("{"). `OPEN_BRACE in key` is a memchr; `b"{" in key` costs ~10x more (CPython first
# tries the needle as an int, raises and clears a TypeError), and most keys have no tag.
OPEN_BRACE: Final = 123
# Final: compiled, a C static rather than a lookup in this module's dict on every call.
_crc16: Final = crc_hqx


def hash_part(key: bytes) -> bytes:
    """The part of `key` that is hashed: the first non-empty {...} section, else the key."""
    if OPEN_BRACE in key:
        start = key.find(b"{")
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def keyslot(key: bytes) -> int:
    """Redis Cluster slot (0..16383)."""
    return _crc16(hash_part(key), 0) & 16383


def pn(key: bytes) -> int:
    """Partition number (0..8191) of `key`."""
    return _crc16(hash_part(key), 0) & _MASK


def runs(partitions: Iterable[int]) -> list[tuple[int, int]]:
    """Ascending partitions as inclusive (first, last) runs of consecutive ones."""
    out: list[tuple[int, int]] = []
    for p in partitions:
        if out and out[-1][1] == p - 1:
            out[-1] = (out[-1][0], p)
        else:
            out.append((p, p))
    return out


def parse_ranges(text: str) -> list[tuple[int, int]]:
    """Parse '0-2047,4096,5000-5100' into inclusive (first, last) ranges; ValueError if bad."""
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"empty partition range in {text!r}")
        first_s, sep, last_s = part.partition("-")
        if not first_s.strip().isdigit() or (sep and not last_s.strip().isdigit()):
            raise ValueError(f"bad partition range {part!r} (expected FIRST-LAST, e.g. 0-2047)")
        first = int(first_s)
        last = int(last_s) if sep else first
        if not 0 <= first <= last < PARTITIONS:
            raise ValueError(f"partition range {part!r} is not within 0-{PARTITIONS - 1}")
        ranges.append((first, last))
    return ranges


def format_ranges(ranges: list[tuple[int, int]]) -> str:
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges)


class PartitionSet:
    """A set of partition numbers kept as one flag byte per partition.

    Membership is one index into a bytearray, and `count` says at once whether the set is
    empty, so hot paths can skip all work while nothing is marked.
    """

    __slots__ = ("_members", "count", "flags")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self.flags = bytearray(PARTITIONS)
        self.count = 0
        self._members: tuple[int, ...] | None = ()
        self.add(ranges)

    def add(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Flag every partition of `ranges`; returns how many were not flagged before."""
        added = 0
        flags = self.flags
        for first, last in ranges:
            for p in range(first, last + 1):
                if not flags[p]:
                    flags[p] = 1
                    added += 1
        if added:
            self.count += added
            self._members = None
        return added

    def remove(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Unflag every partition of `ranges`; returns how many were flagged before."""
        removed = 0
        flags = self.flags
        for first, last in ranges:
            for p in range(first, last + 1):
                if flags[p]:
                    flags[p] = 0
                    removed += 1
        if removed:
            self.count -= removed
            self._members = None
        return removed

    def clear(self) -> None:
        self.flags[:] = bytes(PARTITIONS)
        self.count = 0
        self._members = ()

    def __contains__(self, partition: int) -> bool:
        return bool(self.flags[partition])

    def __bool__(self) -> bool:
        return self.count > 0

    def __len__(self) -> int:
        return self.count

    def members(self) -> tuple[int, ...]:
        """The flagged partitions in ascending order (cached until the next change)."""
        if self._members is None:
            flags = self.flags
            self._members = tuple(p for p in range(PARTITIONS) if flags[p])
        return self._members

    def ranges(self) -> list[tuple[int, int]]:
        """The flagged partitions as ascending, non-adjacent inclusive ranges."""
        found: list[tuple[int, int]] = []
        flags = self.flags
        start = flags.find(1)
        while start != -1:
            end = flags.find(0, start)
            if end == -1:
                end = PARTITIONS
            found.append((start, end - 1))
            start = flags.find(1, end)
        return found

    def __str__(self) -> str:
        return format_ranges(self.ranges())

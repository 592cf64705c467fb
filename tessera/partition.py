"""Key -> partition number: CRC16-XMODEM of the key (or its {hash tag}) modulo 8192.

Identical to Redis Cluster's CLUSTER KEYSLOT modulo 8192, so hash tags co-locate keys the
same way users already know from Redis Cluster.
"""

from __future__ import annotations

from binascii import crc_hqx

PARTITIONS = 8192
_MASK = PARTITIONS - 1


def hash_part(key: bytes) -> bytes:
    """The part of `key` that is hashed: the first non-empty {...} section, else the key."""
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def keyslot(key: bytes) -> int:
    """Redis Cluster slot (0..16383)."""
    return crc_hqx(hash_part(key), 0) & 16383


def pn(key: bytes) -> int:
    """Partition number (0..8191) of `key`."""
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc_hqx(key, 0) & _MASK


def parse_ranges(text: str) -> list[tuple[int, int]]:
    """Parse '0-2047,4096,5000-5100' into inclusive (first, last) ranges; ValueError if bad."""
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"empty partition range in {text!r}")
        first_s, sep, last_s = part.partition("-")
        first = int(first_s)
        last = int(last_s) if sep else first
        if not 0 <= first <= last < PARTITIONS:
            raise ValueError(f"partition range {part!r} is not within 0-{PARTITIONS - 1}")
        ranges.append((first, last))
    return ranges


def format_ranges(ranges: list[tuple[int, int]]) -> str:
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges)

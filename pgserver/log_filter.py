"""Which logged commands concern a set of partitions (TSR.TAIL's filter), without I/O.

A log record is one batch of commands, of many partitions, written by one reactor wakeup;
its header lists the partitions it touches, so most records of other partitions are
skipped without parsing. A record that does touch the wanted partitions is parsed and
each command kept if one of its keys is wanted:

- MSET, DEL and UNLINK are what a gateway sends to one group with keys of several
  partitions (it splits them per group, not per partition); they are cut down to the
  wanted keys, so the target never receives keys it does not import.
- Any other multi-key command is kept whole if any of its keys is wanted. Behind a
  gateway its keys share one slot (CROSSSLOT), so this only happens to clients that
  write to a pgserver directly.
- Keyless writes are dropped (the TSR.* marks), except FLUSHALL / FLUSHDB: they delete
  the wanted partitions too and cannot be replayed on a target that holds other data, so
  the tail stops with an error and the migration has to start again.
- TSR.LOADSTRINGS and TSR.DROPPARTITIONS name their partitions in their arguments. They
  only ever concern partitions this group is importing or has given away, never ones it
  owns and streams from; should one concern a wanted partition anyway, the tail stops
  with an error rather than guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import hiredis

from pgserver.string_blocks import block_partitions
from tessera.errors import MigrationError
from tessera.keys import SINGLE_KEY, command_keys
from tessera.partition import PARTITIONS, parse_ranges, pn
from tessera.resp import encode_command

_FLUSHES: Final = frozenset({b"flushall", b"flushdb"})
_PAIRS: Final = frozenset({b"mset"})
_KEY_LISTS: Final = frozenset({b"del", b"unlink"})
_PARTITION_WRITES: Final = frozenset({b"tsr.loadstrings", b"tsr.droppartitions"})


class TailStopped(MigrationError):
    """The log holds something a range's tail cannot pass on (FLUSHALL)."""


def record_wanted(partitions: Sequence[int], wanted: bytearray) -> bool:
    """Whether a record with this partition list may hold a command for `wanted`."""
    if not partitions:
        return True  # "every partition": keyless writes, parsed to be sure
    return any(wanted[p] for p in partitions)


def select_commands(payload: bytes, wanted: bytearray, lsn: int) -> tuple[int, bytes]:
    """(count, RESP bytes) of the commands of a record's payload that touch `wanted`.

    `wanted` holds one flag byte per partition. When every command is kept unchanged the
    payload itself is returned, not a re-encoding of it.
    """
    reader = hiredis.Reader()
    reader.feed(payload)
    kept: list[list[bytes]] = []
    changed = False  # a command was dropped or cut down: the payload cannot be reused
    while (argv := reader.gets()) is not False:
        selected = _select(argv, wanted, lsn)
        if selected is not None:
            kept.append(selected)
        changed = changed or selected is not argv
    if not kept:
        return 0, b""
    if not changed:
        return len(kept), payload
    return len(kept), b"".join([encode_command(argv) for argv in kept])


def _select(argv: list[bytes], wanted: bytearray, lsn: int) -> list[bytes] | None:
    """`argv` itself if wanted whole, a cut-down copy, or None if nothing in it is wanted."""
    if argv[0] in SINGLE_KEY:
        return argv if wanted[pn(argv[1])] else None
    keys = command_keys(argv)
    if not keys:
        name = argv[0].lower()
        if name in _FLUSHES:
            raise TailStopped(
                f"ERR {name.decode().upper()} at LSN {lsn} deleted the migrating partitions "
                "as well; it cannot be replayed on the target: restart the migration"
            )
        if name in _PARTITION_WRITES and any(wanted[p] for p in _named_partitions(argv)):
            raise TailStopped(
                f"ERR {name.decode().upper()} at LSN {lsn} wrote to migrating partitions "
                "of this group's own; it cannot be passed on: restart the migration"
            )
        return None
    flags = [wanted[pn(key)] for key in keys]
    if all(flags):
        return argv
    if not any(flags):
        return None
    name = argv[0].lower()
    if name in _PAIRS:
        out = [argv[0]]
        for i in range(1, len(argv) - 1, 2):
            if wanted[pn(argv[i])]:
                out += (argv[i], argv[i + 1])
        return out
    if name in _KEY_LISTS:
        return [argv[0], *(key for key in argv[1:] if wanted[pn(key)])]
    return argv


def _named_partitions(argv: list[bytes]) -> list[int]:
    """The partitions a TSR.LOADSTRINGS or TSR.DROPPARTITIONS names (what can be read)."""
    if argv[0].lower() == b"tsr.loadstrings":
        return sorted(block_partitions(argv[2])) if len(argv) > 2 else []
    try:
        ranges = parse_ranges(argv[1].decode("ascii")) if len(argv) > 1 else []
    except ValueError:
        return []
    return [p for first, last in ranges for p in range(first, last + 1) if p < PARTITIONS]


def tail_frame(end_lsn: int, timestamp_ms: int, count: int, commands: bytes) -> bytes:
    """One TSR.TAIL item: *3 :end_lsn :timestamp_ms *count followed by the commands."""
    return b"*3\r\n:%d\r\n:%d\r\n*%d\r\n%b" % (end_lsn, timestamp_ms, count, commands)

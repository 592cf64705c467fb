"""Tessera-internal commands a migrator uses to move partition ranges (TSR.*).

The interface and its guarantees are described in docs/migration-pgserver.md. Ranges are
written as in `0-2047,3000-3001` (tessera.partition.parse_ranges). Marks (IMPORTING,
FENCE) are logged, so they replay on restart and reach slaves; their replies wait, as
any write's, until the mark is committed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgserver.commands import internal
from pgserver.commands._util import parse_int
from pgserver.dump import DEFAULT_CHUNK_ELEMENTS, estimate_range
from tessera.errors import CommandError
from tessera.partition import PartitionSet, format_ranges, parse_ranges
from tessera.resp import OK, Map, RawReply

if TYPE_CHECKING:
    from pgserver.context import Context


def parse_partition_ranges(raw: bytes) -> list[tuple[int, int]]:
    """Ranges as written by the caller, merged into ascending non-overlapping ones."""
    try:
        return PartitionSet(parse_ranges(raw.decode("ascii"))).ranges()
    except ValueError as exc:  # UnicodeDecodeError included
        text = raw.decode("utf-8", "replace")
        raise CommandError(f"ERR bad partition ranges '{text}': {exc}") from None


def _mark_syntax(name: str) -> CommandError:
    return CommandError(f"ERR syntax: {name} ADD <ranges> | {name} DEL <ranges> | {name} LIST")


@internal("tsr.importing", -2, write=True)
def tsr_importing(ctx: Context, argv: list[bytes]) -> object:
    """TSR.IMPORTING ADD|DEL <ranges> -> +OK; TSR.IMPORTING LIST -> bulk ranges."""
    sub = argv[1].lower()
    ks = ctx.ks
    if sub == b"list" and len(argv) == 2:
        ctx.rewrite()
        return str(ks.importing).encode()
    if sub not in (b"add", b"del") or len(argv) != 3:
        raise _mark_syntax("TSR.IMPORTING")
    ranges = parse_partition_ranges(argv[2])
    changed = ks.start_importing(ranges) if sub == b"add" else ks.stop_importing(ranges)
    if changed:
        ctx.rewrite([b"TSR.IMPORTING", sub.upper(), format_ranges(ranges).encode()])
    else:
        ctx.rewrite()  # already so: nothing to log, the reply still waits for the commit
    return OK


@internal("tsr.fence", -2, write=True)
def tsr_fence(ctx: Context, argv: list[bytes]) -> object:
    """TSR.FENCE ADD <ranges> -> :L1; TSR.FENCE DEL <ranges> -> +OK; LIST -> bulk ranges.

    L1 is the log end once everything executed before the fence is sealed into the log:
    every write of the fenced partitions lies before L1, since later ones are refused.
    """
    sub = argv[1].lower()
    server = ctx.server
    fenced = ctx.ks.fenced
    if sub == b"list" and len(argv) == 2:
        ctx.rewrite()
        return str(fenced).encode()
    if sub not in (b"add", b"del") or len(argv) != 3:
        raise _mark_syntax("TSR.FENCE")
    ranges = parse_partition_ranges(argv[2])
    if sub == b"add":
        if server.logging:
            server.durability.write()
        changed = fenced.add(ranges)
    else:
        changed = fenced.remove(ranges)
    server.update_restrictions()
    if changed:
        ctx.rewrite([b"TSR.FENCE", sub.upper(), format_ranges(ranges).encode()])
    else:
        ctx.rewrite()
    if sub == b"add":
        return server.durability.log.end_lsn
    return OK


@internal("tsr.dump", -2)
def tsr_dump(ctx: Context, argv: list[bytes]) -> object:
    """TSR.DUMP <ranges> [CHUNK <elements>] -> [L0, id]: a dump starts in a child process."""
    chunk = DEFAULT_CHUNK_ELEMENTS
    if len(argv) == 4 and argv[2].lower() == b"chunk":
        chunk = parse_int(argv[3])
        if chunk < 1:
            raise CommandError("ERR CHUNK must be at least 1")
    elif len(argv) != 2:
        raise CommandError("ERR syntax: TSR.DUMP <ranges> [CHUNK <elements>]")
    job = ctx.server.migration.start_dump(parse_partition_ranges(argv[1]), chunk)
    return [job.lsn, job.id.encode()]


@internal("tsr.dumpstatus", 2)
def tsr_dumpstatus(ctx: Context, argv: list[bytes]) -> object:
    """TSR.DUMPSTATUS <id> -> map: state (running|done|failed), lsn, ranges, keys, bytes,
    fork_ms."""
    job = ctx.server.migration.dump(argv[1])
    return Map(
        [
            (b"state", job.state.encode()),
            (b"lsn", job.lsn),
            (b"ranges", job.ranges.encode()),
            (b"keys", job.keys),
            (b"bytes", job.size()),
            (b"fork_ms", f"{job.fork_ms:.3f}".encode()),
        ]
    )


@internal("tsr.dumpread", 4)
def tsr_dumpread(ctx: Context, argv: list[bytes]) -> object:
    """TSR.DUMPREAD <id> <offset> <count> -> bulk (empty once a finished dump is read)."""
    offset = parse_int(argv[2])
    count = parse_int(argv[3])
    if offset < 0 or count < 1:
        raise CommandError("ERR offset must be >= 0 and count >= 1")
    return ctx.server.migration.read_dump(argv[1], offset, count)


@internal("tsr.dumpdrop", 2)
def tsr_dumpdrop(ctx: Context, argv: list[bytes]) -> object:
    """TSR.DUMPDROP <id> -> :1 if it existed (its child is stopped, its file removed), else :0."""
    return int(ctx.server.migration.drop_dump(argv[1].decode("utf-8", "replace")))


@internal("tsr.tail", 3)
def tsr_tail(ctx: Context, argv: list[bytes]) -> object:
    """TSR.TAIL <lsn> <ranges>: this connection becomes a stream of frames (see the doc)."""
    lsn = parse_int(argv[1])
    ranges = parse_partition_ranges(argv[2])
    return RawReply(ctx.server.migration.attach_tail(ctx.conn, lsn, ranges))


@internal("tsr.delrange", 2, write=True)
def tsr_delrange(ctx: Context, argv: list[bytes]) -> object:
    """TSR.DELRANGE <ranges> -> :keys queued; TSR.DELRANGE STATUS -> map of the progress.

    Not logged itself: each batch it deletes is logged as a DEL. A restart forgets the
    queue; the migrator issues it again (it is idempotent).
    """
    ctx.rewrite()
    migration = ctx.server.migration
    if argv[1].lower() == b"status":
        return Map(
            [
                (b"ranges", str(migration.deleting).encode()),
                (b"pending_keys", migration.pending_delete_keys()),
                (b"deleted_keys", migration.deleted_keys),
            ]
        )
    return migration.delete_ranges(parse_partition_ranges(argv[1]))


@internal("tsr.count", 2)
def tsr_count(ctx: Context, argv: list[bytes]) -> object:
    """TSR.COUNT <ranges> -> [keys, estimated bytes] (importing partitions included)."""
    keys, size = estimate_range(ctx.ks, parse_partition_ranges(argv[1]))
    return [keys, size]

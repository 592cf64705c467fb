"""Tessera-internal commands a migrator uses to move partition ranges (TSR.*).

The interface and its guarantees are described in docs/migration-pgserver.md. Ranges are
written as in `0-2047,3000-3001` (tessera.partition.parse_ranges). Marks (IMPORTING,
FENCE) are logged, so they replay on restart and reach slaves; their replies wait, as
any write's, until the mark is committed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import hiredis

from pgserver.commands import internal
from pgserver.commands._util import parse_int, try_int
from pgserver.context import execute, fenced_error
from pgserver.dump import (
    DEFAULT_CHUNK_ELEMENTS,
    DEFAULT_FRAME_BYTES,
    DUMP_COMMANDS,
    MAX_FRAME_BYTES,
    estimate_range,
)
from pgserver.string_blocks import BlockError, decode_block
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


_DUMP_SYNTAX: Final = "ERR syntax: TSR.DUMP <ranges> [CHUNK <elements>] [FRAMED [<bytes>]]"


@internal("tsr.dump", -2)
def tsr_dump(ctx: Context, argv: list[bytes]) -> object:
    """TSR.DUMP <ranges> [CHUNK <elements>] [FRAMED [<bytes>]] -> [L0, id]: a dump starts
    in a child process; FRAMED writes it as TSR.LOAD frames of about <bytes> of commands."""
    chunk = DEFAULT_CHUNK_ELEMENTS
    frame: int | None = None
    i, n = 2, len(argv)
    while i < n:
        option = argv[i].lower()
        if option == b"chunk" and i + 1 < n:
            chunk = parse_int(argv[i + 1])
            if chunk < 1:
                raise CommandError("ERR CHUNK must be at least 1")
            i += 2
        elif option == b"framed":
            frame = DEFAULT_FRAME_BYTES
            i += 1
            if i < n and (size := try_int(argv[i])) is not None:
                if not 1 <= size <= MAX_FRAME_BYTES:
                    raise CommandError(f"ERR FRAMED <bytes> must be 1 to {MAX_FRAME_BYTES}")
                frame = size
                i += 1
        else:
            raise CommandError(_DUMP_SYNTAX)
    job = ctx.server.migration.start_dump(parse_partition_ranges(argv[1]), chunk, frame)
    return [job.lsn, job.id.encode()]


# Command names TSR.LOAD accepts as they are usually spelt; others are upper-cased first.
_LOADABLE: Final = DUMP_COMMANDS | {name.lower() for name in DUMP_COMMANDS}
_NOT_APPLIED: Final = "; nothing of it was applied"


def _load_commands(blob: bytes) -> list[list[bytes]]:
    """The commands of a TSR.LOAD blob, every one checked before any is executed."""
    reader = hiredis.Reader()
    reader.feed(blob)
    commands: list[list[bytes]] = []
    gets = reader.gets
    try:
        while (argv := gets()) is not False:
            if type(argv) is not list or not argv:
                raise CommandError(
                    f"ERR TSR.LOAD: element {len(commands) + 1} of the blob is not a command "
                    f"(an array of bulk strings){_NOT_APPLIED}"
                )
            for arg in argv:
                if type(arg) is not bytes:
                    raise CommandError(
                        f"ERR TSR.LOAD: command {len(commands) + 1} of the blob has an argument "
                        f"that is not a bulk string{_NOT_APPLIED}"
                    )
            name = argv[0]
            if name not in _LOADABLE and name.upper() not in DUMP_COMMANDS:
                shown = name[:40].decode("utf-8", "replace")
                raise CommandError(
                    f"ERR TSR.LOAD: command {len(commands) + 1} of the blob is '{shown}', not "
                    f"one a dump writes ({', '.join(sorted(c.decode() for c in DUMP_COMMANDS))})"
                    f"{_NOT_APPLIED}"
                )
            commands.append(argv)
    except hiredis.ProtocolError as exc:
        raise CommandError(f"ERR TSR.LOAD: the blob is not RESP ({exc}){_NOT_APPLIED}") from None
    if reader.has_data():
        raise CommandError(f"ERR TSR.LOAD: the blob ends in the middle of a command{_NOT_APPLIED}")
    return commands


@internal("tsr.load", 3, write=True)
def tsr_load(ctx: Context, argv: list[bytes]) -> object:
    """TSR.LOAD <keys> <blob> -> :<keys>: execute the dump commands in blob (a frame of a
    FRAMED dump), in order, each through the dispatcher as if the client had sent it.

    The blob is checked whole first (only commands a dump writes, nothing cut off); then
    its commands run until the first error reply, which is the reply (what ran before it
    stays applied, as it would for the same commands pipelined). TSR.LOAD itself is never
    logged: each command logs itself (a replay or a slave sees SET, HSET...), and when all
    of them were logged as they came, the blob's bytes are logged instead of encoding them
    again (as _on_readable does for a client's read).

    The reply waits for the commit of those writes like any write's: TSR.LOAD is a data
    command, so execute() marks the client `touched_data`, and the server's _flush() writes
    everything logged in this wakeup (the commands of the blob included) and holds such
    replies until the log up to its end is committed (fsync policy and replication quorum).
    """
    keys = parse_int(argv[1])
    if keys < 0:
        raise CommandError("ERR TSR.LOAD <keys> must not be negative")
    blob = argv[2]
    commands = _load_commands(blob)
    server = ctx.server
    durability = server.durability
    mark = durability.mark() if server.logging else None
    for command in commands:
        reply = execute(ctx, command)
        if reply[:1] == b"-":
            ctx.rewrite()  # TSR.LOAD itself is never logged
            return RawReply(reply)
    ctx.rewrite()
    if mark is not None and durability.mark() != mark:
        durability.use_raw(mark, commands, blob)
    return keys


@internal("tsr.loadstrings", 3, write=True)
def tsr_loadstrings(ctx: Context, argv: list[bytes]) -> object:
    """TSR.LOADSTRINGS <keys> <block> -> :<keys stored>: SET every key of a string block
    (pgserver/string_blocks.py) to its value, as that many `SET key value` would.

    The block is checked whole first (format, lengths, every key in its section's
    partition); then its keys are stored partition by partition with dict updates. The
    command is logged as it came, listing the block's partitions, so a slave or a replay
    stores them the same way.
    """
    if parse_int(argv[1]) < 0:
        raise CommandError("ERR TSR.LOADSTRINGS <keys> must not be negative")
    server = ctx.server
    # A slave or a replay trusts what its master checked before logging it.
    replaying = ctx is server.replay_ctx
    try:
        sections = decode_block(argv[2], check_partitions=not replaying)
    except BlockError as exc:
        raise CommandError(f"ERR TSR.LOADSTRINGS: {exc}{_NOT_APPLIED}") from None
    ks = ctx.ks
    if ks.fenced and not replaying:
        for partition, _, _ in sections:
            if ks.fenced.flags[partition]:
                raise CommandError(fenced_error(partition))
    install = ks.install_strings
    stored = 0
    for partition, keys, values in sections:
        install(partition, keys, values)
        stored += len(keys)
    ctx.rewrite()
    server.log_write(argv, [partition for partition, _, _ in sections])
    server.dirty += stored - 1
    return stored


@internal("tsr.droppartitions", 2, write=True)
def tsr_droppartitions(ctx: Context, argv: list[bytes]) -> object:
    """TSR.DROPPARTITIONS <ranges> -> :keys removed: every key of those partitions.

    Written to the log by a range deletion (TSR.DELRANGE) for the partitions it emptied in
    one step; only a slave or a replay executes it. A client gets an error: it would
    hold the event loop for as long as the partitions are big, which is what TSR.DELRANGE
    avoids.
    """
    server = ctx.server
    if ctx is not server.replay_ctx:
        raise CommandError("ERR TSR.DROPPARTITIONS is only replayed from the log; use TSR.DELRANGE")
    ranges = parse_partition_ranges(argv[1])
    partitions = [p for first, last in ranges for p in range(first, last + 1)]
    drop = ctx.ks.drop_partition
    freed: list[object] = []  # freed at once here: a slave applies a record in one step
    removed = sum(drop(partition, freed, 0) for partition in partitions)
    ctx.rewrite()
    server.log_write(argv, partitions)
    return removed


@internal("tsr.dumpstatus", 2)
def tsr_dumpstatus(ctx: Context, argv: list[bytes]) -> object:
    """TSR.DUMPSTATUS <id> -> map: state (running|done|failed), lsn, ranges, keys, bytes,
    fork_ms, write_ms (how long the child took; -1 while it runs)."""
    job = ctx.server.migration.dump(argv[1])
    return Map(
        [
            (b"state", job.state.encode()),
            (b"lsn", job.lsn),
            (b"ranges", job.ranges.encode()),
            (b"keys", job.keys),
            (b"bytes", job.size()),
            (b"fork_ms", f"{job.fork_ms:.3f}".encode()),
            (b"write_ms", -1 if job.write_ms is None else round(job.write_ms)),
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

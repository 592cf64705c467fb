"""Tessera-internal commands for roles and replication (TSR.*), and READONLY/READWRITE."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgserver.commands import internal
from pgserver.commands._util import parse_int
from tessera.errors import CommandError
from tessera.resp import OK, RawReply

if TYPE_CHECKING:
    from pgserver.context import Context

_NO_REPLY = RawReply(b"")


@internal("tsr.role", -3)
def tsr_role(ctx: Context, argv: list[bytes]) -> object:
    """TSR.ROLE MASTER <epoch> [quorum] | SLAVE <epoch> <host:port> | NONE <epoch>."""
    role = argv[1].lower().decode("utf-8", "replace")
    epoch = parse_int(argv[2])
    if role == "master":
        quorum = parse_int(argv[3]) if len(argv) > 3 else 0
        ctx.server.replication.set_role("master", epoch, quorum, None)
    elif role == "slave" and len(argv) == 4:
        ctx.server.replication.set_role("slave", epoch, 0, argv[3].decode())
    elif role == "none":
        ctx.server.replication.set_role("none", epoch, 0, None)
    else:
        raise CommandError(
            "ERR syntax: TSR.ROLE MASTER epoch [quorum] | SLAVE epoch host:port | NONE epoch"
        )
    return OK


@internal("tsr.sync", 4)
def tsr_sync(ctx: Context, argv: list[bytes]) -> object:
    """TSR.SYNC <epoch> <end_lsn> <synced_epoch>: this connection becomes a slave's stream."""
    header = ctx.server.replication.attach(
        ctx.conn, parse_int(argv[1]), parse_int(argv[2]), parse_int(argv[3])
    )
    return RawReply(header)


@internal("tsr.ack", 2)
def tsr_ack(ctx: Context, argv: list[bytes]) -> object:
    """TSR.ACK <lsn>: the slave holds the stream up to lsn in its log. No reply."""
    ctx.server.replication.ack(ctx.conn, parse_int(argv[1]))
    return _NO_REPLY


@internal("readonly", 1)
def readonly(ctx: Context, argv: list[bytes]) -> object:
    ctx.readonly_reads = True
    return OK


@internal("readwrite", 1)
def readwrite(ctx: Context, argv: list[bytes]) -> object:
    ctx.readonly_reads = False
    return OK

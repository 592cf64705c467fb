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


_ROLE_SYNTAX = (
    "ERR syntax: TSR.ROLE MASTER epoch [quorum] [VOTERS id,...|-] [ID id] [SEQ e n]"
    " | SLAVE epoch host:port|- [ID id] [SEQ e n] | NONE epoch"
)


def _options(args: list[bytes], syntax: str) -> dict[str, list[bytes]]:
    """Trailing `NAME value...` options of the confmaster's commands."""
    widths = {"voters": 1, "id": 1, "seq": 2}
    found: dict[str, list[bytes]] = {}
    i = 0
    while i < len(args):
        name = args[i].lower().decode("utf-8", "replace")
        width = widths.get(name)
        if width is None or i + width >= len(args):
            raise CommandError(syntax)
        found[name] = args[i + 1 : i + 1 + width]
        i += 1 + width
    return found


def _voters(found: dict[str, list[bytes]]) -> frozenset[str] | None:
    if "voters" not in found:
        return None
    text = found["voters"][0].decode("utf-8", "replace")
    return frozenset() if text == "-" else frozenset(v for v in text.split(",") if v)


def _seq(found: dict[str, list[bytes]]) -> tuple[int, int] | None:
    if "seq" not in found:
        return None
    return parse_int(found["seq"][0]), parse_int(found["seq"][1])


@internal("tsr.role", -3)
def tsr_role(ctx: Context, argv: list[bytes]) -> object:
    """TSR.ROLE: the role the confmaster decided; replies with the log end LSN."""
    replication = ctx.server.replication
    role = argv[1].lower().decode("utf-8", "replace")
    epoch = parse_int(argv[2])
    rest = argv[3:]
    if role == "master":
        quorum = 0
        if rest and rest[0].lstrip(b"-").isdigit():
            quorum, rest = parse_int(rest[0]), rest[1:]
        found = _options(rest, _ROLE_SYNTAX)
        voters = _voters(found)
        replication.set_role(
            "master",
            epoch,
            len(voters) if voters is not None else quorum,
            None,
            voters=voters,
            member_id=found["id"][0].decode() if "id" in found else None,
            seq=_seq(found),
        )
    elif role == "slave" and rest:
        found = _options(rest[1:], _ROLE_SYNTAX)
        if "voters" in found:
            raise CommandError(_ROLE_SYNTAX)
        replication.set_role(
            "slave",
            epoch,
            0,
            rest[0].decode("utf-8", "replace"),
            member_id=found["id"][0].decode() if "id" in found else None,
            seq=_seq(found),
        )
    elif role == "none" and not rest:
        replication.set_role("none", epoch, 0, None)
    else:
        raise CommandError(_ROLE_SYNTAX)
    return replication.log_end()


@internal("tsr.setquorum", -3)
def tsr_setquorum(ctx: Context, argv: list[bytes]) -> object:
    """TSR.SETQUORUM <epoch> <voters|-> [SEQ e n]: the master's new voters; replies with
    the log end LSN from which every write is on all of them."""
    syntax = "ERR syntax: TSR.SETQUORUM epoch id,...|- [SEQ e n]"
    found = _options([b"VOTERS", *argv[2:]], syntax)
    voters = _voters(found)
    assert voters is not None
    replication = ctx.server.replication
    replication.set_voters(parse_int(argv[1]), voters, _seq(found))
    return replication.log_end()


@internal("tsr.sync", -4)
def tsr_sync(ctx: Context, argv: list[bytes]) -> object:
    """TSR.SYNC <epoch> <end_lsn> <synced_epoch> [member_id]: this connection becomes a
    slave's stream."""
    if len(argv) > 5:
        raise CommandError("ERR syntax: TSR.SYNC epoch end_lsn synced_epoch [member_id]")
    member_id = argv[4].decode("utf-8", "replace") if len(argv) == 5 else ""
    header = ctx.server.replication.attach(
        ctx.conn, parse_int(argv[1]), parse_int(argv[2]), parse_int(argv[3]), member_id
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

"""Persistence commands: BGSAVE, SAVE, LASTSAVE (checkpoints of the keyspace)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgserver.commands import command
from tessera.errors import CommandError
from tessera.resp import OK, SimpleString

if TYPE_CHECKING:
    from pgserver.context import Context


@command("bgsave")
def bgsave(ctx: Context, argv: list[bytes]) -> object:
    if len(argv) > 2 or (len(argv) == 2 and argv[1].lower() != b"schedule"):
        raise CommandError("ERR syntax error")
    durability = ctx.server.durability
    if durability.checkpoint_job is not None:
        if len(argv) == 2:
            return SimpleString(b"Background saving scheduled")
        raise CommandError("ERR Background save already in progress")
    durability.start_checkpoint()
    return SimpleString(b"Background saving started")


@command("save")
def save(ctx: Context, argv: list[bytes]) -> object:
    durability = ctx.server.durability
    if durability.checkpoint_job is not None:
        raise CommandError("ERR Background save already in progress")
    durability.save()
    return OK


@command("lastsave")
def lastsave(ctx: Context, argv: list[bytes]) -> object:
    return int(ctx.server.durability.checkpoint_time)

"""The command table: name -> handler, with Redis's arity and flags from tessera.command_table.

Each data type's commands live in their own module and register themselves with
`@command("name")`; importing this package imports them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from tessera.command_table import COMMANDS

if TYPE_CHECKING:
    from pgserver.context import Context

Handler = Callable[["Context", list[bytes]], object]


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    handler: Handler
    arity: int
    write: bool
    data: bool = True  # reads or writes the keyspace (its reply waits for the commit)


# Commands that neither read nor write keys: their replies never wait for a commit, and a
# slave or an unassigned pgserver answers them for anyone.
CONTROL_COMMANDS = frozenset(
    {
        *("ping", "echo", "hello", "auth", "select", "quit", "client", "command", "info"),
        *("config", "time", "bgsave", "save", "lastsave", "readonly", "readwrite"),
        *("tsr.role", "tsr.sync", "tsr.ack"),
        # Migration commands that read dump files or the log, never the keyspace.
        *("tsr.dumpstatus", "tsr.dumpread", "tsr.dumpdrop", "tsr.tail"),
    }
)


TABLE: Final[dict[bytes, Entry]] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    """Register a handler for a command listed in tessera.command_table."""
    arity, flags, _first, _last, _step = COMMANDS[name]

    def register(handler: Handler) -> Handler:
        entry = Entry(name, handler, arity, "write" in flags, name not in CONTROL_COMMANDS)
        TABLE[name.encode()] = entry
        TABLE[name.upper().encode()] = entry
        return handler

    return register


def internal(name: str, arity: int, write: bool = False) -> Callable[[Handler], Handler]:
    """Register a Tessera-internal command (replication, roles); not a Redis command."""

    def register(handler: Handler) -> Handler:
        entry = Entry(name, handler, arity, write, name not in CONTROL_COMMANDS)
        TABLE[name.encode()] = entry
        TABLE[name.upper().encode()] = entry
        return handler

    return register


def load_all() -> None:
    """Import every command module so their handlers are registered."""
    from pgserver.commands import (  # noqa: F401
        connection,
        hashes,
        keys,
        lists,
        migration,
        persistence,
        replication,
        server,
        sets,
        sorted_sets,
        strings,
    )

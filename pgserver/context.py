"""Per-connection state handed to every command handler, and the dispatcher."""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING, Any, Final

from pgserver.commands import TABLE, Entry
from tessera.errors import CommandError
from tessera.keys import command_keys
from tessera.partition import pn
from tessera.resp import encode, encode_error, unknown_command_reply

if TYPE_CHECKING:
    from pgserver.keyspace import Keyspace
    from pgserver.server import PgServer

_client_ids = itertools.count(1)
log = logging.getLogger("tessera.pgserver")


class Context:
    """What a handler may know about its caller: server, keyspace, protocol, identity."""

    __slots__ = (
        "addr",
        "authenticated",
        "calls",
        "client_id",
        "close_after_reply",
        "conn",
        "created_ms",
        "errors",
        "ks",
        "lib_name",
        "lib_ver",
        "name",
        "readonly_reads",
        "resp3",
        "rewritten",
        "server",
        "touched_data",
    )

    def __init__(self, server: PgServer, addr: str = "") -> None:
        self.server = server
        self.ks: Keyspace = server.keyspace
        self.addr = addr
        self.client_id = next(_client_ids)
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.resp3 = False
        self.authenticated = not server.config.password
        self.close_after_reply = False
        self.created_ms = self.ks.now
        self.rewritten: list[list[bytes]] | None = None
        self.conn: Any = None  # the server's connection object (set by the driver)
        self.readonly_reads = False  # READONLY: this client accepts stale reads on a slave
        self.touched_data = False  # ran a keyspace command since its last reply went out
        # Per-command counters (the server's; the replay context has its own pair).
        self.calls: dict[str, int] = server.command_calls
        self.errors: dict[str, int] = server.command_errors

    def rewrite(self, *commands: list[bytes]) -> None:
        """Log these commands instead of the one being executed (deterministic replay).

        E.g. SET k v EX 10 is logged as SET k v PXAT <absolute>; SPOP as SREM of what it
        popped. Calling it with no commands logs nothing.
        """
        self.rewritten = list(commands)


_NOAUTH: Final = b"-NOAUTH Authentication required.\r\n"
_NO_AUTH_NEEDED: Final = {b"auth", b"AUTH", b"hello", b"HELLO", b"quit", b"QUIT"}


def fenced_error(partition: int) -> str:
    """What a command on a fenced partition gets; gateways recognise the prefix
    `-TRYAGAIN partition ` and refresh their partition map before retrying."""
    return (
        f"TRYAGAIN partition {partition} is moving to another partition group; "
        "refresh the partition map and retry"
    )


def fenced_reply(partition: int) -> bytes:
    return encode_error(fenced_error(partition))


def _refusal(ctx: Context, entry: Entry, argv: list[bytes]) -> bytes | None:
    """Why this pgserver may not run `argv` for this client now, if it may not."""
    server = ctx.server
    if ctx is server.replay_ctx:
        return None  # the master's log being applied
    role = server.replication.role
    if role == "none":
        return encode_error("TRYAGAIN this pgserver has no role yet (waiting for the confmaster)")
    if role != "master":
        if entry.write:
            return encode_error("READONLY You can't write against a read only replica.")
        if not ctx.readonly_reads:
            return encode_error(
                "READONLY this pgserver is a slave; send READONLY first to read possibly stale data"
            )
    fenced = server.keyspace.fenced
    if fenced:
        # A multi-key command with any fenced key is refused whole.
        for key in command_keys(argv):
            partition = pn(key)
            if fenced.flags[partition]:
                return fenced_reply(partition)
    return None


def _count_error(ctx: Context, name: str, call: bool = False) -> None:
    """An error reply for `name` (errors are rare: off the hot path)."""
    if call:
        ctx.calls[name] = ctx.calls.get(name, 0) + 1
    ctx.errors[name] = ctx.errors.get(name, 0) + 1


def execute(ctx: Context, argv: list[bytes]) -> bytes:
    """Run one command and return its encoded reply."""
    entry = TABLE.get(argv[0])
    if entry is None:
        entry = TABLE.get(argv[0].lower())
        if entry is None:
            _count_error(ctx, "unknown", True)
            return unknown_command_reply(argv)
    calls = ctx.calls
    name = entry.name
    calls[name] = calls.get(name, 0) + 1
    arity = entry.arity  # checked first, as Redis does (even before NOAUTH)
    n = len(argv)
    if (arity > 0 and n != arity) or n < -arity:
        _count_error(ctx, name)
        return encode_error(f"ERR wrong number of arguments for '{entry.name}' command")
    if (
        not ctx.authenticated
        and argv[0] not in _NO_AUTH_NEEDED
        and entry.name
        not in (
            "auth",
            "hello",
            "quit",
        )
    ):
        if ctx.server.config.cluster_secret is not None:
            ctx.close_after_reply = True  # an internal port: no second try on this connection
        _count_error(ctx, name)
        return _NOAUTH
    if entry.data:
        ctx.touched_data = True
        if ctx.server.restricted:
            refusal = _refusal(ctx, entry, argv)
            if refusal is not None:
                _count_error(ctx, name)
                return refusal
    try:
        reply = entry.handler(ctx, argv)
    except CommandError as exc:
        ctx.rewritten = None
        _count_error(ctx, name)
        return encode_error(exc.reply)
    except Exception:
        # A bug in one handler must not take the server (and every other client) down.
        ctx.rewritten = None
        _count_error(ctx, name)
        log.exception("internal error executing %r", argv[:3])
        return encode_error(f"ERR internal error executing '{entry.name}' (see server log)")
    if entry.write:
        server = ctx.server
        if ctx.rewritten is None:
            server.log_write(argv)
        else:
            for cmd in ctx.rewritten:
                server.log_write(cmd)
            ctx.rewritten = None
    return encode(reply, ctx.resp3)

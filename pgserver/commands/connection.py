"""Connection commands: PING ECHO HELLO AUTH SELECT QUIT CLIENT."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgserver.commands import command
from pgserver.commands._util import parse_int, unknown_subcommand, wrong_arity
from tessera.errors import CommandError
from tessera.resp import OK, PONG, Map
from tessera.security import secret_matches

if TYPE_CHECKING:
    from pgserver.context import Context

REDIS_VERSION = b"7.0.15"
WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."


@command("ping")
def ping(ctx: Context, argv: list[bytes]) -> object:
    if len(argv) > 2:
        raise wrong_arity("ping")
    return argv[1] if len(argv) == 2 else PONG


@command("echo")
def echo(ctx: Context, argv: list[bytes]) -> object:
    return argv[1]


def _refuse(ctx: Context, reply: str) -> CommandError:
    """A refused AUTH or HELLO; with a cluster secret the connection closes after it."""
    if ctx.server.config.cluster_secret is not None:
        ctx.close_after_reply = True
    return CommandError(reply)


def _check_password(ctx: Context, user: bytes, password: bytes) -> None:
    expected = ctx.server.config.password
    if user != b"default" or not secret_matches(password, expected):
        raise _refuse(ctx, WRONGPASS)
    ctx.authenticated = True


@command("auth")
def auth(ctx: Context, argv: list[bytes]) -> object:
    if len(argv) > 3:
        raise CommandError("ERR syntax error")
    if ctx.server.config.password is None and len(argv) == 2:
        raise CommandError(
            "ERR AUTH <password> called without any password configured for the default "
            "user. Are you sure your configuration is correct?"
        )
    user, password = (b"default", argv[1]) if len(argv) == 2 else (argv[1], argv[2])
    _check_password(ctx, user, password)
    return OK


@command("hello")
def hello(ctx: Context, argv: list[bytes]) -> object:
    version = 3 if ctx.resp3 else 2
    i = 1
    if len(argv) > 1:
        try:
            version = parse_int(argv[1])
        except CommandError:
            raise CommandError("ERR Protocol version is not an integer or out of range") from None
        i = 2
        if version not in (2, 3):
            raise CommandError("NOPROTO unsupported protocol version")
    name: bytes | None = None
    while i < len(argv):
        opt = argv[i].lower()
        remaining = len(argv) - i - 1
        if opt == b"auth" and remaining >= 2:
            _check_password(ctx, argv[i + 1], argv[i + 2])
            i += 3
        elif opt == b"setname" and remaining >= 1:
            name = argv[i + 1]
            _validate_name(name)
            i += 2
        else:
            raise CommandError(
                f"ERR Syntax error in HELLO option '{argv[i].decode('utf-8', 'replace')}'"
            )
    if not ctx.authenticated:
        raise _refuse(
            ctx,
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
            "HELLO AUTH <user> <pass> option can be used to authenticate the client "
            "and select the RESP protocol version at the same time",
        )
    if name is not None:
        ctx.name = name
    ctx.resp3 = version == 3
    return Map(
        [
            (b"server", b"redis"),
            (b"version", REDIS_VERSION),
            (b"proto", version),
            (b"id", ctx.client_id),
            (b"mode", b"standalone"),
            (b"role", b"master"),
            (b"modules", []),
        ]
    )


@command("select")
def select(ctx: Context, argv: list[bytes]) -> object:
    index = parse_int(argv[1])
    if index != 0:
        raise CommandError("ERR DB index is out of range")
    return OK


@command("quit")
def quit_(ctx: Context, argv: list[bytes]) -> object:
    ctx.close_after_reply = True
    return OK


def _validate_name(name: bytes) -> None:
    if any(c < 0x21 or c > 0x7E for c in name):
        raise CommandError(
            "ERR Client names cannot contain spaces, newlines or special characters."
        )


def client_info_line(ctx: Context) -> bytes:
    now = ctx.ks.now
    age = (now - ctx.created_ms) // 1000
    return (
        b"id=%d addr=%b laddr=127.0.0.1:%d fd=0 name=%b age=%d idle=0 flags=N db=0 sub=0 "
        b"psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 "
        b"oll=0 omem=0 tot-mem=0 events=r cmd=client|info user=default redir=-1 resp=%d "
        b"lib-name=%b lib-ver=%b"
        % (
            ctx.client_id,
            ctx.addr.encode(),
            ctx.server.port,
            ctx.name,
            age,
            3 if ctx.resp3 else 2,
            ctx.lib_name,
            ctx.lib_ver,
        )
    )


@command("client")
def client(ctx: Context, argv: list[bytes]) -> object:
    sub = argv[1].lower()
    n = len(argv)
    if sub == b"id" and n == 2:
        return ctx.client_id
    if sub == b"getname" and n == 2:
        return ctx.name or None
    if sub == b"setname" and n == 3:
        _validate_name(argv[2])
        ctx.name = argv[2]
        return OK
    if sub == b"setinfo" and n == 4:
        attr = argv[2].lower()
        if attr == b"lib-name":
            _validate_name(argv[3])
            ctx.lib_name = argv[3]
        elif attr == b"lib-ver":
            _validate_name(argv[3])
            ctx.lib_ver = argv[3]
        else:
            raise CommandError(f"ERR Unrecognized option '{argv[2].decode('utf-8', 'replace')}'")
        return OK
    if sub == b"info" and n == 2:
        return client_info_line(ctx) + b"\n"
    if sub == b"list" and n == 2:
        return b"".join(client_info_line(c) + b"\n" for c in ctx.server.clients.values())
    if sub in (b"id", b"getname", b"setname", b"setinfo", b"info", b"list"):
        raise wrong_arity("client|" + sub.decode())
    raise unknown_subcommand(argv[1], "client")

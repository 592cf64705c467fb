"""The gateway's admin port (RESP, 127.0.0.1 by default): BLOCK, REDIRECT, UNBLOCK, MAP.

Low volume, so each admin connection gets its own task and plain trio streams.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

import trio

from gateway.blocking import AdminReply, Block, Redirect, Unblock
from gateway.routing import Backend
from tessera.errors import ConfigError
from tessera.partition import parse_ranges
from tessera.resp import Limits, Map, RequestParser, RequestProtocolError, encode, encode_error
from tessera.security import NO_PASSWORD_ERROR, secret_matches

if TYPE_CHECKING:
    from gateway.server import GatewayServer

log = logging.getLogger("tessera.gateway.admin")


class AdminServer:
    def __init__(self, gateway: GatewayServer) -> None:
        self.gateway = gateway

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        config = self.gateway.config
        try:
            listeners = await trio.open_tcp_listeners(config.admin_port, host=config.admin_bind)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {config.admin_bind}:{config.admin_port} (admin): {exc.strerror}"
            ) from exc
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(port)
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def _handle(self, stream: trio.SocketStream) -> None:
        parser = RequestParser(_ADMIN_LIMITS)
        secret = self.gateway.config.cluster_secret
        authenticated = secret is None
        resp3 = False
        async with stream:
            while True:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return
                if not data:
                    return
                try:
                    commands = parser.feed(data)
                    broken = None
                except RequestProtocolError as exc:
                    commands, broken = exc.commands, exc
                for argv in commands:
                    name = argv[0].lower()
                    password = _password_in(argv)
                    refused = None
                    if password is not None and secret is not None:
                        if secret_matches(password, secret):
                            authenticated = True
                        else:
                            refused = _WRONGPASS
                    elif not authenticated:
                        refused = _NOAUTH
                    if refused is not None:
                        # An internal port: no second try on this connection.
                        with contextlib.suppress(trio.BrokenResourceError):
                            await stream.send_all(refused)
                        return
                    if name == b"hello":
                        # Enough of HELLO for redis-py and redis-cli to connect.
                        resp3 = len(argv) > 1 and argv[1] == b"3"
                        reply = encode(
                            Map(
                                [
                                    (b"server", b"tessera-gateway-admin"),
                                    (b"proto", 3 if resp3 else 2),
                                    (b"modules", []),
                                ]
                            ),
                            resp3,
                        )
                    elif name == b"auth":
                        if password is None:
                            reply = encode_error("ERR syntax error")
                        elif secret is None:
                            reply = encode_error(NO_PASSWORD_ERROR)
                        else:
                            reply = b"+OK\r\n"
                    else:
                        reply = await self.execute(argv, resp3)
                    await stream.send_all(reply)
                if broken is not None:
                    await stream.send_all(encode_error(broken.reply))
                    return

    async def execute(self, argv: list[bytes], resp3: bool = False) -> bytes:
        gateway = self.gateway
        name = argv[0].lower()
        try:
            if name == b"ping":
                return b"+PONG\r\n"

            if name == b"map":
                return encode(
                    Map(
                        [
                            (b"version", gateway.map.version),
                            (
                                b"ranges",
                                [
                                    f"{a}-{b}={backend.name}".encode()
                                    for (a, b), backend in gateway.map.ranges()
                                ],
                            ),
                            (b"blocked", [line.encode() for line in gateway.blocks.describe()]),
                        ]
                    ),
                    resp3,
                )
            if name == b"stats":
                return encode(Map([(k.encode(), v) for k, v in gateway.stats.items()]), resp3)
            if name == b"block" and 3 <= len(argv) <= 5:
                job = argv[1].decode()
                ranges = tuple(parse_ranges(argv[2].decode()))
                lease_s = int(argv[3]) / 1000 if len(argv) >= 4 else None
                if lease_s is not None and lease_s <= 0:
                    raise ValueError("the block lease must be a positive number of milliseconds")
                version = int(argv[4]) if len(argv) == 5 else None
                block = Block(
                    job,
                    ranges,
                    gateway.inflight_in(ranges),
                    time.monotonic(),
                    lease_s,
                    version,
                    gateway.map.version,
                )
                actions = gateway.blocks.handle(block)
                replies = gateway.apply_block_actions(actions)
                if not replies:
                    event = gateway.drain_event(job)
                    if event is not None:
                        await event.wait()
                    if job not in gateway.blocks.jobs:
                        return encode_error(f"ERR job {job} was unblocked before it drained")
                    return b"+OK\r\n"
                return _admin_reply(replies[-1])
            if name == b"redirect" and len(argv) == 5:
                job = argv[1].decode()
                ranges = tuple(parse_ranges(argv[2].decode()))
                backend = Backend.parse(argv[3].decode()).name
                version = int(argv[4])
                actions = gateway.blocks.handle(
                    Redirect(job, ranges, backend, version, gateway.map.version)
                )
                return _admin_reply(gateway.apply_block_actions(actions)[-1])
            if name == b"unblock" and len(argv) == 2:
                actions = gateway.blocks.handle(Unblock(argv[1].decode()))
                return _admin_reply(gateway.apply_block_actions(actions)[-1])
        except (ValueError, ConfigError) as exc:
            return encode_error(f"ERR {exc}")
        return encode_error(
            f"ERR unknown admin command '{argv[0].decode('utf-8', 'replace')}' or wrong arguments "
            "(PING, MAP, STATS, BLOCK job ranges [lease-ms [version]], "
            "REDIRECT job ranges host:port version, UNBLOCK job)"
        )


# Admin commands are small; nobody (authenticated or not) gets to make this port buffer more.
_ADMIN_LIMITS = Limits(max_bulk_bytes=1 << 20, max_multibulk_len=1024, max_inline_bytes=64 << 10)
_NOAUTH = encode_error("NOAUTH Authentication required.")
_WRONGPASS = encode_error("WRONGPASS invalid username-password pair or user is disabled.")


def _password_in(argv: list[bytes]) -> bytes | None:
    """The password of AUTH [user] <password> or HELLO [protover] AUTH <user> <password>."""
    name = argv[0].lower()
    if name == b"auth":
        return argv[-1] if len(argv) in (2, 3) else None
    if name == b"hello":
        for i in range(1, len(argv) - 2):
            if argv[i].lower() == b"auth":
                return argv[i + 2]
    return None


def _admin_reply(reply: AdminReply) -> bytes:
    return b"+OK\r\n" if reply.error is None else encode_error(reply.error)

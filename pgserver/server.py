"""The pgserver's trio driver: accept clients, parse, execute, reply.

Hot path (see docs/architecture.md): plain non-blocking sockets driven by
trio.lowlevel.wait_readable; every complete command of a read is executed and all replies
go out in one send; a task per connection, none per request.
"""

from __future__ import annotations

import errno
import logging
import socket
import time

import trio
import trio.lowlevel

from pgserver.commands import load_all
from pgserver.config import PgServerConfig
from pgserver.context import Context, execute
from pgserver.keyspace import Keyspace
from tessera.errors import ConfigError
from tessera.resp import Limits, RequestParser, RequestProtocolError, encode_error

log = logging.getLogger("tessera.pgserver")

_RECV_BYTES = 256 * 1024

load_all()


class PgServer:
    """One partition-group member. Owns its keyspace, its clients and their tasks."""

    def __init__(self, config: PgServerConfig) -> None:
        self.config = config
        self.keyspace = Keyspace()
        self.limits = Limits(
            max_bulk_bytes=config.max_bulk_bytes,
            max_multibulk_len=config.max_multibulk_len,
            max_inline_bytes=config.max_inline_bytes,
        )
        self.clients: dict[int, Context] = {}
        self.port = 0
        self.started_at = time.time()
        self.commands_processed = 0
        self.connections_received = 0
        self.rejected_connections = 0
        self.dirty = 0
        self._nursery: trio.Nursery | None = None

    # ------------------------------------------------------------------ replication hook

    def log_write(self, argv: list[bytes]) -> None:
        """Called once per executed write (or per rewritten form of it)."""
        self.dirty += 1

    # ------------------------------------------------------------------ lifecycle

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listener = self._listen()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._expire_loop)
                task_status.started(self.port)
                log.info("pgserver listening on %s:%d", self.config.bind, self.port)
                await self._accept_loop(listener, nursery)
        finally:
            listener.close()

    def shutdown(self) -> None:
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _listen(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.config.bind else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.config.bind, self.config.port))
        except OSError as exc:
            listener.close()
            raise ConfigError(
                f"cannot listen on {self.config.bind}:{self.config.port}: {exc.strerror}"
            ) from exc
        listener.listen(1024)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        return listener

    async def _accept_loop(self, listener: socket.socket, nursery: trio.Nursery) -> None:
        while True:
            await trio.lowlevel.wait_readable(listener)
            try:
                conn, addr = listener.accept()
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("accept failed: %s", exc)
                    await trio.sleep(0.1)
                    continue
                raise
            self.connections_received += 1
            conn.setblocking(False)
            if conn.family != socket.AF_UNIX:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self.clients) >= self.config.max_clients:
                self.rejected_connections += 1
                try:
                    conn.send(b"-ERR max number of clients reached\r\n")
                finally:
                    conn.close()
                continue
            nursery.start_soon(self._serve_client, conn, f"{addr[0]}:{addr[1]}")

    async def _expire_loop(self) -> None:
        interval = self.config.active_expire_interval_ms / 1000
        budget = self.config.active_expire_budget_ms / 1000
        keyspace = self.keyspace
        while True:
            await trio.sleep(interval)
            while keyspace.active_expire(budget) and keyspace.expires:
                await trio.lowlevel.checkpoint()

    # ------------------------------------------------------------------ clients

    async def _serve_client(self, sock: socket.socket, addr: str) -> None:
        ctx = Context(self, addr)
        self.clients[ctx.client_id] = ctx
        parser = RequestParser(self.limits)
        wait_readable = trio.lowlevel.wait_readable
        recv = sock.recv
        tick = self.keyspace.tick
        try:
            while True:
                await wait_readable(sock)
                try:
                    data = recv(_RECV_BYTES)
                except BlockingIOError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                tick()
                broken: RequestProtocolError | None = None
                try:
                    commands = parser.feed(data)
                except RequestProtocolError as exc:
                    commands, broken = exc.commands, exc
                if len(commands) == 1:
                    out = execute(ctx, commands[0])
                else:
                    replies = []
                    for argv in commands:
                        replies.append(execute(ctx, argv))
                        if ctx.close_after_reply:
                            break
                    out = b"".join(replies)
                self.commands_processed += len(commands)
                if broken is not None:
                    out += encode_error(broken.reply)
                if out and not await _send_all(sock, out):
                    return
                if broken is not None or ctx.close_after_reply:
                    return
        finally:
            del self.clients[ctx.client_id]
            sock.close()


async def _send_all(sock: socket.socket, data: bytes) -> bool:
    """Write everything; synchronous when the socket has room (the common case)."""
    try:
        sent = sock.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        return False
    if sent == len(data):
        return True
    view = memoryview(data)[sent:]
    while view:
        await trio.lowlevel.wait_writable(sock)
        try:
            sent = sock.send(view)
        except BlockingIOError:
            continue
        except OSError:
            return False
        view = view[sent:]
    return True

"""One client connection to a pgserver, pipelined: requests go out as whole writes, replies
come back in order and are matched to them.

Two ways to read replies, never both at once: `call()` reads inline (control commands), or
a `pump()` task reads while another task keeps `submit()`ting batches (the data path).

Never poisoned by a cancellation: a request is written whole in a shielded scope (a write
that cannot finish within `write_timeout_ms` breaks the connection instead), and reading is
cancel-safe (trio's receive_some loses nothing), so a caller cancelled while it waits for a
reply leaves that reply to be read and dropped by the next reader; the next call still gets
its own answer. A pgserver silent for `reply_timeout_ms` while replies are due, a closed
socket or a write timeout break the connection for good (every later use raises).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

import hiredis
import trio

from migrator.batching import Command
from migrator.config import MoverConfig
from tessera.errors import ConfigError, MigrationError
from tessera.resp import encode_command

_NOT_ENOUGH: Final = object()
_RECEIVE_BYTES: Final = 256 << 10


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Address:
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"bad address {text!r}: expected HOST:PORT")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class ServerReplyError(MigrationError):
    """The pgserver answered a command with an error reply (`reply`, without the '-')."""

    def __init__(self, message: str, reply: str) -> None:
        super().__init__(message)
        self.reply = reply


def describe(argv: Command) -> str:
    """A command as named in error messages: its name and first argument (not a password)."""
    if argv[0].upper() == b"AUTH":
        return "AUTH"
    words = [arg.decode("utf-8", "replace") for arg in argv[:2]]
    text = " ".join(words)
    return text if len(text) <= 120 else text[:117] + "..."


class _Request:
    """Commands written together, waiting for their replies."""

    __slots__ = ("check", "commands", "done", "failed", "index", "on_done", "reply", "size")

    def __init__(
        self,
        commands: list[Command],
        size: int,
        check: bool,
        on_done: Callable[[], None] | None,
    ) -> None:
        self.commands = commands
        self.size = size
        self.check = check  # an error reply fails the connection's reader (batches)
        self.on_done = on_done
        self.index = 0
        self.failed = False  # an error reply (check): its on_done is not called
        self.reply: object = None  # the last reply (call() sends one command)
        self.done = trio.Event()


class PgConnection:
    """A pipelined connection to one pgserver (see the module docstring)."""

    def __init__(self, stream: trio.SocketStream, address: Address, role: str, config: MoverConfig):
        self.stream = stream
        self.address = address
        self.role = role  # "source" or "target", for messages
        self.config = config
        self._reader = hiredis.Reader(notEnoughData=_NOT_ENOUGH)
        self.pending: deque[_Request] = deque()
        self.inflight_bytes = 0
        self._write_lock = trio.Lock()
        self._read_lock = trio.Lock()
        self._pumping = False
        self._changed = trio.Event()
        self.broken: MigrationError | None = None
        self.refused: MigrationError | None = None  # the first error reply to a batch

    @property
    def name(self) -> str:
        return f"the {self.role} {self.address}"

    # ------------------------------------------------------------------------ writing

    async def submit(
        self,
        commands: list[Command],
        *,
        check: bool = True,
        on_done: Callable[[], None] | None = None,
    ) -> _Request:
        """Write `commands` in one go once the in-flight budget allows; returns at once.

        With `check`, an error reply to any of them fails the reader (MigrationError naming
        the command). A request without commands completes when every earlier one has.
        """
        data = b"".join([encode_command(argv) for argv in commands])
        limit = self.config.max_inflight_bytes
        while self.pending and self.inflight_bytes + len(data) > limit:
            await self._wait_for_replies()
        async with self._write_lock:  # the last point where cancelling leaves no trace
            self._raise_if_broken()
            request = _Request(commands, len(data), check, on_done)
            if not commands and not self.pending:
                self._complete(request)
                return request
            self.pending.append(request)
            self.inflight_bytes += len(data)
            if data:
                await self._write(data)
        return request

    async def _write(self, data: bytes) -> None:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self.config.write_timeout_ms / 1000) as timer:
                try:
                    await self.stream.send_all(data)
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise self._break(f"cannot write to {self.name}: {exc}") from exc
            if timer.cancelled_caught:
                raise self._break(
                    f"{self.name} took in nothing for {self.config.write_timeout_ms} ms"
                )

    # ------------------------------------------------------------------------ reading

    async def call(self, *args: bytes | str | int) -> Any:
        """One command, its reply (ServerReplyError for an error reply)."""
        argv = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        request = await self.submit([argv], check=False)
        while not request.done.is_set():
            await self._wait_for_replies()
        reply = request.reply
        if isinstance(reply, hiredis.ReplyError):
            text = str(reply)
            raise ServerReplyError(f"{self.name} refused {describe(argv)}: {text}", text)
        return reply

    async def pump(self) -> None:
        """Read replies until cancelled (a task of the caller's nursery)."""
        if self._pumping:
            raise AssertionError("two readers on one connection")
        self._pumping = True
        try:
            while True:
                await self._read_some()
                if self.refused is not None:
                    raise self.refused
        finally:
            self._pumping = False
            self._wake()

    async def drain(self) -> None:
        """Wait until every request got its replies."""
        while self.pending:
            await self._wait_for_replies()

    async def _wait_for_replies(self) -> None:
        self._raise_if_broken()
        if self._pumping:
            changed = self._changed
            await changed.wait()
        else:
            await self._read_some()

    async def _read_some(self) -> None:
        async with self._read_lock:
            self._raise_if_broken()
            timeout_s = self.config.reply_timeout_ms / 1000
            with trio.move_on_after(timeout_s) as timer:
                try:
                    data = await self.stream.receive_some(_RECEIVE_BYTES)
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise self._break(f"cannot read from {self.name}: {exc}") from exc
            if timer.cancelled_caught:
                if self.pending:
                    raise self._break(
                        f"{self.name} did not reply for {self.config.reply_timeout_ms} ms"
                    )
                return
            if not data:
                raise self._break(f"{self.name} closed the connection")
            self._reader.feed(data)
            gets = self._reader.gets
            try:
                while (reply := gets()) is not _NOT_ENOUGH:
                    self._dispatch(reply)
            except hiredis.ProtocolError as exc:
                raise self._break(f"{self.name} broke the protocol: {exc}") from exc
            finally:
                self._wake()

    def _dispatch(self, reply: object) -> None:
        if not self.pending:
            raise self._break(f"{self.name} sent a reply nobody asked for: {reply!r:.100}")
        request = self.pending[0]
        argv = request.commands[request.index]
        request.index += 1
        request.reply = reply
        if request.check and isinstance(reply, hiredis.ReplyError):
            request.failed = True
        if request.failed and self.refused is None:
            # Reported by pump(); the replies after it are still matched, so the connection
            # can be drained (the target has executed everything sent) before giving up.
            self.refused = MigrationError(f"{self.name} refused {describe(argv)}: {reply}")
        if request.index == len(request.commands):
            self.pending.popleft()
            self.inflight_bytes -= request.size
            self._complete(request)
            while self.pending and not self.pending[0].commands:
                self._complete(self.pending.popleft())

    def _complete(self, request: _Request) -> None:
        request.done.set()
        # Nothing after a refused command counts as applied: progress stops before it.
        if request.on_done is not None and self.refused is None:
            request.on_done()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # ------------------------------------------------------------------------ failure

    def _break(self, message: str) -> MigrationError:
        if self.broken is None:
            self.broken = MigrationError(message)
        self._wake()
        return self.broken

    def _raise_if_broken(self) -> None:
        if self.broken is not None:
            raise MigrationError(str(self.broken))

    async def aclose(self) -> None:
        await self.stream.aclose()


@contextlib.asynccontextmanager
async def open_connection(
    address: Address, role: str, config: MoverConfig
) -> AsyncIterator[PgConnection]:
    """A PgConnection, closed on exit (MigrationError if it cannot be opened)."""
    stream = await connect(address, role, config)
    conn = PgConnection(stream, address, role, config)
    try:
        if config.password is not None:
            await conn.call("AUTH", config.password)
        yield conn
    finally:
        with trio.CancelScope(shield=True):
            await conn.aclose()


async def connect(address: Address, role: str, config: MoverConfig) -> trio.SocketStream:
    try:
        with trio.fail_after(config.connect_timeout_ms / 1000):
            return await trio.open_tcp_stream(address.host, address.port)
    except trio.TooSlowError:
        raise MigrationError(
            f"cannot connect to the {role} {address}: no answer within "
            f"{config.connect_timeout_ms} ms"
        ) from None
    except OSError as exc:
        raise MigrationError(f"cannot connect to the {role} {address}: {exc}") from exc

"""A TSR.TAIL stream from the source: frames of the ranges' committed commands, in order."""

from __future__ import annotations

from typing import Final

import hiredis
import trio

from migrator.batching import Frame, parse_frame
from migrator.config import MoverConfig
from migrator.connection import Address, connect
from tessera.errors import MigrationError
from tessera.resp import encode_command

_NOT_ENOUGH: Final = object()
_RECEIVE_BYTES: Final = 1 << 20


class TailRedo(MigrationError):
    """The source cannot stream the ranges from here on: copy them again from a new dump
    (its log no longer reaches the position, or a FLUSHALL deleted the ranges)."""


def _is_redo(error: str) -> bool:
    return "older than the oldest kept log" in error or (
        "deleted the migrating partitions" in error
    )


class TailStream:
    """The source's tail of `ranges` from `lsn` on; the connection is used for nothing else."""

    def __init__(self, stream: trio.SocketStream, address: Address) -> None:
        self.stream = stream
        self.address = address
        self._reader = hiredis.Reader(notEnoughData=_NOT_ENOUGH)

    @classmethod
    async def open(cls, address: Address, lsn: int, ranges: str, config: MoverConfig) -> TailStream:
        """Start the tail: TailRedo or MigrationError if the source refuses it."""
        stream = await connect(address, "source", config)
        tail = cls(stream, address)
        try:
            request = encode_command([b"TSR.TAIL", b"%d" % lsn, ranges.encode()])
            if config.password is not None:
                request = encode_command([b"AUTH", config.password.encode()]) + request
            await tail._send(request)
            with trio.move_on_after(config.reply_timeout_ms / 1000) as timer:
                if config.password is not None:
                    await tail._next()  # +OK (a refusal raises)
                header = await tail._next()
            if timer.cancelled_caught:
                raise MigrationError(f"the source {address} did not answer TSR.TAIL")
            if header != b"TAIL %d" % lsn:
                raise MigrationError(f"the source {address} answered TSR.TAIL with {header!r}")
        except BaseException:
            with trio.CancelScope(shield=True):
                await stream.aclose()
            raise
        return tail

    async def receive(self) -> list[Frame]:
        """The frames that have arrived (at least one); waits for the first."""
        frames = [parse_frame(await self._next())]
        while (item := self._gets()) is not _NOT_ENOUGH:
            frames.append(parse_frame(item))
        return frames

    async def _send(self, data: bytes) -> None:
        try:
            await self.stream.send_all(data)
        except (OSError, trio.BrokenResourceError) as exc:
            raise MigrationError(f"cannot write to the source {self.address}: {exc}") from exc

    def _gets(self) -> object:
        try:
            item = self._reader.gets()
        except hiredis.ProtocolError as exc:
            raise MigrationError(f"the source {self.address} broke the protocol: {exc}") from exc
        if isinstance(item, hiredis.ReplyError):
            text = str(item)
            message = f"the source {self.address} stopped the tail: {text}"
            raise TailRedo(message) if _is_redo(text) else MigrationError(message)
        return item

    async def _next(self) -> object:
        while (item := self._gets()) is _NOT_ENOUGH:
            try:
                data = await self.stream.receive_some(_RECEIVE_BYTES)
            except (OSError, trio.BrokenResourceError) as exc:
                raise MigrationError(f"cannot read the tail from {self.address}: {exc}") from exc
            if not data:
                raise MigrationError(f"the source {self.address} closed the tail")
            self._reader.feed(data)
        return item

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.stream.aclose()

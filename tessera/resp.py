"""Sans-I/O RESP codec: request bytes in, commands out; reply values in, bytes out.

It imports neither trio nor sockets. hiredis parses multibulk requests (it is ~10x faster than
Python here); this module adds what a *server* needs and hiredis lacks: inline commands,
Redis's size limits with Redis's wording, and the rule that a request is an array of bulk
strings. Limits are checked by a small header validator that runs only while a request is
incomplete at the end of a read, so complete pipelined reads cost one hiredis pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, cast

import hiredis

from tessera.errors import ProtocolError

Command = list[bytes]

_NOT_ENOUGH: Final = object()  # private sentinel: hiredis's False is a real RESP3 value


@dataclass(frozen=True)
class Limits:
    """Request size limits (Redis defaults: proto-max-bulk-len 512 MB, 64 KB inline)."""

    max_bulk_bytes: int = 512 * 1024 * 1024
    max_multibulk_len: int = 1024 * 1024
    max_inline_bytes: int = 64 * 1024


DEFAULT_LIMITS: Final = Limits()


class RequestProtocolError(ProtocolError):
    """A broken request stream; `commands` are the complete ones that came before the break."""

    def __init__(self, message: str, commands: list[Command]) -> None:
        super().__init__(message)
        self.commands = commands


def split_args(line: bytes) -> list[bytes] | None:
    """Split an inline command like Redis's sdssplitargs; None means unbalanced quotes."""
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in b" \t\r\n\x0b\x0c":
            i += 1
        if i >= n:
            return args
        cur = bytearray()
        quote = 0
        while True:
            if quote == 0x22:  # inside "..."
                if i >= n:
                    return None
                c = line[i]
                if c == 0x5C and i + 3 < n and line[i + 1] == 0x78 and _is_hex(line[i + 2 : i + 4]):
                    cur.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == 0x5C and i + 1 < n:
                    i += 1
                    cur.append(_ESCAPES.get(line[i], line[i]))
                elif c == 0x22:
                    if i + 1 < n and line[i + 1] not in b" \t\r\n\x0b\x0c":
                        return None
                    i += 1
                    break
                else:
                    cur.append(c)
                i += 1
            elif quote == 0x27:  # inside '...'
                if i >= n:
                    return None
                c = line[i]
                if c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
                    cur.append(0x27)
                    i += 1
                elif c == 0x27:
                    if i + 1 < n and line[i + 1] not in b" \t\r\n\x0b\x0c":
                        return None
                    i += 1
                    break
                else:
                    cur.append(c)
                i += 1
            else:
                if i >= n:
                    break
                c = line[i]
                if c in b" \t\r\n\x0b\x0c":
                    break
                if c in (0x22, 0x27):
                    quote = c
                else:
                    cur.append(c)
                i += 1
        args.append(bytes(cur))


_ESCAPES = {0x6E: 0x0A, 0x72: 0x0D, 0x74: 0x09, 0x62: 0x08, 0x61: 0x07}


def _is_hex(two: bytes) -> bool:
    return len(two) == 2 and all(c in b"0123456789abcdefABCDEF" for c in two)


class _HeaderValidator:
    """Checks multibulk/bulk headers of an incomplete request against the limits.

    Fed only with bytes that start at a request boundary, while hiredis holds a partial
    request, so a client announcing a 600 MB bulk is refused at once instead of buffered.
    """

    __slots__ = ("_elements_left", "_limits", "_line", "_skip")

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._elements_left = 0
        self._skip = 0
        self._line = b""

    def feed(self, data: bytes) -> str | None:
        """Return a protocol error message if a header breaks a limit, else None."""
        pos, end = 0, len(data)
        limits = self._limits
        while pos < end:
            if self._skip:
                take = min(self._skip, end - pos)
                self._skip -= take
                pos += take
                continue
            nl = data.find(b"\n", pos)
            if nl == -1:
                self._line += data[pos:]
                if len(self._line) > limits.max_inline_bytes:
                    return "ERR Protocol error: too big multibulk count"
                return None
            line = (self._line + data[pos:nl]).rstrip(b"\r")
            self._line = b""
            pos = nl + 1
            if not line:
                continue
            try:
                value = int(line[1:])
            except ValueError:
                value = -2
            if self._elements_left == 0:
                if line[:1] != b"*":
                    return None  # not a multibulk; hiredis reports the error
                if value > limits.max_multibulk_len or value < -1:
                    return "ERR Protocol error: invalid multibulk length"
                self._elements_left = max(value, 0)
            else:
                if line[:1] != b"$":
                    return f"ERR Protocol error: expected '$', got '{line[:1].decode('latin-1')}'"
                if value > limits.max_bulk_bytes or value < 0:
                    return "ERR Protocol error: invalid bulk length"
                self._skip = value + 2
                self._elements_left -= 1
        return None


class RequestParser:
    """Turns a client's byte stream into commands (lists of bytes)."""

    __slots__ = (
        "_clean",
        "_gets",
        "_has_data",
        "_inline",
        "_limits",
        "_reader",
        "_validator",
        "exact",
    )

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._reader = hiredis.Reader(notEnoughData=_NOT_ENOUGH)
        self._gets = self._reader.gets
        self._has_data = self._reader.has_data
        self._clean = True  # hiredis holds no partial request
        self._inline = b""  # unfinished inline line
        self._validator: _HeaderValidator | None = None
        # True when the last fed bytes were exactly the RESP arrays returned for them (no
        # inline, nothing partial before or after, nothing skipped): then those bytes can
        # be logged as they are instead of being encoded again.
        self.exact = False

    def feed(self, data: bytes) -> list[Command]:
        """Every request completed by `data`, in order.

        Raises RequestProtocolError (carrying the commands before the break) when the
        stream is broken; the connection must then be closed after replying.
        """
        commands: list[Command] = []
        self.exact = False
        if self._inline or (self._clean and data[:1] != b"*"):
            data = self._feed_inline(data, commands)
            if not data:
                return commands
            skipped = True
        else:
            skipped = False
        was_clean = self._clean
        self._clean = False
        self._reader.feed(data)
        gets, has_data = self._gets, self._has_data
        try:
            while (cmd := gets()) is not _NOT_ENOUGH:
                if type(cmd) is not list:
                    if cmd is None:  # *-1: Redis ignores it
                        self._clean = not has_data()
                        skipped = True
                        continue
                    raise RequestProtocolError(
                        "ERR Protocol error: invalid multibulk length", commands
                    )
                for arg in cmd:
                    if type(arg) is not bytes:
                        raise RequestProtocolError(_element_error(arg), commands)
                self._clean = not has_data()
                if cmd:
                    commands.append(cmd)
                else:
                    skipped = True
        except hiredis.ProtocolError as exc:
            raise RequestProtocolError(_hiredis_error(str(exc)), commands) from exc
        if self._clean:
            self._validator = None
            self.exact = was_clean and not skipped
        else:
            if was_clean or self._validator is None:
                self._validator = _HeaderValidator(self._limits)
            problem = self._validator.feed(data)
            if problem is not None:
                raise RequestProtocolError(problem, commands)
        return commands

    def _feed_inline(self, data: bytes, commands: list[Command]) -> bytes:
        buf = self._inline + data if self._inline else data
        limit = self._limits.max_inline_bytes
        while buf and buf[:1] != b"*":
            nl = buf.find(b"\n")
            if nl == -1:
                if len(buf) > limit:
                    self._inline = b""
                    raise RequestProtocolError(
                        "ERR Protocol error: too big inline request", commands
                    )
                self._inline = buf
                return b""
            if nl > limit:
                self._inline = b""
                raise RequestProtocolError("ERR Protocol error: too big inline request", commands)
            args = split_args(buf[:nl])
            buf = buf[nl + 1 :]
            if args is None:
                self._inline = b""
                raise RequestProtocolError(
                    "ERR Protocol error: unbalanced quotes in request", commands
                )
            if args:
                commands.append(args)
        self._inline = b""
        return buf


def _element_error(value: object) -> str:
    if value is None:
        return "ERR Protocol error: invalid bulk length"
    kind = {int: ":", list: "*", float: ",", bool: "#", dict: "%"}.get(type(value), "?")
    return f"ERR Protocol error: expected '$', got '{kind}'"


def _hiredis_error(message: str) -> str:
    lowered = message.lower()
    if "multi-bulk" in lowered or "multibulk" in lowered:
        return "ERR Protocol error: invalid multibulk length"
    if "bulk" in lowered:
        return "ERR Protocol error: invalid bulk length"
    if "type byte" in lowered:
        got = message.split('"')[1] if '"' in message else "?"
        return f"ERR Protocol error: expected '$', got '{got}'"
    return "ERR Protocol error: " + message


# --------------------------------------------------------------------------- replies


class SimpleString(bytes):
    """A +status reply, e.g. +OK."""


class Double(float):
    """A floating point reply: bulk string in RESP2, ',' in RESP3 (Redis 7.0 formatting)."""


class Map(list[tuple[object, object]]):
    """Key/value pairs: flat array in RESP2, '%' map in RESP3."""


class SetReply(list[object]):
    """An unordered collection: array in RESP2, '~' set in RESP3."""


class RawReply(bytes):
    """Already-encoded RESP, sent verbatim (e.g. COMMAND INFO copied from Redis)."""


class ErrorReply(str):
    """An error inside a reply (text without the leading '-')."""


class _NullArray:
    """*-1 in RESP2 (e.g. a timed-out pop), '_' in RESP3."""


NULL_ARRAY: Final = _NullArray()
OK: Final = SimpleString(b"OK")
PONG: Final = SimpleString(b"PONG")
QUEUED: Final = SimpleString(b"QUEUED")

# bytes | int | None | list | SimpleString | Double | Map | SetReply | RawReply | ...
Reply = Any


_OK_LINE: Final = b"+OK\r\n"


def format_double(value: float) -> bytes:
    """Redis 7.0's addReplyDouble text: %.17g, with inf/-inf spelled out."""
    if value == float("inf"):
        return b"inf"
    if value == float("-inf"):
        return b"-inf"
    return b"%.17g" % value


def encode(reply: Reply, resp3: bool = False) -> bytes:
    """Encode one reply value."""
    t = type(reply)
    if t is bytes:
        return b"$%d\r\n%b\r\n" % (len(reply), reply)
    if reply is OK:
        return _OK_LINE
    if t is int:
        return b":%d\r\n" % reply
    if t is SimpleString:
        return b"+%b\r\n" % reply
    if reply is None:
        return b"_\r\n" if resp3 else b"$-1\r\n"
    out: list[bytes] = []
    _encode_into(reply, out, resp3)
    return b"".join(out)


def _encode_into(reply: Reply, out: list[bytes], resp3: bool) -> None:
    t = type(reply)
    if t is bytes:
        out.append(b"$%d\r\n%b\r\n" % (len(reply), reply))
    elif t is int:
        out.append(b":%d\r\n" % reply)
    elif t is list or t is tuple or t is SetReply:
        items: list[Any] = reply
        prefix = b"~" if (resp3 and t is SetReply) else b"*"
        out.append(b"%b%d\r\n" % (prefix, len(items)))
        for item in items:
            _encode_into(item, out, resp3)
    elif reply is None:
        out.append(b"_\r\n" if resp3 else b"$-1\r\n")
    elif t is SimpleString:
        out.append(b"+%b\r\n" % reply)
    elif t is Double:
        text = format_double(reply)
        out.append(b",%b\r\n" % text if resp3 else b"$%d\r\n%b\r\n" % (len(text), text))
    elif t is Map:
        pairs: Map = reply
        out.append(b"%%%d\r\n" % len(pairs) if resp3 else b"*%d\r\n" % (2 * len(pairs)))
        for key, value in pairs:
            _encode_into(key, out, resp3)
            _encode_into(value, out, resp3)
    elif t is RawReply:
        out.append(reply)
    elif t is ErrorReply:
        out.append(b"-%b\r\n" % reply.encode())
    elif reply is NULL_ARRAY:
        out.append(b"_\r\n" if resp3 else b"*-1\r\n")
    elif t is bool:
        out.append((b"#t\r\n" if reply else b"#f\r\n") if resp3 else b":%d\r\n" % reply)
    elif t is float:
        _encode_into(Double(reply), out, resp3)
    elif t is str:
        data = reply.encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    else:
        raise TypeError(f"cannot encode reply of type {t.__name__}")


def encode_error(message: str) -> bytes:
    """An error reply line; message without the leading '-'."""
    return b"-%b\r\n" % message.replace("\r", " ").replace("\n", " ").encode()


def unknown_command_reply(argv: list[bytes]) -> bytes:
    """Redis's exact reply to a command it does not know."""
    args = ""
    for arg in argv[1:]:
        if len(args) >= 128:
            break
        args += "'" + arg.decode("utf-8", "replace")[: 128 - len(args)] + "' "
    name = argv[0].decode("utf-8", "replace")[:128]
    return encode_error(f"ERR unknown command '{name}', with args beginning with: {args}")


def encode_command(args: list[bytes] | tuple[bytes, ...]) -> bytes:
    """A request as a RESP array of bulk strings (what clients and the gateway send)."""
    packed: bytes = hiredis.pack_command(cast(Any, tuple(args)))
    return packed


def scan_reply(buf: bytes, pos: int = 0) -> int:
    """End offset of the complete reply starting at buf[pos], or -1 if it is incomplete.

    Lets a proxy forward replies byte for byte (hiredis gives values, not offsets).
    Understands RESP2 and RESP3. Raises ProtocolError on a byte that starts no reply.
    """
    end = len(buf)
    pending = 1  # elements still to scan
    find = buf.find
    while pending:
        if pos >= end:
            return -1
        kind = buf[pos]
        nl = find(b"\r\n", pos)
        if nl < 0:
            return -1
        if kind in _LINE_TYPES:
            pos = nl + 2
            pending -= 1
        elif kind in _BLOB_TYPES:
            size = int(buf[pos + 1 : nl])
            pos = nl + 2 if size < 0 else nl + 4 + size
            if pos > end:
                return -1
            pending -= 1
        elif kind in _AGGREGATE_TYPES:
            count = int(buf[pos + 1 : nl])
            pos = nl + 2
            pending += max(count, 0) - 1
        elif kind == 0x25:  # % map: two elements per entry
            count = int(buf[pos + 1 : nl])
            pos = nl + 2
            pending += 2 * count - 1
        elif kind == 0x7C:  # | attribute: its pairs, then the reply it annotates
            count = int(buf[pos + 1 : nl])
            pos = nl + 2
            pending += 2 * count
        else:
            raise ProtocolError(f"ERR Protocol error: unexpected reply type byte {kind!r}")
    return pos


_LINE_TYPES: Final = frozenset(b"+-:_,#(")
_BLOB_TYPES: Final = frozenset(b"$=!")
_AGGREGATE_TYPES: Final = frozenset(b"*~>")

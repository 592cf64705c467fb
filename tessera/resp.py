"""Sans-I/O RESP codec: request bytes in, commands out; reply values in, bytes out.

It imports neither trio nor sockets. hiredis parses multibulk requests (it is ~10x faster than
Python here); this module adds what a *server* needs and hiredis lacks: inline commands,
Redis's size limits with Redis's wording, and the rule that a request is an array of bulk
strings. Limits are checked by a small header validator that runs only while a request is
incomplete at the end of a read, so complete pipelined reads cost one hiredis pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, cast

import hiredis

from tessera.errors import ProtocolError

# Re-exported: handlers import the reply types from here.
from tessera.replies import Double as Double
from tessera.replies import ErrorReply as ErrorReply
from tessera.replies import Map as Map
from tessera.replies import RawReply as RawReply
from tessera.replies import SetReply as SetReply
from tessera.replies import SimpleString as SimpleString

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


_ESCAPES: Final = {0x6E: 0x0A, 0x72: 0x0D, 0x74: 0x09, 0x62: 0x08, 0x61: 0x07}


def _is_hex(two: bytes) -> bool:
    return len(two) == 2 and all(c in b"0123456789abcdefABCDEF" for c in two)


_OTHER_AGGREGATES: Final = b"%~>|"  # RESP3 aggregate types besides '*'
_INT: Final = re.compile(rb"0|-?[1-9][0-9]{0,18}")  # Redis's string2ll: no '+', spaces, leading 0s


def _strict_int(line: bytes) -> int | None:
    return int(line) if _INT.fullmatch(line) else None


def _whole_requests(data: bytes, max_count: int, max_bulk: int) -> bool:
    """Whether `data` is exactly whole multibulk requests of bulk strings, each count and
    length in Redis's strict form (digits only, no leading zero, a count of at least 1)
    and within the limits. A walk over the headers only (payloads are skipped by length),
    compiled: ~90 ns per SET of a 16-SET read, ~200 ns for a read of one (timeit), where
    the guard searches over every byte it replaces cost ~1.6 ns per byte. Anything else,
    including a request cut at the end of the read, is left to the careful path.

    The digit loop is written out twice (count, length) on purpose: as a helper method
    keeping the position on an object it cost ~15 % more per read."""
    size = len(data)
    pos = 0
    while pos < size:
        if data[pos] != 42:  # "*"
            return False
        pos += 1
        start = pos
        count = 0
        while pos < size:
            c = data[pos]
            if c < 48 or c > 57 or pos - start == 18:
                break
            count = count * 10 + c - 48
            pos += 1
        if pos == start or (pos - start > 1 and data[start] == 48):
            return False
        if count == 0 or count > max_count:
            return False
        if pos + 1 >= size or data[pos] != 13 or data[pos + 1] != 10:
            return False
        pos += 2
        while count:
            if pos >= size or data[pos] != 36:  # "$"
                return False
            pos += 1
            start = pos
            length = 0
            while pos < size:
                c = data[pos]
                if c < 48 or c > 57 or pos - start == 18:
                    break
                length = length * 10 + c - 48
                pos += 1
            if pos == start or (pos - start > 1 and data[start] == 48) or length > max_bulk:
                return False
            if pos + 1 >= size or data[pos] != 13 or data[pos + 1] != 10:
                return False
            pos += length + 4  # CRLF, the payload, its CRLF (skipped unchecked, as Redis)
            if pos > size:
                return False
            count -= 1
    return True


class _RequestScanner:
    """Walks the framing of one multibulk request in pure Python, the way Redis does.

    It is fed the request's bytes in pieces (it keeps only an unfinished header line), so a
    client announcing a 600 MB bulk is refused at once instead of buffered. It is the
    authority whenever hiredis cannot be trusted to give Redis's answer: an incomplete
    request at the end of a read, a read hiredis rejects, or one with element types hiredis
    returns as plain bytes.
    """

    __slots__ = (
        "_args",
        "_collect",
        "_elements_left",
        "_limits",
        "_line",
        "_skip",
        "empty",
        "started",
    )

    def __init__(self, limits: Limits, collect: bool = False) -> None:
        self._limits = limits
        self._collect = collect  # keep the arguments (the slow path needs them)
        self._args: list[bytes] = []
        self._elements_left = 0
        self._skip = 0  # payload (+ CRLF) bytes still to pass
        self._line = b""  # start of a header line that did not end yet
        self.started = False  # the '*' header was seen
        self.empty = False

    def scan(self, data: bytes, pos: int) -> int:
        """Offset just past the end of the request in `data`, or -1 if it goes on.

        Raises RequestProtocolError (with no commands; the caller adds its own).
        """
        end = len(data)
        limits = self._limits
        while pos < end or (self.started and self._elements_left == 0 and not self._skip):
            if self._skip:
                take = min(self._skip, end - pos)
                self._skip -= take
                pos += take
                continue
            if self.started and self._elements_left == 0:
                return pos
            # A header ends at its CR, as in Redis; a CR not followed by LF is an error
            # (Redis would read on, hiredis would wait: refusing is what both can agree on).
            if self._line[-1:] == b"\r":  # the CR ended the previous read
                line = self._line[:-1]
                lone_cr = data[pos] != 0x0A
                pos += 1
            else:
                cr = data.find(b"\r", pos)
                if cr == -1 or cr == end - 1:
                    self._line += data[pos:]
                    if len(self._line) > limits.max_inline_bytes:
                        what = "bulk" if self.started else "mbulk"
                        raise RequestProtocolError(
                            f"ERR Protocol error: too big {what} count string", []
                        )
                    return -1
                line = self._line + data[pos:cr] if self._line else data[pos:cr]
                lone_cr = data[cr + 1] != 0x0A
                pos = cr + 2
            self._line = b""
            if not self.started:
                count = None if lone_cr else _strict_int(line[1:])
                if count is None or count > limits.max_multibulk_len:
                    raise RequestProtocolError("ERR Protocol error: invalid multibulk length", [])
                self.started = True
                self._elements_left = max(count, 0)
                self.empty = count <= 0  # *0 and *-N: an empty request, as in Redis
                continue
            if line[:1] != b"$":
                got = line[:1].decode("latin-1") or "\r"
                raise RequestProtocolError(f"ERR Protocol error: expected '$', got '{got}'", [])
            size = None if lone_cr else _strict_int(line[1:])
            if size is None or size < 0 or size > limits.max_bulk_bytes:
                raise RequestProtocolError("ERR Protocol error: invalid bulk length", [])
            self._skip = size + 2  # Redis skips the CRLF after a bulk unchecked
            self._elements_left -= 1
            if self._collect:
                self._args.append(data[pos : pos + size])  # (cut short: never used)
        return -1

    def command(self) -> Command:
        return self._args


class RequestParser:
    """Turns a client's byte stream into commands (lists of bytes).

    Fast path: hiredis parses whole reads of well-formed multibulk requests. Inline commands,
    requests left incomplete at the end of a read and reads hiredis rejects (or may have
    read too leniently) go through `_RequestScanner`, which gives Redis's answers.
    """

    __slots__ = (
        "_big_array",
        "_big_others",
        "_clean",
        "_gets",
        "_has_data",
        "_inline_buf",
        "_limits",
        "_reader",
        "_scanner",
        "exact",
    )

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        # hiredis allocates an aggregate's list as soon as it reads its header: "*2147483647"
        # (14 bytes) costs 16 GB of address space and ~10 s of CPU when the garbage
        # collector walks or frees it. So a read with an aggregate count as long as the
        # limit's digits never reaches hiredis; the scanner checks it against the limit.
        digits = len(str(limits.max_multibulk_len))
        # One search per aggregate type, each starting with its literal type byte, which
        # sre skips to quickly; one search with a character class first made parsing a
        # migration's 50 MB of frames take 0.32 s instead of 0.17 s. The types other than
        # '*' are searched for only when present.
        self._big_array = re.compile(rb"\*[-+]?[0-9]{%d}" % digits).search
        self._big_others = [
            (kind, re.compile(re.escape(kind) + rb"[-+]?[0-9]{%d}" % digits).search)
            for kind in (bytes([byte]) for byte in _OTHER_AGGREGATES)
        ]
        self._new_reader()
        self._clean = True  # hiredis holds no partial request
        # Unfinished inline line. (Not `_inline`: mypyc names the C struct field `__inline`,
        # a GCC keyword, and the build fails.)
        self._inline_buf = b""
        self._scanner: _RequestScanner | None = None  # the partial request hiredis holds
        # True when the last fed bytes were exactly the RESP arrays returned for them (no
        # inline, nothing partial before or after, nothing skipped): then those bytes can
        # be logged as they are instead of being encoded again.
        self.exact = False

    def _new_reader(self) -> None:
        self._reader = hiredis.Reader(notEnoughData=_NOT_ENOUGH)
        self._gets = self._reader.gets
        self._has_data = self._reader.has_data

    def feed(self, data: bytes) -> list[Command]:
        """Every request completed by `data`, in order.

        Raises RequestProtocolError (carrying the commands before the break) when the
        stream is broken; the connection must then be closed after replying.
        """
        commands: list[Command] = []
        self.exact = False
        if not self._clean:
            data = self._finish_partial(data, commands)
            if not data:
                return commands
            was_clean = False
        else:
            was_clean = True
        if self._inline_buf or data[:1] != b"*":
            data = self._feed_inline(data, commands)
            if not data:
                return commands
            was_clean = False
        found = len(commands)
        limits = self._limits
        if _whole_requests(data, limits.max_multibulk_len, limits.max_bulk_bytes):
            # The common read, checked by one walk over its headers: hiredis's parse needs
            # no second look (no guard searches over the payload, no per-argument checks).
            self._reader.feed(data)
            gets = self._gets
            try:
                while (cmd := gets()) is not _NOT_ENOUGH:
                    commands.append(cmd)
            except hiredis.ProtocolError:
                return self._reparse(data, commands, found)
            if self._has_data():  # never expected: hiredis disagrees about the framing
                return self._reparse(data, commands, found)
            self.exact = was_clean
            return commands
        if self._big_array(data) or (
            len(data.translate(None, _OTHER_AGGREGATES)) != len(data) and self._big_other(data)
        ):
            return self._reparse(data, commands, found)
        skipped = False
        partial = True  # hiredis holds bytes of a request it has not returned
        elements = 0
        self._reader.feed(data)
        gets, has_data = self._gets, self._has_data
        try:
            while (cmd := gets()) is not _NOT_ENOUGH:
                # has_data() is False once hiredis consumed a partial request's bytes into
                # its own state, so it only tells "clean" right after a complete value.
                partial = has_data()
                if type(cmd) is not list:
                    if cmd is None:  # *-1: Redis ignores it
                        skipped = True
                        continue
                    return self._reparse(data, commands, found)
                for arg in cmd:
                    if type(arg) is not bytes:
                        return self._reparse(data, commands, found)
                if cmd:
                    commands.append(cmd)
                    elements += len(cmd)
                else:
                    skipped = True
        except hiredis.ProtocolError:
            return self._reparse(data, commands, found)
        if data.count(b"\n$") < elements:
            # hiredis also returns simple strings, big numbers and verbatim strings as
            # bytes; Redis wants bulk strings only. Every bulk header follows a LF, so
            # fewer "\n$" than arguments means some argument was not one.
            return self._reparse(data, commands, found)
        if partial:
            # A partial request at the end: check its framing against the limits now.
            pos = 0
            while True:
                if pos >= len(data) or data[pos] != 0x2A:  # Redis: inline (or a mismatch)
                    return self._reparse(data, commands, found)
                scanner = _RequestScanner(self._limits)
                try:
                    pos = scanner.scan(data, pos)
                except RequestProtocolError:
                    return self._reparse(data, commands, found)  # for the commands before
                if pos < 0:
                    break
            self._clean = False
            self._scanner = scanner
        else:
            self.exact = was_clean and not skipped
        return commands

    def _big_other(self, data: bytes) -> bool:
        """Whether `data` holds a RESP3 aggregate header (not '*') with a count as long as
        the limit's digits; only asked when one of those type bytes is present at all."""
        return any(kind in data and search(data) for kind, search in self._big_others)

    def _finish_partial(self, data: bytes, commands: list[Command]) -> bytes:
        """Feed hiredis the rest of the request it holds; return the bytes after it."""
        scanner = self._scanner
        assert scanner is not None
        end = scanner.scan(data, 0)
        if end < 0:
            self._reader.feed(data)
            return b""
        if scanner.empty:  # *0 or *-N: nothing to execute (hiredis refuses *-N)
            self._new_reader()
        else:
            self._reader.feed(data[:end])
            commands.append(self._gets())  # the scanner vetted it: a list of bytes
        self._clean = True
        self._scanner = None
        return data[end:]

    def _reparse(self, data: bytes, commands: list[Command], keep: int) -> list[Command]:
        """Parse `data` (starting at a request boundary) strictly, in Python, as Redis does."""
        del commands[keep:]
        self._new_reader()
        self._clean = True
        self._scanner = None
        pos, end = 0, len(data)
        while pos < end:
            if data[pos] != 0x2A:  # not '*': inline commands up to the next multibulk
                rest = self._feed_inline(data[pos:], commands)
                if not rest:
                    return commands
                data, pos, end = rest, 0, len(rest)
            scanner = _RequestScanner(self._limits, collect=True)
            try:
                stop = scanner.scan(data, pos)
            except RequestProtocolError as exc:
                exc.commands = commands
                raise
            if stop < 0:
                self._reader.feed(data[pos:])  # hiredis holds it; the scanner follows it
                self._clean = False
                self._scanner = _RequestScanner(self._limits)
                self._scanner.scan(data, pos)
                return commands
            if scanner.command():
                commands.append(scanner.command())
            pos = stop
        return commands

    def _feed_inline(self, data: bytes, commands: list[Command]) -> bytes:
        buf = self._inline_buf + data if self._inline_buf else data
        limit = self._limits.max_inline_bytes
        while buf and buf[:1] != b"*":
            nl = buf.find(b"\n")
            if nl == -1:
                if len(buf) > limit:
                    self._inline_buf = b""
                    raise RequestProtocolError(
                        "ERR Protocol error: too big inline request", commands
                    )
                self._inline_buf = buf
                return b""
            if nl > limit:
                self._inline_buf = b""
                raise RequestProtocolError("ERR Protocol error: too big inline request", commands)
            args = split_args(buf[:nl])
            buf = buf[nl + 1 :]
            if args is None:
                self._inline_buf = b""
                raise RequestProtocolError(
                    "ERR Protocol error: unbalanced quotes in request", commands
                )
            if args:
                commands.append(args)
        self._inline_buf = b""
        return buf


# --------------------------------------------------------------------------- replies


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
    """Redis's exact reply to a command it does not know (its bytes echoed as they came)."""
    args = b""
    for arg in argv[1:]:
        if len(args) >= 128:
            break
        args += b"'" + arg[: 128 - len(args)] + b"' "
    text = b"ERR unknown command '%b', with args beginning with: %b" % (argv[0][:128], args)
    return b"-%b\r\n" % text.replace(b"\r", b" ").replace(b"\n", b" ")


def encode_command(args: list[bytes] | tuple[bytes, ...]) -> bytes:
    """A request as a RESP array of bulk strings (what clients and the gateway send)."""
    packed: bytes = hiredis.pack_command(cast(Any, tuple(args)))
    return packed


def line_end(buf: bytes, pos: int, size: int) -> int:
    """Index of the CR of the CRLF ending the line that starts at buf[pos]; -1 if the line
    is not complete in buf[:size]. Compiled, a loop over a short line costs a few ns where
    bytes.find costs a method call. Raises ProtocolError on a CR not followed by LF."""
    while pos < size:
        if buf[pos] == 13:
            if pos + 1 >= size:
                return -1
            if buf[pos + 1] != 10:
                raise ProtocolError("ERR Protocol error: CR not followed by LF in a reply")
            return pos
        pos += 1
    return -1


def bulk_end(buf: bytes, pos: int, size: int) -> int:
    """End offset of the bulk string reply ("$<n>" CRLF, n bytes, CRLF; or the null "$-1"
    CRLF) starting at buf[pos]; -1 if it is not complete in buf[:size]. The length is read
    digit by digit (compiled: no slice, no int()). Raises ProtocolError on a malformed
    length."""
    i = pos + 1
    negative = i < size and buf[i] == 45  # "-"
    if negative:
        i += 1
    length = 0
    digits = 0
    while True:
        if i >= size:
            return -1
        c = buf[i]
        if c == 13:
            break
        if c < 48 or c > 57 or digits == 18:
            raise ProtocolError("ERR Protocol error: invalid bulk length in a reply")
        length = length * 10 + c - 48
        digits += 1
        i += 1
    if not digits or (negative and length != 1):
        raise ProtocolError("ERR Protocol error: invalid bulk length in a reply")
    end = i + 2 if negative else i + 4 + length
    if end > size:
        return -1
    if buf[i + 1] != 10:
        raise ProtocolError("ERR Protocol error: CR not followed by LF in a reply")
    return end


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

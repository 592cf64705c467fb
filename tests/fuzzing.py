"""A seeded generator of hostile client input, and the driver that throws it at a server.

Each fuzz connection gets a script from `ConnectionScript.generate(rng)`: some valid
commands (names from tessera.command_table plus unknown ones, random arguments, multibulk or
inline), then usually one bad input that may break the stream (truncated or corrupt RESP,
huge declared lengths, deep nesting, RESP3 types where only bulk strings are allowed, inline
garbage, random bytes), then end-of-file. The bytes go out split at random points. The
server must answer every valid command before the bad input with exactly one well-formed
reply and close the connection after the end of the stream (or its protocol error) within a
deadline; never reply "internal error".

Connection i of a run with seed S draws from `random.Random(f"{S}:{i}")`, so a failure
names the seed and connection and `script_for(S, i)` rebuilds its bytes.

The well-behaved client (`python -m tests.fuzzing PORT`) runs in its own process, so its
latencies are the server's and not this process's: SET then GET of keys under
`WELL_BEHAVED_PREFIX`, a name space the generator never produces (its keys are at most 12
bytes, the prefix alone is 16), verifying every reply until SIGTERM; then it prints JSON.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import hiredis
import trio
import trio.lowlevel

from tessera.command_table import COMMANDS
from tessera.errors import ProtocolError
from tessera.resp import encode_command, scan_reply

WELL_BEHAVED_PREFIX = b"__well_behaved__"
# Not generated: they would wipe the well-behaved client's keys (FLUSHALL, FLUSHDB) or
# write a checkpoint to disk each time (SAVE, BGSAVE) - disk churn, not protocol handling.
EXCLUDED = frozenset({"flushall", "flushdb", "save", "bgsave"})
NAMES = sorted(name for name in COMMANDS if name not in EXCLUDED)
SUBCOMMANDS = {
    "client": [b"ID", b"GETNAME", b"SETNAME", b"INFO", b"LIST", b"SETINFO", b"KILL", b"NOPE"],
    "command": [b"COUNT", b"DOCS", b"INFO", b"GETKEYS", b"LIST", b"NOPE"],
    "config": [b"GET", b"SET", b"RESETSTAT", b"NOPE"],
    "object": [b"ENCODING", b"FREQ", b"IDLETIME", b"REFCOUNT", b"NOPE"],
}
# Names no server knows: never a prefix of an internal command (TSR.*) or an admin one.
UNKNOWN_NAMES = [b"NOPE", b"GETT", b"sett", b"x", b"\xff\xfe", b"FLUSHALLX", b"", b"123"]
KEYS = [b"k%d" % i for i in range(48)] + [b"{tag}%d" % i for i in range(8)] + [b"", b"\x00\xff"]
# Small or absurd integers. Large negative counts are left out on purpose: SRANDMEMBER s
# -2000000000 builds a reply of two billion elements, in Redis as here (no output limit).
NUMBERS = [
    *(b"-1", b"-3", b"0", b"1", b"2", b"5", b"10", b"100", b"1000", b"2147483648"),
    *(b"9223372036854775807", b"-9223372036854775808", b"9223372036854775808", b"1e3"),
    *(b"1.5", b"-0.5", b"inf", b"-inf", b"+inf", b"nan", b"(1", b"[a", b"-", b"+", b"0x10"),
]
TOKENS = [
    *(b"EX", b"PX", b"EXAT", b"PXAT", b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR", b"KEEPTTL"),
    *(b"GET", b"WITHSCORES", b"WITHVALUES", b"LIMIT", b"COUNT", b"MATCH", b"TYPE", b"RANK"),
    *(b"MAXLEN", b"BYSCORE", b"BYLEX", b"REV", b"LEFT", b"RIGHT", b"BEFORE", b"AFTER"),
    *(b"AGGREGATE", b"SUM", b"MIN", b"MAX", b"WEIGHTS", b"PERSIST", b"ASYNC", b"*", b"3"),
]
RESP3_ELEMENTS = [
    *(b"+OK\r\n", b"-ERR x\r\n", b":1\r\n", b",1.5\r\n", b"#t\r\n", b"_\r\n", b"(123\r\n"),
    *(b"=7\r\ntxt:abc\r\n", b"!3\r\nerr\r\n", b"%1\r\n$1\r\na\r\n$1\r\nb\r\n"),
    *(b"~1\r\n$1\r\na\r\n", b">1\r\n$1\r\na\r\n", b"|1\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"),
    *(b"*1\r\n$1\r\na\r\n", b"*0\r\n", b"*-1\r\n", b"$-1\r\n"),
]
MAX_BULK = 512 * 1024 * 1024  # tessera.resp.Limits defaults
MAX_MULTIBULK = 1024 * 1024
MAX_INLINE = 64 * 1024
HUGE_LENGTHS = [
    *(MAX_BULK - 1, MAX_BULK, MAX_BULK + 1, 2**31, 2**32 + 5, 2**63 - 1, 2**63, 10**30),
    *(-2, -(2**63)),
]
HUGE_COUNTS = [MAX_MULTIBULK, MAX_MULTIBULK + 1, 2**31, 2**63, 10**30, -2, -(2**63)]


def _random_bytes(rng: random.Random, size: int) -> bytes:
    return rng.getrandbits(8 * size).to_bytes(size, "little") if size else b""


def _argument(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.35:
        return rng.choice(KEYS)
    if roll < 0.6:
        return rng.choice(NUMBERS)
    if roll < 0.75:
        return rng.choice(TOKENS)
    if roll < 0.97:
        return _random_bytes(rng, rng.choice((0, 1, 3, 8, 12, 30)))
    return rng.choice((b"v", b"\r\n", b"\x00")) * rng.choice((100, 1000, 5000))


def valid_command(rng: random.Random) -> list[bytes]:
    """A well-framed command: a real name (any case) with random arguments, or an unknown one."""
    if rng.random() < 0.08:
        name = rng.choice(UNKNOWN_NAMES)
        return [name, *(_argument(rng) for _ in range(rng.randint(0, 3)))] if name else [b"?"]
    spelled = rng.choice(NAMES)
    arity = COMMANDS[spelled][0]
    raw = spelled.encode()
    name = raw.upper() if rng.random() < 0.5 else raw
    if rng.random() < 0.1:
        name = bytes(c ^ 0x20 if rng.random() < 0.5 else c for c in raw)  # mIxEd case
    args = [name]
    if spelled in SUBCOMMANDS:
        args.append(rng.choice(SUBCOMMANDS[spelled]))
    elif spelled == "hello":
        args.append(rng.choice((b"2", b"3", b"4", b"x")))
    want = abs(arity) - 1 if rng.random() < 0.8 else rng.randint(0, 6)
    if arity < 0 and rng.random() < 0.5:
        want += rng.randint(0, 6)
    while len(args) < want + 1:
        args.append(_argument(rng))
    return args


def inline_form(rng: random.Random, args: list[bytes]) -> bytes | None:
    """The command as an inline line (quoting what needs it), if it can be written so."""
    words = []
    for arg in args:
        if arg and all(0x21 <= c <= 0x7E and c not in b"\"'\\" for c in arg):
            words.append(arg)
        else:
            escaped = "".join(
                chr(c) if 0x20 <= c <= 0x7E and c not in b'"\\' else f"\\x{c:02x}" for c in arg
            )
            words.append(b'"' + escaped.encode() + b'"')
    line = b" ".join(words)
    if len(line) > MAX_INLINE - 2:
        return None
    return line + rng.choice((b"\r\n", b"\n"))


def bad_input(rng: random.Random) -> tuple[str, bytes]:
    """(kind, bytes) of an input that may leave the stream broken or unfinished."""
    kind = rng.choice(
        (
            "truncated",
            "corrupt",
            "huge-bulk",
            "huge-multibulk",
            "deep-nesting",
            "resp3-element",
            "inline-garbage",
            "random-bytes",
        )
    )
    wire = encode_command(valid_command(rng))
    if kind == "truncated":
        return kind, wire[: rng.randrange(1, len(wire))]
    if kind == "corrupt":
        data = bytearray(wire)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            special = rng.choice((b"\r", b"\n", b"*", b"$", b"-", b"0", b"9", b":", b" "))
            what = rng.random()
            if what < 0.4:
                data[pos] = rng.choice(special) if rng.random() < 0.5 else rng.getrandbits(8)
            elif what < 0.7:
                data[pos:pos] = special
            else:
                del data[pos]
            if not data:
                data = bytearray(b"*")
        return kind, bytes(data)
    if kind == "huge-bulk":
        size = rng.choice(HUGE_LENGTHS)
        return kind, b"*2\r\n$3\r\nGET\r\n$%d\r\n" % size + _random_bytes(rng, rng.randint(0, 64))
    if kind == "huge-multibulk":
        count = rng.choice(HUGE_COUNTS)
        return kind, b"*%d\r\n" % count + encode_command([b"PING"])[4:] * rng.randint(0, 3)
    if kind == "deep-nesting":
        depth = rng.choice((1, 2, 7, 8, 9, 100, 10_000))
        return kind, b"*2\r\n$4\r\nECHO\r\n" + b"*1\r\n" * depth + b"$1\r\nx\r\n"
    if kind == "resp3-element":
        parts = [b"$%d\r\n%b\r\n" % (len(a), a) for a in valid_command(rng)]
        parts.insert(rng.randint(0 if rng.random() < 0.2 else 1, len(parts)), b"")
        index = parts.index(b"")
        parts[index] = rng.choice(RESP3_ELEMENTS)
        return kind, b"*%d\r\n" % len(parts) + b"".join(parts)
    if kind == "inline-garbage":
        shape = rng.choice(("long", "binary", "quotes", "crlf"))
        if shape == "long":
            size = rng.choice((MAX_INLINE - 10, MAX_INLINE + 1, 70_000, 200_000))
            end = rng.choice((b"", b"\r\n"))
            return kind, b"GET " + b"a" * size + end
        if shape == "binary":
            line = _random_bytes(rng, rng.randint(1, 200)).replace(b"\n", b"")
            return kind, line.lstrip(b"*") + b"\r\n"
        if shape == "quotes":
            return kind, rng.choice(
                (b'SET "a b\r\n', b"GET 'x\r\n", b'ECHO "a"b\r\n', b"ECHO 'a'b\r\n", b'"\\\r\n')
            )
        return kind, bytes(rng.choice(b"\r\n \t") for _ in range(rng.randint(1, 20)))
    return kind, _random_bytes(rng, rng.randint(1, 300))


@dataclass
class ConnectionScript:
    """What one fuzz connection sends, and what it may expect back."""

    inputs: list[bytes] = field(default_factory=list)
    valid: int = 0  # leading inputs that are one valid command each (one reply each)
    quit_at: int = -1  # index of a QUIT among them: the server closes after its reply
    bad_kind: str = ""
    chunks: list[bytes] = field(default_factory=list)

    @classmethod
    def generate(cls, rng: random.Random, max_valid: int = 40) -> ConnectionScript:
        script = cls()
        for i in range(rng.randint(0, max_valid)):
            args = valid_command(rng)
            wire = None
            if rng.random() < 0.2:
                wire = inline_form(rng, args)
            script.inputs.append(wire or encode_command(args))
            if args[0].lower() == b"quit" and script.quit_at < 0:
                script.quit_at = i
        script.valid = len(script.inputs)
        if rng.random() < 0.75 or not script.inputs:
            script.bad_kind, data = bad_input(rng)
            script.inputs.append(data)
        stream = b"".join(script.inputs)
        script.chunks = split_randomly(rng, stream)
        return script

    def expected_replies(self) -> int:
        return self.quit_at + 1 if self.quit_at >= 0 else self.valid


def split_randomly(rng: random.Random, stream: bytes) -> list[bytes]:
    """Cut points anywhere: inside lengths, between CR and LF, inside payloads."""
    chunks = []
    pos = 0
    while pos < len(stream):
        size = rng.choice((1, 2, 3, 7, 16, 100, 1000, 16_384, len(stream)))
        chunks.append(stream[pos : pos + size])
        pos += size
    return chunks


def script_for(seed: int, index: int) -> ConnectionScript:
    return ConnectionScript.generate(random.Random(f"{seed}:{index}"))


@dataclass
class Outcome:
    replies: int  # complete replies received
    internal_errors: int  # "-ERR internal error ..." replies: a handler raised
    closed: bool  # the server closed the connection within the deadline
    reset: bool  # ... with a reset (it closed with our unread bytes pending)
    tail: bytes  # bytes after the last complete reply (must be empty)


async def run_connection(port: int, script: ConnectionScript, deadline_s: float) -> Outcome:
    """Send the script (then EOF) while reading replies until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    received = bytearray()
    closed = reset = False

    async def send() -> None:
        try:
            for i, chunk in enumerate(script.chunks):
                await stream.send_all(chunk)
                if i % 4 == 3:
                    await trio.lowlevel.checkpoint()  # let some pieces arrive as reads of their own
            await stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the server closed first (protocol error, QUIT)

    async with stream:
        with trio.move_on_after(deadline_s):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                try:
                    while data := await stream.receive_some(65536):
                        received += data
                    closed = True
                except trio.BrokenResourceError:
                    closed = reset = True
                nursery.cancel_scope.cancel()
    data = bytes(received)
    replies = pos = 0
    tail = b""
    try:
        while pos < len(data):
            end = scan_reply(data, pos)
            if end < 0:
                tail = data[pos : pos + 200]
                break
            replies += 1
            pos = end
    except (ProtocolError, ValueError):
        tail = data[pos : pos + 200]
    internal = data.count(b"-ERR internal error")
    return Outcome(replies, internal, closed, reset, tail)


def check(script: ConnectionScript, outcome: Outcome) -> str | None:
    """What is wrong with how the server treated this connection, if anything."""
    if not outcome.closed:
        return "not closed within the deadline (hang)"
    if outcome.internal_errors:
        return "an internal error reply (a command handler raised; see the server log)"
    expected = script.expected_replies()
    # A server that closes on a protocol error or QUIT while our bytes are still unread
    # sends a reset, and the kernel drops what it had not sent yet (Redis alike): then
    # fewer replies, or a last one cut short, are what TCP makes of a correct server.
    cut_short = bool(outcome.reset and (script.bad_kind or script.quit_at >= 0))
    if outcome.tail and not cut_short:
        return f"reply stream broken at {outcome.tail!r}"
    if outcome.replies < expected and not cut_short:
        return f"{outcome.replies} replies for {expected} valid commands"
    if not script.bad_kind and outcome.replies != expected:
        return f"{outcome.replies} replies for {expected} valid commands"
    return None


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# ---------------------------------------------------------------------- the well-behaved client


def well_behaved(port: int) -> dict[str, Any]:
    """SET/GET with verification until SIGTERM; the JSON-able summary."""
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(30)
    print("ready", flush=True)
    reader = hiredis.Reader()
    ops = 0
    problems: list[str] = []
    worst = 0.0
    latencies: list[float] = []

    def call(*args: bytes) -> Any:
        sock.sendall(encode_command(list(args)))
        while (reply := reader.gets()) is False:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the well-behaved client's connection")
            reader.feed(data)
        return reply

    n = 0
    while not stop:
        key = WELL_BEHAVED_PREFIX + b":%d" % (n % 100)
        value = b"value-%d-" % n + b"x" * (n % 200)
        start = time.monotonic()
        try:
            set_reply = call(b"SET", key, value)
            get_reply = call(b"GET", key)
        except (OSError, ConnectionError) as exc:
            problems.append(f"{type(exc).__name__}: {exc}")
            break
        took = time.monotonic() - start
        worst = max(worst, took)
        latencies.append(took)
        if set_reply != b"OK" or get_reply != value:
            problems.append(f"SET/GET {key!r}: {set_reply!r}, {get_reply!r}")
            if len(problems) > 10:
                break
        ops += 2
        n += 1
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0.0
    return {"ops": ops, "problems": problems, "worst_ms": worst * 1000, "p99_ms": p99 * 1000}


if __name__ == "__main__":
    print(json.dumps(well_behaved(int(sys.argv[1]))), flush=True)

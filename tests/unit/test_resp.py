"""The RESP codec: framing, inline commands, limits, and fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.errors import ProtocolError
from tessera.resp import (
    NULL_ARRAY,
    OK,
    Double,
    Limits,
    Map,
    RequestParser,
    RequestProtocolError,
    SetReply,
    encode,
    encode_command,
    split_args,
)

commands = st.lists(st.lists(st.binary(max_size=30), min_size=1, max_size=6), max_size=8)


def feed_all(parser: RequestParser, data: bytes) -> list[list[bytes]]:
    return parser.feed(data)


def feed_bytewise(parser: RequestParser, data: bytes) -> list[list[bytes]]:
    out: list[list[bytes]] = []
    for i in range(len(data)):
        out.extend(parser.feed(data[i : i + 1]))
    return out


@given(commands)
def test_roundtrip_whole_and_bytewise(cmds: list[list[bytes]]) -> None:
    wire = b"".join(encode_command(c) for c in cmds)
    assert feed_all(RequestParser(), wire) == cmds
    assert feed_bytewise(RequestParser(), wire) == cmds


@given(commands, st.lists(st.integers(min_value=1, max_value=50), max_size=20))
def test_arbitrary_splits_give_same_commands(cmds: list[list[bytes]], cuts: list[int]) -> None:
    wire = b"".join(encode_command(c) for c in cmds)
    parser = RequestParser()
    out: list[list[bytes]] = []
    pos = 0
    for cut in cuts:
        out.extend(parser.feed(wire[pos : pos + cut]))
        pos += cut
    out.extend(parser.feed(wire[pos:]))
    assert out == cmds


def test_inline_commands() -> None:
    parser = RequestParser()
    assert parser.feed(b"PING\r\n") == [[b"PING"]]
    assert parser.feed(b"SET a 'b c'\n") == [[b"SET", b"a", b"b c"]]
    assert parser.feed(b'ECHO "x\\ny\\x41"\r\n\r\n') == [[b"ECHO", b"x\ny\x41"]]
    assert parser.feed(b"GET ") == []
    assert parser.feed(b"key\r\n*1\r\n$4\r\nPING\r\n") == [[b"GET", b"key"], [b"PING"]]
    assert parser.feed(b"PING\r\n") == [[b"PING"]]


def test_split_args_quotes() -> None:
    assert split_args(b"a \"b c\" 'd\\'e'") == [b"a", b"b c", b"d'e"]
    assert split_args(b'"unterminated') is None
    assert split_args(b'"a"b') is None
    assert split_args(b"   ") == []


def test_empty_and_null_multibulk_are_ignored() -> None:
    assert RequestParser().feed(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n") == [[b"PING"]]


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"*1\r\n$600000000\r\n", "ERR Protocol error: invalid bulk length"),
        (b"*1\r\n$-5\r\n", "ERR Protocol error: invalid bulk length"),
        (b"*1\r\n$abc\r\n", "ERR Protocol error: invalid bulk length"),
        (b"*2000000\r\n", "ERR Protocol error: invalid multibulk length"),
        (b"*x\r\n", "ERR Protocol error: invalid multibulk length"),
        (b"*1\r\n:5\r\n", "ERR Protocol error: expected '$', got ':'"),
        (b"*2\r\n$1\r\na\r\n*1\r\n", "ERR Protocol error: expected '$', got '*'"),
        (b'SET "a\r\n', "ERR Protocol error: unbalanced quotes in request"),
        # Found by the protocol fuzzer; replies as redis-server 7.0 gives them.
        (b"*1\r\n+OK\r\n", "ERR Protocol error: expected '$', got '+'"),
        (b"*1\r\n(123\r\n", "ERR Protocol error: expected '$', got '('"),
        (b"*1\r\n=5\r\ntxt:x\r\n", "ERR Protocol error: expected '$', got '='"),
        (b"*1\r\n-ERR\r\n", "ERR Protocol error: expected '$', got '-'"),
        (b"*1\r\n_\r\n", "ERR Protocol error: expected '$', got '_'"),
        (b"*1\r\n~1\r\n$1\r\nx\r\n", "ERR Protocol error: expected '$', got '~'"),
        (b"*1\r\n>1\r\n$1\r\nx\r\n", "ERR Protocol error: expected '$', got '>'"),
        (b"*1\r\n|1\r\n$1\r\nx\r\n", "ERR Protocol error: expected '$', got '|'"),
        (b"*2\r\n$1\r\nxyz+OK\r\n", "ERR Protocol error: expected '$', got '+'"),
        (b"*1\r\n" * 9 + b"$1\r\nx\r\n", "ERR Protocol error: expected '$', got '*'"),
        (b"*1\r\n*2147483647\r\n", "ERR Protocol error: expected '$', got '*'"),
        (b"*01\r\n", "ERR Protocol error: invalid multibulk length"),
        (b"*1\r\n$+4\r\nPING\r\n", "ERR Protocol error: invalid bulk length"),
        (b"*1\r\n$1_0\r\n", "ERR Protocol error: invalid bulk length"),
        (b"*" + b"9" * 70_000, "ERR Protocol error: too big mbulk count string"),
        (b"*1\r\n$" + b"9" * 70_000, "ERR Protocol error: too big bulk count string"),
    ],
)
def test_protocol_errors_use_redis_wording(wire: bytes, message: str) -> None:
    parser = RequestParser()
    with pytest.raises(RequestProtocolError) as info:
        feed_all(parser, wire)
    assert info.value.reply == message


def test_commands_before_the_break_are_kept() -> None:
    with pytest.raises(RequestProtocolError) as info:
        RequestParser().feed(b"*1\r\n$4\r\nPING\r\n*1\r\n:1\r\n")
    assert info.value.commands == [[b"PING"]]


def test_inline_limit() -> None:
    parser = RequestParser(Limits(max_inline_bytes=100))
    with pytest.raises(RequestProtocolError) as info:
        parser.feed(b"x" * 101)
    assert info.value.reply == "ERR Protocol error: too big inline request"


def test_bulk_limit_is_configurable() -> None:
    parser = RequestParser(Limits(max_bulk_bytes=10))
    assert parser.feed(encode_command([b"SET", b"k", b"0123456789"])) == [
        [b"SET", b"k", b"0123456789"]
    ]
    with pytest.raises(RequestProtocolError):
        parser.feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$11\r\n0123")


def test_large_value_arriving_in_pieces() -> None:
    value = b"v" * 300_000
    wire = encode_command([b"SET", b"k", value])
    parser = RequestParser()
    out: list[list[bytes]] = []
    for i in range(0, len(wire), 4096):
        out.extend(parser.feed(wire[i : i + 4096]))
    assert out == [[b"SET", b"k", value]]


@settings(max_examples=500)
@given(st.lists(st.binary(max_size=40), max_size=10))
def test_garbage_never_raises_anything_but_protocol_error(chunks: list[bytes]) -> None:
    parser = RequestParser(Limits(max_bulk_bytes=1000, max_multibulk_len=100, max_inline_bytes=200))
    try:
        for chunk in chunks:
            for cmd in parser.feed(chunk):
                assert all(type(arg) is bytes for arg in cmd)
    except ProtocolError:
        pass


@settings(max_examples=300)
@given(
    st.lists(
        st.sampled_from([b"*", b"$", b"\r\n", b"1", b"3", b"-", b"a", b":", b"+", b" ", b'"']),
        max_size=40,
    )
)
def test_resp_shaped_garbage(tokens: list[bytes]) -> None:
    parser = RequestParser(Limits(max_bulk_bytes=1000, max_multibulk_len=100, max_inline_bytes=200))
    with contextlib.suppress(ProtocolError):
        parser.feed(b"".join(tokens))


def test_encode_resp2_and_resp3() -> None:
    assert encode(b"x") == b"$1\r\nx\r\n"
    assert encode(5) == b":5\r\n"
    assert encode(None) == b"$-1\r\n"
    assert encode(None, resp3=True) == b"_\r\n"
    assert encode(OK) == b"+OK\r\n"
    assert encode([b"a", 1, None]) == b"*3\r\n$1\r\na\r\n:1\r\n$-1\r\n"
    assert encode(Double(1.1)) == b"$18\r\n1.1000000000000001\r\n"
    assert encode(Double(1.5), resp3=True) == b",1.5\r\n"
    assert encode(Double(float("inf"))) == b"$3\r\ninf\r\n"
    assert encode(Map([(b"a", 1)])) == b"*2\r\n$1\r\na\r\n:1\r\n"
    assert encode(Map([(b"a", 1)]), resp3=True) == b"%1\r\n$1\r\na\r\n:1\r\n"
    assert encode(SetReply([b"a"]), resp3=True) == b"~1\r\n$1\r\na\r\n"
    assert encode(NULL_ARRAY) == b"*-1\r\n"


def test_exact_flag_marks_reads_that_are_whole_commands() -> None:
    parser = RequestParser()
    wire = encode_command([b"SET", b"a", b"1"]) + encode_command([b"GET", b"a"])
    parser.feed(wire)
    assert parser.exact
    parser.feed(wire[:5])
    assert not parser.exact
    parser.feed(wire[5:])
    assert not parser.exact  # started mid-command
    parser.feed(b"PING\r\n")
    assert not parser.exact  # inline
    parser.feed(b"*0\r\n" + wire)
    assert not parser.exact  # something skipped
    parser.feed(wire)
    assert parser.exact


@given(st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=5), min_size=1, max_size=6))
def test_whole_requests_recognises_encoded_commands(cmds: list[list[bytes]]) -> None:
    from tessera.resp import _whole_requests

    wire = b"".join(encode_command(c) for c in cmds)
    assert _whole_requests(wire, 1024, 1024)
    for cut in range(1, len(wire)):
        if not _whole_requests(wire[:cut], 1024, 1024):
            continue
        # Only a cut between two requests leaves whole requests.
        assert wire[cut : cut + 1] == b"*"


@pytest.mark.parametrize(
    "wire",
    [
        b"*0\r\n",
        b"*-1\r\n",
        b"*01\r\n$1\r\na\r\n",
        b"*+1\r\n$1\r\na\r\n",
        b"*1\r\n$01\r\na\r\n",
        b"*1\r\n$-1\r\n",
        b"*1\r\n:1\r\n",
        b"*1\r\n+a\r\n",
        b"*1\r\n$1\ra\r\n",
        b"*1\n$1\r\na\r\n",
        b"PING\r\n",
        b"*1\r\n$1\r\na\r\nPING\r\n",
        b"*3\r\n$1\r\na\r\n",  # fewer elements than announced: a cut request
        b"*2000\r\n" + b"$1\r\na\r\n" * 2000,  # count above the limit
        b"*1\r\n$2000\r\n" + b"a" * 2000 + b"\r\n",  # bulk above the limit
        b"*1\r\n$1234567890123456789\r\n",
        b"*1234567890123456789\r\n",
    ],
)
def test_whole_requests_leaves_the_rest_to_the_careful_path(wire: bytes) -> None:
    from tessera.resp import _whole_requests

    assert not _whole_requests(wire, 1024, 1024)


def test_scan_reply_finds_boundaries() -> None:
    from tessera.resp import scan_reply

    replies = [
        b"+OK\r\n",
        b"-ERR x\r\n",
        b":12\r\n",
        b"$-1\r\n",
        b"$3\r\nfoo\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
        b"%1\r\n+k\r\n~2\r\n,1.5\r\n_\r\n",
        b"|1\r\n+a\r\n+b\r\n:7\r\n",
        b"$4\r\na\r\nb\r\n",
    ]
    wire = b"".join(replies)
    pos = 0
    for reply in replies:
        end = scan_reply(wire, pos)
        assert wire[pos:end] == reply
        pos = end
    for reply in replies:
        for cut in range(len(reply)):
            assert scan_reply(reply[:cut]) == -1


@given(commands)
def test_scan_reply_agrees_with_hiredis(cmds: list[list[bytes]]) -> None:
    import hiredis

    from tessera.resp import scan_reply

    wire = b"".join(encode(c) for c in cmds)
    reader = hiredis.Reader()
    reader.feed(wire)
    pos = 0
    for cmd in cmds:
        end = scan_reply(wire, pos)
        assert reader.gets() == cmd
        pos = end
    assert pos == len(wire)


_simple_or_bulk = st.one_of(
    st.binary(max_size=300).map(lambda b: encode(b)),  # bulk strings, 0-300 bytes
    st.just(b"$-1\r\n"),
    st.integers(-(2**63), 2**63 - 1).map(lambda n: b":%d\r\n" % n),
    st.sampled_from([b"+OK\r\n", b"+PONG\r\n", b"-ERR wrong\r\n", b"-TRYAGAIN p 1\r\n"]),
)


@given(st.lists(_simple_or_bulk, min_size=1, max_size=6), st.data())
def test_the_gateways_reply_cutters_agree_with_scan_reply(
    replies: list[bytes], data: st.DataObject
) -> None:
    """bulk_end and line_end (the gateway's fast path) find the same ends as scan_reply, and
    -1 for every cut short of a whole reply."""
    from tessera.resp import bulk_end, line_end, scan_reply

    wire = b"".join(replies)
    pos = 0
    for reply in replies:
        fast = bulk_end if reply[:1] == b"$" else (lambda b, p, n: line_end(b, p, n) + 2)
        assert fast(wire, pos, len(wire)) == scan_reply(wire, pos) == pos + len(reply)
        cut = data.draw(st.integers(pos, pos + len(reply) - 1))
        assert fast(wire, pos, cut) in (-1, 1)  # line_end's -1 + 2
        pos += len(reply)


@pytest.mark.parametrize(
    "reply", [b"$abc\r\nxyz\r\n", b"$1x\r\nx\r\n", b"$-2\r\n", b"$\r\n", b"$1\rXa\r\n"]
)
def test_bulk_end_refuses_a_malformed_length(reply: bytes) -> None:
    from tessera.resp import bulk_end

    with pytest.raises(ProtocolError):
        bulk_end(reply, 0, len(reply))


def test_line_end_refuses_cr_without_lf() -> None:
    from tessera.resp import line_end

    with pytest.raises(ProtocolError):
        line_end(b"+OK\rX\n", 0, 7)


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        # Each request is multibulk or inline by its first byte, also within one read.
        (b"*1\r\n$4\r\nPING\r\nPING\r\n", [[b"PING"], [b"PING"]]),
        (
            b"*1\r\n$4\r\nPING\r\nECHO 'a b'\r\n*1\r\n$4\r\nPING\r\n",
            [[b"PING"], [b"ECHO", b"a b"], [b"PING"]],
        ),
        # Redis skips the two bytes after a bulk without looking at them.
        (b"*1\r\n$1\r\nxy\r\n", [[b"x"]]),
        # *0 and *-N are empty requests (hiredis alone refuses *-2).
        (b"*-2\r\n*0\r\n*1\r\n$4\r\nPING\r\n", [[b"PING"]]),
    ],
)
def test_framing_as_redis_reads_it(wire: bytes, expected: list[list[bytes]]) -> None:
    assert RequestParser().feed(wire) == expected
    assert feed_bytewise(RequestParser(), wire) == expected


def test_unknown_command_reply_echoes_raw_bytes() -> None:
    from tessera.resp import unknown_command_reply

    assert unknown_command_reply([b"\xff\nx", b"a\rb"]) == (
        b"-ERR unknown command '\xff x', with args beginning with: 'a b' \r\n"
    )


def outcome(parser: RequestParser, chunks: list[bytes]) -> tuple[list[list[bytes]], str | None]:
    """Commands and the protocol error (if any) of a stream fed in these pieces."""
    out: list[list[bytes]] = []
    try:
        for chunk in chunks:
            out.extend(parser.feed(chunk))
    except RequestProtocolError as exc:
        return out + exc.commands, exc.reply
    return out, None


RESP_ATOMS = [
    *(b"*", b"$", b"\r\n", b"\n", b"\r", b"1", b"3", b"-", b"0", b"x", b":", b"+", b" "),
    *(b'"', b"'", b"%", b"~", b",", b"#", b"_", b"(", b"=", b">", b"|", b"\xff", b"\\x4"),
    *(b"*1\r\n", b"*2\r\n", b"$1\r\n", b"$3\r\n", b"$0\r\n", b"ping"),
]


@settings(max_examples=1000)
@given(st.lists(st.sampled_from(RESP_ATOMS), max_size=30), st.data())
def test_garbage_gives_the_same_outcome_however_it_is_split(
    tokens: list[bytes], data: st.DataObject
) -> None:
    """Whole, in random pieces or byte by byte: same commands, same error (the fuzzer's
    inputs arrive split at random)."""
    wire = b"".join(tokens)
    limits = Limits(max_bulk_bytes=1000, max_multibulk_len=100, max_inline_bytes=200)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(wire) - 1)), max_size=6)))
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    whole = outcome(RequestParser(limits), [wire])
    assert outcome(RequestParser(limits), pieces) == whole
    assert outcome(RequestParser(limits), [wire[i : i + 1] for i in range(len(wire))]) == whole


def _address_space_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1])
    raise AssertionError("no VmSize")


@pytest.mark.parametrize(
    "wire",
    [
        b"*2147483647\r\n",
        b"*1\r\n*2147483647\r\n",
        b"*2\r\n$4\r\nECHO\r\n%2147483647\r\n",
        b"*1\r\n~2147483647\r\n",
        b"*1\r\n>2147483647\r\n",
        b"*1048576\r\n*9999999\r\n",
    ],
)
def test_a_huge_declared_count_allocates_nothing(wire: bytes) -> None:
    """Found by the fuzzer: hiredis sized a list by the header, so 14 bytes took 16 GB of
    address space and stalled the server ~10 s in the garbage collector."""
    before = _address_space_kb()
    for pieces in ([wire], [wire[:-3], wire[-3:]]):
        parser = RequestParser()
        errors = []  # kept, with the parser: what a server holds while it replies
        try:
            for piece in pieces:
                parser.feed(piece)
        except RequestProtocolError as exc:
            errors.append(exc)
        assert _address_space_kb() - before < 64 * 1024

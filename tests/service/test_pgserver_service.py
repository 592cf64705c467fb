"""A real PgServer object inside the test's trio loop, spoken to over real loopback sockets."""

from __future__ import annotations

import random

import trio

from pgserver.config import PgServerConfig
from pgserver.server import PgServer
from tessera.resp import encode_command


async def read_replies(stream: trio.SocketStream, count: int, limit_s: float = 5) -> bytes:
    """Read until `count` simple replies (one line each) have arrived."""
    data = b""
    with trio.fail_after(limit_s):
        while data.count(b"\r\n") < count:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            data += chunk
    return data


async def test_pipeline_in_random_pieces_gets_every_reply_in_order() -> None:
    server = PgServer(PgServerConfig(port=0))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        wire = b"".join(encode_command([b"ECHO", b"%d" % i]) for i in range(2000))
        rng = random.Random(7)
        pos = 0
        while pos < len(wire):
            step = rng.randint(1, 700)
            await stream.send_all(wire[pos : pos + step])
            pos += step
        data = await read_replies(stream, 4000)
        expected = b"".join(b"$%d\r\n%d\r\n" % (len(b"%d" % i), i) for i in range(2000))
        assert data == expected
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_broken_stream_closes_only_that_client() -> None:
    server = PgServer(PgServerConfig(port=0))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        good = await trio.open_tcp_stream("127.0.0.1", port)
        bad = await trio.open_tcp_stream("127.0.0.1", port)
        async with good, bad:
            await check_broken(server, good, bad)
        nursery.cancel_scope.cancel()


async def check_broken(server: PgServer, good: trio.SocketStream, bad: trio.SocketStream) -> None:
    await bad.send_all(b"*1\r\n$4\r\nPING\r\n*1\r\n$abc\r\n")
    with trio.fail_after(5):
        got = b""
        while chunk := await bad.receive_some(1024):
            got += chunk
    assert got == b"+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"
    await good.send_all(b"*1\r\n$4\r\nPING\r\n")
    assert await read_replies(good, 1) == b"+PONG\r\n"
    assert len(server.clients) == 1


async def test_quit_replies_then_closes_and_skips_the_rest() -> None:
    server = PgServer(PgServerConfig(port=0))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await quit_check(stream)
        nursery.cancel_scope.cancel()


async def quit_check(stream: trio.SocketStream) -> None:
    await stream.send_all(b"PING\r\nQUIT\r\nPING\r\n")
    with trio.fail_after(5):
        got = b""
        while chunk := await stream.receive_some(1024):
            got += chunk
    assert got == b"+PONG\r\n+OK\r\n"


async def test_max_clients_refuses_extra_connections() -> None:
    server = PgServer(PgServerConfig(port=0, max_clients=1))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        async with await trio.open_tcp_stream("127.0.0.1", port) as first:
            await first.send_all(b"PING\r\n")
            assert await read_replies(first, 1) == b"+PONG\r\n"
            async with await trio.open_tcp_stream("127.0.0.1", port) as second:
                with trio.fail_after(5):
                    got = await second.receive_some(1024)
                assert got == b"-ERR max number of clients reached\r\n"
        nursery.cancel_scope.cancel()

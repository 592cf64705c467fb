"""migrator.connection against an in-process fake pgserver: a caller cancelled while it
waits for a reply does not poison the connection, refusals name the command, and nothing
after a refused command counts as applied."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import hiredis
import pytest
import trio

from migrator.config import MoverConfig
from migrator.connection import Address, PgConnection, ServerReplyError, open_connection
from migrator.mover import _nursery
from tessera.errors import MigrationError


async def fake_server(stream: trio.SocketStream) -> None:
    """Replies `+<arg>` to `ECHO arg`, after `SLOW ms` sleeps first, `-ERR no` to `FAIL`."""
    reader = hiredis.Reader()
    while data := await stream.receive_some(65536):
        reader.feed(data)
        while (argv := reader.gets()) is not False:
            name = argv[0].upper()
            if name == b"SLOW":
                await trio.sleep(int(argv[1]) / 1000)
                await stream.send_all(b"+slept\r\n")
            elif name == b"FAIL":
                await stream.send_all(b"-ERR no\r\n")
            else:
                await stream.send_all(b"+" + argv[1] + b"\r\n")


@pytest.fixture
async def conn(nursery: trio.Nursery) -> AsyncIterator[PgConnection]:
    serve = functools.partial(trio.serve_tcp, fake_server, 0, host="127.0.0.1")
    listeners = await nursery.start(serve)
    port = listeners[0].socket.getsockname()[1]
    config = MoverConfig(reply_timeout_ms=2000)
    async with open_connection(Address("127.0.0.1", port), "target", config) as c:
        yield c


async def test_a_call_cancelled_mid_reply_leaves_the_next_call_its_own_answer(
    conn: PgConnection,
) -> None:
    with trio.move_on_after(0.05):
        await conn.call("SLOW", 200)
    assert await conn.call("ECHO", "mine") == b"mine"
    assert not conn.pending


async def test_an_error_reply_raises_with_the_command_named(conn: PgConnection) -> None:
    with pytest.raises(ServerReplyError, match=r"the target .* refused FAIL x: ERR no") as exc:
        await conn.call("FAIL", "x")
    assert exc.value.reply == "ERR no"
    assert await conn.call("ECHO", "after") == b"after"


async def test_pipelined_batches_stop_counting_at_the_first_refusal(conn: PgConnection) -> None:
    done: list[int] = []

    async def send() -> None:
        async with _nursery() as nursery:  # the mover's nursery: one error, not a group
            nursery.start_soon(conn.pump)
            await conn.submit([[b"ECHO", b"a"], [b"ECHO", b"b"]], on_done=lambda: done.append(1))
            await conn.submit([[b"FAIL", b"k2"]], on_done=lambda: done.append(2))
            await conn.submit([], on_done=lambda: done.append(3))
            await conn.submit([[b"ECHO", b"c"]], on_done=lambda: done.append(4))
            await trio.sleep_forever()

    with pytest.raises(MigrationError, match="refused FAIL k2"):
        await send()
    assert done == [1]
    await conn.drain()  # the rest was still matched: the connection is usable
    assert await conn.call("ECHO", "d") == b"d"


async def test_a_silent_server_breaks_the_connection(conn: PgConnection) -> None:
    conn.config = MoverConfig(reply_timeout_ms=50)
    with pytest.raises(MigrationError, match="did not reply for 50 ms"):
        await conn.call("SLOW", 1000)
    with pytest.raises(MigrationError, match="did not reply"):
        await conn.call("ECHO", "x")

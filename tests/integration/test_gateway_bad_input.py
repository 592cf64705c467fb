"""The gateway with clients that half-close or break the protocol (found by protocol fuzzing)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import redis

from tessera.partition import PARTITIONS
from tessera.resp import encode_command
from tests.gateway_fixtures import (
    SPLIT_AT,
    Cluster,
    cluster,
    connect,
    keys_in,
    recv_until_closed,
    start_backends,
    start_gateway,
    stop_backends,
)
from tests.procs import stop

__all__ = ["cluster"]


def test_a_client_that_shuts_down_writing_still_gets_every_reply(cluster: Cluster) -> None:
    """`printf ... | nc -N`: the gateway used to close at once on EOF, dropping the replies
    the backends had not sent yet (Redis answers, then closes)."""
    cluster.flush()
    requests = [[b"SET", b"half", b"1"]] + [[b"GET", b"half"]] * 50 + [[b"MGET", b"a", b"b"]]
    with socket.create_connection(("127.0.0.1", cluster.gateway.port), timeout=10) as sock:
        sock.sendall(b"".join(encode_command(r) for r in requests))
        sock.shutdown(socket.SHUT_WR)
        data = recv_until_closed(sock)
    assert data == b"+OK\r\n" + b"$1\r\n1\r\n" * 50 + b"*2\r\n$-1\r\n$-1\r\n"


def test_nothing_after_a_protocol_error_is_executed(cluster: Cluster) -> None:
    cluster.flush()
    wire = encode_command([b"SET", b"before", b"1"]) + b"*1\r\n:1\r\n"
    wire += encode_command([b"SET", b"after", b"1"])
    with socket.create_connection(("127.0.0.1", cluster.gateway.port), timeout=10) as sock:
        sock.sendall(wire)
        data = recv_until_closed(sock)
    assert data == b"+OK\r\n-ERR Protocol error: expected '$', got ':'\r\n"
    with cluster.gateway.client() as client:
        assert client.get("before") == b"1"
        assert client.get("after") is None


def test_a_protocol_error_after_a_deep_pipeline_comes_after_all_its_replies(
    cluster: Cluster,
) -> None:
    """A read of more commands than one round takes: the rest waits for later rounds, and
    the error that ended the read is still answered last."""
    cluster.flush()
    count = 1000
    wire = b"".join(encode_command([b"INCR", b"deep"]) for _ in range(count)) + b"*1\r\n:1\r\n"
    with socket.create_connection(("127.0.0.1", cluster.gateway.port), timeout=10) as sock:
        sock.sendall(wire)
        data = recv_until_closed(sock)
    expected = b"".join(b":%d\r\n" % n for n in range(1, count + 1))
    assert data == expected + b"-ERR Protocol error: expected '$', got ':'\r\n"


def test_quit_inside_a_deep_pipeline_ends_it_there(cluster: Cluster) -> None:
    cluster.flush()
    before = [encode_command([b"INCR", b"q"])] * 500
    after = [encode_command([b"INCR", b"q"])] * 500
    with socket.create_connection(("127.0.0.1", cluster.gateway.port), timeout=10) as sock:
        sock.sendall(b"".join([*before, encode_command([b"QUIT"]), *after]))
        data = recv_until_closed(sock)
    assert data == b"".join(b":%d\r\n" % n for n in range(1, 501)) + b"+OK\r\n"
    with cluster.gateway.client() as client:
        assert client.get("q") == b"500"


def test_hello_3_inside_a_deep_pipeline_switches_the_replies_after_it(cluster: Cluster) -> None:
    """The inline path binds the client's protocol per read: a HELLO 3 in the middle of one
    read must turn the replies after it into RESP3 (a missing key: "_" instead of "$-1")."""
    cluster.flush()
    get = encode_command([b"GET", b"missing"])
    wire = get * 300 + encode_command([b"HELLO", b"3"]) + get * 300
    with socket.create_connection(("127.0.0.1", cluster.gateway.port), timeout=10) as sock:
        sock.sendall(wire)
        sock.shutdown(socket.SHUT_WR)
        data = recv_until_closed(sock)
    head, _, tail = data.partition(b"%")  # HELLO 3 replies with a map
    assert head == b"$-1\r\n" * 300
    assert tail.endswith(b"_\r\n" * 300)
    assert b"$-1" not in tail


class _GarbageBackend:
    """A TCP server that answers every read with the same bytes: a backend gone wrong."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(sock,), daemon=True).start()

    def _answer(self, sock: socket.socket) -> None:
        with sock:
            try:
                while sock.recv(65536):
                    sock.sendall(self.reply)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize(
    "reply",
    [
        b"?what\r\n",  # no reply starts with this byte
        b"$abc\r\nxyz\r\n",  # bulk length that is not a number
        b"$1x\r\nxyz\r\n",
        b"$-2\r\n",
        b"+OK\rX\n",  # a line not ended by CRLF
    ],
)
def test_a_backend_sending_garbage_fails_its_requests_not_the_gateway(
    tmp_path: Path, reply: bytes
) -> None:
    """The gateway drops a backend connection that breaks the protocol: its requests get an
    error reply, the other backend's clients never notice, the gateway keeps running."""
    garbage = _GarbageBackend(reply)
    backends = start_backends(tmp_path, count=1)
    proc, port, _admin = start_gateway(
        [(f"0-{SPLIT_AT - 1}", garbage.port), (f"{SPLIT_AT}-{PARTITIONS - 1}", backends[0].port)]
    )
    try:
        bad = keys_in(0, SPLIT_AT - 1, 1)[0]
        good = keys_in(SPLIT_AT, PARTITIONS - 1, 1)[0]
        with connect(port) as client:
            client.set(good, "kept")
            with pytest.raises(redis.ResponseError, match="backend"):
                client.get(bad)
            assert client.get(good) == b"kept"
            with pytest.raises(redis.ResponseError, match="backend"):
                client.get(bad)
        assert proc.poll() is None
    finally:
        stop(proc)
        stop_backends(backends)
        garbage.close()

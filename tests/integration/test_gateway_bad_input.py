"""The gateway with clients that half-close or break the protocol (found by protocol fuzzing)."""

from __future__ import annotations

import socket

from tessera.resp import encode_command
from tests.gateway_fixtures import Cluster, cluster, recv_until_closed

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

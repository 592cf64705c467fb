"""Connection and server commands compared with redis-server."""

from __future__ import annotations

from tests.differ import Differ


def test_ping_echo(diff: Differ) -> None:
    diff("PING")
    diff("PING", "hello")
    diff("PING", "a", "b")
    diff("ECHO", "x y")
    diff("ECHO")


def test_unknown_command_and_arity(diff: Differ) -> None:
    diff("NOSUCH")
    diff("NOSUCH", "a", "b" * 200, "c")
    diff("DBSIZE", "x")
    diff("SELECT", "0")
    diff("SELECT", "x")


def test_client_name(diff: Differ) -> None:
    diff("CLIENT", "GETNAME")
    diff("CLIENT", "SETNAME", "app-1")
    diff("CLIENT", "GETNAME")
    diff("CLIENT", "SETNAME", "bad name")
    diff("CLIENT", "NOSUCH")

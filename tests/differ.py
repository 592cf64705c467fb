"""Run the same commands against redis-server and Tessera and compare the replies."""

from __future__ import annotations

from collections.abc import Sequence

import redis

Outcome = tuple[str, object]


def raw_client(port: int, protocol: int = 2) -> redis.Redis:
    """A redis-py client that returns replies as parsed from the wire (no callbacks)."""
    client = redis.Redis(port=port, protocol=protocol, socket_timeout=10)
    client.response_callbacks.clear()
    return client


def call(client: redis.Redis, args: Sequence[object]) -> Outcome:
    try:
        return ("ok", client.execute_command(*args))  # type: ignore[no-untyped-call]
    except redis.ResponseError as exc:
        return (f"error:{type(exc).__name__}", str(exc))


def canonical(value: object) -> object:
    """Order-insensitive form of a reply (for SMEMBERS, KEYS, ...)."""
    if isinstance(value, list):
        items = [canonical(v) for v in value]
        return sorted(items, key=repr)
    if isinstance(value, dict):
        return sorted(((canonical(k), canonical(v)) for k, v in value.items()), key=repr)
    if isinstance(value, set):
        return sorted((canonical(v) for v in value), key=repr)
    return value


class Differ:
    """`diff(*args)` runs a command on both servers and asserts identical outcomes."""

    def __init__(self, reference: redis.Redis, tessera: redis.Redis) -> None:
        self.reference = reference
        self.tessera = tessera

    def __call__(self, *args: object, unordered: bool = False) -> object:
        expected = call(self.reference, args)
        got = call(self.tessera, args)
        if unordered:
            expected = (expected[0], canonical(expected[1]))
            got = (got[0], canonical(got[1]))
        assert got == expected, f"{args!r}: redis gave {expected!r}, tessera gave {got!r}"
        return expected[1]

    def both(self, *args: object) -> tuple[Outcome, Outcome]:
        """Run on both without comparing (for replies that legitimately differ)."""
        return call(self.reference, args), call(self.tessera, args)

    def flush(self) -> None:
        self.reference.flushall()
        self.tessera.flushall()

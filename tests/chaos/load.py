"""The verifiable write load: writer threads, each with its own connection and its own keys.

The client is a few lines over a plain socket and hiredis rather than redis-py: redis-py
retries on timeouts and dropped connections by default, and a silent resend is exactly what
this load must not do (it would be a real duplicate, caused by the test).
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter
from typing import Any

import hiredis

from tessera.resp import encode_command
from tests.chaos.history import Counts, KeyHistory, Kind

LIST_ENTRIES_PER_KEY = 200  # then the writer moves to a fresh key: lists stay cheap to move
_NOT_ENOUGH = object()  # hiredis's "no complete reply yet" (False is a real RESP3 value)


class Unknown(Exception):
    """The request may or may not have been executed (timeout, connection lost)."""


class RawClient:
    """One blocking RESP2 connection; error replies come back as `hiredis.ReplyError` values."""

    def __init__(self, port: int, timeout_s: float) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader(notEnoughData=_NOT_ENOUGH)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def pipeline(self, commands: list[list[bytes]]) -> list[Any]:
        """Send all commands in one write and read their replies in order."""
        try:
            self.sock.sendall(b"".join(encode_command(c) for c in commands))
            replies: list[Any] = []
            while len(replies) < len(commands):
                reply = self.reader.gets()
                if reply is _NOT_ENOUGH:
                    data = self.sock.recv(1 << 20)
                    if not data:
                        raise Unknown("connection closed")
                    self.reader.feed(data)
                else:
                    replies.append(reply)
            return replies
        except OSError as exc:  # socket.timeout is an OSError too
            raise Unknown(f"{type(exc).__name__}: {exc}") from exc

    def call(self, *args: bytes | str | int) -> Any:
        command = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        return self.pipeline([command])[0]


class Writer(threading.Thread):
    """Writes chained values (SET) or chained entries (RPUSH) to its own keys at a steady pace,
    through one gateway, switching to the next when its gateway stops answering."""

    def __init__(
        self,
        name: str,
        kind: Kind,
        gateways: list[int],
        *,
        keys: int,
        rate_per_s: float,
        seed: int,
        timeout_s: float = 8.0,
    ) -> None:
        super().__init__(name=f"chaos-writer-{name}", daemon=True)
        self.label = name
        self.kind = kind
        self.gateways = gateways
        self.rate_per_s = rate_per_s
        self.timeout_s = timeout_s
        self.rng = random.Random(seed)
        self.slots: list[KeyHistory] = [self._fresh(slot, 0) for slot in range(keys)]
        self.generations = [0] * keys
        self.histories: list[KeyHistory] = list(self.slots)
        self.counts = Counts()
        self.error_kinds: Counter[str] = Counter()
        self.anomalies: list[str] = []  # replies that are wrong in themselves
        self.crash: str | None = None
        self.halt = threading.Event()
        self._gateway = self.rng.randrange(len(gateways))
        self._client: RawClient | None = None

    def _fresh(self, slot: int, generation: int) -> KeyHistory:
        return KeyHistory(f"chaos:{self.label}:{slot}:{generation}", self.kind)

    def run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # reported by the runner; a thread must not die silently
            self.crash = f"{type(exc).__name__}: {exc}"
        finally:
            if self._client is not None:
                self._client.close()

    def _loop(self) -> None:
        interval = 1.0 / self.rate_per_s
        next_at = time.monotonic()
        while not self.halt.is_set():
            next_at = max(next_at + interval, time.monotonic() - 1.0)
            pause = next_at - time.monotonic()
            if pause > 0:
                self.halt.wait(pause)
            self._write_one()

    def _connect(self) -> RawClient | None:
        if self._client is not None:
            return self._client
        for _ in range(len(self.gateways)):
            port = self.gateways[self._gateway]
            try:
                self._client = RawClient(port, self.timeout_s)
                return self._client
            except OSError:
                self._gateway = (self._gateway + 1) % len(self.gateways)
        self.halt.wait(0.2)  # no gateway answers: try again at the next write
        return None

    def _drop_connection(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._gateway = (self._gateway + 1) % len(self.gateways)

    def _write_one(self) -> None:
        client = self._connect()
        if client is None:
            return
        slot = self.rng.randrange(len(self.slots))
        history = self.slots[slot]
        payload = f"{self.rng.getrandbits(64):016x}"
        value = history.next_write(payload)
        command = "SET" if self.kind == "string" else "RPUSH"
        try:
            reply = client.call(command, history.key, value)
        except Unknown:
            self.counts.ops += 1
            self.counts.unknowns += 1
            self._retire(slot)
            self._drop_connection()
            return
        self.counts.ops += 1
        if isinstance(reply, hiredis.ReplyError):
            self.counts.errors += 1
            self.error_kinds[" ".join(str(reply).split()[:2])] += 1
            self._retire(slot)
            self.halt.wait(0.05)
            return
        expected: object = b"OK" if self.kind == "string" else len(history.sent)
        if reply != expected:
            self.anomalies.append(
                f"{history.key}: {command} write {len(history.sent)} -> {reply!r}"
            )
            self._retire(slot)
            return
        history.ack()
        self.counts.acks += 1
        if self.kind == "list" and len(history.sent) >= LIST_ENTRIES_PER_KEY:
            self._replace(slot)

    def _retire(self, slot: int) -> None:
        self.slots[slot].doubt()
        self._replace(slot)

    def _replace(self, slot: int) -> None:
        self.generations[slot] += 1
        fresh = self._fresh(slot, self.generations[slot])
        self.slots[slot] = fresh
        self.histories.append(fresh)

    def stop(self) -> None:
        self.halt.set()
        self.join(self.timeout_s + 5)


class Load:
    """Several writers of both kinds over all gateways; counts summed over writers."""

    def __init__(
        self,
        gateways: list[int],
        *,
        writers: int,
        keys_per_writer: int,
        rate_per_writer: float,
        seed: int,
    ) -> None:
        rng = random.Random(seed)
        self.writers = [
            Writer(
                f"w{i}",
                "string" if i % 2 == 0 else "list",
                gateways,
                keys=keys_per_writer,
                rate_per_s=rate_per_writer,
                seed=rng.getrandbits(32),
            )
            for i in range(writers)
        ]

    def start(self) -> None:
        for writer in self.writers:
            writer.start()

    def stop(self) -> None:
        for writer in self.writers:
            writer.halt.set()
        for writer in self.writers:
            writer.stop()

    def counts(self) -> Counts:
        total = Counts()
        for writer in self.writers:
            total = total + writer.counts
        return total

    def histories(self) -> list[KeyHistory]:
        return [h for writer in self.writers for h in writer.histories]

    def error_kinds(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for writer in self.writers:
            total.update(writer.error_kinds)
        return total

    def problems(self) -> list[str]:
        """Writer crashes, stuck writers and replies that were wrong in themselves."""
        found = []
        for writer in self.writers:
            found.extend(writer.anomalies)
            if writer.crash is not None:
                found.append(f"writer {writer.label} crashed: {writer.crash}")
            if writer.is_alive():
                found.append(f"writer {writer.label} did not stop")
        return found

"""What each writer sent and what was acknowledged, and the check of what the cluster holds.

Pure (no I/O), so the checks themselves are unit-tested (tests/unit/test_chaos_history.py).

Every key has one writer. Write n to a key carries `n:checksum_n:payload_n` with
`checksum_n = H(checksum_{n-1}, payload_n)` (nbase-arc's chained checksum), so the value
alone says where in the chain it sits and the chain of a list can be checked link by link.

A key is written strictly in sequence: write n+1 is sent only after write n was
acknowledged. The first write whose outcome is not known (timeout, dropped connection, error
reply) *retires* the key: its writer moves on to a fresh key. That write may still land at any
later moment (a paused gateway sends it when it wakes up), and retiring is what makes it
harmless: nothing is written to that key after it, so whatever the cluster finally holds must
be the last acknowledged write or that single doubtful one, never anything older.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["string", "list"]
GENESIS = "0" * 12


def chain(previous: str, payload: str) -> str:
    """The next checksum of a key's chain."""
    return hashlib.blake2b(f"{previous}|{payload}".encode(), digest_size=6).hexdigest()


def encode(n: int, checksum: str, payload: str) -> str:
    return f"{n}:{checksum}:{payload}"


def decode(value: str) -> tuple[int, str, str] | None:
    """(n, checksum, payload) of a value this load wrote, None for anything else."""
    parts = value.split(":", 2)
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    return int(parts[0]), parts[1], parts[2]


@dataclass
class KeyHistory:
    """One key's writes in order (write n at index n-1) and how far they were acknowledged."""

    key: str
    kind: Kind
    sent: list[tuple[str, str]] = field(default_factory=list)  # (checksum, payload)
    acked: int = 0  # writes 1..acked were acknowledged
    doubtful: bool = False  # the last write sent has an unknown outcome: the key is retired

    @property
    def retired(self) -> bool:
        return self.doubtful

    def next_write(self, payload: str) -> str:
        """Record write n = len(sent)+1 as sent and return the value (or entry) it carries."""
        assert not self.doubtful, "a retired key takes no more writes"
        assert self.acked == len(self.sent), "one write at a time"
        previous = self.sent[-1][0] if self.sent else GENESIS
        checksum = chain(previous, payload)
        self.sent.append((checksum, payload))
        return encode(len(self.sent), checksum, payload)

    def ack(self) -> None:
        self.acked = len(self.sent)

    def doubt(self) -> None:
        self.doubtful = True

    def _recorded(self, n: int, checksum: str, payload: str) -> bool:
        return 1 <= n <= len(self.sent) and self.sent[n - 1] == (checksum, payload)

    def check_string(self, value: str | None) -> str | None:
        """Why `value` (from GET) is wrong for this key, or None if it is fine."""
        allowed = f"acknowledged up to {self.acked}" + (
            f", {self.acked + 1} unknown" if self.doubtful else ""
        )
        if value is None:
            if self.acked == 0:
                return None
            return f"{self.key}: LOST — the key is missing, {allowed}"
        parsed = decode(value)
        if parsed is None or not self._recorded(*parsed):
            return f"{self.key}: FOREIGN value {value[:60]!r} is not in the recorded chain"
        n = parsed[0]
        if n == self.acked or (n == self.acked + 1 and self.doubtful):
            return None
        return f"{self.key}: LOST — holds write {n} (an older value), {allowed}"

    def check_list(self, entries: list[str]) -> str | None:
        """Why `entries` (from LRANGE 0 -1) are wrong for this key, or None if they are fine.

        The entries must be writes 1..k in order, each linked to the one before by its
        checksum, with k the acknowledged count or one more if that one is in doubt.
        """
        allowed = f"acknowledged up to {self.acked}" + (
            f", {self.acked + 1} unknown" if self.doubtful else ""
        )
        previous = GENESIS
        for index, entry in enumerate(entries, start=1):
            parsed = decode(entry)
            if parsed is None:
                return f"{self.key}: FOREIGN entry {entry[:60]!r} at {index}"
            n, checksum, payload = parsed
            if n != index:
                if n < index:
                    what = "DUPLICATE or REORDERED"
                else:
                    what = "LOST (a gap)"
                return f"{self.key}: {what} — entry {index} is write {n}, {allowed}"
            if checksum != chain(previous, payload):
                return f"{self.key}: BROKEN CHAIN at entry {index}"
            if not self._recorded(n, checksum, payload):
                return f"{self.key}: FOREIGN entry {index} is not in the recorded chain"
            previous = checksum
        count = len(entries)
        if count == self.acked or (count == self.acked + 1 and self.doubtful):
            return None
        if count < self.acked:
            return f"{self.key}: LOST — {count} entries, {allowed}"
        return f"{self.key}: {count} entries, more than were sent ({allowed})"


@dataclass
class Counts:
    """Operations by outcome; `errors` are error replies, `unknowns` timeouts and drops."""

    ops: int = 0
    acks: int = 0
    unknowns: int = 0
    errors: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.ops + other.ops,
            self.acks + other.acks,
            self.unknowns + other.unknowns,
            self.errors + other.errors,
        )

    def __sub__(self, other: Counts) -> Counts:
        return Counts(
            self.ops - other.ops,
            self.acks - other.acks,
            self.unknowns - other.unknowns,
            self.errors - other.errors,
        )

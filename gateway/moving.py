"""Requests a backend refused with `-TRYAGAIN partition <pn> ...`: held, retried, bounded.

A source master fences the partitions it is handing over (docs/migration-pgserver.md): every
command touching them gets `-TRYAGAIN partition <pn> is moving ...`. A gateway that sees it
missed the BLOCK/REDIRECT (stale map, cut off from the confmaster), so it does not forward the
error: it holds the request, asks its map source for a fresh map, and sends the request again
- at once when the map version changes (to the new owner),
- else after a backoff, to the same owner (a rollback lifts the fence),
- until the request's deadline, after which the client gets the TRYAGAIN error.

This module is the pure part, a `handle(event) -> actions` machine like `gateway.blocking`:
the driver (gateway.server) calls `hold()` and feeds map changes, lost backends and clock
ticks; it carries out the actions.

Order: held requests form one FIFO and are always sent again together, in that order; while
any held request touches a partition, new requests for that partition are held behind it
(the driver asks `pn_held`). So a client's commands on one key reach the owner in the order
the client sent them. Each request keeps the deadline of its first refusal across retries.
The retry time of the FIFO is that of its oldest request; each request's backoff doubles
with its attempts (`retry_s`, 2x, 4x ... capped at `max_retry_s`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tessera.partition import PARTITIONS

T = TypeVar("T")


@dataclass(frozen=True)
class Tick:
    now: float


@dataclass(frozen=True)
class MapChanged:
    """The gateway adopted a map with a higher version."""


@dataclass(frozen=True)
class BackendLost:
    """A backend connection closed; `key` is what `hold()` was given for it."""

    key: Hashable


Event = Tick | MapChanged | BackendLost


@dataclass(frozen=True)
class Refresh:
    """Ask the map source for a fresh map (a no-op for a static map)."""


@dataclass(frozen=True)
class Resend(Generic[T]):
    """Route these again with the map as it is now, in this order."""

    items: tuple[T, ...]


@dataclass(frozen=True)
class Expire(Generic[T]):
    """Deadline passed: answer these with their TRYAGAIN error."""

    items: tuple[T, ...]


@dataclass(frozen=True)
class Fail(Generic[T]):
    """Their backend went away: answer these with the usual backend error."""

    items: tuple[T, ...]


Action = Refresh | Resend[T] | Expire[T] | Fail[T]


@dataclass(slots=True)
class _Held(Generic[T]):
    item: T
    pns: tuple[int, ...]
    key: Hashable
    deadline: float
    due: float


class MovingHolds(Generic[T]):
    """The FIFO of held requests and how many of them touch each partition."""

    def __init__(self, retry_s: float, max_retry_s: float, max_held: int = 100_000) -> None:
        self.retry_s = retry_s
        self.max_retry_s = max(max_retry_s, retry_s)
        self.max_held = max_held
        self.pn_held = [0] * PARTITIONS  # held requests touching each partition
        self.count = 0
        self._held: list[_Held[T]] = []
        self._next_deadline = float("inf")

    def delay(self, attempts: int) -> float:
        """The backoff before the next retry of a request already retried `attempts` times."""
        return min(self.retry_s * (1 << min(attempts, 30)), self.max_retry_s)

    # ------------------------------------------------------------------ driver side

    def hold(
        self,
        item: T,
        pns: tuple[int, ...],
        key: Hashable,
        deadline: float,
        attempts: int,
        now: float,
    ) -> bool:
        """Hold `item` (touching `pns`, sent to `key`); False when the limit is reached."""
        if self.count >= self.max_held:
            return False
        self._held.append(_Held(item, pns, key, deadline, now + self.delay(attempts)))
        self.count += 1
        pn_held = self.pn_held
        for pn in pns:
            pn_held[pn] += 1
        if deadline < self._next_deadline:
            self._next_deadline = deadline
        return True

    def touches(self, pns: tuple[int, ...] | list[int]) -> bool:
        pn_held = self.pn_held
        return any(pn_held[pn] for pn in pns)

    # ------------------------------------------------------------------ events

    def handle(self, event: Event) -> list[Action[T]]:
        if isinstance(event, Tick):
            return self._tick(event.now)
        if isinstance(event, MapChanged):
            return [Resend(self._take(lambda held: True))] if self.count else []
        lost = self._take(lambda held: held.key == event.key)
        return [Fail(lost)] if lost else []

    def _tick(self, now: float) -> list[Action[T]]:
        actions: list[Action[T]] = []
        if now >= self._next_deadline:
            expired = self._take(lambda held: held.deadline <= now)
            if expired:
                actions.append(Expire(expired))
        if self._held and self._held[0].due <= now:
            actions.append(Refresh())
            actions.append(Resend(self._take(lambda held: True)))
        return actions

    def _take(self, chosen: Callable[[_Held[T]], bool]) -> tuple[T, ...]:
        """Remove the chosen requests (in FIFO order) and return their items."""
        taken: list[T] = []
        kept: list[_Held[T]] = []
        pn_held = self.pn_held
        for held in self._held:
            if chosen(held):
                taken.append(held.item)
                for pn in held.pns:
                    pn_held[pn] -= 1
            else:
                kept.append(held)
        self._held = kept
        self.count = len(kept)
        self._next_deadline = min((held.deadline for held in kept), default=float("inf"))
        return tuple(taken)

    # ------------------------------------------------------------------ checks

    def validate(self) -> None:
        assert self.count == len(self._held)
        counts = [0] * PARTITIONS
        for held in self._held:
            for pn in held.pns:
                counts[pn] += 1
        assert counts == self.pn_held
        assert self._next_deadline == min(
            (held.deadline for held in self._held), default=float("inf")
        )

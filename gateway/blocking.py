"""Block / redirect / unblock of partition ranges: the gateway's half of the 2-phase cutover.

A pure state machine (`handle(event) -> actions`): the trio driver feeds it admin commands,
"in-flight requests drained" notices and clock ticks, and carries out the actions. The hot
path only reads `blocked_job[pn]` and calls `hold()`.

Rules:
- BLOCK job ranges: requests for those partitions are held from now on; the reply (OK) is
  sent only when every request already forwarded for them has been answered.
- REDIRECT job ranges backend version: the map gives those ranges to `backend`; held
  requests are released, in arrival order, to be routed with the new map.
- UNBLOCK job: held requests are released to the old owner (roll back).
- Every held request has a deadline; past it, it gets an error reply instead.
- Every block has a lease (twice the hold timeout unless BLOCK names one): a block that neither
  REDIRECT nor UNBLOCK ends in time is lifted as UNBLOCK would, so a confmaster that died
  mid-cutover never leaves partitions blocked. The source's fence keeps that safe: a request
  released to the old owner is refused there and retried on a fresh map.
- Commands are idempotent per job id, so confmaster may repeat them after a crash.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tessera.partition import PARTITIONS, format_ranges

T = TypeVar("T")

Ranges = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Block:
    job: str
    ranges: Ranges
    inflight: int  # requests already forwarded for these partitions, not yet answered
    now: float = 0.0
    lease_s: float | None = None  # None: twice the hold timeout


@dataclass(frozen=True)
class Drained:
    job: str


@dataclass(frozen=True)
class Redirect:
    job: str
    ranges: Ranges
    backend: str
    version: int
    current_version: int


@dataclass(frozen=True)
class Unblock:
    job: str


@dataclass(frozen=True)
class Tick:
    now: float


Event = Block | Drained | Redirect | Unblock | Tick


@dataclass(frozen=True)
class AdminReply:
    job: str
    error: str | None = None  # None: OK


@dataclass(frozen=True)
class WaitDrain:
    """Tell the driver to send Drained(job) once no request for `ranges` is in flight."""

    job: str
    ranges: Ranges


@dataclass(frozen=True)
class UpdateMap(Generic[T]):
    ranges: Ranges
    backend: str
    version: int


@dataclass(frozen=True)
class Release(Generic[T]):
    """Route these held items again, in this order (with the map as it is now)."""

    items: tuple[T, ...]


@dataclass(frozen=True)
class Expire(Generic[T]):
    """These held items passed their deadline: answer them with an error."""

    items: tuple[T, ...]


Action = AdminReply | WaitDrain | UpdateMap[T] | Release[T] | Expire[T]


@dataclass
class _Job(Generic[T]):
    ranges: Ranges
    expires_at: float
    drained: bool = False
    held: deque[tuple[float, T]] = field(default_factory=deque)


class BlockState(Generic[T]):
    """Which partitions are blocked by which job, and the requests each job holds."""

    def __init__(self, hold_timeout_s: float, max_held: int = 100_000) -> None:
        self.hold_timeout_s = hold_timeout_s
        self.max_held = max_held
        self.blocked_job: list[str | None] = [None] * PARTITIONS
        self.jobs: dict[str, _Job[T]] = {}
        self.held_count = 0

    # ------------------------------------------------------------------ hot path

    def hold(self, job: str, item: T, now: float) -> bool:
        """Keep `item` until the job ends; False when the hold limit is reached."""
        if self.held_count >= self.max_held:
            return False
        self.jobs[job].held.append((now + self.hold_timeout_s, item))
        self.held_count += 1
        return True

    # ------------------------------------------------------------------ events

    def handle(self, event: Event) -> list[Action[T]]:
        if isinstance(event, Block):
            return self._block(event)
        if isinstance(event, Drained):
            job = self.jobs.get(event.job)
            if job is None or job.drained:
                return []
            job.drained = True
            return [AdminReply(event.job)]
        if isinstance(event, Redirect):
            return self._redirect(event)
        if isinstance(event, Unblock):
            job = self.jobs.pop(event.job, None)
            if job is None:
                return [AdminReply(event.job)]  # already unblocked: idempotent
            return [*self._end(event.job, job), AdminReply(event.job)]
        return self._expire(event.now)

    def _block(self, event: Block) -> list[Action[T]]:
        existing = self.jobs.get(event.job)
        if existing is not None:
            if existing.ranges != event.ranges:
                return [AdminReply(event.job, f"ERR job {event.job} already blocks other ranges")]
            return (
                [AdminReply(event.job)]
                if existing.drained
                else [WaitDrain(event.job, event.ranges)]
            )
        for first, last in event.ranges:
            if not 0 <= first <= last < PARTITIONS:
                return [AdminReply(event.job, f"ERR partition range {first}-{last} is invalid")]
            for pn in range(first, last + 1):
                other = self.blocked_job[pn]
                if other is not None:
                    return [
                        AdminReply(
                            event.job, f"ERR partition {pn} is already blocked by job {other}"
                        )
                    ]
        for first, last in event.ranges:
            for pn in range(first, last + 1):
                self.blocked_job[pn] = event.job
        lease = 2 * self.hold_timeout_s if event.lease_s is None else event.lease_s
        job: _Job[T] = _Job(event.ranges, event.now + lease)
        self.jobs[event.job] = job
        if event.inflight == 0:
            job.drained = True
            return [AdminReply(event.job)]
        return [WaitDrain(event.job, event.ranges)]

    def _redirect(self, event: Redirect) -> list[Action[T]]:
        job = self.jobs.pop(event.job, None)
        if job is None:
            if event.current_version >= event.version:
                return [AdminReply(event.job)]  # already redirected: idempotent
            return [AdminReply(event.job, f"ERR job {event.job} is not blocking anything")]
        if job.ranges != event.ranges or not job.drained:
            self.jobs[event.job] = job
            why = "blocks other ranges" if job.ranges != event.ranges else "is still draining"
            return [AdminReply(event.job, f"ERR job {event.job} {why}")]
        actions: list[Action[T]] = []
        if event.version > event.current_version:  # never go back to an older route
            actions.append(UpdateMap(event.ranges, event.backend, event.version))
        return [*actions, *self._end(event.job, job), AdminReply(event.job)]

    def _end(self, name: str, job: _Job[T]) -> list[Action[T]]:
        for first, last in job.ranges:
            for pn in range(first, last + 1):
                if self.blocked_job[pn] == name:
                    self.blocked_job[pn] = None
        self.held_count -= len(job.held)
        items = tuple(item for _deadline, item in job.held)
        job.held.clear()
        return [Release(items)] if items else []

    def _expire(self, now: float) -> list[Action[T]]:
        actions: list[Action[T]] = []
        for name, job in list(self.jobs.items()):
            if job.expires_at <= now:  # the lease ran out: lift the block
                del self.jobs[name]
                actions += self._end(name, job)
                actions.append(AdminReply(name, f"ERR job {name}: block lease expired"))
        expired: list[T] = []
        for job in self.jobs.values():
            while job.held and job.held[0][0] <= now:
                expired.append(job.held.popleft()[1])
        self.held_count -= len(expired)
        return [*actions, Expire(tuple(expired))] if expired else actions

    # ------------------------------------------------------------------ checks

    def validate(self) -> None:
        """Invariants: the blocked map and the job table agree; counts add up."""
        for pn, name in enumerate(self.blocked_job):
            if name is not None:
                job = self.jobs[name]
                assert any(a <= pn <= b for a, b in job.ranges), (pn, name)
        for name, job in self.jobs.items():
            for first, last in job.ranges:
                assert all(self.blocked_job[pn] == name for pn in range(first, last + 1))
            deadlines = [d for d, _ in job.held]
            assert deadlines == sorted(deadlines)
        assert self.held_count == sum(len(j.held) for j in self.jobs.values())

    def describe(self) -> list[str]:
        return [
            f"{name} {format_ranges(list(job.ranges))} held={len(job.held)} "
            f"{'blocked' if job.drained else 'draining'}"
            for name, job in self.jobs.items()
        ]

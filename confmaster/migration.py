"""One migration job's decisions: a pure `handle(event) -> actions` state machine.

The confmaster leader's driver carries out the actions in order and feeds back what
happened. `Persist` always comes before the actions of a new phase, so the job record in
ZooKeeper says what may have been started; the map write that commits the job carries
`phase: committed` in the same transaction (`CommitMap`). A leader that takes over reads
the record and sends `Resume`: before the commit point the job rolls back to catch-up (or
finishes cancelling), after it the job rolls forward. No I/O and no clock here: time comes
in events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tessera.layout import MigrationJobPayload, MigrationPhase

ACTIVE: frozenset[MigrationPhase] = frozenset({"prepare", "copy", "catchup", "cutover"})
FINISHED: frozenset[MigrationPhase] = frozenset({"done", "cancelled", "failed"})


# ---------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Begin:
    now_ms: int


@dataclass(frozen=True)
class Resume:
    """A (new) leader picks the job up from its record."""

    now_ms: int


@dataclass(frozen=True)
class Tick:
    now_ms: int


@dataclass(frozen=True)
class Prepared:
    """The target marks the ranges importing; the source has this much to move."""

    keys_total: int
    bytes_total: int


@dataclass(frozen=True)
class Progress:
    """The mover's report: the dump's LSN, copy counters, the tail's applied LSN and lag."""

    l0: int | None
    keys_copied: int
    bytes_copied: int
    applied_lsn: int
    lag_bytes: int
    copied: bool  # the dump is fully loaded: catching up from now on
    mover: dict[str, Any]  # resume state
    lag_records: int = 0


@dataclass(frozen=True)
class MoverFailed:
    error: str
    now_ms: int


@dataclass(frozen=True)
class Fenced:
    """Gateways blocked and the source fenced; `l1` is the source's log end then."""

    l1: int
    now_ms: int


@dataclass(frozen=True)
class CutoverFailed:
    """Blocking or fencing failed, or the target did not reach L1 within the budget."""

    error: str
    now_ms: int


@dataclass(frozen=True)
class ReachedL1:
    """The target has applied and committed everything up to L1."""

    now_ms: int


@dataclass(frozen=True)
class MapCommitted:
    ok: bool
    now_ms: int
    error: str = ""


@dataclass(frozen=True)
class Unblocked:
    """After the commit: the gateways were redirected, so clients wait no longer."""

    now_ms: int


@dataclass(frozen=True)
class Finished:
    """Roll-forward (redirect, target commit, source cleanup) or a rollback's cleanup done."""

    now_ms: int


@dataclass(frozen=True)
class CancelRequested:
    now_ms: int


Event = (
    Begin
    | Resume
    | Tick
    | Prepared
    | Progress
    | MoverFailed
    | Fenced
    | CutoverFailed
    | ReachedL1
    | MapCommitted
    | Unblocked
    | Finished
    | CancelRequested
)

# --------------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Persist:
    """Write the job record (fenced by the leader epoch); stop if it fails."""

    job: MigrationJobPayload


@dataclass(frozen=True)
class PrepareTarget:
    """Check the target holds no key of the ranges, mark them importing, count the source."""


@dataclass(frozen=True)
class StartMover:
    """Run the mover (dump + load, then tail), resuming from `mover` state when present."""

    mover: dict[str, Any]


@dataclass(frozen=True)
class StopMover:
    pass


@dataclass(frozen=True)
class BlockAndFence:
    """BLOCK the ranges on every live gateway (hold deadline = budget), then fence the
    source; answer with Fenced(l1) or CutoverFailed."""

    budget_ms: int


@dataclass(frozen=True)
class WaitForL1:
    """Wait until the mover applied L1 on the target; ReachedL1 or CutoverFailed."""

    l1: int
    deadline_ms: int


@dataclass(frozen=True)
class Unfence:
    """Lift the source fence and UNBLOCK the gateways (held requests go to the source)."""


@dataclass(frozen=True)
class CommitMap:
    """One transaction: the map with the ranges on the target and `job` (phase committed)."""

    job: MigrationJobPayload


@dataclass(frozen=True)
class RollForward:
    """REDIRECT gateways, clear the target's importing mark, close the tail, clean and
    unfence the source; answer with Finished."""


@dataclass(frozen=True)
class CleanTarget:
    """Cancel: delete the ranges on the target and clear its importing mark; Finished."""


@dataclass(frozen=True)
class Log:
    message: str


Action = (
    Persist
    | PrepareTarget
    | StartMover
    | StopMover
    | BlockAndFence
    | WaitForL1
    | Unfence
    | CommitMap
    | RollForward
    | CleanTarget
    | Log
)


@dataclass
class MigrationConfig:
    cutover_lag_bytes: int = 256 << 10  # start a cutover once the tail is this close
    retry_backoff_ms: int = 1000  # first wait after a failure; doubles up to the maximum
    max_backoff_ms: int = 30_000
    max_mover_failures: int = 10  # in a row, without progress in between


@dataclass
class MigrationJob:
    """One job as the leader sees it; changed only by `handle`.

    `step` is the one request in flight that answers with an event ("prepare", "fence",
    "wait", "commit", "finish", or "" for none); the mover runs beside it.
    """

    job: MigrationJobPayload
    config: MigrationConfig = field(default_factory=MigrationConfig)
    step: str = ""
    mover_running: bool = False
    retry_at_ms: int = 0
    failures: int = 0  # mover or prepare failures in a row
    cancel_wanted: bool = False  # asked during a cutover step: decided when it answers
    failing: bool = False  # rolling back because of an error, not a cancel
    fenced_at_ms: int = 0
    committing: MigrationJobPayload | None = None  # the record the map is written with

    # ------------------------------------------------------------------ entry

    def handle(self, event: Event) -> list[Action]:
        out: list[Action] = []
        if self.job.phase in FINISHED:
            return out
        if isinstance(event, Begin):
            self._update(event.now_ms, created_ms=self.job.created_ms or event.now_ms)
            self._enter("prepare", event.now_ms, out, PrepareTarget())
            self.step = "prepare"
        elif isinstance(event, Resume):
            self._resume(event.now_ms, out)
        elif isinstance(event, Tick):
            self._tick(event.now_ms, out)
        elif isinstance(event, Prepared):
            self._prepared(event, out)
        elif isinstance(event, Progress):
            self._progress(event, out)
        elif isinstance(event, MoverFailed):
            self._mover_failed(event, out)
        elif isinstance(event, Fenced):
            self._fenced(event, out)
        elif isinstance(event, CutoverFailed):
            self._cutover_failed(event.error, event.now_ms, out)
        elif isinstance(event, ReachedL1):
            self._reached(event, out)
        elif isinstance(event, MapCommitted):
            self._committed(event, out)
        elif isinstance(event, Unblocked):
            self._unblocked(event, out)
        elif isinstance(event, Finished):
            self._finished(event, out)
        else:
            self._cancel(event.now_ms, out)
        return out

    # ------------------------------------------------------------------ helpers

    def _update(self, now_ms: int, **fields: Any) -> None:
        self.job = self.job.model_copy(update={**fields, "updated_ms": now_ms})

    def _enter(self, phase: MigrationPhase, now_ms: int, out: list[Action], *then: Action) -> None:
        """Persist the new phase first, then act on it."""
        update: dict[str, Any] = {"phase": phase}
        if phase in FINISHED:
            update["finished_ms"] = now_ms
        self._update(now_ms, **update)
        out.append(Persist(self.job))
        out.extend(then)

    def _backoff(self, now_ms: int, failures: int) -> None:
        delay = self.config.retry_backoff_ms * (2 ** max(failures - 1, 0))
        self.retry_at_ms = now_ms + int(min(delay, self.config.max_backoff_ms))

    def _roll_back(self, now_ms: int, out: list[Action]) -> None:
        """Undo everything before the commit point; Finished comes back when clean."""
        self.mover_running = False
        self._enter("cancelling", now_ms, out, Unfence(), StopMover(), CleanTarget())
        self.step = "finish"

    # ------------------------------------------------------------------ events

    def _resume(self, now_ms: int, out: list[Action]) -> None:
        phase = self.job.phase
        out.append(Log(f"job {self.job.id}: resuming in phase {phase}"))
        self.step, self.mover_running = "", False
        if phase == "prepare":
            self._enter("prepare", now_ms, out, PrepareTarget())
            self.step = "prepare"
        elif phase == "cutover":
            # Not committed: whatever the old leader blocked or fenced is undone and the
            # cutover is tried again later (gateways release a forgotten hold on their own).
            self._update(now_ms, attempts=self.job.attempts + 1, l1=None)
            self._enter("catchup", now_ms, out, Unfence())
            self._backoff(now_ms, 1)
        elif phase == "committed":
            self._enter("committed", now_ms, out, RollForward())
            self.step = "finish"
        elif phase == "cancelling":
            self._roll_back(now_ms, out)
        else:  # copy, catchup: the mover resumes at the next tick
            out.append(Persist(self.job))

    def _tick(self, now_ms: int, out: list[Action]) -> None:
        if self.step or now_ms < self.retry_at_ms:
            return
        phase = self.job.phase
        if phase == "prepare":
            out.append(PrepareTarget())
            self.step = "prepare"
        elif phase in ("copy", "catchup") and not self.mover_running:
            out.append(StartMover(self.job.mover))
            self.mover_running = True
        elif phase == "catchup" and self.job.lag_bytes <= self.config.cutover_lag_bytes:
            self._update(now_ms, l1=None)
            self._enter("cutover", now_ms, out, BlockAndFence(self.job.block_budget_ms))
            self.step, self.fenced_at_ms = "fence", now_ms

    def _prepared(self, ev: Prepared, out: list[Action]) -> None:
        if self.job.phase != "prepare" or self.step != "prepare":
            return
        self.step, self.failures = "", 0
        self._update(self.job.updated_ms, keys_total=ev.keys_total, bytes_total=ev.bytes_total)
        self._enter("copy", self.job.updated_ms, out, StartMover({}))
        self.mover_running = True

    def _progress(self, ev: Progress, out: list[Action]) -> None:
        if self.job.phase not in ("copy", "catchup", "cutover") or not self.mover_running:
            return
        self.failures = 0
        self.job = self.job.model_copy(
            update={
                "l0": ev.l0,
                "keys_copied": ev.keys_copied,
                "bytes_copied": ev.bytes_copied,
                "applied_lsn": ev.applied_lsn,
                "lag_bytes": ev.lag_bytes,
                "lag_records": ev.lag_records,
                "mover": ev.mover,
            }
        )
        if self.job.phase == "copy" and ev.copied:
            self._enter("catchup", self.job.updated_ms, out)

    def _mover_failed(self, ev: MoverFailed, out: list[Action]) -> None:
        phase = self.job.phase
        if phase == "cancelling" or phase == "committed":
            return
        self.failures += 1
        self._update(ev.now_ms, last_error=ev.error)
        out.append(Log(f"job {self.job.id}: {ev.error}"))
        if phase == "prepare":
            self.step = ""
        else:
            self.mover_running = False
        if self.step in ("fence", "wait"):
            return self._cutover_failed(ev.error, ev.now_ms, out)
        if self.failures >= self.config.max_mover_failures:
            why = f"{self.failures} failures in a row; last: {ev.error}"
            return self._fail(why, ev.now_ms, out)
        self._backoff(ev.now_ms, self.failures)
        out.append(Persist(self.job))

    def _fenced(self, ev: Fenced, out: list[Action]) -> None:
        if self.step != "fence":
            return
        # L1 is not persisted here: a leader that takes over before the commit rolls the
        # attempt back without it, and a ZooKeeper write now would lengthen the block.
        self._update(ev.now_ms, l1=ev.l1)
        out.append(WaitForL1(ev.l1, self.fenced_at_ms + self.job.block_budget_ms))
        self.step = "wait"

    def _cutover_failed(self, error: str, now_ms: int, out: list[Action]) -> None:
        if self.step not in ("fence", "wait"):
            return
        attempts = self.job.attempts + 1
        block = max(now_ms - self.fenced_at_ms, 0)
        self.step = ""
        self._update(
            now_ms,
            attempts=attempts,
            l1=None,
            last_error=error,
            block_ms=[*self.job.block_ms, block],
        )
        out.append(Log(f"job {self.job.id}: cutover attempt {attempts} rolled back: {error}"))
        if self.cancel_wanted:
            return self._roll_back(now_ms, out)
        if attempts >= self.job.max_attempts:
            return self._fail(f"{attempts} cutover attempts failed; last: {error}", now_ms, out)
        self._enter("catchup", now_ms, out, Unfence())
        self._backoff(now_ms, attempts)

    def _reached(self, ev: ReachedL1, out: list[Action]) -> None:
        if self.step != "wait":
            return
        if self.cancel_wanted:
            return self._cutover_failed("cancelled", ev.now_ms, out)
        block = max(ev.now_ms - self.fenced_at_ms, 0)
        committed = self.job.model_copy(
            update={
                "phase": "committed",
                "attempts": self.job.attempts + 1,
                "block_ms": [*self.job.block_ms, block],
                "updated_ms": ev.now_ms,
            }
        )
        out.append(CommitMap(committed))
        self.step, self.committing = "commit", committed

    def _committed(self, ev: MapCommitted, out: list[Action]) -> None:
        if self.step != "commit":
            return
        if not ev.ok:  # the transaction did not land: still before the commit point
            self.step = "wait"
            return self._cutover_failed(f"writing the map failed: {ev.error}", ev.now_ms, out)
        assert self.committing is not None
        self.job, self.committing = self.committing, None
        self.mover_running = False
        if self.cancel_wanted:
            out.append(Log(f"job {self.job.id}: cancel refused, the job already committed"))
            self.cancel_wanted = False
        out.append(Log(f"job {self.job.id}: committed, block {self.job.block_ms[-1]} ms"))
        out.append(RollForward())
        self.step = "finish"

    def _unblocked(self, ev: Unblocked, out: list[Action]) -> None:
        """The block really ends at the redirect: record that as the attempt's block time."""
        if self.job.phase != "committed" or not self.fenced_at_ms or not self.job.block_ms:
            return
        block = max(ev.now_ms - self.fenced_at_ms, 0)
        self._update(ev.now_ms, block_ms=[*self.job.block_ms[:-1], block])
        out.append(Persist(self.job))

    def _finished(self, ev: Finished, out: list[Action]) -> None:
        if self.step != "finish":
            return
        self.step = ""
        if self.job.phase == "committed":
            self._enter("done", ev.now_ms, out)
        elif self.job.phase == "cancelling":
            self._enter("failed" if self.failing else "cancelled", ev.now_ms, out)

    def _cancel(self, now_ms: int, out: list[Action]) -> None:
        phase = self.job.phase
        if phase == "committed":
            out.append(Log(f"job {self.job.id}: cancel refused, the job already committed"))
            return
        if phase == "cancelling":
            return
        if self.step in ("fence", "wait", "commit"):
            self.cancel_wanted = True  # decided when that step answers
            out.append(Log(f"job {self.job.id}: cancel requested during the cutover"))
            return
        out.append(Log(f"job {self.job.id}: cancelled in phase {phase}"))
        self._roll_back(now_ms, out)

    def _fail(self, why: str, now_ms: int, out: list[Action]) -> None:
        self._update(now_ms, last_error=why)
        out.append(Log(f"job {self.job.id} failed: {why}"))
        self.failing = True
        self._roll_back(now_ms, out)

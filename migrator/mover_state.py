"""The phases of one range move: a pure `handle(event) -> actions` state machine.

No I/O, no clock. The trio driver (migrator/mover.py) carries out the step action each
`handle` returns and feeds back what came of it; `validate()` checks the invariants. The
machine's `state` (MoverState) is everything a new migrator process needs to take over: the
driver persists it when told to (`Save`) and a new mover starts from it.

Phases, in order (cancel can branch off anywhere before the target is committed):

    new -> preparing -> loading -> catching_up <-> tail_closed -> done
                 ^          |           |
                 +-clearing-+-----------+   (redo: the load or the tail cannot go on)
    any of the above -> cancelling -> cancelled

Resume rules (a `Start` event in each phase):
- new: the target got no key from this move yet; prepare (idempotent).
- preparing: the record may lag the move (the job record coalesces saves), so the target
  may already be marked importing and hold part of a load: clear what is marked as ours
  (ClearTarget deletes only ranges the target imports), then prepare again.
- loading, clearing: the load was interrupted and its partial copy cannot be finished
  (the dump may be gone with its id, and a half-loaded key cannot be told from a whole
  one), so redo: drop the old dump, delete the ranges on the target, dump again.
- catching_up, tail_closed: read the target's own resume marker (see migrator/batching.py).
  A clean marker is the end LSN of the last frame group the target applied *and* nothing
  after it: follow the tail from there. A marker left open (the mover died in the middle of
  a group: some of its commands may have been applied, and INCR or RPUSH cannot be applied
  twice) or no marker means redo, and so does a source log that no longer reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tessera.partition import PartitionSet, format_ranges, parse_ranges

Phase = Literal[
    "new",
    "preparing",
    "loading",
    "clearing",
    "catching_up",
    "tail_closed",
    "done",
    "cancelling",
    "cancelled",
]
SourceCleanup = Literal["no", "started", "done"]

STATE_VERSION = 1


def canonical_ranges(ranges: str | list[tuple[int, int]]) -> str:
    """Ranges as the pgserver writes them: ascending, merged (ValueError if malformed)."""
    parsed = parse_ranges(ranges) if isinstance(ranges, str) else ranges
    merged = PartitionSet(parsed).ranges()
    if not merged:
        raise ValueError("no partitions given")
    return format_ranges(merged)


class MoverState(BaseModel):
    """What a migrator needs to resume a move after its process died (JSON-serializable)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = STATE_VERSION
    ranges: str  # canonical, e.g. "0-2047,4096"
    phase: Phase = "new"
    l0: int | None = None  # the dump's LSN (loading and after)
    dump_id: str | None = None  # a dump on the source still to drop
    applied_lsn: int | None = None  # last frame end the target applied (as last saved)
    fence_lsn: int | None = None  # L1, once fence_source() fenced the ranges on the source
    target_committed: bool = False  # TSR.IMPORTING DEL done on the target
    source_cleanup: SourceCleanup = "no"  # TSR.DELRANGE + TSR.FENCE DEL on the source
    redo_count: int = Field(default=0, ge=0)  # times the copy was started over

    @field_validator("ranges")
    @classmethod
    def _canonical(cls, value: str) -> str:
        return canonical_ranges(value)


# ---------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Start:
    """run(): go from wherever the state is up to following the tail."""

    id: int


@dataclass(frozen=True)
class TargetCounted:
    id: int
    keys: int  # TSR.COUNT of the ranges on the target


@dataclass(frozen=True)
class ImportingMarked:
    id: int


@dataclass(frozen=True)
class DumpStarted:
    id: int
    l0: int
    dump_id: str


@dataclass(frozen=True)
class DumpLoaded:
    """Every command of the dump got its reply and the marker says L0."""

    id: int


@dataclass(frozen=True)
class DumpDropped:
    id: int


@dataclass(frozen=True)
class TargetCleared:
    """The target holds no key of the ranges and is not deleting any more of them."""

    id: int


@dataclass(frozen=True)
class MarkerRead:
    id: int
    lsn: int | None  # None: no marker on the target
    clean: bool  # False: a frame group was left half sent


@dataclass(frozen=True)
class Applied:
    """The target replied to every command of the frames up to `lsn` (progress only)."""

    id: int
    lsn: int


TailOutcome = Literal["closed", "redo"]


@dataclass(frozen=True)
class TailEnded:
    """The catch-up stopped at a frame boundary the target fully applied."""

    id: int
    outcome: TailOutcome  # closed: close_tail() asked for it; redo: the source cannot go on
    applied_lsn: int
    reason: str = ""


@dataclass(frozen=True)
class CancelRequested:
    id: int


@dataclass(frozen=True)
class CommitRequested:
    id: int


@dataclass(frozen=True)
class TargetCommitted:
    id: int


@dataclass(frozen=True)
class CleanupRequested:
    id: int


@dataclass(frozen=True)
class SourceFenceChecked:
    id: int
    fenced: bool  # every partition of the ranges is fenced on the source


@dataclass(frozen=True)
class SourceRangeDeleted:
    id: int


@dataclass(frozen=True)
class FenceRequested:
    id: int


@dataclass(frozen=True)
class SourceFenced:
    id: int
    l1: int


@dataclass(frozen=True)
class UnfenceRequested:
    id: int


@dataclass(frozen=True)
class SourceUnfenced:
    id: int


@dataclass(frozen=True)
class ImportingUnmarked:
    id: int


Event = (
    Start
    | TargetCounted
    | ImportingMarked
    | DumpStarted
    | DumpLoaded
    | DumpDropped
    | TargetCleared
    | MarkerRead
    | Applied
    | TailEnded
    | CancelRequested
    | CommitRequested
    | TargetCommitted
    | CleanupRequested
    | SourceFenceChecked
    | SourceRangeDeleted
    | FenceRequested
    | SourceFenced
    | UnfenceRequested
    | SourceUnfenced
    | ImportingUnmarked
)

# --------------------------------------------------------------------------------- actions
# Bookkeeping actions (Save, Report) come first; then at most one step (the driver answers
# with its event) or a terminal action (Stop: the operation is complete; Fail: it failed).


@dataclass(frozen=True)
class Save:
    """Persist `state` before going on (write-ahead: the step after it relies on it)."""


@dataclass(frozen=True)
class Report:
    message: str


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Fail:
    message: str


@dataclass(frozen=True)
class CountTarget:
    """TSR.COUNT <ranges> on the target -> TargetCounted."""


@dataclass(frozen=True)
class MarkImporting:
    """TSR.IMPORTING ADD on the target -> ImportingMarked."""


@dataclass(frozen=True)
class StartDump:
    """TSR.COUNT (estimate) then TSR.DUMP on the source -> DumpStarted."""


@dataclass(frozen=True)
class LoadDump:
    """Read the dump and apply it to the target, then set the marker to L0 -> DumpLoaded."""

    dump_id: str
    l0: int


@dataclass(frozen=True)
class DropDump:
    """TSR.DUMPDROP on the source (an unknown id is fine) -> DumpDropped."""

    dump_id: str


@dataclass(frozen=True)
class ClearTarget:
    """TSR.DELRANGE on the target, wait until done -> TargetCleared."""


@dataclass(frozen=True)
class ReadMarker:
    """GET the resume marker on the target -> MarkerRead."""


@dataclass(frozen=True)
class FollowTail:
    """TSR.TAIL from `lsn`, applying frames until stopped -> TailEnded (Applied meanwhile)."""

    lsn: int


@dataclass(frozen=True)
class UnmarkImporting:
    """TSR.IMPORTING DEL on the target -> ImportingUnmarked."""


@dataclass(frozen=True)
class CommitTarget:
    """Delete the marker, then TSR.IMPORTING DEL on the target -> TargetCommitted."""


@dataclass(frozen=True)
class CheckSourceFenced:
    """TSR.FENCE LIST on the source -> SourceFenceChecked."""


@dataclass(frozen=True)
class DeleteSourceRange:
    """TSR.DELRANGE on the source, wait until done -> SourceRangeDeleted."""


@dataclass(frozen=True)
class FenceSource:
    """TSR.FENCE ADD on the source -> SourceFenced(L1)."""


@dataclass(frozen=True)
class UnfenceSource:
    """TSR.FENCE DEL on the source -> SourceUnfenced."""


Step = (
    CountTarget
    | MarkImporting
    | StartDump
    | LoadDump
    | DropDump
    | ClearTarget
    | ReadMarker
    | FollowTail
    | UnmarkImporting
    | CommitTarget
    | CheckSourceFenced
    | DeleteSourceRange
    | FenceSource
    | UnfenceSource
)
Action = Save | Report | Stop | Fail | Step

_COPYING: frozenset[Phase] = frozenset(
    {"new", "preparing", "loading", "clearing", "catching_up", "tail_closed"}
)


class MoverMachine:
    """Decides the next step of one move from its state and the last step's outcome."""

    def __init__(self, state: MoverState) -> None:
        self.state = state
        self.last_event_id = 0

    def _set(self, **changes: object) -> None:
        self.state = self.state.model_copy(update=changes)

    # ------------------------------------------------------------------------- dispatch

    def handle(self, event: Event) -> list[Action]:
        self.last_event_id = event.id
        s = self.state
        match event:
            case Start():
                return self._start()
            case CancelRequested():
                return self._cancel()
            case CommitRequested():
                return self._commit()
            case CleanupRequested():
                return self._cleanup()
            case FenceRequested():
                if s.phase not in ("catching_up", "tail_closed") or self._finishing():
                    return [Fail(f"cannot fence the source in phase {self._where()}")]
                return [FenceSource()]
            case UnfenceRequested():
                if s.phase not in ("catching_up", "tail_closed") or self._finishing():
                    return [Fail(f"cannot unfence the source in phase {self._where()}")]
                return [UnfenceSource()]
            case Applied(lsn=lsn):
                if s.phase == "catching_up" and lsn > (s.applied_lsn or 0):
                    self._set(applied_lsn=lsn)
                return []
        return self._progress(event)

    def _progress(self, event: Event) -> list[Action]:
        """Outcomes of steps: each is expected in certain phases only."""
        s = self.state
        phase = s.phase
        match event:
            case TargetCounted(keys=keys) if phase == "preparing":
                if keys:
                    return [
                        Fail(
                            f"the target already holds {keys} keys of partitions {s.ranges}; "
                            "refusing to load on top of them (if they are leftovers of an "
                            "earlier move, delete them with TSR.DELRANGE on the target)"
                        )
                    ]
                return [MarkImporting()]
            case ImportingMarked() if phase == "preparing":
                return [StartDump()]
            case DumpStarted(l0=l0, dump_id=dump_id) if phase == "preparing":
                self._set(phase="loading", l0=l0, dump_id=dump_id, applied_lsn=None)
                return [Save(), LoadDump(dump_id, l0)]
            case DumpLoaded() if phase == "loading" and s.dump_id is not None:
                return [DropDump(s.dump_id)]
            case DumpDropped() if phase == "loading":
                self._set(phase="catching_up", dump_id=None, applied_lsn=s.l0)
                assert s.l0 is not None
                return [Save(), FollowTail(s.l0)]
            case DumpDropped() if phase in ("clearing", "cancelling"):
                self._set(dump_id=None)
                return [Save(), *self._clear_next()]
            case TargetCleared() if phase == "clearing":
                self._set(phase="preparing", l0=None, applied_lsn=None)
                return [Save(), CountTarget()]
            case TargetCleared() if phase == "cancelling":
                return [UnmarkImporting()]
            case ImportingUnmarked() if phase == "cancelling":
                self._set(phase="cancelled", l0=None, applied_lsn=None)
                return [Save(), Report(f"cancelled: the target holds no key of {s.ranges}"), Stop()]
            case MarkerRead(lsn=lsn, clean=clean) if phase in ("catching_up", "tail_closed"):
                assert s.l0 is not None
                if lsn is None:
                    return self._redo("the target has no resume marker")
                if not clean:
                    return self._redo(
                        f"the target may have applied part of the frames after LSN {lsn}"
                    )
                if lsn < s.l0:
                    return self._redo(f"the target's marker {lsn} is before the dump's L0")
                self._set(phase="catching_up", applied_lsn=lsn)
                return [Save(), Report(f"resuming the tail at LSN {lsn}"), FollowTail(lsn)]
            case TailEnded(outcome=outcome, applied_lsn=lsn, reason=reason) if (
                phase == "catching_up"
            ):
                self._set(applied_lsn=max(lsn, s.applied_lsn or 0))
                if outcome == "redo":
                    return self._redo(reason)
                self._set(phase="tail_closed")
                return [Save(), Stop()]
            case TargetCommitted() if phase == "tail_closed":
                self._set(target_committed=True)
                self._maybe_done()
                return [Save(), Stop()]
            case SourceFenceChecked(fenced=fenced) if phase == "tail_closed":
                if s.source_cleanup == "no":
                    if not fenced:
                        return [
                            Fail(
                                f"the source does not fence {s.ranges}: fence them (cutover) "
                                "before deleting them there"
                            )
                        ]
                    self._set(source_cleanup="started")
                    return [Save(), DeleteSourceRange()]
                if fenced:  # an earlier cleanup stopped before its FENCE DEL: do it again
                    return [DeleteSourceRange()]
                # An earlier cleanup already took the fence away, which it does last.
                self._set(source_cleanup="done", fence_lsn=None)
                self._maybe_done()
                return [Save(), Stop()]
            case SourceRangeDeleted() if phase == "tail_closed":
                return [UnfenceSource()]
            case SourceFenced(l1=l1) if phase in ("catching_up", "tail_closed"):
                self._set(fence_lsn=l1)
                return [Save(), Stop()]
            case SourceUnfenced() if phase in ("clearing", "cancelling"):
                self._set(fence_lsn=None)
                return [Save(), *self._clear_next()]
            case SourceUnfenced() if phase == "tail_closed" and s.source_cleanup == "started":
                self._set(source_cleanup="done", fence_lsn=None)
                self._maybe_done()
                return [Save(), Stop()]
            case SourceUnfenced() if phase in ("catching_up", "tail_closed"):
                self._set(fence_lsn=None)
                return [Save(), Stop()]
        raise AssertionError(f"{type(event).__name__} is not expected in phase {phase}")

    # ------------------------------------------------------------------------- requests

    def _start(self) -> list[Action]:
        s = self.state
        match s.phase:
            case "new":
                self._set(phase="preparing")
                return [Save(), CountTarget()]
            case "preparing":
                return self._redo("the preparation was interrupted (a load may have begun)")
            case "loading":
                return self._redo("the load was interrupted")
            case "clearing":
                return self._clear_next()
            case "catching_up" | "tail_closed" if not self._finishing():
                return [ReadMarker()]
            case "cancelling":
                return [Fail("this move is being cancelled: call cancel() to finish")]
        return [Fail(f"nothing to run in phase {self._where()}")]

    def _cancel(self) -> list[Action]:
        s = self.state
        if s.phase == "cancelled":
            return [Stop()]
        if s.phase == "cancelling":
            return self._clear_next()
        if s.phase not in _COPYING or self._finishing():
            return [Fail(f"cannot cancel in phase {self._where()}: the move is committed")]
        self._set(phase="cancelling")
        return [Save(), *self._clear_next()]

    def _clear_next(self) -> list[Action]:
        """Cancel and redo: give the source its partitions back first (a cutover may have
        fenced them), drop the dump (it holds the source's log back), clean the target."""
        s = self.state
        if s.fence_lsn is not None:
            return [UnfenceSource()]
        if s.dump_id is not None:
            return [DropDump(s.dump_id)]
        return [ClearTarget()]

    def _commit(self) -> list[Action]:
        s = self.state
        if s.target_committed:
            return [Stop()]
        if s.phase != "tail_closed":
            hint = " (close_tail() first)" if s.phase == "catching_up" else ""
            return [Fail(f"cannot commit the target in phase {s.phase}{hint}")]
        if s.fence_lsn is not None and (s.applied_lsn or 0) < s.fence_lsn:
            return [
                Fail(
                    f"the target applied up to LSN {s.applied_lsn}, before the fence's "
                    f"L1 {s.fence_lsn}: it would miss writes"
                )
            ]
        return [CommitTarget()]

    def _cleanup(self) -> list[Action]:
        s = self.state
        if s.source_cleanup == "done":
            return [Stop()]
        if s.phase != "tail_closed":
            hint = " (close_tail() first: the tail would carry the deletions)"
            return [
                Fail(
                    f"cannot clean the source in phase {s.phase}"
                    + (hint if s.phase == "catching_up" else "")
                )
            ]
        return [CheckSourceFenced()]

    # ------------------------------------------------------------------------- helpers

    def _redo(self, why: str) -> list[Action]:
        s = self.state
        self._set(phase="clearing", l0=None, applied_lsn=None, redo_count=s.redo_count + 1)
        return [
            Report(f"copying {s.ranges} again from the start: {why}"),
            Save(),
            *self._clear_next(),
        ]

    def _finishing(self) -> bool:
        """Past the point of no return: the target is committed or the source cleaned."""
        return self.state.target_committed or self.state.source_cleanup != "no"

    def _maybe_done(self) -> None:
        if self.state.target_committed and self.state.source_cleanup == "done":
            self._set(phase="done")

    def _where(self) -> str:
        s = self.state
        extra = []
        if s.target_committed:
            extra.append("target committed")
        if s.source_cleanup != "no":
            extra.append(f"source cleanup {s.source_cleanup}")
        return s.phase + (f" ({', '.join(extra)})" if extra else "")

    def validate(self) -> None:
        s = self.state
        assert canonical_ranges(s.ranges) == s.ranges
        if s.phase in ("new", "preparing", "clearing", "cancelled"):
            assert s.l0 is None, s
            assert s.applied_lsn is None, s
        if s.phase in ("new", "preparing"):
            assert s.dump_id is None, s
        if s.phase == "loading":
            assert s.l0 is not None, s
            assert s.dump_id is not None, s
            assert s.applied_lsn is None, s
        if s.phase in ("catching_up", "tail_closed", "done"):
            assert s.l0 is not None, s
            assert s.applied_lsn is not None, s
            assert s.applied_lsn >= s.l0, s
            assert s.dump_id is None, s
        if s.target_committed or s.source_cleanup != "no":
            assert s.phase in ("tail_closed", "done"), s
        assert (s.phase == "done") == (s.target_committed and s.source_cleanup == "done"), s
        if s.phase == "cancelled":
            assert s.dump_id is None, s
            assert s.fence_lsn is None, s
        if s.source_cleanup == "done":
            assert s.fence_lsn is None, s
        if s.fence_lsn is not None:
            assert s.phase not in ("new", "preparing", "cancelled"), s

"""migrator.mover_state: the phases of a range move, resume decisions and guards, step by
step; then a simulated world with crashes at every step.

Every event goes through `Machine`, which runs `validate()` after it.
"""

from __future__ import annotations

import random
from itertools import count
from typing import Any

import pytest
from pydantic import ValidationError

from migrator.mover_state import (
    Action,
    Applied,
    CancelRequested,
    CheckSourceFenced,
    CleanupRequested,
    ClearTarget,
    CommitRequested,
    CommitTarget,
    CountTarget,
    DeleteSourceRange,
    DropDump,
    DumpDropped,
    DumpLoaded,
    DumpStarted,
    Event,
    Fail,
    FenceRequested,
    FenceSource,
    FollowTail,
    ImportingMarked,
    ImportingUnmarked,
    LoadDump,
    MarkerRead,
    MarkImporting,
    MoverMachine,
    MoverState,
    ReadMarker,
    Report,
    Save,
    SourceFenceChecked,
    SourceFenced,
    SourceRangeDeleted,
    SourceUnfenced,
    Start,
    StartDump,
    Stop,
    TailEnded,
    TargetCleared,
    TargetCommitted,
    TargetCounted,
    UnfenceRequested,
    UnfenceSource,
    UnmarkImporting,
)

RANGES = "0-2047"


class Machine:
    """A MoverMachine whose invariants are checked after every event."""

    def __init__(self, **state: Any) -> None:
        self.m = MoverMachine(MoverState(**{"ranges": RANGES, **state}))
        self.m.validate()
        self.ids = count(1)

    def __call__(self, make: Any, *args: Any) -> list[Action]:
        actions = self.m.handle(make(next(self.ids), *args))
        self.m.validate()
        return actions

    @property
    def s(self) -> MoverState:
        return self.m.state

    @property
    def phase(self) -> str:  # a plain str: mypy would narrow the Literal between steps
        return self.m.state.phase


def steps(actions: list[Action]) -> list[Action]:
    """The actions without the bookkeeping (Save, Report)."""
    return [a for a in actions if not isinstance(a, Save | Report)]


def failed(actions: list[Action]) -> str:
    assert len(actions) == 1, actions
    assert isinstance(actions[0], Fail), actions
    return actions[0].message


def catching_up(**extra: Any) -> Machine:
    return Machine(phase="catching_up", l0=100, applied_lsn=150, **extra)


def tail_closed(**extra: Any) -> Machine:
    return Machine(phase="tail_closed", l0=100, applied_lsn=300, **extra)


# ------------------------------------------------------------------------- the happy path


def test_a_move_from_start_to_done() -> None:
    m = Machine()
    assert m(Start) == [Save(), CountTarget()]
    assert m.phase == "preparing"
    assert m(TargetCounted, 0) == [MarkImporting()]
    assert m(ImportingMarked) == [StartDump()]
    # The dump's id and L0 are saved before anything reaches the target.
    assert m(DumpStarted, 100, "d1") == [Save(), LoadDump("d1", 100)]
    assert (m.phase, m.s.l0, m.s.dump_id) == ("loading", 100, "d1")
    assert m(DumpLoaded) == [DropDump("d1")]
    assert m(DumpDropped) == [Save(), FollowTail(100)]
    assert (m.phase, m.s.applied_lsn, m.s.dump_id) == ("catching_up", 100, None)
    assert m(Applied, 150) == []
    assert m(Applied, 140) == []  # never backwards
    assert m.s.applied_lsn == 150
    assert m(FenceRequested) == [FenceSource()]
    assert m(SourceFenced, 200) == [Save(), Stop()]
    assert m.s.fence_lsn == 200
    assert m(TailEnded, "closed", 210) == [Save(), Stop()]
    assert (m.phase, m.s.applied_lsn) == ("tail_closed", 210)
    assert m(CommitRequested) == [CommitTarget()]
    assert m(TargetCommitted) == [Save(), Stop()]
    assert m.s.target_committed
    assert m(CleanupRequested) == [CheckSourceFenced()]
    assert m(SourceFenceChecked, True) == [Save(), DeleteSourceRange()]
    assert m.s.source_cleanup == "started"
    assert m(SourceRangeDeleted) == [UnfenceSource()]
    assert m(SourceUnfenced) == [Save(), Stop()]
    assert m.phase == "done"
    assert m.s.fence_lsn is None
    # Both finishing steps are idempotent once done.
    assert m(CommitRequested) == [Stop()]
    assert m(CleanupRequested) == [Stop()]


def test_cleanup_may_come_before_commit() -> None:
    m = tail_closed(fence_lsn=250)
    assert m(CleanupRequested) == [CheckSourceFenced()]
    m(SourceFenceChecked, True)
    m(SourceRangeDeleted)
    assert m(SourceUnfenced) == [Save(), Stop()]
    assert (m.phase, m.s.source_cleanup) == ("tail_closed", "done")
    m(CommitRequested)
    m(TargetCommitted)
    assert m.phase == "done"


def test_a_target_that_holds_keys_of_the_ranges_is_refused() -> None:
    m = Machine()
    m(Start)
    message = failed(m(TargetCounted, 3))
    assert "already holds 3 keys of partitions 0-2047" in message
    assert m.phase == "preparing"  # nothing was done to the target


def test_unfence_rolls_a_cutover_back_and_the_catch_up_goes_on() -> None:
    m = catching_up()
    m(FenceRequested)
    m(SourceFenced, 180)
    assert m(UnfenceRequested) == [UnfenceSource()]
    assert m(SourceUnfenced) == [Save(), Stop()]
    assert (m.phase, m.s.fence_lsn) == ("catching_up", None)


# ------------------------------------------------------------------------- resume


@pytest.mark.parametrize(
    ("state", "first"),
    [
        ({}, [CountTarget()]),
        ({"phase": "preparing"}, [ClearTarget()]),
        ({"phase": "clearing"}, [ClearTarget()]),
        ({"phase": "clearing", "dump_id": "d"}, [DropDump("d")]),
        ({"phase": "catching_up", "l0": 1, "applied_lsn": 5}, [ReadMarker()]),
        ({"phase": "tail_closed", "l0": 1, "applied_lsn": 5}, [ReadMarker()]),
    ],
)
def test_resume_starts_where_the_state_says(state: dict[str, Any], first: list[Action]) -> None:
    assert steps(Machine(**state)(Start)) == first


def test_resume_of_an_interrupted_load_drops_the_dump_and_copies_again() -> None:
    m = Machine(phase="loading", l0=100, dump_id="d1")
    actions = m(Start)
    assert steps(actions) == [DropDump("d1")]
    assert any(isinstance(a, Report) and "load was interrupted" in a.message for a in actions)
    assert (m.phase, m.s.redo_count, m.s.l0) == ("clearing", 1, None)
    assert m(DumpDropped) == [Save(), ClearTarget()]
    assert m(TargetCleared) == [Save(), CountTarget()]
    assert m.phase == "preparing"
    m(TargetCounted, 0)
    m(ImportingMarked)
    assert m(DumpStarted, 500, "d2") == [Save(), LoadDump("d2", 500)]


def test_resume_of_a_preparation_clears_a_load_that_was_not_recorded() -> None:
    """Found by the chaos suite: the record said "preparing" while the target already held
    part of the load (the job record coalesces saves and the leader died); the resumed move
    refused the target's keys forever instead of clearing its own."""
    m = Machine(phase="preparing")
    assert m(Start)[-1] == ClearTarget()
    assert (m.phase, m.s.redo_count) == ("clearing", 1)
    assert m(TargetCleared) == [Save(), CountTarget()]
    m(TargetCounted, 0)
    assert m.phase == "preparing"


def test_resume_of_the_catch_up_follows_from_a_clean_marker() -> None:
    m = catching_up()
    m(Start)
    # The marker may be ahead of the saved applied_lsn: the target applied more since.
    assert steps(m(MarkerRead, 400, True)) == [FollowTail(400)]
    assert (m.phase, m.s.applied_lsn) == ("catching_up", 400)


def test_resume_after_the_tail_was_closed_follows_again() -> None:
    m = tail_closed()
    m(Start)
    assert steps(m(MarkerRead, 300, True)) == [FollowTail(300)]
    assert m.phase == "catching_up"


@pytest.mark.parametrize(
    ("lsn", "clean", "why"),
    [
        (None, False, "no resume marker"),
        (300, False, "part of the frames after LSN 300"),
        (50, True, "before the dump's L0"),
    ],
)
def test_resume_redoes_the_copy_when_the_marker_cannot_be_trusted(
    lsn: int | None, clean: bool, why: str
) -> None:
    m = catching_up()
    m(Start)
    actions = m(MarkerRead, lsn, clean)
    assert steps(actions) == [ClearTarget()]
    assert any(isinstance(a, Report) and why in a.message for a in actions)
    assert (m.phase, m.s.redo_count, m.s.applied_lsn) == ("clearing", 1, None)


def test_a_source_that_cannot_stream_any_more_means_redo() -> None:
    m = catching_up()
    actions = m(TailEnded, "redo", 170, "LSN 150 is older than the oldest kept log")
    assert steps(actions) == [ClearTarget()]
    assert m.phase == "clearing"


def test_a_redo_during_a_cutover_unfences_the_source_first() -> None:
    m = catching_up(fence_lsn=160)
    assert steps(m(TailEnded, "redo", 150, "FLUSHALL")) == [UnfenceSource()]
    assert steps(m(SourceUnfenced)) == [ClearTarget()]
    assert m.s.fence_lsn is None
    assert steps(m(TargetCleared)) == [CountTarget()]


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ({"phase": "done", "l0": 1, "applied_lsn": 1, "target_committed": True,
          "source_cleanup": "done"}, "nothing to run in phase done"),
        ({"phase": "cancelled"}, "nothing to run in phase cancelled"),
        ({"phase": "cancelling"}, "call cancel() to finish"),
        ({"phase": "tail_closed", "l0": 1, "applied_lsn": 1, "target_committed": True},
         "target committed"),
        ({"phase": "tail_closed", "l0": 1, "applied_lsn": 1, "source_cleanup": "started"},
         "source cleanup started"),
    ],
)  # fmt: skip
def test_run_refuses_when_there_is_nothing_left_to_copy(state: dict[str, Any], why: str) -> None:
    assert why in failed(Machine(**state)(Start))


# ------------------------------------------------------------------------- cancel


@pytest.mark.parametrize(
    ("state", "first"),
    [
        ({}, ClearTarget()),
        ({"phase": "preparing"}, ClearTarget()),
        ({"phase": "loading", "l0": 1, "dump_id": "d"}, DropDump("d")),
        ({"phase": "clearing", "dump_id": "d"}, DropDump("d")),
        ({"phase": "catching_up", "l0": 1, "applied_lsn": 2}, ClearTarget()),
        ({"phase": "catching_up", "l0": 1, "applied_lsn": 2, "fence_lsn": 3}, UnfenceSource()),
        ({"phase": "tail_closed", "l0": 1, "applied_lsn": 2}, ClearTarget()),
    ],
)
def test_cancel_cleans_the_target_from_any_phase_before_the_commit(
    state: dict[str, Any], first: Action
) -> None:
    m = Machine(**state)
    assert steps(m(CancelRequested)) == [first]
    assert m.phase == "cancelling"
    # A cancel resumed after a crash goes on from the saved state (cleaning again is fine).
    assert steps(Machine(**m.s.model_dump())(CancelRequested)) == [first]
    step = first
    for _ in range(5):
        if isinstance(step, UnfenceSource):
            actions = m(SourceUnfenced)
        elif isinstance(step, DropDump):
            actions = m(DumpDropped)
        elif isinstance(step, ClearTarget):
            actions = m(TargetCleared)
        else:
            assert step == UnmarkImporting()
            actions = m(ImportingUnmarked)
            break
        step = steps(actions)[0]
    assert actions[-1] == Stop()
    assert m.phase == "cancelled"
    assert (m.s.dump_id, m.s.fence_lsn, m.s.l0) == (None, None, None)
    assert m(CancelRequested) == [Stop()]


@pytest.mark.parametrize(
    "state",
    [
        {"target_committed": True},
        {"source_cleanup": "started"},
    ],
)
def test_cancel_is_refused_once_the_move_is_committed(state: dict[str, Any]) -> None:
    m = tail_closed(**state)
    assert "cannot cancel" in failed(m(CancelRequested))


# ------------------------------------------------------------------------- guards


def test_commit_needs_a_closed_tail_that_reached_the_fence() -> None:
    assert "close_tail() first" in failed(catching_up()(CommitRequested))
    assert "phase loading" in failed(Machine(phase="loading", l0=1, dump_id="d")(CommitRequested))
    m = tail_closed(fence_lsn=400)
    assert "before the fence's L1 400" in failed(m(CommitRequested))
    assert tail_closed(fence_lsn=300)(CommitRequested) == [CommitTarget()]


def test_cleanup_needs_a_closed_tail_and_a_fenced_source() -> None:
    assert "the tail would carry the deletions" in failed(catching_up()(CleanupRequested))
    m = tail_closed()
    m(CleanupRequested)
    assert "does not fence 0-2047" in failed(m(SourceFenceChecked, False))
    assert m.s.source_cleanup == "no"


def test_a_cleanup_resumed_after_its_unfence_just_finishes() -> None:
    m = tail_closed(target_committed=True, source_cleanup="started", fence_lsn=250)
    m(CleanupRequested)
    assert m(SourceFenceChecked, False) == [Save(), Stop()]
    assert m.phase == "done"
    m = tail_closed(source_cleanup="started", fence_lsn=250)
    m(CleanupRequested)
    assert m(SourceFenceChecked, True) == [DeleteSourceRange()]  # its DELRANGE, once more


def test_fencing_needs_the_catch_up() -> None:
    assert "cannot fence" in failed(Machine(phase="loading", l0=1, dump_id="d")(FenceRequested))
    assert "cannot unfence" in failed(tail_closed(target_committed=True)(UnfenceRequested))


def test_an_outcome_in_the_wrong_phase_is_a_driver_bug() -> None:
    with pytest.raises(AssertionError, match="DumpLoaded is not expected in phase preparing"):
        Machine(phase="preparing")(DumpLoaded)


# ------------------------------------------------------------------------- the state record


def test_the_state_is_small_json_and_strict() -> None:
    state = MoverState(ranges="10-20,0-5,6", phase="loading", l0=7, dump_id="ab")
    assert state.ranges == "0-6,10-20"
    again = MoverState.model_validate_json(state.model_dump_json())
    assert again == state
    with pytest.raises(ValidationError):
        MoverState.model_validate({"ranges": "0-1", "surprise": 1})
    with pytest.raises(ValidationError):
        MoverState(ranges="0-9000")
    with pytest.raises(ValidationError):
        MoverState(ranges="1", phase="flying")  # type: ignore[arg-type]


# ------------------------------------------------------------------------- simulation


class World:
    """Answers the machine's steps like the pgservers would, tracking what the target holds.

    `target` is the content the copy put on the target: ("dump", L0) and the frames applied
    after it; the source's log grows on its own. A crash replaces the machine by one built
    from the last saved state (the write-ahead record) and starts over with `Start`.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.saved = MoverState(ranges=RANGES)
        self.m = MoverMachine(self.saved)
        self.ids = count(1)
        self.log_end = 1000
        self.first_kept = 0
        self.target_keys = 0  # keys of the ranges on the target
        self.applied: list[int] = []  # frame ends applied after the dump
        self.dump_l0: int | None = None
        self.importing = False
        self.fenced = False
        self.dumps: set[str] = set()

    def handle(self, event: Event) -> list[Action]:
        actions = self.m.handle(event)
        self.m.validate()
        for action in actions:
            if isinstance(action, Save):
                self.saved = self.m.state
        return actions

    def answer(self, step: Action) -> Event:
        i = next(self.ids)
        self.log_end += self.rng.randrange(0, 50)
        match step:
            case CountTarget():
                return TargetCounted(i, self.target_keys)
            case MarkImporting():
                self.importing = True
                return ImportingMarked(i)
            case StartDump():
                dump_id = f"d{i}"
                self.dumps.add(dump_id)
                return DumpStarted(i, self.log_end, dump_id)
            case LoadDump(l0=l0):
                assert self.target_keys == 0, "loading on top of leftovers"
                self.target_keys, self.dump_l0, self.applied = 10, l0, []
                return DumpLoaded(i)
            case DropDump(dump_id=dump_id):
                self.dumps.discard(dump_id)
                return DumpDropped(i)
            case ClearTarget():
                self.target_keys, self.dump_l0, self.applied = 0, None, []
                return TargetCleared(i)
            case ReadMarker():
                end = self.applied[-1] if self.applied else self.dump_l0
                return MarkerRead(i, end, True)
            case FollowTail(lsn=lsn):
                assert self.dump_l0 is not None
                assert lsn == (self.applied[-1] if self.applied else self.dump_l0)
                if lsn < self.first_kept:
                    return TailEnded(i, "redo", lsn, "older than the oldest kept log")
                for _ in range(self.rng.randrange(4)):
                    self.applied.append(max(self.log_end, (self.applied or [lsn])[-1]))
                    self.handle(Applied(next(self.ids), self.applied[-1]))
                return TailEnded(i, "closed", self.applied[-1] if self.applied else lsn)
            case UnmarkImporting():
                self.importing = False
                return ImportingUnmarked(i)
            case CommitTarget():
                self.importing = False
                return TargetCommitted(i)
            case CheckSourceFenced():
                return SourceFenceChecked(i, self.fenced)
            case DeleteSourceRange():
                return SourceRangeDeleted(i)
            case FenceSource():
                self.fenced = True
                return SourceFenced(i, self.log_end)
            case UnfenceSource():
                self.fenced = False
                return SourceUnfenced(i)
        raise AssertionError(step)

    def operate(self, event: Event, crash_p: float) -> bool:
        """Drive one operation to its end; False if it crashed (or failed) on the way."""
        while True:
            actions = self.handle(event)
            if any(isinstance(a, Fail) for a in actions):
                return False
            if actions and actions[-1] == Stop():
                return True
            step = steps(actions)[-1]
            if self.rng.random() < crash_p:
                self.m = MoverMachine(self.saved)  # a new process, from the saved state
                return False
            event = self.answer(step)


@pytest.mark.parametrize("seed", range(200))
def test_random_crashes_never_load_twice_and_every_move_ends_done_or_cancelled(seed: int) -> None:
    rng = random.Random(seed)
    w = World(rng)
    cancel = rng.random() < 0.3
    for _ in range(200):
        s = w.m.state
        if s.phase in ("done", "cancelled"):
            break
        if (cancel and rng.random() < 0.3) or s.phase == "cancelling":
            w.operate(CancelRequested(next(w.ids)), 0.2)
        elif s.phase in ("new", "preparing", "loading", "clearing", "catching_up"):
            if rng.random() < 0.1:
                w.first_kept = w.log_end  # the source's log moved on
            w.operate(Start(next(w.ids)), 0.2)
        elif not s.target_committed and s.fence_lsn is None:
            if rng.random() < 0.3:
                w.operate(Start(next(w.ids)), 0.2)  # catch up more, then close again
            else:
                w.operate(FenceRequested(next(w.ids)), 0.2)
        elif not s.target_committed and (s.applied_lsn or 0) < (s.fence_lsn or 0):
            w.operate(Start(next(w.ids)), 0.2)  # fenced: apply up to L1 first
        elif not s.target_committed:
            w.operate(CommitRequested(next(w.ids)), 0.2)
        else:
            w.operate(CleanupRequested(next(w.ids)), 0.2)
    s = w.m.state
    assert s.phase in ("done", "cancelled"), s
    if s.phase == "cancelled":
        assert w.target_keys == 0
        assert not w.importing
        assert not w.fenced
    else:
        assert w.target_keys == 10
        assert not w.importing
        assert not w.fenced
    assert not w.dumps or s.phase == "done", "a dump was left holding the source's log"

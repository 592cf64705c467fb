"""confmaster.migration: one migration job's phases, rollbacks, cancels and resumes."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from confmaster.migration import (
    Action,
    Begin,
    BlockAndFence,
    CancelRequested,
    CleanTarget,
    CommitMap,
    CutoverFailed,
    Event,
    Fenced,
    Finished,
    Log,
    MapCommitted,
    MigrationConfig,
    MigrationJob,
    MoverFailed,
    Persist,
    Prepared,
    PrepareTarget,
    Progress,
    ReachedL1,
    Resume,
    RollForward,
    StartMover,
    StopMover,
    Tick,
    Unfence,
    WaitForL1,
)
from tessera.layout import MigrationJobPayload, MigrationPhase


def new_job(**fields: Any) -> MigrationJob:
    payload = MigrationJobPayload(
        id="j1", source_pg=0, target_pg=1, ranges=[(0, 2047)], block_budget_ms=3000, **fields
    )
    return MigrationJob(payload, MigrationConfig(cutover_lag_bytes=100, retry_backoff_ms=1000))


def phase_of(job: MigrationJob) -> str:
    """The job's phase (a call, so that type checkers do not narrow it between steps)."""
    return job.job.phase


def kinds(actions: list[Action]) -> list[type]:
    return [type(a) for a in actions if not isinstance(a, Log)]


def progress(applied: int, lag: int, copied: bool = True) -> Progress:
    return Progress(
        l0=10,
        keys_copied=5,
        bytes_copied=500,
        applied_lsn=applied,
        lag_bytes=lag,
        copied=copied,
        mover={"l0": 10, "applied": applied},
    )


def to_catchup(job: MigrationJob) -> None:
    job.handle(Begin(0))
    job.handle(Prepared(keys_total=5, bytes_total=500))
    job.handle(progress(50, 1000))


def to_wait(job: MigrationJob, now: int = 100) -> None:
    to_catchup(job)
    job.handle(progress(60, 10))
    job.handle(Tick(now))
    job.handle(Fenced(l1=70, now_ms=now + 5))


def test_happy_path_persists_each_phase_before_acting() -> None:
    job = new_job()
    out = job.handle(Begin(0))
    assert kinds(out) == [Persist, PrepareTarget]
    assert isinstance(out[0], Persist)
    assert out[0].job.phase == "prepare"
    out = job.handle(Prepared(keys_total=5, bytes_total=500))
    assert kinds(out) == [Persist, StartMover]
    assert phase_of(job) == "copy"
    assert job.handle(progress(20, 5000, copied=False)) == []
    out = job.handle(progress(50, 1000))
    assert kinds(out) == [Persist]
    assert phase_of(job) == "catchup"
    assert job.handle(Tick(50)) == []  # lag 1000 > 100: not yet
    job.handle(progress(60, 10))
    out = job.handle(Tick(100))
    assert kinds(out) == [Persist, BlockAndFence]
    assert phase_of(job) == "cutover"
    out = job.handle(Fenced(l1=70, now_ms=110))
    assert kinds(out) == [WaitForL1]  # no ZooKeeper write while gateways hold requests
    wait = out[0]
    assert isinstance(wait, WaitForL1)
    assert (wait.l1, wait.deadline_ms) == (70, 3100)
    out = job.handle(ReachedL1(now_ms=180))
    assert kinds(out) == [CommitMap]
    commit = out[0]
    assert isinstance(commit, CommitMap)
    assert commit.job.phase == "committed"
    assert commit.job.block_ms == [80]
    assert phase_of(job) == "cutover"  # not committed until the transaction lands
    out = job.handle(MapCommitted(ok=True, now_ms=190))
    assert kinds(out) == [RollForward]
    assert phase_of(job) == "committed"
    out = job.handle(Finished(now_ms=500))
    assert kinds(out) == [Persist]
    assert phase_of(job) == "done"
    assert job.job.finished_ms == 500
    assert job.handle(CancelRequested(600)) == []


def test_cutover_over_budget_rolls_back_and_retries_then_fails() -> None:
    job = new_job(max_attempts=2)
    to_wait(job)
    out = job.handle(CutoverFailed("target at 65 of 70 after 3000 ms", now_ms=3105))
    assert kinds(out) == [Persist, Unfence]
    assert phase_of(job) == "catchup"
    assert job.job.attempts == 1
    assert job.job.block_ms == [3005]
    assert job.handle(Tick(3500)) == []  # backing off
    out = job.handle(Tick(4200))
    assert kinds(out) == [Persist, BlockAndFence]
    job.handle(Fenced(l1=90, now_ms=4210))
    out = job.handle(CutoverFailed("too slow again", now_ms=7300))
    assert kinds(out) == [Persist, Unfence, StopMover, CleanTarget]
    assert phase_of(job) == "cancelling"
    assert "2 cutover attempts failed" in job.job.last_error
    job.handle(Finished(now_ms=8000))
    assert phase_of(job) == "failed"


def test_cancel_before_the_commit_point_cleans_the_target() -> None:
    for steps in (0, 1, 2):
        job = new_job()
        job.handle(Begin(0))
        if steps >= 1:
            job.handle(Prepared(1, 1))
        if steps >= 2:
            job.handle(progress(50, 1000))
        out = job.handle(CancelRequested(10))
        assert kinds(out) == [Persist, Unfence, StopMover, CleanTarget]
        assert phase_of(job) == "cancelling"
        assert job.handle(Tick(10_000)) == []  # nothing restarts while cancelling
        job.handle(Finished(20))
        assert phase_of(job) == "cancelled"


def test_cancel_during_the_wait_wins_over_reaching_l1() -> None:
    job = new_job()
    to_wait(job)
    out = job.handle(CancelRequested(120))
    assert kinds(out) == []
    out = job.handle(ReachedL1(now_ms=130))
    assert CommitMap not in kinds(out)
    assert kinds(out)[-3:] == [Unfence, StopMover, CleanTarget]
    job.handle(Finished(200))
    assert phase_of(job) == "cancelled"


def test_cancel_during_the_commit_is_decided_by_the_commit() -> None:
    landed = new_job()
    to_wait(landed)
    landed.handle(ReachedL1(now_ms=130))
    landed.handle(CancelRequested(131))
    out = landed.handle(MapCommitted(ok=True, now_ms=140))
    assert any(isinstance(a, Log) and "cancel refused" in a.message for a in out)
    assert kinds(out) == [RollForward]
    lost = new_job()
    to_wait(lost)
    lost.handle(ReachedL1(now_ms=130))
    lost.handle(CancelRequested(131))
    out = lost.handle(MapCommitted(ok=False, now_ms=140, error="version mismatch"))
    assert kinds(out) == [Persist, Unfence, StopMover, CleanTarget]
    lost.handle(Finished(150))
    assert phase_of(lost) == "cancelled"


def test_a_failed_map_write_is_still_before_the_commit_point() -> None:
    job = new_job()
    to_wait(job)
    job.handle(ReachedL1(now_ms=130))
    out = job.handle(MapCommitted(ok=False, now_ms=140, error="connection loss"))
    assert kinds(out) == [Persist, Unfence]
    assert phase_of(job) == "catchup"
    assert job.job.attempts == 1


def test_cancel_after_commit_is_refused() -> None:
    job = new_job()
    to_wait(job)
    job.handle(ReachedL1(now_ms=130))
    job.handle(MapCommitted(ok=True, now_ms=140))
    out = job.handle(CancelRequested(150))
    assert kinds(out) == []
    assert "already committed" in str(out)
    assert phase_of(job) == "committed"


def resumed(phase: MigrationPhase, **fields: Any) -> tuple[MigrationJob, list[Action]]:
    job = new_job(phase=phase, mover={"l0": 10, "applied": 55}, attempts=1, **fields)
    return job, job.handle(Resume(now_ms=1000))


def test_a_new_leader_rolls_back_before_the_commit_point_and_forward_after() -> None:
    job, out = resumed("prepare")
    assert kinds(out) == [Persist, PrepareTarget]
    for phase in ("copy", "catchup"):
        job, out = resumed(phase)
        assert kinds(out) == [Persist]
        out = job.handle(Tick(1000))
        assert kinds(out) == [StartMover]
        start = out[0]
        assert isinstance(start, StartMover)
        assert start.mover == {"l0": 10, "applied": 55}  # the tail resumes, no new dump
    job, out = resumed("cutover", l1=70)
    assert kinds(out) == [Persist, Unfence]
    assert phase_of(job) == "catchup"
    assert job.job.attempts == 2
    assert job.job.l1 is None
    job, out = resumed("committed")
    assert kinds(out) == [Persist, RollForward]
    job.handle(Finished(2000))
    assert phase_of(job) == "done"
    job, out = resumed("cancelling")
    assert kinds(out) == [Persist, Unfence, StopMover, CleanTarget]
    job, out = resumed("done")
    assert kinds(out) == []


def test_mover_failures_back_off_and_resume_then_give_up() -> None:
    job = new_job()
    job.config.max_mover_failures = 3
    to_catchup(job)
    out = job.handle(MoverFailed("source master changed", now_ms=100))
    assert kinds(out) == [Persist]
    assert job.handle(Tick(500)) == []
    out = job.handle(Tick(1100))
    assert kinds(out) == [StartMover]
    job.handle(MoverFailed("again", now_ms=1200))
    job.handle(Tick(3300))
    out = job.handle(MoverFailed("and again", now_ms=3400))
    assert kinds(out) == [Persist, Unfence, StopMover, CleanTarget]
    job.handle(Finished(4000))
    assert phase_of(job) == "failed"


def test_a_mover_failure_during_the_wait_rolls_the_cutover_back() -> None:
    job = new_job()
    to_wait(job)
    out = job.handle(MoverFailed("target master changed", now_ms=150))
    assert kinds(out) == [Persist, Unfence]
    assert phase_of(job) == "catchup"
    out = job.handle(Tick(5000))
    assert kinds(out) == [StartMover]


EVENTS = st.one_of(
    st.builds(Tick, st.integers(0, 100_000)),
    st.builds(Prepared, st.integers(0, 10), st.integers(0, 10)),
    st.builds(
        lambda a, lag, c: progress(a, lag, c),
        st.integers(0, 100),
        st.integers(0, 200),
        st.booleans(),
    ),
    st.builds(MoverFailed, st.just("boom"), st.integers(0, 100_000)),
    st.builds(Fenced, st.integers(0, 100), st.integers(0, 100_000)),
    st.builds(CutoverFailed, st.just("slow"), st.integers(0, 100_000)),
    st.builds(ReachedL1, st.integers(0, 100_000)),
    st.builds(MapCommitted, st.booleans(), st.integers(0, 100_000)),
    st.builds(Finished, st.integers(0, 100_000)),
    st.builds(CancelRequested, st.integers(0, 100_000)),
    st.builds(Resume, st.integers(0, 100_000)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(EVENTS, max_size=40))
def test_any_event_order_keeps_the_commit_point_rules(events: list[Event]) -> None:
    job = new_job()
    job.handle(Begin(0))
    cancelled = committed = False
    for event in events:
        before = job.job.phase
        out = job.handle(event)
        for action in out:
            if isinstance(action, Persist) and action.job.phase == "cancelling":
                cancelled = True
            if isinstance(action, CommitMap):
                assert not cancelled, "committing a job that is rolling back"
        if job.job.phase == "committed":
            committed = True
        if committed:
            assert job.job.phase in ("committed", "done"), "left the committed path"
        if before != job.job.phase and job.job.phase != "committed":
            persisted = [a.job.phase for a in out if isinstance(a, Persist)]
            assert job.job.phase in persisted, "a phase change was not persisted"

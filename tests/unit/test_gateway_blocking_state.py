"""gateway.blocking.BlockState: the block / redirect / unblock state machine, step by step."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.blocking import (
    AdminReply,
    Block,
    BlockState,
    Drained,
    Expire,
    Redirect,
    Release,
    Tick,
    Unblock,
    UpdateMap,
    WaitDrain,
)
from tessera.partition import PARTITIONS

R1 = ((0, 99),)
R2 = ((100, 199), (300, 300))
B = "127.0.0.1:7001"


class Machine:
    """A BlockState whose invariants are checked after every step."""

    def __init__(self, hold_timeout_s: float = 1.0, max_held: int = 100_000) -> None:
        self.state: BlockState[str] = BlockState(hold_timeout_s, max_held)
        self.state.validate()

    def __call__(self, event: Any) -> list[Any]:
        actions = self.state.handle(event)
        self.state.validate()
        return actions

    def hold(self, job: str, item: str, now: float) -> bool:
        held = self.state.hold(job, item, now)
        self.state.validate()
        return held

    def blocked(self, pn: int) -> str | None:
        return self.state.blocked_job[pn]


@pytest.fixture
def m() -> Machine:
    return Machine()


# ---------------------------------------------------------------------- BLOCK


def test_block_when_idle_replies_at_once_and_blocks_exactly_its_ranges(m: Machine) -> None:
    assert m(Block("j", R2, inflight=0)) == [AdminReply("j")]
    assert [m.blocked(pn) for pn in (99, 100, 199, 200, 299, 300, 301)] == [
        None,
        "j",
        "j",
        None,
        None,
        "j",
        None,
    ]
    assert sum(job is not None for job in m.state.blocked_job) == 101
    assert m.state.describe() == ["j 100-199,300 held=0 blocked"]


def test_block_with_inflight_waits_for_drain_then_replies(m: Machine) -> None:
    assert m(Block("j", R1, inflight=3)) == [WaitDrain("j", R1)]
    assert m.blocked(0) == "j"  # requests are held from the BLOCK on, not from the reply
    assert m.state.describe() == ["j 0-99 held=0 draining"]
    assert m(Drained("j")) == [AdminReply("j")]
    assert m.state.describe() == ["j 0-99 held=0 blocked"]
    assert m(Drained("j")) == []  # a second drain notice changes nothing
    assert m(Drained("nobody")) == []


def test_repeated_block_is_idempotent(m: Machine) -> None:
    assert m(Block("j", R1, inflight=2)) == [WaitDrain("j", R1)]
    assert m(Block("j", R1, inflight=2)) == [WaitDrain("j", R1)]  # still draining
    assert m(Drained("j")) == [AdminReply("j")]
    assert m(Block("j", R1, inflight=5)) == [AdminReply("j")]  # already drained: OK at once
    assert list(m.state.jobs) == ["j"]


def test_block_of_same_job_with_other_ranges_is_refused(m: Machine) -> None:
    m(Block("j", R1, inflight=0))
    assert m(Block("j", R2, inflight=0)) == [
        AdminReply("j", "ERR job j already blocks other ranges")
    ]
    assert m.blocked(150) is None
    assert m.state.jobs["j"].ranges == R1


def test_overlapping_jobs_are_refused_without_blocking_anything(m: Machine) -> None:
    m(Block("a", ((100, 199),), inflight=0))
    # 0-99 is free, 100 is taken: the whole BLOCK is refused, 0-99 stays free.
    assert m(Block("b", ((0, 150),), inflight=0)) == [
        AdminReply("b", "ERR partition 100 is already blocked by job a")
    ]
    assert m.blocked(0) is None
    assert "b" not in m.state.jobs
    assert m(Block("b", ((200, 300),), inflight=0)) == [AdminReply("b")]  # adjacent is fine


@pytest.mark.parametrize("ranges", [((5, 4),), ((-1, 3),), ((0, PARTITIONS),)])
def test_block_of_invalid_range_is_refused(m: Machine, ranges: tuple[tuple[int, int]]) -> None:
    (first, last), *_ = ranges
    assert m(Block("j", ranges, inflight=0)) == [
        AdminReply("j", f"ERR partition range {first}-{last} is invalid")
    ]
    assert m.state.jobs == {}
    assert all(job is None for job in m.state.blocked_job)


# ---------------------------------------------------------------------- REDIRECT


def test_redirect_updates_the_map_first_then_releases_held_items_in_order(m: Machine) -> None:
    m(Block("j", R1, inflight=0))
    for i, item in enumerate(["a", "b", "c"]):
        assert m.hold("j", item, now=float(i) / 10)
    assert m.state.held_count == 3
    actions = m(Redirect("j", R1, B, version=7, current_version=6))
    assert actions == [UpdateMap(R1, B, 7), Release(("a", "b", "c")), AdminReply("j")]
    assert m.state.held_count == 0
    assert m.state.jobs == {}
    assert all(job is None for job in m.state.blocked_job)


def test_redirect_with_nothing_held_just_updates_the_map(m: Machine) -> None:
    m(Block("j", R2, inflight=0))
    assert m(Redirect("j", R2, B, 1, 0)) == [UpdateMap(R2, B, 1), AdminReply("j")]


def test_repeated_redirect_is_idempotent(m: Machine) -> None:
    m(Block("j", R1, inflight=0))
    m(Redirect("j", R1, B, 1, 0))
    # The gateway's map now has version 1: the same REDIRECT again is a no-op OK.
    assert m(Redirect("j", R1, B, 1, 1)) == [AdminReply("j")]
    assert m(Redirect("j", R1, B, 1, 2)) == [AdminReply("j")]


def test_redirect_of_unknown_job_with_newer_version_is_refused(m: Machine) -> None:
    assert m(Redirect("j", R1, B, 2, 1)) == [AdminReply("j", "ERR job j is not blocking anything")]


def test_redirect_with_other_ranges_is_refused_and_keeps_the_block(m: Machine) -> None:
    m(Block("j", R1, inflight=0))
    m.hold("j", "x", now=0)
    assert m(Redirect("j", R2, B, 1, 0)) == [AdminReply("j", "ERR job j blocks other ranges")]
    assert m.blocked(0) == "j"
    assert m.state.held_count == 1
    assert m(Redirect("j", R1, B, 1, 0)) == [UpdateMap(R1, B, 1), Release(("x",)), AdminReply("j")]


def test_redirect_only_ends_its_own_job(m: Machine) -> None:
    m(Block("a", R1, inflight=0))
    m(Block("b", R2, inflight=0))
    m.hold("a", "a1", 0)
    m.hold("b", "b1", 0)
    assert m(Redirect("a", R1, B, 1, 0)) == [UpdateMap(R1, B, 1), Release(("a1",)), AdminReply("a")]
    assert m.blocked(0) is None
    assert m.blocked(100) == "b"
    assert m.state.held_count == 1


# ---------------------------------------------------------------------- UNBLOCK


def test_unblock_releases_held_items_in_order_to_the_old_owner(m: Machine) -> None:
    m(Block("j", R2, inflight=0))
    for item in ["1", "2", "3", "4"]:
        m.hold("j", item, now=0.5)
    assert m(Unblock("j")) == [Release(("1", "2", "3", "4")), AdminReply("j")]
    assert m.state.jobs == {}
    assert m.state.held_count == 0
    assert m.blocked(100) is None


def test_unblock_is_idempotent(m: Machine) -> None:
    assert m(Unblock("never-blocked")) == [AdminReply("never-blocked")]
    m(Block("j", R1, inflight=0))
    assert m(Unblock("j")) == [AdminReply("j")]
    assert m(Unblock("j")) == [AdminReply("j")]


def test_unblock_while_draining_ends_the_job(m: Machine) -> None:
    assert m(Block("j", R1, inflight=1)) == [WaitDrain("j", R1)]
    assert m(Unblock("j")) == [AdminReply("j")]
    assert m(Drained("j")) == []  # the late drain notice is ignored
    assert m.blocked(0) is None


def test_partitions_can_be_blocked_again_after_a_job_ends(m: Machine) -> None:
    m(Block("a", R1, inflight=0))
    m(Unblock("a"))
    assert m(Block("b", R1, inflight=0)) == [AdminReply("b")]
    m(Redirect("b", R1, B, 1, 0))
    assert m(Block("c", R1, inflight=0)) == [AdminReply("c")]


# ---------------------------------------------------------------------- deadlines and limits


def test_tick_expires_only_items_past_their_deadline() -> None:
    m = Machine(hold_timeout_s=1.0)
    m(Block("a", R1, inflight=0, lease_s=10))
    m(Block("b", R2, inflight=0, lease_s=10))
    m.hold("a", "a-early", now=0.0)
    m.hold("b", "b-early", now=0.2)
    m.hold("a", "a-late", now=0.5)
    m.hold("b", "b-late", now=0.9)
    assert m(Tick(0.99)) == []
    assert m.state.held_count == 4
    assert m(Tick(1.3)) == [Expire(("a-early", "b-early"))]
    assert m.state.held_count == 2
    assert m(Tick(1.3)) == []
    assert m(Tick(1.6)) == [Expire(("a-late",))]
    # What did not expire is still released by the job's end, and expired items are not.
    assert m(Unblock("b")) == [Release(("b-late",)), AdminReply("b")]
    assert m(Unblock("a")) == [AdminReply("a")]
    assert m.state.held_count == 0


def test_tick_with_nothing_held_does_nothing(m: Machine) -> None:
    assert m(Tick(1e9)) == []
    m(Block("j", R1, inflight=0, now=100.0))
    assert m(Tick(100.5)) == []
    assert m.blocked(0) == "j"


def test_a_block_nobody_ends_is_lifted_when_its_lease_runs_out() -> None:
    # The confmaster died between BLOCK and REDIRECT: the partitions must not stay blocked.
    m = Machine(hold_timeout_s=5.0)
    m(Block("j", R1, inflight=0, now=10.0, lease_s=2.0))
    m.hold("j", "held", now=10.5)
    assert m(Tick(11.9)) == []
    assert m(Tick(12.0)) == [
        Release(("held",)),
        AdminReply("j", "ERR job j: block lease expired"),
    ]
    assert m.blocked(0) is None
    assert not m.state.jobs
    # Without a lease of its own the block lasts twice the hold timeout.
    m(Block("k", R1, inflight=0, now=20.0))
    assert m(Tick(29.9)) == []
    assert m.blocked(0) == "k"
    assert m(Tick(30.0)) == [AdminReply("k", "ERR job k: block lease expired")]


def test_redirect_never_takes_the_map_back_to_an_older_version(m: Machine) -> None:
    # ZooKeeper already gave the gateway a newer route (say, a failover after the commit).
    m(Block("j", R1, inflight=0))
    m.hold("j", "held", now=0.0)
    assert m(Redirect("j", R1, B, 5, current_version=6)) == [
        Release(("held",)),
        AdminReply("j"),
    ]


def test_hold_limit_counts_items_of_all_jobs() -> None:
    m = Machine(max_held=3)
    m(Block("a", R1, inflight=0, lease_s=1000))
    m(Block("b", R2, inflight=0, lease_s=1000))
    assert m.hold("a", "1", 0)
    assert m.hold("b", "2", 0)
    assert m.hold("a", "3", 0)
    assert not m.hold("b", "4", 0)  # refused, not queued
    assert m.state.held_count == 3
    assert m(Unblock("b")) == [Release(("2",)), AdminReply("b")]
    m(Block("b", R2, inflight=0, lease_s=1000))
    assert m.hold("b", "5", 0)  # room again after a release
    assert not m.hold("a", "6", 0)
    assert m(Tick(100.0)) == [Expire(("1", "3", "5"))]
    assert m.hold("a", "7", 100.0)  # and after an expiry

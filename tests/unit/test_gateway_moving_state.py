"""gateway.moving.MovingHolds: requests refused with TRYAGAIN partition, held and retried."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.moving import (
    BackendLost,
    Expire,
    Fail,
    MapChanged,
    MovingHolds,
    Refresh,
    Resend,
    Tick,
)

A = ("127.0.0.1:7000", False)
B = ("127.0.0.1:7001", False)


class Machine:
    """MovingHolds with its invariants checked after every step (retry 0.05 s, cap 0.4 s)."""

    def __init__(self, max_held: int = 100) -> None:
        self.state: MovingHolds[str] = MovingHolds(0.05, 0.4, max_held)
        self.state.validate()

    def __call__(self, event: Any) -> list[Any]:
        actions = self.state.handle(event)
        self.state.validate()
        return actions

    def hold(
        self,
        item: str,
        pns: tuple[int, ...] = (5,),
        *,
        key: object = A,
        deadline: float = 5.0,
        attempts: int = 0,
        now: float = 0.0,
    ) -> bool:
        held = self.state.hold(item, pns, key, deadline, attempts, now)
        self.state.validate()
        return held


@pytest.fixture
def m() -> Machine:
    return Machine()


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [(0, 0.05), (1, 0.1), (2, 0.2), (3, 0.4), (4, 0.4), (100, 0.4)],
)
def test_backoff_doubles_up_to_the_cap(m: Machine, attempts: int, delay: float) -> None:
    assert m.state.delay(attempts) == pytest.approx(delay)


def test_nothing_happens_before_the_retry_time(m: Machine) -> None:
    assert m.hold("a")
    assert m(Tick(0.049)) == []
    assert m.state.count == 1


def test_retry_time_sends_everything_again_in_order_and_asks_for_a_fresh_map(m: Machine) -> None:
    assert m.hold("a", (5,), now=0.0)
    assert m.hold("b", (6,), now=0.01)
    assert m.hold("c", (5, 7), now=0.02)
    assert m.state.pn_held[5] == 2
    assert m.state.touches([7, 100])
    assert m(Tick(0.05)) == [Refresh(), Resend(("a", "b", "c"))]
    assert m.state.count == 0
    assert not m.state.touches([5, 6, 7])


def test_the_oldest_request_sets_the_retry_time(m: Machine) -> None:
    # "a" was retried twice already (backoff 0.2); "b" is new but waits behind it.
    assert m.hold("a", attempts=2, now=1.0)
    assert m.hold("b", now=1.0)
    assert m(Tick(1.1)) == []
    assert m(Tick(1.2)) == [Refresh(), Resend(("a", "b"))]


def test_a_new_map_sends_everything_again_at_once(m: Machine) -> None:
    assert m(MapChanged()) == []
    assert m.hold("a", attempts=3)
    assert m.hold("b")
    assert m(MapChanged()) == [Resend(("a", "b"))]
    assert m.state.count == 0


def test_deadline_passed_expires_only_those_and_keeps_order_of_the_rest(m: Machine) -> None:
    assert m.hold("a", deadline=1.0, attempts=5)  # retried a lot: retry at 0.4
    assert m.hold("b", deadline=3.0, attempts=5)
    assert m.hold("c", deadline=0.3, attempts=5)
    assert m(Tick(0.3)) == [Expire(("c",))]
    assert m(Tick(0.39)) == []
    assert m(Tick(1.0)) == [Expire(("a",)), Refresh(), Resend(("b",))]


def test_a_lost_backend_fails_only_its_requests(m: Machine) -> None:
    assert m.hold("a", key=A)
    assert m.hold("b", (9,), key=B)
    assert m.hold("c", key=A)
    assert m(BackendLost(A)) == [Fail(("a", "c"))]
    assert m(BackendLost(A)) == []
    assert m.state.pn_held[5] == 0
    assert m.state.pn_held[9] == 1


def test_the_limit_refuses_more_requests() -> None:
    m = Machine(max_held=2)
    assert m.hold("a")
    assert m.hold("b")
    assert not m.hold("c")
    assert m.state.count == 2


def test_duplicate_partitions_are_counted_and_released_symmetrically(m: Machine) -> None:
    assert m.hold("mget", (5, 5, 6))
    assert m.state.pn_held[5] == 2
    assert m(MapChanged()) == [Resend(("mget",))]
    assert m.state.pn_held[5] == 0

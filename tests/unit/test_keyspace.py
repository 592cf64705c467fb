"""Keyspace behaviour with an injected clock: expiry (lazy and active), rename, scan, random."""

from __future__ import annotations

import gc
import time
from collections import deque

import pytest

from pgserver.keyspace import Keyspace
from pgserver.zset import ZSet
from tessera.errors import CommandError
from tessera.gcstats import freeze_startup_heap
from tessera.partition import PARTITIONS, pn


class Clock:
    """Milliseconds since the epoch, moved by hand."""

    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class Timer:
    """A perf_counter stand-in that advances `step` seconds every time it is read."""

    def __init__(self, step: float, events: list[str] | None = None) -> None:
        self.step = step
        self.value = 0.0
        self.reads = 0
        self.events = events

    def __call__(self) -> float:
        self.reads += 1
        if self.events is not None:
            self.events.append("timer")
        self.value += self.step
        return self.value


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ks(clock: Clock) -> Keyspace:
    return Keyspace(clock=clock)


def _advance(ks: Keyspace, clock: Clock, ms: int) -> None:
    clock.now += ms
    ks.tick()


def test_set_get_delete_and_partition_index(ks: Keyspace) -> None:
    ks.set(b"a", b"1")
    ks.add_new(b"h", {b"f": b"v"})
    assert ks.get(b"a") == b"1"
    assert b"a" in ks.keys_in_partition(pn(b"a"))
    assert len(ks) == 2
    with pytest.raises(CommandError, match="WRONGTYPE"):
        ks.get_typed(b"h", deque)
    with pytest.raises(CommandError, match="WRONGTYPE"):
        ks.get_string(b"h")
    assert ks.delete(b"a")
    assert not ks.delete(b"a")
    assert b"a" not in ks.keys_in_partition(pn(b"a"))
    assert ks.get(b"a") is None


def test_the_partition_index_is_invisible_to_the_cycle_collector(ks: Keyspace) -> None:
    """A full collection must not walk the keys: with a million keys in sets of the
    partition index it stalled every client for ~100 ms (docs/benchmarks.md)."""
    for i in range(20_000):
        ks.set(b"s%d" % i, b"v")
        ks.add_new(b"h%d" % i, {b"field": b"v"})
    ks.delete(b"s0")
    gc.collect()
    assert not gc.is_tracked(ks.expires)
    assert not any(gc.is_tracked(keys) for keys in ks.by_partition)
    assert sum(len(keys) for keys in ks.by_partition) == len(ks.data) == 39_999


def test_a_frozen_keyspace_is_out_of_the_collectors_sight() -> None:
    """Frozen while empty (as a server does before serving), `data` stays out of every
    collection even once hashes and lists are stored in it."""
    ks = Keyspace()
    try:
        freeze_startup_heap(ks.data)
        ks.add_new(b"h", {b"field": b"v"})
        ks.add_new(b"l", deque([b"x"]))
        ks.set(b"s", b"v")
        tracked = gc.get_objects()
        assert not any(obj is ks.data for obj in tracked)
        assert ks.data[b"s"] == b"v"
        assert len(ks.data) == 3
    finally:
        gc.unfreeze()


def test_lazy_expiry_keeps_the_deadline_millisecond(ks: Keyspace, clock: Clock) -> None:
    expired: list[bytes] = []
    ks.on_expired = expired.append
    ks.set(b"k", b"v")
    ks.set_expire(b"k", clock.now + 10)
    _advance(ks, clock, 10)
    assert ks.get(b"k") == b"v"  # Redis: expired only once now > deadline
    assert not ks.is_expired(b"k")
    _advance(ks, clock, 1)
    assert ks.is_expired(b"k")
    assert b"k" in ks.data  # is_expired does not delete
    assert ks.get(b"k") is None
    assert expired == [b"k"]
    assert ks.expired_keys == 1
    assert b"k" not in ks.expires
    assert b"k" not in ks.keys_in_partition(pn(b"k"))


def test_every_lookup_expires(ks: Keyspace, clock: Clock) -> None:
    values: list[tuple[bytes, object]] = [
        (b"s", b"v"),
        (b"h", {b"f": b"v"}),
        (b"l", deque([b"a"])),
        (b"z", ZSet()),
    ]
    for key, value in values:
        ks.set(key, value)  # type: ignore[arg-type]
        ks.set_expire(key, clock.now)
    _advance(ks, clock, 1)
    assert ks.get_string(b"s") is None
    assert ks.get_typed(b"h", dict) is None
    assert not ks.exists(b"l")
    assert not ks.delete(b"z")
    assert len(ks) == 0
    assert ks.expired_keys == 4


def test_overwrite_clears_or_keeps_ttl(ks: Keyspace, clock: Clock) -> None:
    ks.set(b"k", b"v")
    ks.set_expire(b"k", clock.now + 100)
    ks.set(b"k", b"w", keep_ttl=True)
    assert ks.get_expire(b"k") == clock.now + 100
    ks.set(b"k", b"x")
    assert ks.get_expire(b"k") is None
    ks.set_expire(b"k", clock.now + 100)
    assert ks.persist(b"k")
    assert not ks.persist(b"k")
    _advance(ks, clock, 1000)
    assert ks.get(b"k") == b"x"


def test_active_expire_deletes_only_due_keys(ks: Keyspace, clock: Clock) -> None:
    expired: list[bytes] = []
    ks.on_expired = expired.append
    for i in range(10):
        ks.set(b"k%d" % i, b"v")
        ks.set_expire(b"k%d" % i, clock.now + i)
    ks.set(b"forever", b"v")
    assert ks.active_expire() == 0
    _advance(ks, clock, 5)  # k0..k4 are past their deadline, k5 is at it
    assert ks.active_expire() == 5
    assert sorted(expired) == [b"k0", b"k1", b"k2", b"k3", b"k4"]
    assert b"k5" in ks.data
    clock.now += 100  # active_expire reads the clock itself
    assert ks.active_expire() == 5
    assert set(ks.data) == {b"forever"}
    assert ks.expired_keys == 10
    assert ks.active_expire() == 0


def test_active_expire_skips_stale_deadlines(ks: Keyspace, clock: Clock) -> None:
    now = clock.now
    ks.set(b"persisted", b"v")
    ks.set_expire(b"persisted", now + 1)
    ks.persist(b"persisted")
    ks.set(b"extended", b"v")
    ks.set_expire(b"extended", now + 1)
    ks.set_expire(b"extended", now + 1000)
    ks.set(b"recreated", b"v")
    ks.set_expire(b"recreated", now + 1)
    ks.delete(b"recreated")
    ks.set(b"recreated", b"v2")
    ks.set(b"overwritten", b"v")
    ks.set_expire(b"overwritten", now + 1)
    ks.set(b"overwritten", b"v2")
    ks.set(b"due", b"v")
    ks.set_expire(b"due", now + 1)
    ks.set_expire(b"due", now + 2)
    clock.now += 10
    assert ks.active_expire() == 1
    assert set(ks.data) == {b"persisted", b"extended", b"recreated", b"overwritten"}
    clock.now += 1000
    assert ks.active_expire() == 1
    assert b"extended" not in ks.data


def test_active_expire_respects_its_budget(clock: Clock) -> None:
    events: list[str] = []
    timer = Timer(step=0.0002, events=events)  # each read of the timer "costs" 0.2 ms
    ks = Keyspace(clock=clock, timer=timer)
    ks.on_expired = lambda key: events.append("deleted")
    for i in range(1000):
        ks.set(b"k%d" % i, b"v")
        ks.set_expire(b"k%d" % i, clock.now)
    clock.now += 1
    first = ks.active_expire(budget_s=0.001)
    assert 0 < first < 1000
    runs = "".join("d" if e == "deleted" else "|" for e in events).split("|")
    assert max(len(run) for run in runs) <= 8  # the timer is read every 8 entries
    total = first
    for _ in range(1000):
        if not ks.data:
            break
        total += ks.active_expire(budget_s=0.001)
    assert total == 1000
    assert ks.expired_keys == 1000


def test_stale_deadlines_count_against_the_budget(clock: Clock) -> None:
    timer = Timer(step=0.0005)
    ks = Keyspace(clock=clock, timer=timer)
    for i in range(5000):
        ks.set(b"k%d" % i, b"v")
        ks.set_expire(b"k%d" % i, clock.now)
        ks.persist(b"k%d" % i)
    clock.now += 1
    assert ks.active_expire(budget_s=0.001) == 0
    assert timer.reads <= 3
    assert ks._deadlines, "one call must not drain thousands of stale entries"
    assert len(ks) == 5000


def test_active_expire_real_time_budget(clock: Clock) -> None:
    ks = Keyspace(clock=clock)
    expired: list[bytes] = []
    ks.on_expired = expired.append
    for i in range(50_000):
        key = b"k%d" % i
        ks.add_new(key, b"v")
        ks.set_expire(key, clock.now)
    clock.now += 1
    start = time.perf_counter()
    removed = ks.active_expire(budget_s=0.001)
    elapsed = time.perf_counter() - start
    assert 0 < removed < 50_000
    assert len(expired) == removed
    assert elapsed < 0.01


def test_deadline_heap_stays_bounded(ks: Keyspace, clock: Clock) -> None:
    ks.set(b"k", b"v")
    for i in range(10_000):
        ks.set_expire(b"k", clock.now + 1000 + i)
    assert len(ks._deadlines) <= 2 * len(ks.expires) + 1025
    clock.now += 20_000
    assert ks.active_expire() == 1


def test_flush_forgets_deadlines(ks: Keyspace, clock: Clock) -> None:
    ks.set(b"k", b"v")
    ks.set_expire(b"k", clock.now + 1)
    ks.flush()
    assert not ks._deadlines
    assert len(ks) == 0
    clock.now += 10
    assert ks.active_expire() == 0


def test_rename_moves_value_ttl_and_index(ks: Keyspace, clock: Clock) -> None:
    ks.set(b"src", b"v")
    ks.set_expire(b"src", clock.now + 50)
    ks.set(b"dst", b"old")
    ks.set_expire(b"dst", clock.now + 9999)
    ks.rename(b"src", b"dst")
    assert ks.get(b"src") is None
    assert ks.get(b"dst") == b"v"
    assert ks.get_expire(b"dst") == clock.now + 50
    assert b"src" not in ks.keys_in_partition(pn(b"src"))
    assert b"dst" in ks.keys_in_partition(pn(b"dst"))
    ks.set(b"plain", b"p")
    ks.rename(b"plain", b"dst")
    assert ks.get_expire(b"dst") is None
    clock.now += 100
    assert ks.active_expire() == 0  # the moved deadline went stale with the overwrite
    assert ks.get(b"dst") == b"p"


def test_rename_deadline_fires_on_the_new_name(ks: Keyspace, clock: Clock) -> None:
    ks.set(b"a", b"v")
    ks.set_expire(b"a", clock.now + 5)
    ks.rename(b"a", b"b")
    clock.now += 10
    assert ks.active_expire() == 1
    assert len(ks) == 0


def _full_scan(ks: Keyspace, count: int) -> list[bytes]:
    cursor, found = ks.scan(0, count)
    calls = 1
    while cursor:
        cursor, more = ks.scan(cursor, count)
        found += more
        calls += 1
        assert calls <= PARTITIONS
    return found


@pytest.mark.parametrize("count", [1, 3, 10, 1000])
def test_scan_returns_every_key_once(ks: Keyspace, count: int) -> None:
    keys = {b"key:%d" % i for i in range(2000)} | {b"{tag}%d" % i for i in range(50)}
    for key in keys:
        ks.set(key, b"v")
    found = _full_scan(ks, count)
    assert len(found) == len(keys)
    assert set(found) == keys


def test_scan_bounds(ks: Keyspace) -> None:
    assert ks.scan(0, 10) == (0, [])
    ks.set(b"k", b"v")
    assert ks.scan(PARTITIONS, 10) == (0, [])
    assert ks.scan(2**64 - 1, 10) == (0, [])
    cursor, found = ks.scan(0, 1)
    assert cursor < PARTITIONS
    # count bounds the partitions visited per call: 100 * count
    assert cursor <= 100 or found == [b"k"]


def test_scan_survives_changes_between_calls(ks: Keyspace) -> None:
    stable = {b"s%d" % i for i in range(500)}
    for key in stable:
        ks.set(key, b"v")
    cursor, found = ks.scan(0, 20)
    seen = list(found)
    i = 0
    while cursor:
        ks.set(b"new%d" % i, b"v")
        ks.delete(b"new%d" % (i - 1))
        i += 1
        cursor, found = ks.scan(cursor, 20)
        seen += found
    stable_seen = [k for k in seen if k in stable]
    assert len(stable_seen) == len(stable)
    assert set(stable_seen) == stable


def test_random_key(ks: Keyspace, clock: Clock) -> None:
    assert ks.random_key() is None
    ks.set(b"only", b"v")
    assert ks.random_key() == b"only"
    for i in range(10):
        ks.set(b"k%d" % i, b"v")
    assert {ks.random_key() for _ in range(300)} == {b"only"} | {b"k%d" % i for i in range(10)}


def test_random_key_large_keyspace(ks: Keyspace) -> None:
    keys = {b"k%d" % i for i in range(5000)}
    for key in keys:
        ks.set(key, b"v")
    picked = {ks.random_key() for _ in range(500)}
    assert picked <= keys
    assert len(picked) > 300


def test_random_key_sparse_large_keyspace(ks: Keyspace) -> None:
    """Many keys in few partitions: probing mostly misses, the walk still finds them."""
    keys = [b"{a}%d" % i for i in range(400)] + [b"{b}%d" % i for i in range(400)]
    for key in keys:
        ks.set(key, b"v")
    picked = {ks.random_key() for _ in range(200)}
    assert any(k.startswith(b"{a}") for k in picked if k)
    assert any(k.startswith(b"{b}") for k in picked if k)


def test_random_key_skips_and_deletes_expired(ks: Keyspace, clock: Clock) -> None:
    for i in range(300):
        ks.set(b"e%d" % i, b"v")
        ks.set_expire(b"e%d" % i, clock.now)
    _advance(ks, clock, 1)
    assert ks.random_key() is None
    assert len(ks) == 0
    for i in range(300):
        ks.set(b"e%d" % i, b"v")
        ks.set_expire(b"e%d" % i, clock.now)
    ks.set(b"live", b"v")
    _advance(ks, clock, 1)
    assert ks.random_key() == b"live"


def test_partition_ranges(ks: Keyspace, clock: Clock) -> None:
    for i in range(100):
        ks.set(b"k%d" % i, b"v")
    ks.set_expire(b"k1", clock.now + 5)
    assert ks.count_range(0, PARTITIONS - 1) == 100
    dumped = {key: when for key, _, when in ks.iter_range(0, PARTITIONS - 1)}
    assert len(dumped) == 100
    assert dumped[b"k1"] == clock.now + 5
    p = pn(b"k1")
    assert ks.delete_range(p, p) >= 1
    assert b"k1" not in ks.data
    assert b"k1" not in ks.expires


def test_slave_applies_its_masters_del_of_an_expired_key(ks: Keyspace, clock: Clock) -> None:
    """A slave never expires on its own, so the master's DEL is what frees the key."""
    ks.passive = True
    ks.set(b"k", b"v")
    ks.set_expire(b"k", clock.now + 5)
    _advance(ks, clock, 10)
    assert ks.get(b"k") is None
    assert b"k" in ks.data  # passive: still held until the master says so
    assert ks.delete(b"k") is False  # it already read as absent
    assert b"k" not in ks.data
    assert b"k" not in ks.expires
    assert not ks.by_partition[pn(b"k")]


def _keys_in(partitions: range, count: int) -> list[bytes]:
    """`count` distinct keys whose partition lies in `partitions`."""
    found: list[bytes] = []
    i = 0
    while len(found) < count:
        key = b"key:%d" % i
        if pn(key) in partitions:
            found.append(key)
        i += 1
    return found


def test_importing_partitions_are_hidden_from_listings(ks: Keyspace) -> None:
    hidden = _keys_in(range(0, 4096), 300)
    shown = _keys_in(range(4096, PARTITIONS), 300)
    for key in hidden + shown:
        ks.set(key, b"v")
    ks.start_importing([(0, 4095)])
    assert ks.visible_len() == 300
    assert len(ks) == 600  # still stored
    assert sorted(ks.visible_keys()) == sorted(shown)
    scanned: list[bytes] = []
    cursor = 0
    while True:
        cursor, keys = ks.scan(cursor, 10)
        scanned += keys
        if cursor == 0:
            break
    assert sorted(scanned) == sorted(shown)
    assert {ks.random_key() for _ in range(200)} <= set(shown)
    ks.stop_importing([(0, 4095)])
    assert ks.visible_len() == 600
    assert sorted(ks.visible_keys()) == sorted(hidden + shown)


def test_random_key_with_only_importing_keys_is_none(ks: Keyspace) -> None:
    for key in _keys_in(range(0, 10), 5):
        ks.set(key, b"v")
    ks.start_importing([(0, 10)])
    assert ks.random_key() is None


def test_importing_keys_never_expire_until_the_import_ends(ks: Keyspace, clock: Clock) -> None:
    """The source decides: its DEL arrives with the catch-up, the target never expires."""
    (imported,) = _keys_in(range(0, 100), 1)
    (local,) = _keys_in(range(100, PARTITIONS), 1)
    ks.start_importing([(0, 99)])
    for key in (imported, local):
        ks.set(key, b"v")
        ks.set_expire(key, clock.now + 5)
    _advance(ks, clock, 10)
    assert ks.get(imported) == b"v"  # lazy expiry leaves it
    assert ks.active_expire(1.0) == 1  # the local key only
    assert ks.get(local) is None
    assert imported in ks.data
    assert ks.expired_keys == 1
    ks.stop_importing([(0, 99)])
    assert ks.active_expire(1.0) == 1  # its parked deadline is back on the heap
    assert imported not in ks.data
    assert ks.expired_keys == 2

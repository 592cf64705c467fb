"""The keyspace: values, expiry times and a per-partition key index.

Values are plain Python objects, one type per Redis type:
  bytes -> string, dict -> hash, deque -> list, set -> set, ZSet -> sorted set.
Every key is also filed under its partition number, so counting, dumping or deleting a
partition range costs time proportional to the keys in that range, not to the keyspace.
That index is a dict per partition (keys -> None), not a set: a dict holding only bytes is
invisible to Python's cycle collector, while 8192 sets holding a million keys made every
full collection walk them all (~60-100 ms with 1M keys, a pause every client saw). The
server also freezes `data` before serving (tessera.gcstats.freeze_startup_heap).
Expiry is lazy on access plus an active sweep driven by a heap of deadlines.

Migration marks partitions (docs/migration-pgserver.md): keys of *importing* partitions
are being copied in from another group, so listings (DBSIZE, KEYS, SCAN, RANDOMKEY) skip
them and they never expire here (their source logs the DEL); *fenced* partitions are
being handed over and the dispatcher refuses commands on their keys.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import repeat

from pgserver.zset import ZSet
from tessera.errors import CommandError
from tessera.partition import PARTITIONS, PartitionSet
from tessera.partition import pn as partition_of

Value = bytes | dict[bytes, bytes] | deque[bytes] | set[bytes] | ZSet
# The keys of one partition (values unused). A dict, not a set: see the module docstring.
KeyIndex = dict[bytes, None]

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"

TYPE_NAMES: dict[type, bytes] = {
    bytes: b"string",
    dict: b"hash",
    deque: b"list",
    set: b"set",
    ZSet: b"zset",
}


# Below this many keys RANDOMKEY picks uniformly from all keys (cheap at this size).
_SMALL_KEYSPACE = 256


def now_ms() -> int:
    return int(time.time() * 1000)


class Keyspace:
    """One database of keys. Not thread-safe; owned by the server's event loop."""

    def __init__(
        self,
        clock: Callable[[], int] = now_ms,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        # `clock` gives ms since the epoch (key deadlines); `timer` measures the active
        # sweep's work budget. Both are injectable for tests.
        self.data: dict[bytes, Value] = {}
        self.expires: dict[bytes, int] = {}
        self.by_partition: list[KeyIndex] = [{} for _ in range(PARTITIONS)]
        self._deadlines: list[tuple[int, bytes]] = []
        self._clock = clock
        self._timer = timer
        self.now = clock()
        # Called with the key whenever expiry (lazy or active) deletes it; the log
        # issue turns these into logged deletions.
        self.on_expired: Callable[[bytes], None] | None = None
        # A slave's keyspace: expired keys read as absent but are only deleted by the DELs
        # its master logs, so replicas never diverge by expiring on their own clock.
        self.passive = False
        self.expired_keys = 0
        # Migration marks: they outlive FLUSHALL and reloads clear them only to restore
        # them from the checkpoint and the log (see Durability.recover).
        self.importing = PartitionSet()
        self.fenced = PartitionSet()
        # Deadlines the active sweep reached while their partition was importing: put
        # back on the heap when the import ends, so those keys then expire as usual.
        self._parked: list[tuple[int, bytes]] = []

    # ------------------------------------------------------------------ time

    def tick(self) -> int:
        """Refresh the cached clock (once per batch of commands, as Redis does per command)."""
        self.now = self._clock()
        return self.now

    # ------------------------------------------------------------------ lookup

    def _expired(self, key: bytes) -> bool:
        # As in Redis (keyIsExpired), a key is still alive during its deadline millisecond.
        when = self.expires.get(key)
        if when is not None and when < self.now:
            if self.importing.count and self.importing.flags[partition_of(key)]:
                return False  # its source decides; the DEL arrives with the catch-up
            if not self.passive:
                self._expire(key)
            return True
        return False

    def get(self, key: bytes) -> Value | None:
        """The live value of `key` (deleting it first if its TTL has passed)."""
        value = self.data.get(key)
        if value is not None and self.expires and self._expired(key):
            return None
        return value

    def get_typed(self, key: bytes, kind: type) -> Value | None:
        """The value if it exists and has type `kind`; WRONGTYPE if another type."""
        value = self.data.get(key)
        if value is None:
            return None
        if self.expires and self._expired(key):
            return None
        if type(value) is not kind:
            raise CommandError(WRONGTYPE)
        return value

    def get_string(self, key: bytes) -> bytes | None:
        value = self.data.get(key)
        if value is None:
            return None
        if self.expires and self._expired(key):
            return None
        if type(value) is not bytes:
            raise CommandError(WRONGTYPE)
        return value

    def exists(self, key: bytes) -> bool:
        return self.get(key) is not None

    def __len__(self) -> int:
        return len(self.data)

    # ------------------------------------------------------------------ mutation

    def set(self, key: bytes, value: Value, keep_ttl: bool = False) -> None:
        """Create or overwrite `key`; the TTL is cleared unless keep_ttl."""
        data = self.data
        if key not in data:
            self.by_partition[partition_of(key)][key] = None
        elif not keep_ttl and self.expires:
            self.expires.pop(key, None)
        data[key] = value

    def add_new(self, key: bytes, value: Value) -> None:
        """Store a value under a key known not to exist (e.g. a fresh hash for HSET)."""
        self.by_partition[partition_of(key)][key] = None
        self.data[key] = value

    def delete(self, key: bytes) -> bool:
        """Remove `key` and its TTL; True if it existed (expired keys count as absent).

        A passive keyspace (a slave) keeps expired keys until its master's DEL arrives:
        that DEL must remove them even though they already read as absent.
        """
        if key not in self.data:
            return False
        if self.expires and self._expired(key):
            if key in self.data:
                self._remove(key)
            return False
        self._remove(key)
        return True

    def _remove(self, key: bytes) -> None:
        del self.data[key]
        if self.expires:
            self.expires.pop(key, None)
        self.by_partition[partition_of(key)].pop(key, None)

    def rename(self, src: bytes, dst: bytes) -> None:
        """Move live `src` (value and TTL) to `dst`, replacing whatever `dst` held."""
        value = self.data[src]
        when = self.expires.get(src) if self.expires else None
        self._remove(src)
        self.set(dst, value)
        if when is not None:
            self.set_expire(dst, when)

    def remove_if_empty(self, key: bytes, value: Value) -> None:
        """Delete a collection key that became empty (Redis never keeps empty collections)."""
        if not value:
            self._remove(key)

    def flush(self) -> None:
        self.data.clear()
        self.expires.clear()
        for keys in self.by_partition:
            keys.clear()
        self._deadlines.clear()
        self._parked.clear()

    # ------------------------------------------------------------------ expiry

    def set_expire(self, key: bytes, when_ms: int) -> None:
        """Set an absolute expiry (ms since epoch) on an existing key."""
        self.expires[key] = when_ms
        heapq.heappush(self._deadlines, (when_ms, key))
        if len(self._deadlines) > 2 * len(self.expires) + 1024:
            self._deadlines = [(w, k) for k, w in self.expires.items()]
            heapq.heapify(self._deadlines)
            self._parked.clear()  # the rebuilt heap holds those deadlines again

    def get_expire(self, key: bytes) -> int | None:
        return self.expires.get(key)

    def persist(self, key: bytes) -> bool:
        return self.expires.pop(key, None) is not None

    def _expire(self, key: bytes) -> None:
        self._remove(key)
        self.expired_keys += 1
        if self.on_expired is not None:
            self.on_expired(key)

    def is_expired(self, key: bytes) -> bool:
        """Whether `key` has a passed deadline, without deleting it (KEYS must not write)."""
        when = self.expires.get(key)
        return when is not None and when < self.now

    def active_expire(self, budget_s: float = 0.001) -> int:
        """Delete keys whose deadline passed, for at most about `budget_s` of work.

        Pops the deadline heap in order; entries made stale by PERSIST, a new TTL or a
        deletion are skipped. The timer is read every few entries (stale or not, and
        on_expired may be slow), so one call never holds the event loop much longer than
        the budget. Returns the number of keys deleted.
        """
        heap = self._deadlines
        if not heap or self.passive:
            return 0
        now = self.tick()
        if heap[0][0] >= now:
            return 0
        timer = self._timer
        stop = timer() + budget_s
        expires = self.expires
        pop = heapq.heappop
        importing = self.importing.flags if self.importing.count else None
        removed = 0
        steps = 0
        while heap and heap[0][0] < now:
            when, key = pop(heap)
            if expires.get(key) == when:
                if importing is not None and importing[partition_of(key)]:
                    self._parked.append((when, key))
                else:
                    self._expire(key)
                    removed += 1
            steps += 1
            if not steps & 7 and timer() >= stop:
                break
        return removed

    # ------------------------------------------------------------------ partitions

    def keys_in_partition(self, partition: int) -> KeyIndex:
        return self.by_partition[partition]

    def count_range(self, first: int, last: int) -> int:
        return sum(len(self.by_partition[p]) for p in range(first, last + 1))

    def iter_range(self, first: int, last: int) -> Iterator[tuple[bytes, Value, int | None]]:
        """(key, value, expire_ms) for every key in partitions first..last."""
        for p in range(first, last + 1):
            for key in list(self.by_partition[p]):
                value = self.data.get(key)
                if value is not None:
                    yield key, value, self.expires.get(key)

    def delete_range(self, first: int, last: int) -> int:
        removed = 0
        for p in range(first, last + 1):
            for key in list(self.by_partition[p]):
                self._remove(key)
                removed += 1
        return removed

    def pop_keys(
        self, partition: int, limit: int, keys_out: list[bytes], big_out: list[object], big: int
    ) -> int:
        """Remove up to `limit` keys of one partition, expired or not, appending them to
        `keys_out` and their values with more than `big` elements to `big_out` (a background
        range deletion frees those a piece at a time); returns how many it removed."""
        keys = self.by_partition[partition]
        data = self.data
        count = min(limit, len(keys))
        pop, pop_value, append = keys.popitem, data.pop, keys_out.append
        for _ in range(count):
            key = pop()[0]
            value = pop_value(key)
            append(key)
            if type(value) is not bytes and len(value) > big:
                big_out.append(value)
        expires = self.expires
        if expires and count:
            for key in keys_out[-count:]:
                expires.pop(key, None)
        return count

    def install_strings(self, partition: int, keys: list[bytes], values: list[bytes]) -> None:
        """SET each key (all of `partition`) to its value, clearing any TTL: what a run of
        `SET key value` does, in a few C-level dict operations (TSR.LOADSTRINGS)."""
        expires = self.expires
        if expires:
            deque(map(expires.pop, keys, repeat(None)), maxlen=0)
        self.by_partition[partition].update(dict.fromkeys(keys))
        self.data.update(zip(keys, values, strict=True))

    def drop_partition(self, partition: int, big_out: list[object], big: int) -> int:
        """Remove every key of one partition, expired or not; values with more than `big`
        elements go to `big_out` (a background deletion frees those a piece at a time).
        Returns how many keys it removed."""
        keys = self.by_partition[partition]
        count = len(keys)
        if not count:
            return 0
        values = list(map(self.data.pop, keys, repeat(None)))
        if self.expires:
            deque(map(self.expires.pop, keys, repeat(None)), maxlen=0)
        keys.clear()
        if set(map(type, values)) != {bytes}:
            big_out.extend(v for v in values if type(v) is not bytes and len(v) > big)  # type: ignore[arg-type]
        return count

    # ------------------------------------------------------------------ migration marks

    def start_importing(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Hide these partitions from listings and stop expiring their keys."""
        return self.importing.add(ranges)

    def stop_importing(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Show these partitions again; their keys expire from now on as any other."""
        removed = self.importing.remove(ranges)
        if removed and self._parked:
            flags = self.importing.flags
            still: list[tuple[int, bytes]] = []
            for entry in self._parked:
                if flags[partition_of(entry[1])]:
                    still.append(entry)
                else:
                    heapq.heappush(self._deadlines, entry)
            self._parked = still
        return removed

    def visible_len(self) -> int:
        """Number of keys clients may see (DBSIZE): importing partitions do not count."""
        if not self.importing.count:
            return len(self.data)
        by_partition = self.by_partition
        hidden = sum(len(by_partition[p]) for p in self.importing.members())
        return len(self.data) - hidden

    def visible_keys(self) -> Iterable[bytes]:
        """Every key clients may see (KEYS), importing partitions left out."""
        if not self.importing.count:
            return self.data
        flags = self.importing.flags
        by_partition = self.by_partition
        return itertools.chain.from_iterable(
            by_partition[p] for p in range(PARTITIONS) if not flags[p]
        )

    # ------------------------------------------------------------------ iteration

    def random_key(self) -> bytes | None:
        """A random live key, or None when the keyspace is empty.

        Small keyspaces pick uniformly; large ones pick a random non-empty partition
        (probing, then walking on from a random start) and a key inside it.
        """
        if self.importing.count:
            return self._random_visible_key()
        data = self.data
        by_partition = self.by_partition
        randrange = random.randrange
        while data:
            if len(data) <= _SMALL_KEYSPACE:
                key = random.choice(tuple(data))
            else:
                for _ in range(64):
                    keys = by_partition[randrange(PARTITIONS)]
                    if keys:
                        break
                else:
                    p = randrange(PARTITIONS)
                    while not by_partition[p]:
                        p = (p + 1) % PARTITIONS
                    keys = by_partition[p]
                key = random.choice(tuple(keys))
            if self.get(key) is not None:
                return key
        return None

    def _random_visible_key(self) -> bytes | None:
        """RANDOMKEY while partitions are importing: a random key of a visible partition."""
        flags = self.importing.flags
        by_partition = self.by_partition
        candidates = [p for p in range(PARTITIONS) if by_partition[p] and not flags[p]]
        while candidates:
            p = random.choice(candidates)
            keys = by_partition[p]
            if not keys:
                candidates.remove(p)
                continue
            key = random.choice(tuple(keys))
            if self.get(key) is not None:
                return key
        return None

    def scan(self, cursor: int, count: int) -> tuple[int, list[bytes]]:
        """Partition-granular SCAN: the cursor is the next partition to visit (0 = done).

        Whole partitions are returned at once, so a key present for the whole scan is
        returned exactly once, whatever changes in between. A call visits at most
        100 * count partitions (empty ones are cheap), so it stays bounded. Keys are
        returned as stored: the caller filters expired ones. Importing partitions are
        skipped.
        """
        if not self.data or cursor >= PARTITIONS:
            return 0, []
        by_partition = self.by_partition
        hidden = self.importing.flags if self.importing.count else None
        found: list[bytes] = []
        p = cursor
        limit = min(PARTITIONS, cursor + count * 100)
        while p < limit:
            keys = by_partition[p]
            p += 1
            if keys and (hidden is None or not hidden[p - 1]):
                found.extend(keys)
                if len(found) >= count:
                    break
        return (0 if p >= PARTITIONS else p), found

    def live(self, keys: Iterable[bytes]) -> list[bytes]:
        """Those of `keys` that have not expired (expiring the rest)."""
        return [k for k in keys if self.get(k) is not None]

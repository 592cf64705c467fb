"""The keyspace: values, expiry times and a per-partition key index.

Values are plain Python objects, one type per Redis type:
  bytes -> string, dict -> hash, deque -> list, set -> set, ZSet -> sorted set.
Every key is also filed under its partition number, so counting, dumping or deleting a
partition range costs time proportional to the keys in that range, not to the keyspace.
Expiry is lazy on access plus an active sweep driven by a heap of deadlines.
"""

from __future__ import annotations

import heapq
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from pgserver.zset import ZSet
from tessera.errors import CommandError
from tessera.partition import PARTITIONS
from tessera.partition import pn as partition_of

Value = bytes | dict[bytes, bytes] | deque[bytes] | set[bytes] | ZSet

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"

TYPE_NAMES: dict[type, bytes] = {
    bytes: b"string",
    dict: b"hash",
    deque: b"list",
    set: b"set",
    ZSet: b"zset",
}


def now_ms() -> int:
    return int(time.time() * 1000)


class Keyspace:
    """One database of keys. Not thread-safe; owned by the server's event loop."""

    def __init__(self, clock: Callable[[], int] = now_ms) -> None:
        self.data: dict[bytes, Value] = {}
        self.expires: dict[bytes, int] = {}
        self.by_partition: list[set[bytes]] = [set() for _ in range(PARTITIONS)]
        self._deadlines: list[tuple[int, bytes]] = []
        self._clock = clock
        self.now = clock()
        # Called with the key whenever expiry (lazy or active) deletes it; the log
        # issue turns these into logged deletions.
        self.on_expired: Callable[[bytes], None] | None = None
        self.expired_keys = 0

    # ------------------------------------------------------------------ time

    def tick(self) -> int:
        """Refresh the cached clock (once per batch of commands, as Redis does per command)."""
        self.now = self._clock()
        return self.now

    # ------------------------------------------------------------------ lookup

    def _expired(self, key: bytes) -> bool:
        when = self.expires.get(key)
        if when is not None and when <= self.now:
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
            self.by_partition[partition_of(key)].add(key)
        elif not keep_ttl and self.expires:
            self.expires.pop(key, None)
        data[key] = value

    def add_new(self, key: bytes, value: Value) -> None:
        """Store a value under a key known not to exist (e.g. a fresh hash for HSET)."""
        self.by_partition[partition_of(key)].add(key)
        self.data[key] = value

    def delete(self, key: bytes) -> bool:
        """Remove `key` and its TTL; True if it existed (expired keys count as absent)."""
        if key not in self.data:
            return False
        if self.expires and self._expired(key):
            return False
        self._remove(key)
        return True

    def _remove(self, key: bytes) -> None:
        del self.data[key]
        if self.expires:
            self.expires.pop(key, None)
        self.by_partition[partition_of(key)].discard(key)

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

    # ------------------------------------------------------------------ expiry

    def set_expire(self, key: bytes, when_ms: int) -> None:
        """Set an absolute expiry (ms since epoch) on an existing key."""
        self.expires[key] = when_ms
        heapq.heappush(self._deadlines, (when_ms, key))
        if len(self._deadlines) > 2 * len(self.expires) + 1024:
            self._deadlines = [(w, k) for k, w in self.expires.items()]
            heapq.heapify(self._deadlines)

    def get_expire(self, key: bytes) -> int | None:
        return self.expires.get(key)

    def persist(self, key: bytes) -> bool:
        return self.expires.pop(key, None) is not None

    def _expire(self, key: bytes) -> None:
        self._remove(key)
        self.expired_keys += 1
        if self.on_expired is not None:
            self.on_expired(key)

    def active_expire(self, budget_s: float = 0.001) -> int:
        """Delete keys whose deadline passed, stopping after `budget_s` of work."""
        heap = self._deadlines
        if not heap:
            return 0
        now = self.tick()
        deadline = time.perf_counter() + budget_s
        removed = 0
        expires = self.expires
        while heap and heap[0][0] <= now:
            when, key = heapq.heappop(heap)
            if expires.get(key) == when:
                self._expire(key)
                removed += 1
                if removed % 32 == 0 and time.perf_counter() > deadline:
                    break
        return removed

    # ------------------------------------------------------------------ partitions

    def keys_in_partition(self, partition: int) -> set[bytes]:
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

    # ------------------------------------------------------------------ iteration

    def random_key(self) -> bytes | None:
        """A random live key, or None when the keyspace is empty."""
        while self.data:
            for _ in range(64):
                keys = self.by_partition[random.randrange(PARTITIONS)]
                if keys:
                    break
            else:
                keys = next(k for k in self.by_partition if k)
            key = random.choice(tuple(keys))
            if self.get(key) is not None:
                return key
        return None

    def scan(self, cursor: int, count: int) -> tuple[int, list[bytes]]:
        """Partition-granular SCAN: the cursor is the next partition to visit (0 = done).

        Whole partitions are returned at once, so a key present for the whole scan is
        returned exactly once, whatever changes in between.
        """
        found: list[bytes] = []
        p = cursor
        visited = 0
        while p < PARTITIONS:
            keys = self.by_partition[p]
            p += 1
            visited += 1
            if keys:
                found.extend(keys)
            if len(found) >= count or visited >= count * 100:
                break
        return (0 if p >= PARTITIONS else p), found

    def live(self, keys: Iterable[bytes]) -> list[bytes]:
        """Those of `keys` that have not expired (expiring the rest)."""
        return [k for k in keys if self.get(k) is not None]

"""Sorted set value: member -> score dict plus a sorted index of (score, member).

The index is a `SortedList` of (score, member) tuples, which orders exactly as Redis does
(by score, ties by member bytes), so ranks and score/lex ranges are bisections.

Redis stores small sorted sets as a listpack, which writes scores as text and so turns
-0 into 0; big ones (more than 128 members, or a member longer than 64 bytes) as a
skiplist, which keeps -0. `listpack` tracks which one Redis would be using so that the
sign of a zero score (visible in ZSCORE replies) matches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from sortedcontainers import SortedList

# redis.conf defaults: zset-max-listpack-entries / zset-max-listpack-value.
LISTPACK_MAX_ENTRIES = 128
LISTPACK_MAX_VALUE = 64

_INF = math.inf
_nextafter = math.nextafter

Item = tuple[float, bytes]

# Kinds of a lex range end: the special "-" and "+" strings, or a real string.
LEX_MIN = -1
LEX_STR = 0
LEX_MAX = 1


class LexRange:
    """A ZRANGEBYLEX interval, with Redis's sdscmplex rules for the "-" and "+" ends."""

    __slots__ = ("max", "maxex", "maxkind", "min", "minex", "minkind")

    def __init__(
        self, minkind: int, min_: bytes, minex: bool, maxkind: int, max_: bytes, maxex: bool
    ) -> None:
        self.minkind = minkind
        self.min = min_
        self.minex = minex
        self.maxkind = maxkind
        self.max = max_
        self.maxex = maxex

    def empty(self) -> bool:
        """True for ranges that can never match anything (zslIsInLexRange's first test)."""
        a, b = self.minkind, self.maxkind
        if a == b and a != LEX_STR:
            cmp = 0
        elif a == LEX_MIN or b == LEX_MAX:
            cmp = -1
        elif a == LEX_MAX or b == LEX_MIN:
            cmp = 1
        else:
            cmp = (self.min > self.max) - (self.min < self.max)
        return cmp > 0 or (cmp == 0 and (self.minex or self.maxex))

    def gte_min(self, value: bytes) -> bool:
        kind = self.minkind
        if kind != LEX_STR:
            return kind == LEX_MIN
        return value > self.min if self.minex else value >= self.min

    def lte_max(self, value: bytes) -> bool:
        kind = self.maxkind
        if kind != LEX_STR:
            return kind == LEX_MAX
        return value < self.max if self.maxex else value <= self.max


class ZSet:
    """Members ordered by (score, member) as Redis orders them."""

    __slots__ = ("index", "listpack", "scores")

    def __init__(self) -> None:
        self.scores: dict[bytes, float] = {}
        self.index: SortedList = SortedList()
        self.listpack = True

    @classmethod
    def from_scores(cls, scores: dict[bytes, float]) -> ZSet:
        """A set built at once (ZUNIONSTORE): a skiplist, made a listpack if small enough."""
        zset = cls()
        if len(scores) <= LISTPACK_MAX_ENTRIES and all(
            len(m) <= LISTPACK_MAX_VALUE for m in scores
        ):
            for member, score in scores.items():
                if score == 0.0:
                    scores[member] = 0.0
        else:
            zset.listpack = False
        zset.scores = scores
        zset.index = SortedList([(s, m) for m, s in scores.items()])
        return zset

    @classmethod
    def load(cls, scores: dict[bytes, float], listpack: bool) -> ZSet:
        """Rebuild a saved set exactly (checkpoints): scores as given, encoding as saved.

        Re-adding members one by one would instead replay the listpack rules and could
        turn a big set's -0 scores into 0.
        """
        zset = cls()
        zset.listpack = listpack
        zset.scores = scores
        zset.index = SortedList([(s, m) for m, s in scores.items()])
        return zset

    @property
    def encoding(self) -> bytes:
        """What OBJECT ENCODING would say in Redis."""
        return b"listpack" if self.listpack else b"skiplist"

    def __len__(self) -> int:
        return len(self.scores)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.index)

    def add(self, member: bytes, score: float) -> bool:
        """Insert or re-score `member`; True if it is new."""
        scores = self.scores
        old = scores.get(member)
        if old is not None:
            if old == score:
                return False
            if score == 0.0 and self.listpack:
                score = 0.0
            index = self.index
            index.remove((old, member))
            index.add((score, member))
            scores[member] = score
            return False
        if self.listpack:
            # Redis converts before inserting, so the new member keeps a -0 score.
            if len(member) > LISTPACK_MAX_VALUE or len(scores) >= LISTPACK_MAX_ENTRIES:
                self.listpack = False
            elif score == 0.0:
                score = 0.0
        scores[member] = score
        self.index.add((score, member))
        return True

    def remove(self, member: bytes) -> bool:
        score = self.scores.pop(member, None)
        if score is None:
            return False
        self.index.remove((score, member))
        return True

    def rank(self, member: bytes, reverse: bool = False) -> int | None:
        """0-based position of `member` in score order (or from the top); O(log n)."""
        score = self.scores.get(member)
        if score is None:
            return None
        rank: int = self.index.bisect_left((score, member))
        return len(self.scores) - 1 - rank if reverse else rank

    def items(self, start: int, stop: int, reverse: bool = False) -> list[Item]:
        """index[start:stop] (reversed if asked); O(log n + k)."""
        if start >= stop:
            return []
        return list(self.index.islice(start, stop, reverse=reverse))

    def delete_slice(self, start: int, stop: int) -> int:
        """Remove the members at positions start..stop-1; how many were removed."""
        if start >= stop:
            return 0
        index = self.index
        scores = self.scores
        if start == 0 and stop >= len(index):
            removed = len(index)
            index.clear()
            scores.clear()
            return removed
        for _score, member in index.islice(start, stop):
            del scores[member]
        del index[start:stop]
        return stop - start

    def pop(self, count: int, highest: bool) -> list[Item]:
        """Remove and return up to `count` members from the bottom (or top), in that order."""
        n = len(self.scores)
        if count >= n:
            popped = list(reversed(self.index)) if highest else list(self.index)
            self.index.clear()
            self.scores.clear()
            return popped
        if highest:
            popped = list(self.index.islice(n - count, n, reverse=True))
            del self.index[n - count :]
        else:
            popped = list(self.index.islice(0, count))
            del self.index[:count]
        scores = self.scores
        for _score, member in popped:
            del scores[member]
        return popped

    # ------------------------------------------------------------------ score ranges

    def score_bounds(self, lo: float, loex: bool, hi: float, hiex: bool) -> tuple[int, int]:
        """[start, stop) positions of the scores inside the interval; O(log n)."""
        if lo > hi or (lo == hi and (loex or hiex)):
            return 0, 0
        index = self.index
        n = len(index)
        if loex:
            start = n if lo == _INF else index.bisect_left((_nextafter(lo, _INF),))
        else:
            start = index.bisect_left((lo,))
        if hiex:
            stop = index.bisect_left((hi,))
        else:
            stop = n if hi == _INF else index.bisect_left((_nextafter(hi, _INF),))
        return start, max(start, stop)

    # ------------------------------------------------------------------ lex ranges

    def _uniform(self) -> bool:
        """All scores equal: members are then in lex order and lex ranges can bisect."""
        index = self.index
        return bool(index) and index[0][0] == index[-1][0]

    def _lex_first(self, r: LexRange) -> int | None:
        """Position of the first member in range, walking forward as Redis's listpack does.

        With mixed scores lex ranges are undefined in Redis; this reproduces what the
        listpack encoding (every small set) answers.
        """
        index = self.index
        if r.empty() or not index:
            return None
        if not (r.gte_min(index[-1][1]) and r.lte_max(index[0][1])):
            return None
        gte_min = r.gte_min
        for pos, (_score, member) in enumerate(index):
            if gte_min(member):
                return pos if r.lte_max(member) else None
        return None

    def _lex_last(self, r: LexRange) -> int | None:
        """Position of the last member in range, walking backward from the top."""
        index = self.index
        if r.empty() or not index:
            return None
        if not (r.gte_min(index[-1][1]) and r.lte_max(index[0][1])):
            return None
        lte_max = r.lte_max
        pos = len(index)
        for _score, member in reversed(index):
            pos -= 1
            if lte_max(member):
                return pos if r.gte_min(member) else None
        return None

    def _lex_bisect(self, r: LexRange) -> tuple[int, int]:
        """[start, stop) of a lex range when all scores are equal; O(log n)."""
        if r.empty():
            return 0, 0
        index = self.index
        n = len(index)
        score = index[0][0]
        kind = r.minkind
        if kind == LEX_MIN:
            start = 0
        elif kind == LEX_MAX:
            start = n
        elif r.minex:
            start = index.bisect_right((score, r.min))
        else:
            start = index.bisect_left((score, r.min))
        kind = r.maxkind
        if kind == LEX_MAX:
            stop = n
        elif kind == LEX_MIN:
            stop = 0
        elif r.maxex:
            stop = index.bisect_left((score, r.max))
        else:
            stop = index.bisect_right((score, r.max))
        return start, max(start, stop)

    def lex_bounds(self, r: LexRange) -> tuple[int, int]:
        """[start, stop) of the run of members Redis counts or deletes for a lex range."""
        if self._uniform():
            return self._lex_bisect(r)
        first = self._lex_first(r)
        if first is None:
            return 0, 0
        stop = first
        lte_max = r.lte_max
        for _score, member in self.index.islice(first):
            if not lte_max(member):
                break
            stop += 1
        return first, stop

    def lex_range(self, r: LexRange, reverse: bool, offset: int, limit: int) -> list[Item]:
        """ZRANGEBYLEX with LIMIT: skip `offset` members unchecked, then take while in range."""
        index = self.index
        n = len(index)
        if offset < 0 or (offset > 0 and offset >= n):
            return []
        if self._uniform():
            start, stop = self._lex_bisect(r)
            if reverse:
                stop -= offset
                if limit >= 0:
                    start = max(start, stop - limit)
                return self.items(start, stop, reverse=True)
            start += offset
            if limit >= 0:
                stop = min(stop, start + limit)
            return self.items(start, stop)
        out: list[Item] = []
        if reverse:
            last = self._lex_last(r)
            if last is None:
                return out
            pos = last - offset
            gte_min = r.gte_min
            while pos >= 0 and limit != 0:
                item = index[pos]
                if not gte_min(item[1]):
                    break
                out.append(item)
                pos -= 1
                limit -= 1
            return out
        first = self._lex_first(r)
        if first is None:
            return out
        pos = first + offset
        lte_max = r.lte_max
        while pos < n and limit != 0:
            item = index[pos]
            if not lte_max(item[1]):
                break
            out.append(item)
            pos += 1
            limit -= 1
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ZSet) and self.scores == other.scores

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ZSet({self.scores!r})"

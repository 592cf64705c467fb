"""Sorted set value: member -> score dict plus a sorted index of (score, member)."""

from __future__ import annotations

from sortedcontainers import SortedList


class ZSet:
    """Members ordered by (score, member) as Redis orders them."""

    __slots__ = ("index", "scores")

    def __init__(self) -> None:
        self.scores: dict[bytes, float] = {}
        self.index: SortedList = SortedList()

    def __len__(self) -> int:
        return len(self.scores)

    def add(self, member: bytes, score: float) -> bool:
        """Insert or re-score `member`; True if it is new."""
        old = self.scores.get(member)
        if old is not None:
            if old == score:
                return False
            self.index.remove((old, member))
            self.index.add((score, member))
            self.scores[member] = score
            return False
        self.scores[member] = score
        self.index.add((score, member))
        return True

    def remove(self, member: bytes) -> bool:
        score = self.scores.pop(member, None)
        if score is None:
            return False
        self.index.remove((score, member))
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ZSet) and self.scores == other.scores

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ZSet({self.scores!r})"

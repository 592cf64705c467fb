"""Partition numbers agree with Redis Cluster's key slots (redis-py's reference crc16)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from tessera.partition import (
    PARTITIONS,
    PartitionSet,
    format_ranges,
    keyslot,
    parse_ranges,
    pn,
)

# Vectors from `CLUSTER KEYSLOT` on a Redis Cluster node.
KNOWN_SLOTS = {
    b"foo": 12182,
    b"bar": 5061,
    b"{user1000}.following": 3443,
    b"{user1000}.followers": 3443,
    b"foo{}{bar}": 8363,
    b"foo{{bar}}zap": 4015,
    b"foo{bar}{zap}": 5061,
    b"": 0,
}


@pytest.mark.parametrize(("key", "slot"), KNOWN_SLOTS.items())
def test_known_vectors(key: bytes, slot: int) -> None:
    assert keyslot(key) == slot
    assert pn(key) == slot % PARTITIONS


@given(st.binary(max_size=40))
def test_matches_redis_py_key_slot(key: bytes) -> None:
    assert keyslot(key) == key_slot(key)
    assert pn(key) == key_slot(key) % PARTITIONS


@given(st.binary(min_size=1, max_size=10), st.binary(max_size=10), st.binary(max_size=10))
def test_hash_tags_colocate(tag: bytes, a: bytes, b: bytes) -> None:
    if b"}" in tag or b"{" in a:
        return
    assert pn(a + b"{" + tag + b"}" + b) == pn(b"{" + tag + b"}")


def test_ranges_roundtrip_and_errors() -> None:
    assert parse_ranges("0-2047,4096,5000-5100") == [(0, 2047), (4096, 4096), (5000, 5100)]
    assert format_ranges([(0, 2047), (4096, 4096)]) == "0-2047,4096"
    for bad in ("", "5-1", "0-8192", "x", "1-", "-3"):
        with pytest.raises(ValueError):
            parse_ranges(bad)


def test_partition_set_merges_ranges_and_counts_changes() -> None:
    marks = PartitionSet(parse_ranges("10-20,15-30,8191"))
    assert str(marks) == "10-30,8191"
    assert len(marks) == 22
    assert 10 in marks
    assert 30 in marks
    assert 31 not in marks
    assert marks.add([(0, 0), (10, 11)]) == 1  # only 0 is new
    assert marks.remove([(11, 29)]) == 19
    assert marks.ranges() == [(0, 0), (10, 10), (30, 30), (8191, 8191)]
    assert marks.members() == (0, 10, 30, 8191)
    assert marks.remove([(0, PARTITIONS - 1)]) == 4
    assert not marks
    assert str(marks) == ""
    assert marks.ranges() == []

from __future__ import annotations

from tessera.keys import command_keys


def test_key_positions_follow_redis() -> None:
    assert command_keys([b"GET", b"k"]) == [b"k"]
    assert command_keys([b"set", b"k", b"v", b"EX", b"1"]) == [b"k"]
    assert command_keys([b"MSET", b"a", b"1", b"b", b"2"]) == [b"a", b"b"]
    assert command_keys([b"DEL", b"a", b"b", b"c"]) == [b"a", b"b", b"c"]
    assert command_keys([b"RENAME", b"a", b"b"]) == [b"a", b"b"]
    assert command_keys([b"SMOVE", b"a", b"b", b"m"]) == [b"a", b"b"]
    assert command_keys([b"ZUNIONSTORE", b"d", b"2", b"x", b"y", b"WEIGHTS", b"1", b"2"]) == [
        b"d",
        b"x",
        b"y",
    ]
    assert command_keys([b"SINTERCARD", b"2", b"x", b"y", b"LIMIT", b"1"]) == [b"x", b"y"]
    assert command_keys([b"PING"]) == []
    assert command_keys([b"FLUSHALL"]) == []
    assert command_keys([b"NOSUCH", b"k"]) == []


def test_batch_partitions() -> None:
    from pgserver.durability import batch_partitions
    from tessera.partition import pn

    assert batch_partitions([[b"SET", b"a", b"1"], [b"set", b"b", b"2"]]) == tuple(
        sorted({pn(b"a"), pn(b"b")})
    )
    assert batch_partitions([[b"SET", b"x{a}", b"1"], [b"GETDEL", b"b"]]) == tuple(
        sorted({pn(b"a"), pn(b"b")})
    )
    assert batch_partitions([[b"MSET", b"a", b"1", b"c", b"2"]]) == tuple(
        sorted({pn(b"a"), pn(b"c")})
    )
    assert batch_partitions([[b"SET", b"a", b"1"], [b"FLUSHALL"]]) == ()

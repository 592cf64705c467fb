"""TSR.TAIL's filter: which commands of a log record reach the target of a migration."""

from __future__ import annotations

import hiredis
import pytest

from pgserver.durability import batch_partitions
from pgserver.log_filter import TailStopped, record_wanted, select_commands, tail_frame
from pgserver.string_blocks import MAGIC, encode_section
from tessera.partition import PartitionSet, pn
from tessera.resp import encode_command

WANTED = PartitionSet([(0, 4095)])


def _key(inside: bool, n: int = 0) -> bytes:
    """The n-th key whose partition is (or is not) in WANTED."""
    found = 0
    i = 0
    while True:
        key = b"k%d" % i
        if (pn(key) in WANTED) == inside:
            if found == n:
                return key
            found += 1
        i += 1


IN, IN2, OUT, OUT2 = _key(True), _key(True, 1), _key(False), _key(False, 1)


def _payload(*commands: list[bytes]) -> bytes:
    return b"".join(encode_command(argv) for argv in commands)


def _decoded(data: bytes) -> list[list[bytes]]:
    reader = hiredis.Reader()
    reader.feed(data)
    out = []
    while (argv := reader.gets()) is not False:
        out.append(argv)
    return out


def _select(*commands: list[bytes]) -> list[list[bytes]]:
    count, data = select_commands(_payload(*commands), WANTED.flags, 100)
    decoded = _decoded(data)
    assert count == len(decoded)
    return decoded


def test_record_partition_list_skips_records_of_other_partitions() -> None:
    assert record_wanted((pn(IN), pn(OUT)), WANTED.flags)
    assert not record_wanted((pn(OUT), pn(OUT2)), WANTED.flags)
    assert record_wanted((), WANTED.flags)  # "every partition": must be parsed


def test_single_key_commands_pass_when_their_key_is_wanted() -> None:
    assert _select([b"SET", IN, b"1"], [b"set", OUT, b"2"], [b"HSET", IN2, b"f", b"v"]) == [
        [b"SET", IN, b"1"],
        [b"HSET", IN2, b"f", b"v"],
    ]
    assert _select([b"Incr", OUT]) == []


def test_a_record_kept_whole_is_passed_on_as_its_own_bytes() -> None:
    payload = _payload([b"SET", IN, b"1"], [b"DEL", IN2])
    count, data = select_commands(payload, WANTED.flags, 100)
    assert count == 2
    assert data is payload


def test_commands_a_gateway_splits_per_group_are_cut_to_the_wanted_keys() -> None:
    assert _select([b"MSET", OUT, b"1", IN, b"2", OUT2, b"3", IN2, b"4"]) == [
        [b"MSET", IN, b"2", IN2, b"4"]
    ]
    assert _select([b"DEL", OUT, IN, OUT2]) == [[b"DEL", IN]]
    assert _select([b"unlink", IN2, OUT]) == [[b"unlink", IN2]]
    assert _select([b"DEL", OUT, OUT2]) == []


def test_other_multi_key_commands_pass_whole_if_any_key_is_wanted() -> None:
    assert _select([b"RENAME", OUT, IN]) == [[b"RENAME", OUT, IN]]
    assert _select([b"SMOVE", OUT, OUT2, b"m"]) == []
    assert _select([b"ZUNIONSTORE", IN, b"2", OUT, OUT2]) == [[b"ZUNIONSTORE", IN, b"2", OUT, OUT2]]


def test_keyless_writes_are_dropped_but_flushall_stops_the_tail() -> None:
    assert _select([b"TSR.IMPORTING", b"ADD", b"0-10"], [b"SET", IN, b"v"]) == [[b"SET", IN, b"v"]]
    with pytest.raises(TailStopped, match="FLUSHALL at LSN 100"):
        _select([b"SET", IN, b"v"], [b"flushall"])
    # The log marks such a record as touching every partition, so it is never skipped.
    assert batch_partitions([[b"SET", OUT, b"v"], [b"FLUSHALL"]]) == ()


def test_partition_writes_of_other_partitions_are_dropped_but_wanted_ones_stop_the_tail() -> None:
    outside = [k for k in (b"k%d" % i for i in range(100_000)) if pn(k) == pn(OUT)][:2]
    block = MAGIC + encode_section(pn(OUT), outside, [b"1", b"2"])
    drop_out = [b"TSR.DROPPARTITIONS", b"5000-5002"]
    assert _select([b"TSR.LOADSTRINGS", b"2", block], drop_out, [b"SET", IN, b"v"]) == [
        [b"SET", IN, b"v"]
    ]
    inside = MAGIC + encode_section(pn(IN), [IN], [b"1"])
    with pytest.raises(TailStopped, match=r"TSR\.LOADSTRINGS at LSN 100"):
        _select([b"tsr.loadstrings", b"1", inside])
    with pytest.raises(TailStopped, match=r"TSR\.DROPPARTITIONS at LSN 100"):
        _select([b"TSR.DROPPARTITIONS", b"4000-4100"])


def test_frames() -> None:
    assert tail_frame(500, 7, 0, b"") == b"*3\r\n:500\r\n:7\r\n*0\r\n"
    frame = tail_frame(9, 8, 1, encode_command([b"DEL", b"k"]))
    reader = hiredis.Reader()
    reader.feed(frame)
    assert reader.gets() == [9, 8, [[b"DEL", b"k"]]]
    assert reader.gets() is False

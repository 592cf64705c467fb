"""The replication log on disk: records, segments, recovery, readers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgserver.log import LogTruncated, ReplicationLog
from pgserver.log_format import (
    KIND_COMMAND,
    SEGMENT_HEADER_SIZE,
    decode_records,
    encode_record,
    segment_name,
)
from tessera.errors import StorageError

payloads = st.lists(
    st.tuples(st.binary(min_size=1, max_size=60), st.lists(st.integers(0, 8191), max_size=3)),
    min_size=1,
    max_size=30,
)


def fill(log: ReplicationLog, items: list[tuple[bytes, list[int]]]) -> list[int]:
    lsns = [log.append(KIND_COMMAND, 1000 + i, tuple(pns), p) for i, (p, pns) in enumerate(items)]
    log.write()
    return lsns


def test_record_roundtrip_and_lsns(tmp_path: Path) -> None:
    log = ReplicationLog(tmp_path)
    log.open()
    lsns = fill(log, [(b"a", [1]), (b"bb", [2, 3]), (b"ccc", [])])
    assert lsns[0] == 0
    records = list(log.read(0))
    assert [r.payload for r in records] == [b"a", b"bb", b"ccc"]
    assert [r.lsn for r in records] == lsns
    assert records[1].partitions == (2, 3)
    assert records[2].end_lsn == log.end_lsn == log.written_lsn
    assert [r.payload for r in log.read(lsns[1])] == [b"bb", b"ccc"]
    assert [r.payload for r in log.read(0, 3, 3)] == [b"bb", b"ccc"]  # [] = all partitions
    log.close()


def test_reopen_continues_the_stream(tmp_path: Path) -> None:
    log = ReplicationLog(tmp_path)
    log.open()
    fill(log, [(b"x", [5])])
    end = log.end_lsn
    log.close()
    again = ReplicationLog(tmp_path)
    again.open()
    assert again.end_lsn == end
    assert again.append(KIND_COMMAND, 1, (6,), b"y") == end
    again.write()
    assert [r.payload for r in again.read(0)] == [b"x", b"y"]
    again.close()


def test_segments_rotate_and_old_ones_can_go(tmp_path: Path) -> None:
    log = ReplicationLog(tmp_path, segment_bytes=200)
    log.open()
    fill(log, [(bytes([65 + i]) * 50, [i]) for i in range(10)])
    assert len(log.segments) > 3
    assert [r.payload[:1] for r in log.read(0)] == [bytes([65 + i]) for i in range(10)]
    cut = log.segments[2].first_lsn
    log.remove_segments_before(cut)
    assert log.first_lsn == cut
    with pytest.raises(LogTruncated):
        list(log.read(0))
    assert len(list(log.read(cut))) > 0
    log.close()
    again = ReplicationLog(tmp_path, segment_bytes=200)
    again.open()
    assert again.first_lsn == cut
    again.close()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(payloads, st.data())
def test_crash_at_any_byte_keeps_exactly_the_complete_records(
    tmp_path_factory: pytest.TempPathFactory,
    items: list[tuple[bytes, list[int]]],
    data: st.DataObject,
) -> None:
    directory = tmp_path_factory.mktemp("log")
    log = ReplicationLog(directory)
    log.open()
    lsns = fill(log, items)
    log.close()
    path = directory / segment_name(0)
    size = path.stat().st_size
    cut = data.draw(st.integers(SEGMENT_HEADER_SIZE, size))
    with open(path, "r+b") as f:
        f.truncate(cut)
    again = ReplicationLog(directory)
    again.open()
    complete = [
        i
        for i, lsn in enumerate(lsns)
        if SEGMENT_HEADER_SIZE + lsn + 20 + 2 * len(items[i][1]) + len(items[i][0]) <= cut
    ]
    assert [r.payload for r in again.read(0)] == [items[i][0] for i in complete]
    assert again.truncated_bytes == cut - SEGMENT_HEADER_SIZE - again.end_lsn
    again.close()


def test_torn_tail_with_garbage_is_truncated(tmp_path: Path) -> None:
    log = ReplicationLog(tmp_path)
    log.open()
    fill(log, [(b"keep", [1]), (b"torn-record", [2])])
    last = list(log.read(0))[-1]
    log.close()
    path = tmp_path / segment_name(0)
    with open(path, "r+b") as f:
        f.seek(SEGMENT_HEADER_SIZE + last.lsn + 24)
        f.write(b"\xff\xff")  # a damaged last record
    again = ReplicationLog(tmp_path)
    again.open()
    assert [r.payload for r in again.read(0)] == [b"keep"]
    assert again.end_lsn == last.lsn
    again.close()


def test_corrupt_middle_stops_startup_naming_file_and_offset(tmp_path: Path) -> None:
    log = ReplicationLog(tmp_path)
    log.open()
    fill(log, [(b"first", [1]), (b"second", [2]), (b"third", [3])])
    second = list(log.read(0))[1]
    log.close()
    path = tmp_path / segment_name(0)
    with open(path, "r+b") as f:
        f.seek(SEGMENT_HEADER_SIZE + second.lsn + 22)
        f.write(b"\x00\x01\x02")
    with pytest.raises(
        StorageError,
        match=rf"{segment_name(0)}: offset {SEGMENT_HEADER_SIZE + second.lsn}: .*checksum",
    ):
        ReplicationLog(tmp_path).open()


def test_unknown_versions_are_clear_errors(tmp_path: Path) -> None:
    log = ReplicationLog(tmp_path)
    log.open()
    fill(log, [(b"a", [1])])
    log.close()
    path = tmp_path / segment_name(0)
    raw = bytearray(path.read_bytes())
    raw[8] = 9  # segment format version
    path.write_bytes(bytes(raw))
    with pytest.raises(StorageError, match="segment format version 9 is not supported"):
        ReplicationLog(tmp_path).open()
    record = bytearray(encode_record(KIND_COMMAND, 1, (1,), b"x"))
    record[8] = 7  # record format version
    _records, consumed, problem = decode_records(bytes(record), 0)
    assert consumed == 0
    assert problem is not None
    assert "version 7 is newer" in str(problem)


def test_missing_segment_is_detected(tmp_path: Path) -> None:
    log = ReplicationLog(tmp_path, segment_bytes=100)
    log.open()
    fill(log, [(b"z" * 60, [i]) for i in range(5)])
    log.close()
    log.segments[1].path.unlink()
    with pytest.raises(StorageError, match="a segment is missing"):
        ReplicationLog(tmp_path, segment_bytes=100).open()

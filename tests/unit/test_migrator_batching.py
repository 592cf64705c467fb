"""migrator.batching: the resume marker, frame groups, dump parsing, the load throttle."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migrator.batching import (
    DumpParser,
    Frame,
    TokenBucket,
    command_size,
    group_frames,
    marker_done,
    marker_key,
    marker_open,
    parse_frame,
    parse_marker,
)
from tessera.errors import MigrationError
from tessera.partition import pn
from tessera.resp import encode_command

MARKER = marker_key("0-10")


def test_the_marker_lives_in_the_first_partition_of_the_ranges() -> None:
    for ranges in ("0-10", "17", "4000-4095,6000", "8191"):
        key = marker_key(ranges)
        assert pn(key) == int(ranges.split(",")[0].split("-")[0])
        assert key.endswith(b":" + ranges.encode())
        assert marker_key(ranges) == key  # stable: a new process finds it again


def test_marker_values() -> None:
    assert marker_done(MARKER, 42) == [b"SET", MARKER, b"42"]
    assert marker_open(MARKER, 42) == [b"SET", MARKER, b"open:42"]
    assert parse_marker(None) == (None, False)
    assert parse_marker(b"42") == (42, True)
    assert parse_marker(b"open:42") == (42, False)
    with pytest.raises(MigrationError, match="resume marker holds"):
        parse_marker(b"nonsense")


def cmd(i: int, size: int = 10) -> list[bytes]:
    return [b"SET", b"k%d" % i, b"x" * size]


def test_frames_become_groups_framed_by_open_and_done_markers() -> None:
    frames = [
        Frame(110, 1, [cmd(1), cmd(2)]),
        Frame(120, 1, []),  # progress: nothing of the ranges in that record
        Frame(130, 1, [cmd(3)]),
        Frame(140, 1, []),
    ]
    [group] = group_frames(frames, MARKER, 100, 1 << 20)
    assert group.end_lsn == 140  # trailing progress included: the resume point moves on
    assert group.commands == [
        marker_open(MARKER, 100),
        cmd(1),
        cmd(2),
        cmd(3),
        marker_done(MARKER, 140),
    ]
    assert (group.frames, group.data_commands) == (2, 3)


def test_groups_are_cut_at_frame_boundaries_by_size() -> None:
    frames = [Frame(100 + 10 * i, 0, [cmd(i, 400), cmd(i + 100, 400)]) for i in range(1, 6)]
    groups = group_frames(frames, MARKER, 100, 1000)
    assert [g.end_lsn for g in groups] == [110, 120, 130, 140, 150]
    assert [g.commands[0] for g in groups] == [
        marker_open(MARKER, lsn) for lsn in (100, 110, 120, 130, 140)
    ]
    big = [Frame(200, 0, [cmd(i, 5000) for i in range(4)])]
    [group] = group_frames(big, MARKER, 150, 1000)  # a frame is never split
    assert len(group.commands) == 6


def test_only_progress_frames_make_a_group_without_commands() -> None:
    [group] = group_frames([Frame(5, 0, []), Frame(9, 0, [])], MARKER, 1, 100)
    assert (group.end_lsn, group.commands, group.frames) == (9, [], 0)


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=20))
def test_command_size_is_the_resp_length(argv: list[bytes]) -> None:
    assert command_size(argv) == len(encode_command(argv))


def test_parse_frame() -> None:
    assert parse_frame([5, 7, [[b"DEL", b"a"]]]) == Frame(5, 7, [[b"DEL", b"a"]])
    with pytest.raises(MigrationError, match="not a tail frame"):
        parse_frame(b"hello")


DUMP = [
    [b"SET", b"s", b"v", b"PXAT", b"4102444800000"],
    [b"DEL", b"h"],
    [b"HSET", b"h", b"f1", b"v1", b"f2", b"v2"],
    [b"HSET", b"h", b"f3", b"v3"],
    [b"PEXPIREAT", b"h", b"4102444800000"],
    [b"SET", b"big", b"x" * 3000],
    [b"APPEND", b"big", b"y" * 3000],
]
DUMP_BYTES = b"".join(encode_command(argv) for argv in DUMP)


def parse_all(pieces: list[bytes], batch_bytes: int) -> list[tuple[list[list[bytes]], int, int]]:
    parser = DumpParser(batch_bytes)
    batches = [b for piece in pieces for b in parser.feed(piece)] + parser.finish()
    return [(b.commands, b.size, b.keys) for b in batches]


@pytest.mark.parametrize("batch_bytes", [1, 100, 5000, 1 << 20])
def test_dump_bytes_cut_anywhere_give_the_same_batches(batch_bytes: int) -> None:
    whole = parse_all([DUMP_BYTES], batch_bytes)
    one_by_one = parse_all([DUMP_BYTES[i : i + 1] for i in range(len(DUMP_BYTES))], batch_bytes)
    assert whole == one_by_one
    assert [argv for commands, _, _ in whole for argv in commands] == DUMP
    assert sum(keys for _, _, keys in whole) == 3  # SET s, DEL h, SET big
    assert sum(size for _, size, _ in whole) == len(DUMP_BYTES)
    if batch_bytes == 1:
        assert len(whole) == len(DUMP)  # one command per batch at least


@given(st.lists(st.integers(min_value=1, max_value=len(DUMP_BYTES)), max_size=10))
def test_dump_parsing_does_not_depend_on_the_cuts(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    pieces = [
        DUMP_BYTES[a:b] for a, b in zip([0, *points], [*points, len(DUMP_BYTES)], strict=True)
    ]
    assert parse_all(pieces, 200) == parse_all([DUMP_BYTES], 200)


def test_a_dump_cut_short_or_holding_no_command_is_an_error() -> None:
    parser = DumpParser(100)
    parser.feed(DUMP_BYTES[:-3])
    with pytest.raises(MigrationError, match="middle of a command"):
        parser.finish()
    with pytest.raises(MigrationError, match="not a command"):
        DumpParser(100).feed(b":12\r\n")


FRAMES = [
    [b"TSR.LOAD", b"2", b"".join(encode_command(argv) for argv in DUMP[:3])],
    [b"TSR.LOAD", b"0", b"".join(encode_command(argv) for argv in DUMP[3:5])],
    [b"TSR.LOAD", b"1", encode_command(DUMP[5])],
    [b"TSR.LOAD", b"0", encode_command(DUMP[6])],
]
FRAMED_BYTES = b"".join(encode_command(frame) for frame in FRAMES)


@pytest.mark.parametrize("batch_bytes", [1, 3000, 1 << 20])
def test_framed_dump_frames_go_out_whole_and_count_their_keys(batch_bytes: int) -> None:
    whole = parse_all([FRAMED_BYTES], batch_bytes)
    one_by_one = parse_all([FRAMED_BYTES[i : i + 1] for i in range(len(FRAMED_BYTES))], batch_bytes)
    assert whole == one_by_one
    assert [argv for commands, _, _ in whole for argv in commands] == FRAMES  # not unpacked
    assert sum(keys for _, _, keys in whole) == 3
    assert sum(size for _, size, _ in whole) == len(FRAMED_BYTES)  # progress: dump bytes
    if batch_bytes == 1:
        assert [len(commands) for commands, _, _ in whole] == [1, 1, 1, 1]


def test_plain_commands_and_frames_mix_and_bad_frames_are_errors() -> None:
    mixed = encode_command(DUMP[0]) + encode_command(FRAMES[2])
    assert parse_all([mixed], 1 << 20) == [([DUMP[0], FRAMES[2]], len(mixed), 2)]
    for bad in ([b"TSR.LOAD", b"x", b""], [b"TSR.LOAD", b"-1", b""]):
        with pytest.raises(MigrationError, match=r"malformed TSR\.LOAD frame"):
            DumpParser(100).feed(encode_command(bad))


def test_token_bucket_keeps_the_long_run_rate() -> None:
    assert TokenBucket(0, 0, 0.0).take(10**9, 0.0) == 0.0  # no limit
    bucket = TokenBucket(1000.0, 100.0, 0.0)
    now = 0.0
    for _ in range(50):
        now += bucket.take(250, now)  # wait as told, then send
    # 50 * 250 bytes at 1000 bytes/s, less the 100-byte burst.
    assert now == pytest.approx((50 * 250 - 100) / 1000)
    assert bucket.take(50, now + 10) == 0.0  # idle time refills up to the burst only
    assert bucket.take(100, now + 10) == pytest.approx(0.05)

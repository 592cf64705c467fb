"""String blocks (TSR.LOADSTRINGS): what the dump child encodes, the target decodes exactly,
and anything malformed is refused whole before a key is stored."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgserver.string_blocks import (
    MAGIC,
    SECTION_HEAD,
    BlockError,
    block_partitions,
    decode_block,
    encode_section,
    section_size,
    split_for_size,
)
from tessera.partition import pn


def _keys_of(partition: int, count: int, prefix: bytes = b"k") -> list[bytes]:
    keys: list[bytes] = []
    i = 0
    while len(keys) < count:
        key = prefix + b"%d" % i
        if pn(key) == partition:
            keys.append(key)
        i += 1
    return keys


A = _keys_of(7, 3)
B = _keys_of(8000, 2)
BLOCK = MAGIC + encode_section(7, A, [b"1", b"", b"x\r\ny"]) + encode_section(8000, B, [b"2", b"3"])


def test_a_block_decodes_to_its_sections() -> None:
    assert decode_block(BLOCK) == [(7, A, [b"1", b"", b"x\r\ny"]), (8000, B, [b"2", b"3"])]
    assert decode_block(MAGIC) == []
    assert block_partitions(BLOCK) == {7, 8000}


@given(
    st.lists(st.binary(max_size=40), min_size=1, max_size=30, unique=True),
    st.data(),
)
def test_any_keys_and_values_round_trip(keys: list[bytes], data: st.DataObject) -> None:
    partition = pn(keys[0])
    keys = [key for key in keys if pn(key) == partition]
    values = [data.draw(st.binary(max_size=300)) for _ in keys]
    section = encode_section(partition, keys, values)
    assert decode_block(MAGIC + section) == [(partition, keys, values)]
    assert abs(section_size(keys, values) - len(section)) <= 16 + 16 * len(keys)


def test_hash_tags_decide_the_partition() -> None:
    keys = [b"{user1}:a", b"{user1}:b", b"x{user1}"]
    assert len({pn(key) for key in keys}) == 1
    partition = pn(keys[0])
    assert decode_block(MAGIC + encode_section(partition, keys, [b"1", b"2", b"3"]))[0][1] == keys


def test_every_cut_of_a_block_is_refused_or_is_the_sections_before_it() -> None:
    boundary = len(MAGIC) + len(encode_section(7, A, [b"1", b"", b"x\r\ny"]))
    for cut in range(len(BLOCK)):
        if cut in (len(MAGIC), boundary):
            assert len(decode_block(BLOCK[:cut])) == (0 if cut == len(MAGIC) else 1)
            continue
        with pytest.raises(BlockError):
            decode_block(BLOCK[:cut])


def _section(partition: int, count: int, body: bytes, reserved: int = 0) -> bytes:
    return SECTION_HEAD.pack(partition, reserved, count, len(body)) + body


@pytest.mark.parametrize(
    ("block", "why"),
    [
        (b"TSS0" + BLOCK[4:], "magic"),
        (MAGIC + encode_section(8, A, [b"1", b"2", b"3"]), "keys of partitions [7]"),
        (MAGIC + _section(8192, 1, b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"), "bad section header"),
        (MAGIC + _section(7, 1, b"*2\r\n$2\r\nk0\r\n$1\r\nb\r\n", reserved=1), "bad section"),
        (MAGIC + _section(7, 0, b"*0\r\n"), "bad key count 0"),
        (MAGIC + _section(7, 2, b"*2\r\n$2\r\nk0\r\n$1\r\nb\r\n"), "not one array of 4"),
        (MAGIC + _section(7, 1, b"*2\r\n$2\r\nk0\r\n:1\r\n"), "not one array of 2"),
        (MAGIC + _section(7, 1, b"*2\r\n$2\r\nk0\r\n$1\r\nb\r\nX"), "not one array of 2"),
        (MAGIC + _section(7, 1, b"*2\r\n$2\r\nk0\r\n$x\r\nb\r\n"), "is not RESP"),
    ],
)
def test_malformed_blocks_are_refused(block: bytes, why: str) -> None:
    with pytest.raises(BlockError, match=why.replace("[", r"\[").replace("]", r"\]")):
        decode_block(block)


def test_a_big_partition_is_cut_into_pieces_in_order() -> None:
    keys = _keys_of(9, 50)
    values = [b"v" * (i * 10) for i in range(50)]
    pieces = list(split_for_size(keys, values, 2000))
    assert len(pieces) > 3
    assert [k for piece, _ in pieces for k in piece] == keys
    assert [v for _, piece in pieces for v in piece] == values
    for piece_keys, piece_values in pieces:
        size = len(encode_section(9, piece_keys, piece_values))
        assert size <= 2000 or len(piece_keys) == 1
    big = [b"x" * 5000]
    assert list(split_for_size(keys[:1], big, 2000)) == [(keys[:1], big)]

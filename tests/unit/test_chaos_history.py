"""The chaos suite's checks catch lost, resurrected, duplicated, reordered and foreign writes."""

from __future__ import annotations

import pytest

from tests.chaos.history import GENESIS, KeyHistory, chain, decode, encode


def written(kind: str, acked: int, doubtful: bool = False) -> tuple[KeyHistory, list[str]]:
    history = KeyHistory("k", "list" if kind == "list" else "string")
    values = []
    for n in range(1, acked + 1):
        values.append(history.next_write(f"p{n}"))
        history.ack()
    if doubtful:
        values.append(history.next_write(f"p{acked + 1}"))
        history.doubt()
    return history, values


def test_values_carry_their_place_in_the_chain() -> None:
    history, values = written("string", 3)
    first = chain(GENESIS, "p1")
    assert values[0] == encode(1, first, "p1")
    assert decode(values[2]) == (3, chain(chain(first, "p2"), "p3"), "p3")
    assert decode("no colons") is None
    assert decode("x:y:z") is None
    assert history.acked == 3


def test_a_key_with_a_doubtful_write_takes_no_more_writes() -> None:
    history, _ = written("string", 1, doubtful=True)
    assert history.retired
    with pytest.raises(AssertionError):
        history.next_write("more")


@pytest.mark.parametrize(
    ("acked", "doubtful", "pick", "problem"),
    [
        (3, False, 2, None),  # the last acknowledged write
        (3, True, 3, None),  # the doubtful one landed
        (3, True, 2, None),  # ... or it did not
        (0, True, None, None),  # never acknowledged, never landed
        (0, False, None, None),
        (3, False, 1, "LOST — holds write 2"),  # a resurrected older value
        (3, True, 0, "LOST — holds write 1"),
        (3, False, None, "LOST — the key is missing"),
        (3, False, "1:abc:p1", "FOREIGN"),  # right n, wrong checksum
        (3, False, "garbage", "FOREIGN"),
        (3, False, "9:abc:p9", "FOREIGN"),  # never sent
    ],
)
def test_string_check(
    acked: int, doubtful: bool, pick: int | str | None, problem: str | None
) -> None:
    history, values = written("string", acked, doubtful)
    value = values[pick] if isinstance(pick, int) else pick
    found = history.check_string(value)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


@pytest.mark.parametrize(
    ("acked", "doubtful", "take", "problem"),
    [
        (4, False, [0, 1, 2, 3], None),
        (4, True, [0, 1, 2, 3, 4], None),  # the doubtful entry landed, once, at the end
        (4, True, [0, 1, 2, 3], None),
        (0, True, [], None),
        (4, False, [0, 1, 2], "LOST — 3 entries"),  # the tail lost
        (4, False, [0, 2, 3], "LOST (a gap)"),  # one in the middle lost
        (4, False, [0, 1, 1, 2, 3], "DUPLICATE or REORDERED"),
        (4, True, [0, 1, 2, 3, 4, 4], "DUPLICATE or REORDERED"),  # the retry landed twice
        (4, False, [0, 2, 1, 3], "LOST (a gap)"),  # swapped: the first mismatch is a jump
        (4, False, [1, 0, 2, 3], "LOST (a gap)"),
    ],
)
def test_list_check(acked: int, doubtful: bool, take: list[int], problem: str | None) -> None:
    history, values = written("list", acked, doubtful)
    found = history.check_list([values[i] for i in take])
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_list_entries_must_link_to_the_one_before() -> None:
    history, values = written("list", 3)
    n, _checksum, payload = decode(values[1]) or (0, "", "")
    forged = encode(n, chain("f" * 12, payload), payload)  # right n, wrong predecessor
    found = history.check_list([values[0], forged, values[2]])
    assert found is not None
    assert "BROKEN CHAIN at entry 2" in found
    other, others = written("list", 3)
    other.sent[0] = (other.sent[0][0], "changed")  # the record disagrees with the data
    found = other.check_list(others)
    assert found is not None
    assert "FOREIGN entry 1" in found

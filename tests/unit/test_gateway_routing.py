"""gateway.routing: parsing the static map, moving ranges, describing the result."""

from __future__ import annotations

import pytest

from gateway.routing import Backend, PartitionMap
from tessera.errors import ConfigError
from tessera.partition import PARTITIONS

A = Backend("127.0.0.1", 7001)
B = Backend("127.0.0.1", 7002)
C = Backend("10.0.0.3", 7003)


def two_halves(version: int = 0) -> PartitionMap:
    return PartitionMap.from_assignments(
        [("0-4095", "127.0.0.1:7001"), ("4096-8191", "127.0.0.1:7002")], version
    )


def test_from_assignments_routes_every_partition() -> None:
    m = two_halves(version=3)
    assert m.version == 3
    assert m.backends == (A, B)
    assert [m.backend_of(pn) for pn in (0, 4095, 4096, 8191)] == [A, A, B, B]
    assert m.ranges() == [((0, 4095), A), ((4096, 8191), B)]
    assert m.describe() == "version 3: 0-4095=127.0.0.1:7001 4096-8191=127.0.0.1:7002"


def test_one_backend_may_own_several_ranges() -> None:
    m = PartitionMap.from_assignments(
        [
            ("0-99,200-299", "127.0.0.1:7001"),
            ("100-199", "127.0.0.1:7002"),
            ("300-8191", "127.0.0.1:7001"),
        ]
    )
    assert m.backends == (A, B)  # the repeated address is one backend
    assert m.ranges() == [((0, 99), A), ((100, 199), B), ((200, 8191), A)]


def test_a_gap_is_refused_naming_the_missing_partitions() -> None:
    with pytest.raises(ConfigError, match=r"partitions 100-199,8191 have no backend"):
        PartitionMap.from_assignments([("0-99", "127.0.0.1:7001"), ("200-8190", "127.0.0.1:7002")])


def test_an_empty_map_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"partitions 0-8191 have no backend"):
        PartitionMap.from_assignments([])


def test_an_overlap_is_refused_naming_partition_and_backends() -> None:
    with pytest.raises(
        ConfigError,
        match=r"partition 4000 is assigned twice \(127\.0\.0\.1:7001 and 127\.0\.0\.1:7002\)",
    ):
        PartitionMap.from_assignments(
            [("0-4095", "127.0.0.1:7001"), ("4000-8191", "127.0.0.1:7002")]
        )


def test_an_overlap_within_one_backend_is_refused() -> None:
    with pytest.raises(ConfigError, match="partition 10 is assigned twice"):
        PartitionMap.from_assignments([("0-10,10-8191", "127.0.0.1:7001")])


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.0.0.1:", ":7000", "127.0.0.1:0", "127.0.0.1:65536", "host:port", ""],
)
def test_a_bad_address_is_refused(address: str) -> None:
    with pytest.raises(ConfigError, match="bad backend address"):
        PartitionMap.from_assignments([("0-8191", address)])


@pytest.mark.parametrize("ranges", ["0-8192", "x-10", "", "0-10,,11-8191", "5-4"])
def test_bad_range_text_is_a_config_error(ranges: str) -> None:
    with pytest.raises(ConfigError):
        PartitionMap.from_assignments([(ranges, "127.0.0.1:7001")])


def test_a_map_needs_an_owner_for_every_partition() -> None:
    with pytest.raises(ConfigError, match=f"needs {PARTITIONS} entries, got 10"):
        PartitionMap([A], [0] * 10)


def test_backend_parse_and_name() -> None:
    assert Backend.parse("127.0.0.1:7001") == A
    assert Backend.parse("redis.example:6379").name == "redis.example:6379"


def test_with_ranges_moves_ranges_to_an_existing_backend() -> None:
    old = two_halves()
    new = old.with_ranges([(0, 99), (4000, 4095)], B, version=1)
    assert new.version == 1
    assert new.ranges() == [((0, 99), B), ((100, 3999), A), ((4000, 8191), B)]
    assert old.ranges() == [((0, 4095), A), ((4096, 8191), B)]  # the old map is unchanged
    assert old.version == 0


def test_with_ranges_adds_a_new_backend() -> None:
    new = two_halves().with_ranges([(8000, 8191)], C, version=2)
    assert new.backends == (A, B, C)
    assert new.backend_of(8000) is C
    assert new.ranges()[-1] == ((8000, 8191), C)


def test_with_ranges_drops_a_backend_that_owns_nothing_any_more() -> None:
    new = two_halves().with_ranges([(0, 4095)], B, version=1)
    assert new.backends == (B,)
    assert new.ranges() == [((0, 8191), B)]
    back = new.with_ranges([(0, 4095)], A, version=2)
    assert back.ranges() == [((0, 4095), A), ((4096, 8191), B)]
    assert {back.backend_of(pn) for pn in range(PARTITIONS)} == {A, B}


def test_ranges_of_a_single_backend_map() -> None:
    m = PartitionMap.from_assignments([("0-8191", "127.0.0.1:7001")])
    assert m.ranges() == [((0, 8191), A)]
    assert m.describe() == "version 0: 0-8191=127.0.0.1:7001"


def test_a_map_with_more_than_255_backends() -> None:
    assignments = [(str(pn), f"127.0.0.1:{10000 + pn}") for pn in range(299)]
    assignments.append(("299-8191", "127.0.0.1:9999"))
    m = PartitionMap.from_assignments(assignments)
    assert len(m.backends) == 300
    assert m.backend_of(298) == Backend("127.0.0.1", 10298)
    assert m.backend_of(8191) == Backend("127.0.0.1", 9999)
    moved = m.with_ranges([(0, 298)], Backend("127.0.0.1", 9999), version=1)
    assert moved.ranges() == [((0, 8191), Backend("127.0.0.1", 9999))]

"""The partition map a gateway routes by: partition number -> backend, with a version.

Pure data; the map *source* (static command line now, ZooKeeper later) only produces
PartitionMap values, so sources are interchangeable.
"""

from __future__ import annotations

from dataclasses import dataclass

from tessera.errors import ConfigError
from tessera.partition import PARTITIONS, format_ranges, parse_ranges, runs


@dataclass(frozen=True, slots=True)
class Backend:
    host: str
    port: int

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Backend:
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"bad backend address {text!r} (expected HOST:PORT)")
        return cls(host, int(port))


class PartitionMap:
    """owner[pn] is an index into backends; immutable once built."""

    __slots__ = ("backends", "owner", "version")

    def __init__(self, backends: list[Backend], owner: list[int], version: int = 0) -> None:
        if len(owner) != PARTITIONS:
            raise ConfigError(f"a partition map needs {PARTITIONS} entries, got {len(owner)}")
        self.backends = tuple(backends)
        self.owner = bytes(owner) if len(backends) < 256 else tuple(owner)
        self.version = version

    @classmethod
    def from_assignments(cls, assignments: list[tuple[str, str]], version: int = 0) -> PartitionMap:
        """From ("0-4095", "127.0.0.1:7000") pairs; the ranges must cover 0-8191 exactly once."""
        backends: list[Backend] = []
        index: dict[Backend, int] = {}
        owner = [-1] * PARTITIONS
        for ranges_text, address in assignments:
            backend = Backend.parse(address)
            if backend not in index:
                index[backend] = len(backends)
                backends.append(backend)
            try:
                ranges = parse_ranges(ranges_text)
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
            for first, last in ranges:
                for pn in range(first, last + 1):
                    if owner[pn] != -1:
                        raise ConfigError(
                            f"partition {pn} is assigned twice ({backends[owner[pn]].name} "
                            f"and {backend.name})"
                        )
                    owner[pn] = index[backend]
        missing = [pn for pn, b in enumerate(owner) if b == -1]
        if missing:
            raise ConfigError(
                f"partitions {format_ranges(runs(missing))} have no backend; "
                f"--backend ranges must cover 0-{PARTITIONS - 1} exactly once"
            )
        return cls(backends, owner, version)

    def backend_of(self, pn: int) -> Backend:
        return self.backends[self.owner[pn]]

    def with_ranges(
        self, ranges: list[tuple[int, int]], backend: Backend, version: int
    ) -> PartitionMap:
        """A new map where `ranges` belong to `backend` (added if new)."""
        backends = list(self.backends)
        if backend in backends:
            target = backends.index(backend)
        else:
            target = len(backends)
            backends.append(backend)
        owner = list(self.owner)
        for first, last in ranges:
            for pn in range(first, last + 1):
                owner[pn] = target
        used = sorted(set(owner))
        if len(used) != len(backends):  # drop backends that own nothing any more
            remap = {old: new for new, old in enumerate(used)}
            backends = [backends[i] for i in used]
            owner = [remap[o] for o in owner]
        return PartitionMap(backends, owner, version)

    def ranges(self) -> list[tuple[tuple[int, int], Backend]]:
        """Compact (first, last) -> backend runs, in partition order."""
        runs: list[tuple[tuple[int, int], Backend]] = []
        start = 0
        for pn in range(1, PARTITIONS + 1):
            if pn == PARTITIONS or self.owner[pn] != self.owner[start]:
                runs.append(((start, pn - 1), self.backends[self.owner[start]]))
                start = pn
        return runs

    def describe(self) -> str:
        parts = [f"{a}-{b}={backend.name}" for (a, b), backend in self.ranges()]
        return f"version {self.version}: " + " ".join(parts)

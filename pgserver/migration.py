"""The running parts of the migration primitives on one pgserver: range dumps written by
forked children, log tails streamed to migrators, and throttled range deletions.

One task (`run`) owned by the server's nursery does all of it, a few milliseconds of work
per tick, and sleeps while there is nothing to do; no task exists per dump or per tail.
The partition marks themselves (importing, fenced) live in the keyspace and are set by
logged commands (pgserver/commands/migration.py); see docs/migration-pgserver.md.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import trio

from pgserver.children import enter_background
from pgserver.dump import range_entries, write_dump, write_framed_dump
from pgserver.log import ReplicationLog
from pgserver.log_filter import TailStopped, record_wanted, select_commands, tail_frame
from pgserver.log_format import KIND_COMMAND, Record
from pgserver.zset import ZSet
from tessera.errors import CommandError, StorageError
from tessera.partition import PartitionSet, format_ranges, runs
from tessera.resp import encode_error

if TYPE_CHECKING:
    from pgserver.server import PgServer, _Connection

log = logging.getLogger("tessera.pgserver.migration")

_TICK_S: Final = 0.005
_DUMP_IDLE_CHECK_S: Final = 1.0
_MAX_RUNNING_DUMPS: Final = 4
MAX_DUMP_READ: Final = 8 << 20
# A tail reads the log a window at a time (bounding what one read decodes), for at most
# _TAIL_BUDGET_S and _TAIL_CHUNK output bytes per tick.
_TAIL_WINDOW: Final = 256 << 10
_TAIL_CHUNK: Final = 4 << 20
_TAIL_BUDGET_S: Final = 0.002
# A range deletion removes at most this many keys, for about this long, per tick, and
# ticks come every _DELETE_TICK_S while it runs (about 80 % of one core at most). A key
# costs about 0.8 us to remove from a big keyspace (memory bound: dict lookups of cold
# keys); a partition emptied whole is logged as one TSR.DROPPARTITIONS, so a slave's cost
# is the same. Values bigger than _BIG_VALUE elements are then emptied a piece at a time,
# for at most _FREE_BUDGET_S per tick.
_DELETE_BATCH_KEYS: Final = 10000
_DELETE_BUDGET_S: Final = 0.004
_DELETE_TICK_S: Final = 0.001
_FREE_BUDGET_S: Final = 0.001
_POP_STEP: Final = 128  # keys popped between two looks at the clock
_BIG_VALUE: Final = 1024
_FREE_STEP: Final = 1024

DumpState = Literal["running", "done", "failed"]


@dataclass
class DumpJob:
    """One TSR.DUMP: a child writing commands for `ranges` as of log LSN `lsn`."""

    id: str
    pid: int
    lsn: int
    ranges: str
    path: Path
    keys: int  # keys in the ranges when it started; the exact number written once done
    started: float
    fork_ms: float  # how long fork() held the event loop: the dump's only cost to clients
    state: DumpState = "running"
    write_ms: float | None = None  # from the fork to the child's end (seen at most a tick late)
    last_used: float = field(default_factory=time.monotonic)  # started, read or asked about

    @property
    def keys_path(self) -> Path:
        return self.path.with_suffix(".keys")

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0


@dataclass
class Tail:
    """One TSR.TAIL stream: committed commands of `wanted` partitions from `next_lsn` on."""

    conn: _Connection
    wanted: PartitionSet
    next_lsn: int  # first log byte not yet examined (a record boundary)
    sent_lsn: int  # end LSN of the last frame sent


class Migration:
    """Dumps, tails and range deletions of one pgserver (driver side)."""

    def __init__(self, server: PgServer) -> None:
        self.server = server
        self.directory = Path(server.config.data_dir) / "migration"
        self.dumps: dict[str, DumpJob] = {}
        self.tails: list[Tail] = []
        self.deleting = PartitionSet()  # partitions TSR.DELRANGE has still to empty
        self.deleted_keys = 0
        self.longest_delete_tick = 0.0  # seconds, since the deletion started from idle
        self._freeing: list[object] = []  # deleted big values, emptied a piece at a time
        self._work = trio.Event()

    # ------------------------------------------------------------------ lifecycle

    def forget_dumps(self) -> None:
        """Remove dump files of an earlier run: their ids died with that process."""
        for path in self.directory.glob("dump-*"):
            path.unlink(missing_ok=True)

    async def run(self) -> None:
        while True:
            if not self._busy():
                # Finished dumps need no ticks, only a look now and then for idle ones.
                with trio.move_on_after(_DUMP_IDLE_CHECK_S if self.dumps else math.inf):
                    await self._work.wait()
                self._work = trio.Event()
            await trio.sleep(_DELETE_TICK_S if self.deleting or self._freeing else _TICK_S)
            self._drop_idle_dumps()
            self._poll_dumps()
            self._pump_tails()
            self._delete_step()

    def _busy(self) -> bool:
        return bool(
            self.tails
            or self.deleting
            or self._freeing
            or any(job.state == "running" for job in self.dumps.values())
        )

    def close(self) -> None:
        for job_id in list(self.dumps):
            self.drop_dump(job_id)

    def oldest_needed_lsn(self) -> int | None:
        """The oldest log position a dump's catch-up or a tail still has to read."""
        lsns = [job.lsn for job in self.dumps.values() if job.state != "failed"]
        lsns += [tail.next_lsn for tail in self.tails]
        return min(lsns) if lsns else None

    # ------------------------------------------------------------------ dumps

    def start_dump(
        self,
        ranges: Sequence[tuple[int, int]],
        chunk_elements: int,
        frame_bytes: int | None = None,
    ) -> DumpJob:
        """Fork a child that writes the ranges as of the current log end (TSR.DUMP); with
        `frame_bytes`, as TSR.LOADSTRINGS and TSR.LOAD frames of about that many bytes."""
        running = sum(job.state == "running" for job in self.dumps.values())
        if running >= _MAX_RUNNING_DUMPS:
            raise CommandError(
                f"ERR {running} dumps are already running; wait for one or TSR.DUMPDROP it"
            )
        server = self.server
        durability = server.durability
        if server.logging:
            durability.write()  # the child's keyspace is then exactly the log up to lsn
        lsn = durability.log.end_lsn
        ks = server.keyspace
        keys = sum(ks.count_range(first, last) for first, last in ranges)
        job_id = os.urandom(4).hex()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"dump-{job_id}.resp"
        before = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the child: write and leave without running any parent cleanup
            status = 1
            try:
                enter_background()
                if frame_bytes is None:
                    written = write_dump(path, range_entries(ks, ranges), chunk_elements)
                else:
                    written = write_framed_dump(path, ks, ranges, chunk_elements, frame_bytes)
                path.with_suffix(".keys").write_text(str(written))
                status = 0
            finally:
                os._exit(status)
        fork_ms = (time.perf_counter() - before) * 1000
        ranges_text = format_ranges(list(ranges))
        job = DumpJob(job_id, pid, lsn, ranges_text, path, keys, time.time(), fork_ms)
        self.dumps[job_id] = job
        self._work.set()
        log.info(
            "dump %s of %s at LSN %d started in child %d (fork took %.1f ms)",
            job_id,
            job.ranges,
            lsn,
            pid,
            fork_ms,
        )
        return job

    def dump(self, job_id: bytes) -> DumpJob:
        job = self.dumps.get(job_id.decode("utf-8", "replace"))
        if job is None:
            raise CommandError(
                f"ERR no dump {job_id.decode('utf-8', 'replace')!r} "
                "(dumps are forgotten on restart, on TSR.DUMPDROP and when left unused)"
            )
        job.last_used = time.monotonic()
        if job.state == "running":
            self._reap(job)
        return job

    def _drop_idle_dumps(self) -> None:
        """Drop finished dumps nobody has used for the configured idle timeout."""
        limit = self.server.config.dump_idle_timeout_s
        now = time.monotonic()
        for job in list(self.dumps.values()):
            if job.state != "running" and now - job.last_used >= limit:
                log.warning(
                    "dump %s of %s dropped: not read for %.0f s (its migrator is gone)",
                    job.id,
                    job.ranges,
                    now - job.last_used,
                )
                self.drop_dump(job.id)

    def read_dump(self, job_id: bytes, offset: int, count: int) -> bytes:
        """Up to `count` bytes of the dump from `offset` (TSR.DUMPREAD)."""
        job = self.dump(job_id)
        if job.state == "failed":
            raise CommandError(f"ERR dump {job.id} failed (see the pgserver log); start another")
        size = job.size()
        if job.state == "running" and offset >= size:
            raise CommandError(
                f"TRYAGAIN dump {job.id} is still being written ({size} bytes so far)"
            )
        if offset > size:
            raise CommandError(f"ERR offset {offset} is beyond the end of dump {job.id} ({size})")
        with open(job.path, "rb") as f:
            f.seek(offset)
            return f.read(min(count, MAX_DUMP_READ, size - offset))

    def drop_dump(self, job_id: str) -> bool:
        job = self.dumps.pop(job_id, None)
        if job is None:
            return False
        if job.state == "running":
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(job.pid, signal.SIGKILL)
                os.waitpid(job.pid, 0)
        job.path.unlink(missing_ok=True)
        job.keys_path.unlink(missing_ok=True)
        return True

    def _poll_dumps(self) -> None:
        for job in self.dumps.values():
            if job.state == "running":
                self._reap(job)

    def _reap(self, job: DumpJob) -> None:
        pid, status = os.waitpid(job.pid, os.WNOHANG)
        if pid == 0:
            return
        try:
            ok = os.waitstatus_to_exitcode(status) == 0
            job.keys = int(job.keys_path.read_text()) if ok else job.keys
        except (OSError, ValueError):
            ok = False
        job.state = "done" if ok else "failed"
        job.write_ms = (time.time() - job.started) * 1000
        if ok:
            log.info(
                "dump %s done: %d keys, %d bytes in %.0f ms",
                job.id,
                job.keys,
                job.size(),
                job.write_ms,
            )
        else:
            log.error("dump %s (child %d) failed with status %d", job.id, job.pid, status)
            job.path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ tails

    def attach_tail(
        self, conn: _Connection | None, lsn: int, ranges: Sequence[tuple[int, int]]
    ) -> bytes:
        """TSR.TAIL: this connection becomes a stream of the ranges' commands after `lsn`."""
        if conn is None:
            raise CommandError("ERR TSR.TAIL needs a client connection of its own")
        log_ = self.server.durability.log
        if lsn < log_.first_lsn:
            raise CommandError(
                f"ERR LSN {lsn} is older than the oldest kept log (LSN {log_.first_lsn}); "
                "take a new dump"
            )
        if lsn > log_.end_lsn:
            raise CommandError(f"ERR LSN {lsn} is beyond the end of the log (LSN {log_.end_lsn})")
        self.tails.append(Tail(conn, PartitionSet(ranges), lsn, lsn))
        self._work.set()
        log.info("tail of %s from LSN %d for %s", format_ranges(list(ranges)), lsn, conn.ctx.addr)
        return b"+TAIL %d\r\n" % lsn

    def _pump_tails(self) -> None:
        if not self.tails:
            return
        server = self.server
        log_ = server.durability.log
        # Only what is committed: a write the source could still lose in a failover must
        # not reach the target.
        limit = min(log_.written_lsn, server.reply_lsn)
        deadline = time.perf_counter() + _TAIL_BUDGET_S
        for tail in list(self.tails):
            conn = tail.conn
            if not server.connection_open(conn):
                self.tails.remove(tail)
                continue
            if conn.out or conn.pending or tail.next_lsn >= limit:
                continue  # its socket is full, or nothing new is committed
            try:
                if tail.next_lsn > log_.end_lsn:
                    raise StorageError(
                        f"the log was cut back to LSN {log_.end_lsn}, before this tail's "
                        f"position {tail.next_lsn}"
                    )
                out = self._tail_chunk(tail, log_, limit, deadline)
            except TailStopped as exc:
                self._stop_tail(tail, str(exc))
                continue
            except StorageError as exc:
                self._stop_tail(tail, f"ERR cannot read the log at LSN {tail.next_lsn}: {exc}")
                continue
            if out:
                server.stream_to(conn, out)

    def _tail_chunk(self, tail: Tail, log_: ReplicationLog, limit: int, deadline: float) -> bytes:
        frames: list[bytes] = []
        size = 0
        timestamp_ms = 0
        wanted = tail.wanted.flags

        def take(record: Record) -> None:
            nonlocal size, timestamp_ms
            if record.kind == KIND_COMMAND and record_wanted(record.partitions, wanted):
                count, commands = select_commands(record.payload, wanted, record.lsn)
                if count:
                    frame = tail_frame(record.end_lsn, record.timestamp_ms, count, commands)
                    frames.append(frame)
                    size += len(frame)
                    tail.sent_lsn = record.end_lsn
            tail.next_lsn = record.end_lsn
            timestamp_ms = record.timestamp_ms

        while tail.next_lsn < limit and size < _TAIL_CHUNK:
            window = _TAIL_WINDOW
            while True:  # widen the window only for a record larger than it
                window_end = min(limit, tail.next_lsn + window)
                records = list(log_.read(tail.next_lsn, upto_lsn=window_end))
                if records or window_end >= limit:
                    break
                window *= 2
            if not records:
                break
            for record in records:
                take(record)
            if time.perf_counter() >= deadline:
                break
        if tail.next_lsn > tail.sent_lsn:
            # Progress: the migrator learns it is up to date even when nothing matched.
            frames.append(tail_frame(tail.next_lsn, timestamp_ms, 0, b""))
            tail.sent_lsn = tail.next_lsn
        return b"".join(frames)

    def _stop_tail(self, tail: Tail, reply: str) -> None:
        log.warning("tail for %s stopped: %s", tail.conn.ctx.addr, reply)
        self.tails.remove(tail)
        self.server.stream_to(tail.conn, encode_error(reply), last=True)

    # ------------------------------------------------------------------ range deletion

    def delete_ranges(self, ranges: Sequence[tuple[int, int]]) -> int:
        """TSR.DELRANGE: queue the ranges; returns how many keys they hold now."""
        if not self.deleting and not self._freeing:
            self.longest_delete_tick = 0.0
        self.deleting.add(ranges)
        self._work.set()
        ks = self.server.keyspace
        return sum(ks.count_range(first, last) for first, last in ranges)

    def pending_delete_keys(self) -> int:
        by_partition = self.server.keyspace.by_partition
        return sum(len(by_partition[p]) for p in self.deleting.members())

    def _delete_step(self) -> None:
        """Delete one batch, then free a little. A partition emptied whole in this step is
        logged as TSR.DROPPARTITIONS, so a slave drops it the same way; keys taken from a
        partition too big for one step are logged as one DEL."""
        if not self.deleting and not self._freeing:
            return
        server = self.server
        ks = server.keyspace
        clock = time.perf_counter
        started = clock()
        deadline = started + _DELETE_BUDGET_S
        deleted: list[bytes] = []  # keys of partitions not emptied whole in one go
        freeing = self._freeing
        by_partition = ks.by_partition
        # The flags, not members(): that tuple is rebuilt (8192 steps) after every change.
        flags = self.deleting.flags
        dropped: list[int] = []  # partitions done with
        emptied: list[int] = []  # partitions dropped whole in this step
        touched: list[int] = []  # partitions some keys were taken from
        removed = 0
        partition = flags.find(1)
        while partition != -1:
            keys = by_partition[partition]
            if len(keys) <= _DELETE_BATCH_KEYS - removed:
                if keys:
                    removed += ks.drop_partition(partition, freeing, _BIG_VALUE)
                    emptied.append(partition)
                dropped.append(partition)
            else:
                touched.append(partition)
                while (room := _DELETE_BATCH_KEYS - removed) > 0:
                    step = min(room, _POP_STEP)
                    taken = ks.pop_keys(partition, step, deleted, freeing, _BIG_VALUE)
                    removed += taken
                    if not taken or clock() >= deadline:
                        break
                if not keys:
                    dropped.append(partition)  # already logged key by key: only unmarked
            if removed >= _DELETE_BATCH_KEYS or clock() >= deadline:
                break
            partition = flags.find(1, partition + 1)
        if dropped:
            self.deleting.remove([(p, p) for p in dropped])
        if emptied:
            ranges = format_ranges(runs(emptied))
            server.log_write([b"TSR.DROPPARTITIONS", ranges.encode()], emptied)
        if deleted:
            server.log_write([b"DEL", *deleted], touched)
        if removed:
            self.deleted_keys += removed
            if server.logging:
                server.durability.write()
        self._free_some(clock() + _FREE_BUDGET_S)
        self.longest_delete_tick = max(self.longest_delete_tick, clock() - started)

    def _free_some(self, deadline: float) -> None:
        """Empty deleted big values piece by piece: freeing a million-element hash at once
        would hold the event loop for tens of milliseconds."""
        freeing = self._freeing
        while freeing and time.perf_counter() < deadline:
            value = freeing[-1]
            if isinstance(value, ZSet):
                freeing[-1:] = [value.scores, value.index]
                continue
            if isinstance(value, dict):
                for _ in range(min(len(value), _FREE_STEP)):
                    value.popitem()
            elif isinstance(value, set | deque):
                for _ in range(min(len(value), _FREE_STEP)):
                    value.pop()
            else:  # a sorted set's SortedList index
                for _ in range(min(len(value), _FREE_STEP)):  # type: ignore[arg-type]
                    value.pop()  # type: ignore[attr-defined]
            if not value:
                freeing.pop()

    # ------------------------------------------------------------------ INFO

    def info_fields(self) -> list[tuple[str, object]]:
        ks = self.server.keyspace
        fields: list[tuple[str, object]] = [
            ("importing_ranges", str(ks.importing)),
            ("importing_partitions", len(ks.importing)),
            ("fenced_ranges", str(ks.fenced)),
            ("fenced_partitions", len(ks.fenced)),
            ("dumps", len(self.dumps)),
            ("dumps_running", sum(job.state == "running" for job in self.dumps.values())),
        ]
        for job in self.dumps.values():
            fields.append(
                (
                    f"dump_{job.id}",
                    f"state={job.state},lsn={job.lsn},keys={job.keys},bytes={job.size()},"
                    f"fork_ms={job.fork_ms:.3f}",
                )
            )
        fields.append(("tails", len(self.tails)))
        for i, tail in enumerate(self.tails):
            fields.append((f"tail{i}", f"addr={tail.conn.ctx.addr},next_lsn={tail.next_lsn}"))
        fields += [
            ("delrange_ranges", str(self.deleting)),
            ("delrange_pending_keys", self.pending_delete_keys()),
            ("delrange_deleted_keys", self.deleted_keys),
            ("delrange_longest_tick_ms", f"{self.longest_delete_tick * 1000:.3f}"),
        ]
        return fields

"""A pgserver's durability: its replication log, checkpoints and crash recovery.

Writes are appended to the log (in their deterministic form) as they execute; the server
writes the batch to the file before any reply of that batch leaves, so an acknowledged
write survives kill -9 under every fsync policy. `always` also fsyncs before replying
(one fsync per batch: group commit); `everysec` fsyncs once a second (a machine crash may
lose up to ~1 s of acknowledged writes); `no` leaves it to the OS.

Checkpoints are written by a forked child (as Redis's BGSAVE) so the event loop never
serialises the keyspace; the parent only pays for fork().
"""

from __future__ import annotations

import logging
import os
import time
from binascii import crc_hqx
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import hiredis

from pgserver.checkpoint import (
    SnapshotInfo,
    list_snapshots,
    read_snapshot,
    snapshot_name,
    write_snapshot,
)
from pgserver.children import enter_background
from pgserver.config import PgServerConfig
from pgserver.keyspace import Keyspace
from pgserver.log import ReplicationLog
from pgserver.log_format import KIND_COMMAND
from tessera.errors import StorageError
from tessera.keys import SINGLE_KEY, command_keys
from tessera.partition import OPEN_BRACE, parse_ranges
from tessera.partition import pn as partition_of
from tessera.resp import encode_command

log = logging.getLogger("tessera.pgserver.durability")


@dataclass
class RecoveryReport:
    checkpoint_lsn: int
    checkpoint_keys: int
    replayed_records: int
    replay_errors: int
    truncated_bytes: int
    seconds: float


@dataclass
class CheckpointJob:
    pid: int
    lsn: int
    path: Path
    started: float


def batch_partitions(batch: list[list[bytes]]) -> tuple[int, ...]:
    """Sorted partitions touched by these writes; () when one concerns every partition."""
    crc = crc_hqx
    if {argv[0] for argv in batch} <= SINGLE_KEY and OPEN_BRACE not in b"".join(
        [argv[1] for argv in batch]
    ):
        # The common case, as comprehensions (half the cost of the general loop).
        return tuple(sorted({crc(argv[1], 0) & 8191 for argv in batch}))
    found: set[int] = set()
    for argv in batch:
        keys = command_keys(argv)
        if not keys:
            return ()  # e.g. FLUSHALL
        found.update(partition_of(key) for key in keys)
    return tuple(sorted(found))


class Durability:
    """Owns the log and checkpoint files under the server's data directory."""

    def __init__(self, config: PgServerConfig, keyspace: Keyspace) -> None:
        self.config = config
        self.keyspace = keyspace
        self.directory = Path(config.data_dir)
        self.log = ReplicationLog(self.directory / "log", config.log_segment_mb * 1024 * 1024)
        self.policy = config.fsync
        self.checkpoint_lsn = 0
        self.checkpoint_time = 0.0
        self.checkpoint_status = "ok"
        self.checkpoint_job: CheckpointJob | None = None
        self.last_checkpoint_seconds = 0.0
        self.last_fork_ms = 0.0
        # Writes not yet sealed into a record: every argv (for its partitions), and the
        # payload pieces in order, each an argv to encode or raw RESP bytes from a client.
        self._batch: list[list[bytes]] = []
        self._pieces: list[list[bytes] | bytes] = []
        self._known_partitions: set[int] = set()  # of pieces not in _batch (see append)
        self._batch_ts = 0
        self._generation = 0  # bumped by every seal, so marks from before it are void
        # The oldest LSN a migration still has to read (a dump's start, a tail's position):
        # checkpoints keep the log from there even beyond --keep-log-mb.
        self.keep_log_from: Callable[[], int | None] = lambda: None

    # ------------------------------------------------------------------ recovery

    def recover(self, apply: Callable[[list[bytes], int], bool]) -> RecoveryReport:
        """Load the newest valid checkpoint, then replay the log after its LSN.

        apply(argv, timestamp_ms) executes one logged command and says if it succeeded.
        """
        started = time.perf_counter()
        self.directory.mkdir(parents=True, exist_ok=True)
        # The marks are rebuilt like the keys: from the checkpoint, then the log.
        self.keyspace.importing.clear()
        self.keyspace.fenced.clear()
        ckpt_lsn, ckpt_keys = self._load_checkpoint()
        self.log.open(start_lsn=ckpt_lsn)
        if self.log.first_lsn > ckpt_lsn:
            raise StorageError(
                f"{self.log.directory}: the log starts at LSN {self.log.first_lsn} but the newest "
                f"usable checkpoint is at LSN {ckpt_lsn}; data between them is missing"
            )
        reader = hiredis.Reader()
        replayed = errors = 0
        for record in self.log.read(ckpt_lsn):
            if record.kind != KIND_COMMAND:
                continue
            reader.feed(record.payload)
            while (argv := reader.gets()) is not False:
                if not isinstance(argv, list):
                    raise StorageError(f"log record at LSN {record.lsn} holds a non-command")
                replayed += 1
                if not apply(argv, record.timestamp_ms):
                    errors += 1
        if errors:
            log.warning("%d logged commands failed on replay (non-deterministic?)", errors)
        self.keyspace.tick()
        return RecoveryReport(
            ckpt_lsn,
            ckpt_keys,
            replayed,
            errors,
            self.log.truncated_bytes,
            time.perf_counter() - started,
        )

    def _load_checkpoint(self) -> tuple[int, int]:
        for lsn, path in list_snapshots(self.directory):
            try:
                info, entries = read_snapshot(path)
                keys = 0
                ks = self.keyspace
                for key, value, expire in entries:
                    ks.add_new(key, value)
                    if expire is not None:
                        ks.set_expire(key, expire)
                    keys += 1
            except StorageError as exc:
                log.error("checkpoint %s is unusable: %s; trying an older one", path, exc)
                self.keyspace.flush()
                continue
            self.checkpoint_lsn = info.lsn
            self.checkpoint_time = path.stat().st_mtime
            if info.importing:
                self.keyspace.start_importing(parse_ranges(info.importing))
            if info.fenced:
                self.keyspace.fenced.add(parse_ranges(info.fenced))
            log.info("loaded checkpoint %s: %d keys at LSN %d", path.name, keys, lsn)
            return info.lsn, keys
        return 0, 0

    # ------------------------------------------------------------------ appends

    def append(
        self, argv: list[bytes], timestamp_ms: int, partitions: Iterable[int] | None = None
    ) -> None:
        """Log one executed write. Writes of one reactor wakeup share a record (sealed by
        write()), so per-record costs (header, checksum, partition list) are paid once per
        batch rather than once per command. A caller that knows the partitions of the
        write's keys passes them (a range deletion's DEL of thousands of keys), so they are
        not computed again from the keys."""
        if self._pieces and timestamp_ms != self._batch_ts:
            self.seal()
        if partitions is None:
            self._batch.append(argv)
        else:
            self._known_partitions.update(partitions)
        self._pieces.append(argv)
        self._batch_ts = timestamp_ms

    def mark(self) -> tuple[int, int]:
        """Where the pending pieces end now (see use_raw)."""
        return self._generation, len(self._pieces)

    def use_raw(self, mark: tuple[int, int], commands: list[list[bytes]], raw: bytes) -> None:
        """Log `raw` (the client's bytes for `commands`) instead of re-encoding them.

        Only when exactly these command objects were appended since `mark`, i.e. every
        command of the read was a write logged as it was sent.
        """
        generation, start = mark
        pieces = self._pieces
        if generation != self._generation or len(pieces) - start != len(commands):
            return
        if len(commands) == 1:  # the common case, kept cheap
            if pieces[-1] is commands[0]:
                pieces[-1] = raw
            return
        for i in range(len(commands)):  # compiled, a C loop; all(map(operator.is_)) is not
            if pieces[start + i] is not commands[i]:
                return
        del pieces[start:]
        pieces.append(raw)

    def seal(self) -> None:
        """Turn the pending writes into one log record."""
        pieces = self._pieces
        if not pieces:
            return
        batch = self._batch
        partitions = batch_partitions(batch) if batch else ()
        known = self._known_partitions
        if known:
            if not batch or partitions:  # () from a non-empty batch: every partition
                partitions = tuple(sorted(known.union(partitions)))
            self._known_partitions = set()
        self._batch = []
        self._pieces = []
        self._generation += 1
        if len(pieces) == 1:
            only = pieces[0]
            payload = only if isinstance(only, bytes) else encode_command(only)
        else:
            payload = b"".join([p if isinstance(p, bytes) else encode_command(p) for p in pieces])
        self.log.append(KIND_COMMAND, self._batch_ts, partitions, payload)

    @property
    def has_unwritten(self) -> bool:
        return bool(self._pieces) or self.log.has_unwritten

    def write(self) -> int:
        """Seal pending writes and hand them to the OS (one write syscall)."""
        self.seal()
        return self.log.write()

    @property
    def reply_lsn(self) -> int:
        """Replies that saw state up to this LSN may be sent (policy decides: file or disk)."""
        return self.log.durable_lsn if self.policy == "always" else self.log.written_lsn

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_due(self) -> bool:
        every = self.config.checkpoint_every_mb * 1024 * 1024
        return (
            every > 0
            and self.checkpoint_job is None
            and self.log.end_lsn - self.checkpoint_lsn >= every
        )

    def start_checkpoint(self) -> bool:
        """Fork a child that writes the keyspace as of the current log end; False if busy."""
        if self.checkpoint_job is not None:
            return False
        self.write()
        lsn = self.log.end_lsn
        path = self.directory / snapshot_name(lsn)
        info = self._snapshot_info(lsn)
        before = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the child: write and leave without running any parent cleanup
            status = 1
            try:
                enter_background()
                ks = self.keyspace
                expires = ks.expires
                write_snapshot(path, ((k, v, expires.get(k)) for k, v in ks.data.items()), info)
                status = 0
            finally:
                os._exit(status)
        self.last_fork_ms = (time.perf_counter() - before) * 1000
        self.checkpoint_job = CheckpointJob(pid, lsn, path, time.time())
        log.info(
            "checkpoint at LSN %d started in child %d (fork took %.1f ms)",
            lsn,
            pid,
            self.last_fork_ms,
        )
        return True

    def poll_checkpoint(self) -> bool | None:
        """Reap a finished checkpoint child: True ok, False failed, None still running / none."""
        job = self.checkpoint_job
        if job is None:
            return None
        pid, status = os.waitpid(job.pid, os.WNOHANG)
        if pid == 0:
            return None
        self.checkpoint_job = None
        self.last_checkpoint_seconds = time.time() - job.started
        if os.waitstatus_to_exitcode(status) != 0:
            self.checkpoint_status = "err"
            log.error("checkpoint child %d failed (status %d)", job.pid, status)
            job.path.with_name(job.path.name + ".tmp").unlink(missing_ok=True)
            return False
        self._checkpoint_done(job.lsn, job.path)
        return True

    def save(self) -> None:
        """Synchronous checkpoint in this process (SAVE): blocks the loop, like Redis."""
        self.write()
        lsn = self.log.end_lsn
        path = self.directory / snapshot_name(lsn)
        ks = self.keyspace
        started = time.time()
        write_snapshot(
            path,
            ((k, v, ks.expires.get(k)) for k, v in ks.data.items()),
            self._snapshot_info(lsn),
        )
        self.last_checkpoint_seconds = time.time() - started
        self._checkpoint_done(lsn, path)

    def _snapshot_info(self, lsn: int) -> SnapshotInfo:
        ks = self.keyspace
        return SnapshotInfo(lsn, ks.now, 0, 8191, str(ks.importing), str(ks.fenced))

    def _checkpoint_done(self, lsn: int, path: Path) -> None:
        self.checkpoint_lsn = lsn
        self.checkpoint_time = time.time()
        self.checkpoint_status = "ok"
        for old_lsn, old_path in list_snapshots(self.directory):
            if old_lsn < lsn:
                old_path.unlink(missing_ok=True)
        keep = self.config.keep_log_mb * 1024 * 1024
        before = lsn - keep
        needed = self.keep_log_from()
        if needed is not None:
            before = min(before, needed)
        removed = self.log.remove_segments_before(before)
        log.info(
            "checkpoint at LSN %d complete (%s); %d old log segments removed",
            lsn,
            path.name,
            removed,
        )

    def abort_checkpoint(self) -> None:
        job = self.checkpoint_job
        if job is not None:
            try:
                os.kill(job.pid, 9)
                os.waitpid(job.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            job.path.with_name(job.path.name + ".tmp").unlink(missing_ok=True)
            self.checkpoint_job = None

    def close(self) -> None:
        self.abort_checkpoint()
        self.seal()
        self.log.close()

    def info_fields(self) -> list[tuple[str, object]]:
        lg = self.log
        return [
            ("loading", 0),
            ("log_fsync_policy", self.policy),
            ("log_first_lsn", lg.first_lsn),
            ("log_end_lsn", lg.end_lsn),
            ("log_written_lsn", lg.written_lsn),
            ("log_durable_lsn", lg.durable_lsn),
            ("log_committed_lsn", self.reply_lsn),
            ("log_segments", len(lg.segments)),
            ("log_bytes", lg.size_bytes()),
            ("checkpoint_in_progress", int(self.checkpoint_job is not None)),
            ("last_checkpoint_lsn", self.checkpoint_lsn),
            ("last_checkpoint_time", int(self.checkpoint_time)),
            ("last_checkpoint_status", self.checkpoint_status),
            ("last_checkpoint_seconds", f"{self.last_checkpoint_seconds:.3f}"),
            ("last_fork_ms", f"{self.last_fork_ms:.3f}"),
            ("rdb_bgsave_in_progress", int(self.checkpoint_job is not None)),
            ("rdb_last_save_time", int(self.checkpoint_time)),
            ("rdb_last_bgsave_status", self.checkpoint_status),
        ]

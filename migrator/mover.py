"""RangeMover: moves the keys of partition ranges from a source PG master to a target PG
master with the pgserver's TSR.* primitives (docs/migration-pgserver.md, docs/migrator.md).

The phases and resume rules live in the pure machine (migrator/mover_state.py); this is its
trio driver. An orchestrator (the confmaster, or `migrator --cutover`) uses it like this:

    mover = RangeMover(source, target, "0-2047", on_progress=..., save_state=...)
    nursery.start_soon(mover.run)           # prepare, dump + load, then follow the tail
    await mover.wait_caught_up(1 << 20)
    l1 = await mover.fence_source()         # (or fence the source itself: TSR.FENCE ADD)
    if not await mover.wait_applied(l1, timeout_s=5):
        await mover.unfence_source()        # roll back and try later
    await mover.close_tail()                # run() returns
    ... flip the partition map ...
    await mover.commit_target()
    await mover.cleanup_source()

and after a crash: `RangeMover.resume(saved_state, source, target)` then the same calls.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import trio

from migrator.batching import (
    DumpParser,
    Group,
    LoadBatch,
    TokenBucket,
    group_frames,
    marker_done,
    marker_key,
    marker_open,
    parse_marker,
)
from migrator.config import MoverConfig
from migrator.connection import Address, PgConnection, ServerReplyError, open_connection
from migrator.mover_state import (
    Applied,
    CancelRequested,
    CheckSourceFenced,
    CleanupRequested,
    ClearTarget,
    CommitRequested,
    CommitTarget,
    CountTarget,
    DeleteSourceRange,
    DropDump,
    DumpDropped,
    DumpLoaded,
    DumpStarted,
    Event,
    Fail,
    FenceRequested,
    FenceSource,
    FollowTail,
    ImportingMarked,
    ImportingUnmarked,
    LoadDump,
    MarkerRead,
    MarkImporting,
    MoverMachine,
    MoverState,
    ReadMarker,
    Report,
    Save,
    SourceFenceChecked,
    SourceFenced,
    SourceRangeDeleted,
    SourceUnfenced,
    Start,
    StartDump,
    Step,
    Stop,
    TailEnded,
    TargetCleared,
    TargetCommitted,
    TargetCounted,
    UnfenceRequested,
    UnfenceSource,
    UnmarkImporting,
    canonical_ranges,
)
from migrator.progress import Progress, load_eta
from migrator.tail import TailRedo, TailStream
from tessera.errors import MigrationError
from tessera.partition import PartitionSet, parse_ranges

log = logging.getLogger("tessera.migrator")

ProgressCallback = Callable[[Progress], None]
SaveCallback = Callable[[MoverState], Awaitable[None]]
Request = Literal["close", "cancel"]
MB = 1 << 20


def as_map(reply: Any) -> dict[bytes, Any]:
    """A RESP2 map reply (flat array) as a dict."""
    if not isinstance(reply, list) or len(reply) % 2:
        raise MigrationError(f"expected a map reply, got {reply!r:.200}")
    return dict(zip(reply[::2], reply[1::2], strict=True))


def parse_info(text: Any) -> dict[str, str]:
    if not isinstance(text, bytes):
        raise MigrationError(f"expected INFO text, got {text!r:.200}")
    fields = {}
    for line in text.decode("utf-8", "replace").splitlines():
        name, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            fields[name] = value
    return fields


def partitions_of(text: Any) -> PartitionSet:
    """A range list as the pgserver replies it ("" for none)."""
    if not isinstance(text, bytes):
        raise MigrationError(f"expected a range list, got {text!r:.200}")
    return PartitionSet(parse_ranges(text.decode())) if text else PartitionSet()


def overlaps(a: PartitionSet, b: PartitionSet) -> bool:
    return bool(int.from_bytes(a.flags, "big") & int.from_bytes(b.flags, "big"))


@contextlib.asynccontextmanager
async def _nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery whose single MigrationError comes out as itself, not in a group."""
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        matched, rest = group.split(MigrationError)
        if matched is None or rest is not None:
            raise
        error = matched.exceptions[0]
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        raise error from None


class _Op:
    """The connections of one operation: opened when first needed, closed at its end."""

    def __init__(self, mover: RangeMover, stack: contextlib.AsyncExitStack, run: bool) -> None:
        self.mover = mover
        self.stack = stack
        self.run = run
        self._source: PgConnection | None = None
        self._target: PgConnection | None = None

    async def source(self) -> PgConnection:
        if self._source is None:
            m = self.mover
            conn = open_connection(m.source, "source", m.config)
            self._source = await self.stack.enter_async_context(conn)
        return self._source

    async def target(self) -> PgConnection:
        if self._target is None:
            m = self.mover
            conn = open_connection(m.target, "target", m.config)
            self._target = await self.stack.enter_async_context(conn)
        return self._target


class RangeMover:
    """Moves the keys of `ranges` from the source master to the target master."""

    def __init__(
        self,
        source: Address | str,
        target: Address | str,
        ranges: str | list[tuple[int, int]],
        config: MoverConfig | None = None,
        *,
        state: MoverState | None = None,
        on_progress: ProgressCallback | None = None,
        save_state: SaveCallback | None = None,
    ) -> None:
        self.source = source if isinstance(source, Address) else Address.parse(source)
        self.target = target if isinstance(target, Address) else Address.parse(target)
        try:
            self.ranges = canonical_ranges(ranges)
        except ValueError as exc:
            raise MigrationError(f"bad partition ranges {ranges!r}: {exc}") from None
        if state is None:
            state = MoverState(ranges=self.ranges)
        elif state.ranges != self.ranges:
            raise MigrationError(
                f"the saved state is for partitions {state.ranges}, not {self.ranges}"
            )
        self.config = config or MoverConfig()
        self._machine = MoverMachine(state)
        self._machine.validate()
        self._marker = marker_key(self.ranges)
        self._wanted = PartitionSet(parse_ranges(self.ranges))
        self._on_progress = on_progress
        self._save_state = save_state
        self._event_ids = 0
        self._op_lock = trio.Lock()
        # run(): at most one at a time; close_tail() and cancel() ask it to stop.
        self._running = False
        self._run_done = trio.Event()
        self._request: Request | None = None
        self._interrupt: trio.CancelScope | None = None
        self._changed = trio.Event()
        # Progress.
        self._started_at = time.time()
        self._published_at = -math.inf
        self._published_phase: str | None = None
        self._saved_applied: int | None = state.applied_lsn
        self._error: str | None = None
        self._note: str | None = None
        self._keys_estimate: int | None = None
        self._bytes_estimate: int | None = None
        self._keys_loaded = 0
        self._bytes_loaded = 0
        self._dump_bytes: int | None = None
        self._load_started: float | None = None
        self._dump_write_ms = -1  # from TSR.DUMPSTATUS once the dump is read
        self._received: int | None = None
        self._source_end: int | None = None
        self._lag_records = 0
        self._commands_applied = 0
        self._following = False

    @classmethod
    def resume(
        cls,
        state: MoverState,
        source: Address | str,
        target: Address | str,
        config: MoverConfig | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        save_state: SaveCallback | None = None,
    ) -> RangeMover:
        """A mover that takes over from a saved state (the masters may have changed)."""
        return cls(
            source,
            target,
            state.ranges,
            config,
            state=state,
            on_progress=on_progress,
            save_state=save_state,
        )

    # ------------------------------------------------------------------------ looking

    @property
    def state(self) -> MoverState:
        """The resume record as of now (what save_state was last given, or newer)."""
        return self._machine.state

    @property
    def phase(self) -> str:
        return self._machine.state.phase

    @property
    def progress(self) -> Progress:
        s = self._machine.state
        now = time.time()
        rate = None
        if self._load_started is not None and self._bytes_loaded:
            rate = self._bytes_loaded / max(now - self._load_started, 1e-3)
        total = self._dump_bytes if self._dump_bytes is not None else self._bytes_estimate
        return Progress(
            phase=s.phase,
            ranges=self.ranges,
            source=str(self.source),
            target=str(self.target),
            l0=s.l0,
            keys_estimate=self._keys_estimate,
            bytes_estimate=self._bytes_estimate,
            keys_loaded=self._keys_loaded,
            bytes_loaded=self._bytes_loaded,
            dump_bytes=self._dump_bytes,
            load_mb_s=None if rate is None else rate / MB,
            eta_s=load_eta(total, self._bytes_loaded, rate) if s.phase == "loading" else None,
            applied_lsn=s.applied_lsn,
            received_lsn=self._received,
            source_log_end=self._source_end,
            lag_bytes=self._lag_bytes(),
            lag_records=self._lag_records,
            commands_applied=self._commands_applied,
            fence_lsn=s.fence_lsn,
            redo_count=s.redo_count,
            started_at=self._started_at,
            updated_at=now,
            error=self._error,
            note=self._note,
        )

    def _lag_bytes(self) -> int | None:
        """Catching up: the source's log end (or the last frame) minus applied_lsn; loading:
        how much log the catch-up will have to replay."""
        s = self._machine.state
        if s.phase == "catching_up" and s.applied_lsn is not None:
            newest = max(self._source_end or 0, self._received or 0)
            return max(newest - s.applied_lsn, 0) if newest else None
        if s.phase == "loading" and s.l0 is not None and self._source_end is not None:
            return max(self._source_end - s.l0, 0)
        return None

    # ------------------------------------------------------------------------ the API

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Prepare, dump and load, then apply the tail until close_tail() or cancel().

        Started (task_status) at once. Returns when the tail is closed (phase tail_closed),
        or when cancel() finished (phase cancelled); raises MigrationError when a step
        fails (the state then says where to resume from).
        """
        if self._running:
            raise MigrationError("this mover is already running")
        self._running = True
        self._run_done = trio.Event()
        self._request = None
        self._error = None
        task_status.started()
        try:
            await self._operate(Start(self._next_id()), run=True)
        finally:
            self._running = False
            self._run_done.set()
            self._wake()

    async def wait_caught_up(self, max_lag_bytes: int, timeout_s: float | None = None) -> bool:
        """True once the tail is followed with at most `max_lag_bytes` of lag; False on
        timeout; MigrationError if the mover stopped."""

        def ready() -> bool:
            lag = self._lag_bytes()
            return (
                self._following
                and self._source_end is not None
                and lag is not None
                and (lag <= max_lag_bytes)
            )

        return await self._wait(ready, timeout_s, "to catch up")

    async def wait_applied(self, lsn: int, timeout_s: float | None = None) -> bool:
        """True once the target applied every frame up to source LSN `lsn` (e.g. L1 after
        fencing); False on timeout; MigrationError if the mover stopped before."""

        def ready() -> bool:
            s = self._machine.state
            return (
                s.phase in ("catching_up", "tail_closed")
                and s.applied_lsn is not None
                and s.applied_lsn >= lsn
            )

        return await self._wait(ready, timeout_s, f"to apply up to LSN {lsn}")

    async def fence_source(self) -> int:
        """TSR.FENCE ADD on the source: returns L1 (kept in the state as fence_lsn)."""
        async with self._op_lock:
            await self._operate(FenceRequested(self._next_id()))
        l1 = self._machine.state.fence_lsn
        assert l1 is not None
        return l1

    async def unfence_source(self) -> None:
        """TSR.FENCE DEL on the source (roll a cutover back; the catch-up goes on)."""
        async with self._op_lock:
            await self._operate(UnfenceRequested(self._next_id()))

    async def close_tail(self) -> int:
        """Stop applying the tail at a frame boundary the target fully applied; returns
        applied_lsn. run() then returns."""
        if self._running and self.phase in ("catching_up", "tail_closed"):
            self._ask("close")
            await self._run_done.wait()
            if self._error is not None:
                raise MigrationError(self._error)
        s = self._machine.state
        if s.phase != "tail_closed" or s.applied_lsn is None:
            raise MigrationError(f"no tail to close in phase {s.phase}")
        return s.applied_lsn

    async def commit_target(self) -> None:
        """Delete the resume marker and TSR.IMPORTING DEL on the target (after the map
        flip: the target now owns the ranges; their keys expire there again)."""
        async with self._op_lock:
            self._not_running("commit the target")
            await self._operate(CommitRequested(self._next_id()))

    async def cleanup_source(self) -> None:
        """TSR.DELRANGE on the (fenced) source, wait for it, then TSR.FENCE DEL."""
        async with self._op_lock:
            self._not_running("clean the source")
            await self._operate(CleanupRequested(self._next_id()))

    async def cancel(self) -> None:
        """Stop, then leave the target without a key of the ranges and without the
        importing mark (and the source unfenced if fence_source() fenced it)."""
        async with self._op_lock:
            if self._running:
                self._ask("cancel")
                await self._run_done.wait()
                if self.phase == "cancelled":
                    return
            await self._operate(CancelRequested(self._next_id()))

    # ------------------------------------------------------------------------ driving

    def _next_id(self) -> int:
        self._event_ids += 1
        return self._event_ids

    def _ask(self, request: Request) -> None:
        if self._request != "cancel":
            self._request = request
        if self._interrupt is not None:
            self._interrupt.cancel()

    def _not_running(self, what: str) -> None:
        if self._running:
            raise MigrationError(f"cannot {what} while run() goes on: close_tail() first")

    async def _wait(self, ready: Callable[[], bool], timeout_s: float | None, what: str) -> bool:
        with trio.move_on_after(math.inf if timeout_s is None else timeout_s):
            while not ready():
                if self._error is not None:
                    raise MigrationError(f"the move stopped: {self._error}")
                if not self._running:
                    raise MigrationError(f"the mover is not running (phase {self.phase})")
                await self._changed.wait()
            return True
        return False

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _operate(self, event: Event, run: bool = False) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                await self._drive(_Op(self, stack, run), event)
        except MigrationError as exc:
            self._error = str(exc)
            log.error("move of %s failed: %s", self.ranges, exc)
            self._publish(force=True)
            raise
        finally:
            self._wake()

    async def _drive(self, op: _Op, event: Event) -> None:
        machine = self._machine
        while True:
            actions = machine.handle(event)
            machine.validate()
            step: Step | None = None
            for action in actions:
                match action:
                    case Save():
                        await self._save()
                    case Report(message=message):
                        log.info("%s: %s", self.ranges, message)
                        self._note = message
                    case Fail(message=message):
                        raise MigrationError(message)
                    case Stop():
                        self._publish(force=True)
                        return
                    case _:
                        step = action
            self._publish()
            self._wake()
            assert step is not None, actions
            if op.run and self._request == "cancel" and self.phase not in ("cancelling",):
                event = CancelRequested(self._next_id())
                continue
            event = await self._execute(op, step)

    async def _execute(self, op: _Op, step: Step) -> Event:
        ranges = self.ranges
        new_id = self._next_id
        match step:
            case CountTarget():
                reply = await (await op.target()).call("TSR.COUNT", ranges)
                return TargetCounted(new_id(), int(reply[0]))
            case MarkImporting():
                await (await op.target()).call("TSR.IMPORTING", "ADD", ranges)
                return ImportingMarked(new_id())
            case StartDump():
                src = await op.source()
                keys, size = await src.call("TSR.COUNT", ranges)
                self._keys_estimate, self._bytes_estimate = int(keys), int(size)
                chunk, frame = self.config.dump_chunk_elements, self.config.dump_frame_bytes
                l0, dump_id = await src.call("TSR.DUMP", ranges, "CHUNK", chunk, "FRAMED", frame)
                log.info("%s: dump %s at L0 %d", ranges, dump_id.decode(), l0)
                return DumpStarted(new_id(), int(l0), dump_id.decode())
            case LoadDump(dump_id=dump_id, l0=l0):
                return await self._load(op, dump_id, l0)
            case DropDump(dump_id=dump_id):
                await (await op.source()).call("TSR.DUMPDROP", dump_id)
                return DumpDropped(new_id())
            case ClearTarget():
                tgt = await op.target()
                if not await self._target_importing(tgt):
                    return TargetCleared(new_id())  # nothing of ours there (and it is empty)
                if not await self._interruptible(op, self._delete_range(tgt)):
                    return CancelRequested(new_id())
                return TargetCleared(new_id())
            case ReadMarker():
                value = await (await op.target()).call("GET", self._marker)
                lsn, clean = parse_marker(value)
                return MarkerRead(new_id(), lsn, clean)
            case FollowTail(lsn=lsn):
                return await self._follow(op, lsn)
            case UnmarkImporting():
                await (await op.target()).call("TSR.IMPORTING", "DEL", ranges)
                return ImportingUnmarked(new_id())
            case CommitTarget():
                tgt = await op.target()
                await tgt.call("DEL", self._marker)
                await tgt.call("TSR.IMPORTING", "DEL", ranges)
                return TargetCommitted(new_id())
            case CheckSourceFenced():
                fenced = partitions_of(await (await op.source()).call("TSR.FENCE", "LIST"))
                missing = [p for p in self._wanted.members() if p not in fenced]
                return SourceFenceChecked(new_id(), not missing)
            case DeleteSourceRange():
                await self._delete_range(await op.source())
                return SourceRangeDeleted(new_id())
            case FenceSource():
                l1 = await (await op.source()).call("TSR.FENCE", "ADD", ranges)
                log.info("%s: fenced on the source at L1 %d", ranges, l1)
                return SourceFenced(new_id(), int(l1))
            case UnfenceSource():
                await (await op.source()).call("TSR.FENCE", "DEL", ranges)
                return SourceUnfenced(new_id())
        raise AssertionError(step)

    async def _interruptible(self, op: _Op, work: Awaitable[None]) -> bool:
        """Run `work`; in run(), cancel() may stop it (False), except on the cancel path."""
        if not op.run or self.phase == "cancelling":
            await work
            return True
        with trio.CancelScope() as scope:
            self._interrupt = scope
            if self._request == "cancel":
                scope.cancel()
            try:
                await work
            finally:
                self._interrupt = None
        return not scope.cancelled_caught

    async def _save(self) -> None:
        state = self._machine.state
        if self._save_state is not None:
            await self._save_state(state)
        self._saved_applied = state.applied_lsn

    def _publish(self, force: bool = False) -> None:
        if self._on_progress is None:
            return
        now = trio.current_time()
        phase = self.phase
        interval = self.config.progress_interval_ms / 1000
        if force or phase != self._published_phase or now - self._published_at >= interval:
            self._published_at = now
            self._published_phase = phase
            self._on_progress(self.progress)

    # ------------------------------------------------------------------------ range deletion

    async def _delete_range(self, conn: PgConnection) -> None:
        """TSR.DELRANGE, then wait until the ranges hold no key and are not being deleted
        any more (a key written to a partition still queued would be deleted too)."""
        ranges = self.ranges
        queued = await conn.call("TSR.DELRANGE", ranges)
        log.info("%s: deleting %s keys on %s", ranges, queued, conn.name)
        while True:
            status = as_map(await conn.call("TSR.DELRANGE", "STATUS"))
            deleting = partitions_of(status.get(b"ranges", b""))
            keys = int((await conn.call("TSR.COUNT", ranges))[0])
            if keys == 0 and not overlaps(deleting, self._wanted):
                self._note = f"deleted the ranges on {conn.name}"
                return
            self._note = f"deleting the ranges on {conn.name}"
            self._publish()
            await trio.sleep(self.config.poll_interval_ms / 1000)

    async def _target_importing(self, tgt: PgConnection) -> bool:
        """Whether the target imports every partition of the ranges. Keys of partitions it
        does not import are its own (it may well own them): never deleted by a mover."""
        importing = partitions_of(await tgt.call("TSR.IMPORTING", "LIST"))
        if all(p in importing for p in self._wanted.members()):
            return True
        keys = int((await tgt.call("TSR.COUNT", self.ranges))[0])
        if keys:
            raise MigrationError(
                f"the target holds {keys} keys of {self.ranges} but does not import them all: "
                "they are not this move's; refusing to delete them"
            )
        return False

    # ------------------------------------------------------------------------ the load

    async def _load(self, op: _Op, dump_id: str, l0: int) -> Event:
        """Apply the dump to the target, throttled and pipelined; the marker then says L0."""
        src, tgt = await op.source(), await op.target()
        config = self.config
        parser = DumpParser(config.batch_bytes)
        rate = config.rate_mb_s * MB
        bucket = TokenBucket(rate, rate * 0.05, trio.current_time())
        self._keys_loaded = self._bytes_loaded = 0
        self._dump_bytes = None
        self._load_started = time.time()
        send, receive = trio.open_memory_channel[bytes](2)
        interrupted = False
        try:
            async with _nursery() as nursery:
                nursery.start_soon(tgt.pump)
                nursery.start_soon(self._read_dump, src, dump_id, send)
                nursery.start_soon(self._ticker, src)
                with trio.CancelScope() as scope:
                    self._interrupt = scope
                    if self._request == "cancel":
                        scope.cancel()
                    async with receive:
                        async for chunk in receive:
                            for batch in parser.feed(chunk):
                                await self._send_batch(tgt, batch, bucket)
                    for batch in parser.finish():
                        await self._send_batch(tgt, batch, bucket)
                self._interrupt = None
                interrupted = scope.cancelled_caught
                await tgt.drain()
                nursery.cancel_scope.cancel()
        finally:
            self._interrupt = None
            await self._drain_quietly(tgt)
        if interrupted:
            return CancelRequested(self._next_id())
        await tgt.call(*marker_done(self._marker, l0))
        took_ms = (time.time() - self._load_started) * 1000
        self._note = (
            f"loaded {self._keys_loaded} keys, {self._bytes_loaded} bytes in {took_ms:.0f} ms "
            f"(the dump child took {self._dump_write_ms} ms)"
        )
        log.info("%s: %s", self.ranges, self._note)
        return DumpLoaded(self._next_id())

    async def _send_batch(self, tgt: PgConnection, batch: LoadBatch, bucket: TokenBucket) -> None:
        delay = bucket.take(batch.size, trio.current_time())
        if delay > 0:
            await trio.sleep(delay)

        def applied() -> None:
            self._keys_loaded += batch.keys
            self._bytes_loaded += batch.size

        await tgt.submit(batch.commands, on_done=applied)

    async def _read_dump(
        self, src: PgConnection, dump_id: str, send: trio.MemorySendChannel[bytes]
    ) -> None:
        """DUMPREAD the dump from the start while the child writes it, until its end."""
        poll_s = self.config.poll_interval_ms / 1000
        async with send:
            offset = 0
            while True:
                try:
                    chunk = await src.call(
                        "TSR.DUMPREAD", dump_id, offset, self.config.dump_read_bytes
                    )
                except ServerReplyError as exc:
                    if exc.reply.startswith("TRYAGAIN"):
                        await trio.sleep(poll_s)
                        continue
                    raise
                if not isinstance(chunk, bytes):
                    raise MigrationError(f"TSR.DUMPREAD replied {chunk!r:.100}")
                if not chunk:
                    break
                offset += len(chunk)
                await send.send(chunk)
            status = as_map(await src.call("TSR.DUMPSTATUS", dump_id))
            self._dump_write_ms = int(status.get(b"write_ms", -1))
            if status.get(b"state") != b"done" or int(status.get(b"bytes", -1)) != offset:
                raise MigrationError(
                    f"dump {dump_id} ended after {offset} bytes but its status says "
                    f"{ {k.decode(): v for k, v in status.items()} }"
                )
            self._dump_bytes = offset
            self._keys_estimate = int(status.get(b"keys", self._keys_estimate or 0))

    async def _drain_quietly(self, tgt: PgConnection) -> None:
        """After a stop, wait (shielded, bounded) until the target executed all it was sent,
        so nothing of ours lands after what comes next (a DELRANGE, another mover)."""
        if not tgt.pending or tgt.broken is not None:
            return
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self.config.drain_timeout_ms / 1000):
                with contextlib.suppress(MigrationError):
                    await tgt.drain()

    async def _ticker(self, src: PgConnection) -> None:
        """Every so often: the source's log end (lag; and it is alive), progress, the state."""
        config = self.config
        next_info = next_state = 0.0
        while True:
            now = trio.current_time()
            if now >= next_info:
                info = parse_info(await src.call("INFO", "persistence"))
                if "log_end_lsn" in info:
                    self._source_end = int(info["log_end_lsn"])
                next_info = now + config.info_interval_ms / 1000
                self._wake()
            if now >= next_state and self._machine.state.applied_lsn != self._saved_applied:
                await self._save()
                next_state = now + config.state_interval_ms / 1000
            self._publish()
            await trio.sleep(min(config.progress_interval_ms, config.info_interval_ms) / 1000)

    # ------------------------------------------------------------------------ the catch-up

    async def _follow(self, op: _Op, lsn: int) -> Event:
        """Apply the tail's frames from `lsn` until close_tail() or cancel() (or a redo)."""
        src, tgt = await op.source(), await op.target()
        self._received = lsn
        self._lag_records = 0
        try:
            tail = await TailStream.open(self.source, lsn, self.ranges, self.config)
        except TailRedo as exc:
            return TailEnded(self._next_id(), "redo", lsn, str(exc))
        log.info("%s: following the tail from LSN %d", self.ranges, lsn)
        redo: str | None = None
        try:
            async with _nursery() as nursery:
                nursery.start_soon(tgt.pump)
                nursery.start_soon(self._ticker, src)
                with trio.CancelScope() as scope:
                    self._interrupt = scope
                    self._following = True
                    if self._request is not None:
                        scope.cancel()
                    try:
                        await self._apply_tail(tail, tgt, lsn)
                    except TailRedo as exc:
                        redo = str(exc)
                self._interrupt = None
                self._following = False
                await tgt.drain()
                nursery.cancel_scope.cancel()
        finally:
            self._interrupt = None
            self._following = False
            await tail.aclose()
            await self._drain_quietly(tgt)
            if tgt.refused is not None:
                await self._poison_marker(tgt)
        applied = self._machine.state.applied_lsn
        assert applied is not None
        if redo is not None:
            return TailEnded(self._next_id(), "redo", applied, redo)
        if self._request == "cancel":
            return CancelRequested(self._next_id())
        # Nothing is in flight and nothing more will be sent: the marker can say exactly
        # how far the target got (trailing frames without commands included).
        await tgt.call(*marker_done(self._marker, applied))
        log.info("%s: tail closed at LSN %d", self.ranges, applied)
        return TailEnded(self._next_id(), "closed", applied)

    async def _apply_tail(self, tail: TailStream, tgt: PgConnection, lsn: int) -> None:
        marker_at = lsn
        max_bytes = self.config.batch_bytes
        while True:
            frames = await tail.receive()
            self._received = frames[-1].end_lsn
            for group in group_frames(frames, self._marker, marker_at, max_bytes):
                self._lag_records += group.frames
                await tgt.submit(group.commands, on_done=functools.partial(self._applied, group))
                marker_at = group.end_lsn

    def _applied(self, group: Group) -> None:
        self._lag_records -= group.frames
        self._commands_applied += group.data_commands
        self._machine.handle(Applied(self._next_id(), group.end_lsn))
        self._wake()

    async def _poison_marker(self, tgt: PgConnection) -> None:
        """A command was refused in a group whose end marker still went out: mark the copy
        as not resumable (a resume would skip the refused command)."""
        applied = self._machine.state.applied_lsn or 0
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self.config.drain_timeout_ms / 1000):
                with contextlib.suppress(MigrationError):
                    await tgt.call(*marker_open(self._marker, applied))

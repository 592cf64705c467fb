"""The pgserver's trio driver: accept clients, parse, execute, reply.

Hot path (measured in docs/benchmarks.md): one reactor task owns a level-triggered epoll
set holding the listener and every client socket, and trio waits on that epoll's fd. Each
wakeup serves every ready socket: recv, execute every complete command, one send of all
replies. So trio pays one wakeup per batch of ready clients instead of one per client
read (its per-wakeup cost dominated the per-task design), and no task exists per request or
per connection. A client whose socket is full is switched to write-interest and not read
until its output drains (backpressure).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import time
from collections import deque
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Final

import trio
import trio.lowlevel
from mypy_extensions import mypyc_attr

from pgserver.checkpoint import list_snapshots, snapshot_name
from pgserver.commands import load_all
from pgserver.config import PgServerConfig
from pgserver.context import Context, execute
from pgserver.durability import Durability, RecoveryReport
from pgserver.keyspace import Keyspace
from pgserver.metrics import collect as pgserver_metrics
from pgserver.migration import Migration
from pgserver.replication import Replica, Replication
from tessera.errors import ConfigError
from tessera.gcstats import GC_PAUSES, freeze_startup_heap
from tessera.histogram import Histogram
from tessera.metrics import new_registry, serve_metrics
from tessera.resp import Limits, RequestParser, RequestProtocolError, encode_error

log = logging.getLogger("tessera.pgserver")

_RECV_BYTES: Final = 256 * 1024
_POLLS_PER_WAKEUP: Final = 8
_WAKEUP_BUDGET_S: Final = 0.003
_REPLIES_PER_FLUSH: Final = 64
# A client stops being read while this much of its replies waits for commits.
_MAX_HELD_BYTES: Final = 1 << 20

load_all()


# Tests subclass PgServer (tests/unit/conftest.py records every logged write); compiled
# with mypyc, only classes marked so may have interpreted subclasses.
@mypyc_attr(allow_interpreted_subclasses=True)
class PgServer:
    """One partition-group member. Owns its keyspace, log, clients and their tasks."""

    def __init__(self, config: PgServerConfig) -> None:
        self.config = config
        self.keyspace = Keyspace()
        self.durability = Durability(config, self.keyspace)
        self.keyspace.on_expired = self._log_expiry
        self.limits = Limits(
            max_bulk_bytes=config.max_bulk_bytes,
            max_multibulk_len=config.max_multibulk_len,
            max_inline_bytes=config.max_inline_bytes,
        )
        self.clients: dict[int, Context] = {}
        self.port = 0
        self.metrics_port = 0
        self.started_at = time.time()
        self.commands_processed = 0
        self.connections_received = 0
        self.rejected_connections = 0
        self.dirty = 0
        # Plain counters the client loop touches (one dict increment per command); read by
        # pgserver.metrics at scrape time only.
        self.command_calls: dict[str, int] = {}
        self.command_errors: dict[str, int] = {}
        self.applied_calls: dict[str, int] = {}  # replayed or replicated from the log
        self.applied_errors: dict[str, int] = {}
        self.latency = Histogram()  # per read batch: read -> reply sent (commit included)
        self.commit_latency = Histogram()  # per group commit: logged -> durable and acked
        self._commit_waits: deque[tuple[int, float]] = deque()  # (lsn, when it was held)
        self.registry = new_registry(partial(pgserver_metrics, self))
        self.recovery: RecoveryReport | None = None
        self.replay_ctx = Context(self, "replay")
        self.replay_ctx.authenticated = True  # the log was authenticated when written
        self.replay_ctx.calls = self.applied_calls
        self.replay_ctx.errors = self.applied_errors
        # Whether executed writes are appended to the log (off while replaying it).
        self.logging = config.log_enabled
        self._nursery: trio.Nursery | None = None
        self._poller: select.epoll | None = None
        self._conns: dict[int, _Connection] = {}
        # Replies waiting for their commit, in LSN order: (lsn, conn) per chunk; the chunk
        # itself is the first of conn.held. A connection keeps being read meanwhile (up to
        # _MAX_HELD_BYTES of replies), so a pipelining client keeps the log busy.
        self._held: deque[tuple[int, _Connection]] = deque()
        self._failing_why = ""  # set on demotion: fail what the next flush holds
        self._sync_wanted = trio.Event()
        self.nursery: trio.Nursery | None = None
        self.replication = Replication(self, managed=config.managed)
        self.durability.log.on_write = self._on_log_write
        self.migration = Migration(self)
        self.durability.keep_log_from = self.migration.oldest_needed_lsn
        # True unless this pgserver is a master with no fenced partition: execute() then
        # checks what is allowed (one attribute test on the hot path otherwise).
        self.restricted = False
        self.update_restrictions()

    # ------------------------------------------------------------------ the log

    def log_write(self, argv: list[bytes], partitions: Iterable[int] | None = None) -> None:
        """Called once per executed write (or per rewritten form of it); `partitions`, if
        the caller knows them, are those of its keys."""
        self.dirty += 1
        if self.logging:
            self.durability.append(argv, self.keyspace.now, partitions)

    def _log_expiry(self, key: bytes) -> None:
        """Expiry deletes are logged as DEL, so replicas and replays never expire on their own."""
        if self.logging:
            self.durability.append([b"DEL", key], self.keyspace.now)

    def _apply_logged(self, argv: list[bytes], timestamp_ms: int) -> bool:
        self.keyspace.now = timestamp_ms
        return not execute(self.replay_ctx, argv).startswith(b"-")

    def _on_log_write(self, data: bytes, start_lsn: int) -> None:
        if self.replication.replicas:
            self.replication.on_log_write(data, start_lsn)

    def apply_replicated(self, argv: list[bytes], timestamp_ms: int) -> None:
        """Execute a command from the master's log (logging is off meanwhile)."""
        self.keyspace.now = timestamp_ms
        reply = execute(self.replay_ctx, argv)
        if reply[:1] == b"-":
            log.warning("replicated %r failed here: %r", argv[:2], reply[:200])

    def update_restrictions(self) -> None:
        """Call after a role change or a change of the fenced partitions."""
        self.restricted = self.replication.role != "master" or bool(self.keyspace.fenced)

    @property
    def reply_lsn(self) -> int:
        """Replies that observed state up to this LSN may go out: durable by the fsync
        policy and acknowledged by the replication quorum."""
        end = self.durability.log.end_lsn
        return min(self.durability.reply_lsn, self.replication.commit_lsn(end))

    def release_replies(self) -> None:
        if self._held:
            self._release(self.reply_lsn)

    def fail_uncommitted(self, why: str) -> None:
        """A master was demoted: no write it has not committed may be acknowledged now —
        neither those already waiting nor those executed earlier in this round, whose
        replies are held at the next flush and failed there."""
        self.fail_held(why)
        self._failing_why = why

    def fail_held(self, why: str) -> None:
        """Close clients whose replies wait for a commit that will not come (demotion):
        their writes were never acknowledged."""
        held, self._held = self._held, deque()
        self._commit_waits.clear()
        conns = {id(conn): conn for _lsn, conn in held}
        if conns:
            log.warning("%s: closing %d clients with uncommitted replies", why, len(conns))
        for conn in conns.values():
            conn.held.clear()
            conn.held_bytes = 0
            self.close_connection(conn)

    def held_replies(self) -> int:
        return len(self._held)

    def close_connection(self, conn: _Connection) -> None:
        if self._poller is not None and conn.fd in self._conns:
            self._close(conn, self._poller, self._conns)

    def connection_open(self, conn: _Connection) -> bool:
        return self._conns.get(conn.fd) is conn

    def stream_to(self, conn: _Connection, data: bytes, last: bool = False) -> None:
        """Send bytes pushed on a streaming connection (TSR.TAIL); `last` closes it after
        them. The caller checks first that the connection has no unsent output."""
        poller = self._poller
        if poller is None or not self.connection_open(conn):
            return
        conn.out = data
        conn.closing = conn.closing or last
        if not self._send(conn, poller):
            self._close(conn, poller, self._conns)

    def push_replica(self, replica: Replica) -> None:
        """Send a slave's queued stream bytes, unless its socket is still full."""
        conn = replica.conn
        if conn.pending or self._poller is None or conn.fd not in self._conns:
            return
        data = b"".join(replica.backlog)
        replica.backlog.clear()
        replica.backlog_bytes = 0
        conn.out = data
        if not self._send(conn, self._poller):
            self._close(conn, self._poller, self._conns)

    def reload_truncated(self, lsn: int) -> None:
        """Cut the log back to `lsn` and rebuild the keyspace from what remains."""
        self.durability.log.truncate(lsn)
        for ckpt_lsn, path in list_snapshots(self.durability.directory):
            if ckpt_lsn > lsn:
                path.unlink(missing_ok=True)
        self._reopen()

    def reset_from_checkpoint(self, incoming: Path, lsn: int) -> None:
        """Replace all local data by the master's checkpoint at `lsn` (full sync)."""
        directory = self.durability.directory
        self.durability.log.close()
        for _old, path in list_snapshots(directory):
            path.unlink(missing_ok=True)
        for segment in (directory / "log").glob("*.log"):
            segment.unlink()
        os.replace(incoming, directory / snapshot_name(lsn))
        self._reopen()

    def _reopen(self) -> None:
        old = self.durability
        old.log.close()
        self.keyspace.flush()
        self.durability = Durability(self.config, self.keyspace)
        self.durability.log.on_write = self._on_log_write
        self.durability.keep_log_from = self.migration.oldest_needed_lsn
        self.recovery = None
        self.recover()
        log.info("reloaded: log now ends at LSN %d", self.durability.log.end_lsn)

    def recover(self) -> RecoveryReport:
        """Rebuild the keyspace from the data directory (checkpoint + log replay)."""
        if not self.config.log_enabled:
            self.recovery = RecoveryReport(0, 0, 0, 0, 0, 0.0)
            return self.recovery
        self.logging = False  # replayed writes are already in the log
        try:
            report = self.durability.recover(self._apply_logged)
        finally:
            self.logging = True
            self.update_restrictions()  # fences come back with the checkpoint and the log
        self.recovery = report
        if report.checkpoint_keys or report.replayed_records or report.truncated_bytes:
            log.info(
                "recovered %d keys from checkpoint at LSN %d and %d log records in %.2fs%s",
                report.checkpoint_keys,
                report.checkpoint_lsn,
                report.replayed_records,
                report.seconds,
                f"; truncated a torn tail of {report.truncated_bytes} bytes"
                if report.truncated_bytes
                else "",
            )
        return report

    # ------------------------------------------------------------------ lifecycle

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        if self.recovery is None:
            self.recover()
        freeze_startup_heap(self.keyspace.data)  # the keys stay out of full collections
        GC_PAUSES.install()
        self.migration.forget_dumps()
        listener = self._listen()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = self.nursery = nursery
                nursery.start_soon(self._expire_loop)
                nursery.start_soon(self.migration.run)
                if self.config.log_enabled:
                    nursery.start_soon(self._sync_loop)
                    nursery.start_soon(self._checkpoint_loop)
                nursery.start_soon(self._replication_loop)
                if self.config.metrics_port is not None:
                    self.metrics_port = await nursery.start(
                        serve_metrics,
                        self.registry,
                        self.config.metrics_bind,
                        self.config.metrics_port,
                    )
                if self.replication.role == "slave":
                    self.replication._start_following()
                task_status.started(self.port)
                log.info(
                    "pgserver listening on %s:%d%s",
                    self.config.bind,
                    self.port,
                    f" (metrics http://{self.config.metrics_bind}:{self.metrics_port}/metrics)"
                    if self.metrics_port
                    else "",
                )
                await self._reactor(listener)
        finally:
            listener.close()
            self.migration.close()
            if self.config.log_enabled:
                self.durability.close()

    def shutdown(self) -> None:
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _listen(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.config.bind else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.config.bind, self.config.port))
        except OSError as exc:
            listener.close()
            raise ConfigError(
                f"cannot listen on {self.config.bind}:{self.config.port}: {exc.strerror}"
            ) from exc
        listener.listen(1024)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        return listener

    async def _reactor(self, listener: socket.socket) -> None:
        poller = self._poller = select.epoll()
        conns = self._conns
        listener_fd = listener.fileno()
        poller.register(listener_fd, select.EPOLLIN)
        wait_readable = trio.lowlevel.wait_readable
        try:
            while True:
                await wait_readable(poller)
                # Serve what is ready, then look again before going back to trio: clients
                # on other cores often have the next request in by then, and every trio
                # wakeup we save costs more than a poll(0). Bounded, so other tasks run.
                # Bounded by polls, replies and time, so other tasks run and a client's
                # small request never waits behind much more than _WAKEUP_BUDGET_S of
                # others' work (a migration's load frames, a big pipeline).
                replies: list[_Connection] = []
                deadline = time.perf_counter() + _WAKEUP_BUDGET_S
                for _ in range(_POLLS_PER_WAKEUP):
                    events = poller.poll(0)
                    if not events:
                        break
                    self._serve_events(events, listener, listener_fd, replies)
                    if len(replies) >= _REPLIES_PER_FLUSH or time.perf_counter() > deadline:
                        break
                if replies:
                    self._flush(replies)
        finally:
            for conn in list(conns.values()):
                self._close(conn, poller, conns)
            poller.close()
            self._poller = None

    def _serve_events(
        self,
        events: list[tuple[int, int]],
        listener: socket.socket,
        listener_fd: int,
        replies: list[_Connection],
    ) -> None:
        """Read and execute everything ready; connections with replies go to `replies`."""
        assert self._poller is not None
        poller = self._poller
        conns = self._conns
        self.keyspace.tick()
        now = time.monotonic()
        for fd, _mask in events:
            if fd == listener_fd:
                self._accept_all(listener, poller, conns)
                continue
            conn = conns.get(fd)
            if conn is None or conn.out:
                continue  # its replies of this round are not out yet: read it next round
            if conn.pending:
                keep = self._drain(conn, poller)
            else:
                keep = self._on_readable(conn)
                if conn.out:
                    conn.read_at = now
                    replies.append(conn)
            if not keep:
                self._close(conn, poller, conns)

    def _flush(self, replies: list[_Connection]) -> None:
        """Log everything executed since the last flush (one write), then reply."""
        assert self._poller is not None
        poller = self._poller
        durability = self.durability
        if durability.has_unwritten:
            durability.write()  # group commit: one record, one write for all these clients
        end_lsn = durability.log.end_lsn
        reply_lsn = self.reply_lsn
        if self._held:
            self._release(reply_lsn)  # what is committed goes first, in order
        if reply_lsn < end_lsn or self._held:
            # Replies that saw keys wait for the commit; control replies (PING, HELLO,
            # TSR.ROLE...) observed nothing uncommitted and go out now, unless replies of
            # the same client wait before them.
            waiting = [c for c in replies if c.ctx.touched_data or c.held]
            if waiting:
                self._hold(waiting, end_lsn)
                replies = [c for c in replies if not c.held]
        now = time.monotonic()
        observe = self.latency.observe
        for conn in replies:
            if conn.fd in self._conns:
                observe(now - conn.read_at)
                if not self._send(conn, poller):
                    self._close(conn, poller, self._conns)
        if self._failing_why:
            why, self._failing_why = self._failing_why, ""
            self.fail_held(why)

    def _hold(self, replies: list[_Connection], lsn: int) -> None:
        """Keep these replies until the log is durable up to `lsn`. The client is still
        read (its next requests run and their replies queue behind these) until it has
        _MAX_HELD_BYTES of replies waiting."""
        assert self._poller is not None
        for conn in replies:
            out = conn.out
            conn.out = b""
            conn.ctx.touched_data = False
            conn.held.append((out, conn.read_at))
            conn.held_bytes += len(out)
            self._held.append((lsn, conn))
            if not conn.paused and conn.held_bytes > _MAX_HELD_BYTES:
                conn.paused = True
                if not conn.pending:
                    self._poller.modify(conn.fd, 0)
        self._commit_waits.append((lsn, time.monotonic()))
        self._sync_wanted.set()

    def _release(self, durable_lsn: int) -> None:
        poller = self._poller
        if poller is None:
            return
        now = time.monotonic()
        waits = self._commit_waits
        while waits and waits[0][0] <= durable_lsn:
            self.commit_latency.observe(now - waits.popleft()[1])
        held = self._held
        ready: dict[int, tuple[_Connection, list[bytes]]] = {}
        observe = self.latency.observe
        while held and held[0][0] <= durable_lsn:
            conn = held.popleft()[1]
            out, read_at = conn.held.popleft()
            conn.held_bytes -= len(out)
            observe(now - read_at)
            entry = ready.get(id(conn))
            if entry is None:
                ready[id(conn)] = (conn, [out])
            else:
                entry[1].append(out)
        conns = self._conns
        for conn, parts in ready.values():
            if conns.get(conn.fd) is not conn:
                continue  # closed meanwhile
            # Not through conn.out: that may hold this round's replies, not flushed yet.
            if not self._write(conn, b"".join(parts), poller):
                self._close(conn, poller, conns)
                continue
            if conn.paused and conn.held_bytes <= _MAX_HELD_BYTES:
                conn.paused = False
                if not conn.pending:
                    poller.modify(conn.fd, select.EPOLLIN)

    async def _sync_loop(self) -> None:
        """fsync off the event loop: at once when replies wait (always), else once a second."""
        while True:
            durability = self.durability
            if durability.policy == "always":
                await self._sync_wanted.wait()
                self._sync_wanted = trio.Event()
            else:
                await trio.sleep(1.0)
                if durability.policy == "no":
                    continue
            durability = self.durability
            if durability.has_unwritten:
                durability.write()
            log_ = durability.log
            if log_.written_lsn <= log_.durable_lsn:
                continue
            batch = log_.sync_batch()
            lsn = await trio.to_thread.run_sync(batch.sync)
            log_.mark_durable(lsn)
            self.release_replies()

    async def _replication_loop(self) -> None:
        """Feed slaves that are catching up from the log files, a chunk at a time."""
        while True:
            await self.replication.wait_for_catching_up()
            await trio.sleep(0.005)
            self.replication.pump()

    async def _checkpoint_loop(self) -> None:
        while True:
            durability = self.durability
            await trio.sleep(0.05 if durability.checkpoint_job is not None else 0.25)
            durability.poll_checkpoint()
            if durability.checkpoint_due():
                durability.start_checkpoint()

    def _accept_all(
        self, listener: socket.socket, poller: select.epoll, conns: dict[int, _Connection]
    ) -> None:
        while True:
            try:
                sock, addr = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("accept failed: %s", exc)
                    return
                raise
            self.connections_received += 1
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self.clients) >= self.config.max_clients:
                self.rejected_connections += 1
                with contextlib.suppress(OSError):
                    sock.send(b"-ERR max number of clients reached\r\n")
                sock.close()
                continue
            peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
            conn = _Connection(sock, Context(self, peer), RequestParser(self.limits))
            conns[conn.fd] = conn
            self.clients[conn.ctx.client_id] = conn.ctx
            poller.register(conn.fd, select.EPOLLIN)

    def _on_readable(self, conn: _Connection) -> bool:
        """Execute one read's worth of commands into conn.out; False: close the connection."""
        try:
            data = conn.sock.recv(_RECV_BYTES)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not data:
            return False
        ctx = conn.ctx
        broken: RequestProtocolError | None = None
        parser = conn.parser
        try:
            commands = parser.feed(data)
        except RequestProtocolError as exc:
            commands, broken = exc.commands, exc
        durability = self.durability
        # Only a read that is exactly whole commands can be logged as it came.
        mark = durability.mark() if parser.exact and self.logging else None
        if len(commands) == 1:
            out = execute(ctx, commands[0])
        else:
            replies = []
            for argv in commands:
                replies.append(execute(ctx, argv))
                if ctx.close_after_reply:
                    break
            out = b"".join(replies)
        self.commands_processed += len(commands)
        if mark is not None and durability.mark() != mark:
            durability.use_raw(mark, commands, data)
        if broken is not None:
            out += encode_error(broken.reply)
            conn.closing = True
        elif ctx.close_after_reply:
            conn.closing = True
        conn.out = out
        return bool(out) or not conn.closing

    def _send(self, conn: _Connection, poller: select.epoll) -> bool:
        """Send conn.out; on a full socket keep the rest and wait for writability."""
        out = conn.out
        conn.out = b""
        conn.ctx.touched_data = False
        return self._write(conn, out, poller)

    def _write(self, conn: _Connection, data: bytes, poller: select.epoll) -> bool:
        """Send `data` after whatever the socket has not taken yet; False: close it."""
        if conn.pending:
            conn.pending = memoryview(conn.pending.tobytes() + data)
            return True
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return False
        if sent < len(data):
            conn.pending = memoryview(data)[sent:]
            poller.modify(conn.fd, select.EPOLLOUT)
            return True
        return not conn.closing

    def _drain(self, conn: _Connection, poller: select.epoll) -> bool:
        """Send what a full socket held back; resume reading once it is all out."""
        try:
            sent = conn.sock.send(conn.pending)
        except BlockingIOError:
            return True
        except OSError:
            return False
        conn.pending = conn.pending[sent:]
        if conn.pending:
            return True
        if conn.closing:
            return False
        poller.modify(conn.fd, 0 if conn.paused else select.EPOLLIN)
        if conn.replica is not None and conn.replica.backlog:
            self.push_replica(conn.replica)
        return True

    def _close(
        self, conn: _Connection, poller: select.epoll, conns: dict[int, _Connection]
    ) -> None:
        if conn.replica is not None:
            self.replication.detach(conn)
            conn.replica = None
        conns.pop(conn.fd, None)
        self.clients.pop(conn.ctx.client_id, None)
        with contextlib.suppress(OSError, ValueError):
            poller.unregister(conn.fd)
        conn.sock.close()

    async def _expire_loop(self) -> None:
        interval = self.config.active_expire_interval_ms / 1000
        budget = self.config.active_expire_budget_ms / 1000
        keyspace = self.keyspace
        while True:
            await trio.sleep(interval)
            while keyspace.active_expire(budget) and keyspace.expires:
                await trio.lowlevel.checkpoint()


class _Connection:
    """One client's socket, parser and unsent output."""

    __slots__ = (
        "closing",
        "ctx",
        "fd",
        "held",
        "held_bytes",
        "out",
        "parser",
        "paused",
        "pending",
        "read_at",
        "replica",
        "sock",
    )

    def __init__(self, sock: socket.socket, ctx: Context, parser: RequestParser) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.ctx = ctx
        self.parser = parser
        self.out = b""  # replies of the current wakeup, not yet sent
        # Replies waiting for their commit, oldest first, with when their requests were read.
        self.held: deque[tuple[bytes, float]] = deque()
        self.held_bytes = 0
        self.paused = False  # not read: too many replies wait for their commit
        self.pending = memoryview(b"")  # replies a full socket did not take
        self.closing = False
        self.replica: Replica | None = None  # set when this connection is a slave's stream
        self.read_at = 0.0  # monotonic time of the round that read the pending requests
        ctx.conn = self

"""The gateway's trio driver: clients in, backends out, replies back in order.

One reactor task owns a level-triggered epoll set with the client listener, every client
socket and every backend connection; trio waits on the epoll fd (the design measured
fastest for pgserver, see docs/architecture.md). Each round reads everything ready:
client requests are routed (at most _COMMANDS_PER_ROUND per client; the rest of a read
waits for the next round) and appended to their backend connection's output, backend
replies are cut at their boundaries and forwarded byte for byte into the waiting slot of
the client's ordered reply queue. At the end of a round each backend connection gets one
send (requests of many clients coalesced) and each client one send (all its replies that
are ready, in request order). No task exists per request.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import select
import socket
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import hiredis
import trio

from gateway import moving
from gateway.blocking import (
    AdminReply,
    BlockState,
    Expire,
    Release,
    Tick,
    Unblock,
    UpdateMap,
    WaitDrain,
)
from gateway.commands import KINDS, Kind, unsupported_error
from gateway.config import GatewayConfig
from gateway.local import LocalCommands
from gateway.metrics import collect as gateway_metrics
from gateway.routing import Backend, PartitionMap
from tessera.command_table import COMMANDS
from tessera.errors import ConfigError, ProtocolError
from tessera.gcstats import GC_PAUSES, freeze_startup_heap
from tessera.histogram import Histogram
from tessera.keys import command_keys
from tessera.metrics import new_registry, serve_metrics
from tessera.partition import keyslot
from tessera.partition import pn as partition_of
from tessera.resp import (
    Limits,
    RequestParser,
    RequestProtocolError,
    bulk_end,
    encode,
    encode_command,
    encode_error,
    line_end,
    scan_reply,
    unknown_command_reply,
)
from tessera.security import auth_accepted

log = logging.getLogger("tessera.gateway")

_RECV_BYTES: Final = 256 * 1024
# Enum member lookups cost ~150 ns each: read once, here. Final: compiled, a module constant
# is then a C static instead of a lookup in the module dict on every use.
_SINGLE: Final = Kind.SINGLE
_LOCAL: Final = Kind.LOCAL
_SPLIT: Final = Kind.SPLIT
_SAME_SLOT: Final = Kind.SAME_SLOT
_UNSUPPORTED: Final = Kind.UNSUPPORTED
_POLLS_PER_WAKEUP: Final = 8
# Commands taken from one client per round; the rest of its read waits for the next round,
# so that a client with a deep pipeline does not hold up every other client's replies. A lone
# GET among four 1000-GET pipelines waited p99 8 / 11 / 15-18 / 25-29 ms with 64 / 128 / 256 /
# 512 (36-55 ms without a cap), at the same flood throughput within the noise.
_COMMANDS_PER_ROUND: Final = 128
_EPOLLIN: Final = select.EPOLLIN
_EPOLLOUT: Final = select.EPOLLOUT
_CROSSSLOT: Final = encode_error("CROSSSLOT Keys in request don't hash to the same slot")
_NOAUTH: Final = encode_error("NOAUTH Authentication required.")
_HELD_TOO_LONG: Final = encode_error(
    "TRYAGAIN partition is being moved and the hold deadline passed; retry the request"
)
_TOO_MANY_HELD: Final = encode_error("TRYAGAIN partition is being moved; too many requests held")
_MOVED_PREFIX: Final = b"-TRYAGAIN partition "  # a fenced source master (pgserver fenced_reply)
_SIMPLE_REPLIES: Final = frozenset(b"+-:")  # one line each
_SPLIT_STEP: Final = {b"mget": 1, b"mset": 2, b"del": 1, b"unlink": 1, b"exists": 1, b"touch": 1}


class Slot:
    """One reply in a client's ordered queue; `data` is set when the reply is known.

    A slot waiting for a backend sits in that connection's FIFO itself (`pns`: the
    partitions it touches, for the in-flight counts BLOCK waits on; `argv`: the request,
    to send it again if the backend refuses it with TRYAGAIN partition).
    """

    __slots__ = ("argv", "client", "data", "pns")

    def __init__(
        self,
        client: Client,
        data: bytes | None = None,
        argv: list[bytes] | None = None,
        pns: tuple[int, ...] = (),
    ) -> None:
        self.client = client
        self.data = data
        self.argv = argv
        self.pns = pns


class Waiter:
    """A backend reply owed to a callback (part of a merge, a SCAN step, a handshake).

    `argv` is set for keyed requests (parts of a split), which a fence may refuse."""

    __slots__ = ("argv", "done", "pns")

    def __init__(
        self,
        done: Callable[[bytes], None],
        pns: tuple[int, ...],
        argv: list[bytes] | None = None,
    ) -> None:
        self.done = done
        self.pns = pns
        self.argv = argv


class Moved:
    """A request refused with TRYAGAIN partition (or queued behind one): held, then sent again.

    While sent it waits in a connection's FIFO like a Waiter; `done` delivers the reply to
    its slot or merge part. `deadline` is fixed at the first refusal; `error` is what the
    client gets if the deadline passes.
    """

    __slots__ = (
        "argv",
        "attempts",
        "backend",
        "deadline",
        "error",
        "pns",
        "resp3",
        "server",
        "target",
    )

    def __init__(
        self,
        server: GatewayServer,
        target: Slot | Callable[[bytes], None],
        argv: list[bytes],
        pns: tuple[int, ...],
        resp3: bool,
        deadline: float,
        error: bytes,
        backend: Backend,
        attempts: int = 0,
    ) -> None:
        self.server = server
        self.target = target
        self.argv = argv
        self.pns = pns
        self.resp3 = resp3
        self.deadline = deadline
        self.error = error
        self.backend = backend
        self.attempts = attempts

    def done(self, data: bytes) -> None:
        target = self.target
        if isinstance(target, Slot):
            self.server.complete(target, data)
        else:
            target(data)

    def alive(self) -> bool:
        """False when its client has gone (only known for whole requests, not parts)."""
        target = self.target
        if not isinstance(target, Slot):
            return True
        client = target.client
        return self.server.clients.get(client.id) is client


class Backlog:
    """The commands of a client's read not dispatched yet (over _COMMANDS_PER_ROUND).

    `start` is the first of them; `data` and `at` as in GatewayServer._serve: the read's bytes
    when they are exactly its commands, and where commands[start] begins in them. `broken`:
    the protocol error that ended the read, answered after them.
    """

    __slots__ = ("at", "broken", "commands", "data", "start")

    def __init__(
        self,
        commands: list[list[bytes]],
        start: int,
        data: bytes | None,
        at: int,
        broken: RequestProtocolError | None,
    ) -> None:
        self.commands = commands
        self.start = start
        self.data = data
        self.at = at
        self.broken = broken


class Client:
    """A client connection: parser, identity, ordered reply queue, unsent output."""

    __slots__ = (
        "authenticated",
        "backlog",
        "closing",
        "counted",
        "fd",
        "id",
        "lib_name",
        "lib_ver",
        "name",
        "out",
        "parser",
        "paused",
        "pending",
        "queue",
        "read_at",
        "resp3",
        "sock",
        "waiting_bytes",
    )

    def __init__(self, sock: socket.socket, client_id: int, parser: RequestParser) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.id = client_id
        self.parser = parser
        self.queue: deque[Slot] = deque()
        self.out: list[bytes] = []
        self.pending = memoryview(b"")  # output a full socket did not take
        # Output limit: bytes of `out` queued while `pending` waits, and how many items of
        # `out` they cover.
        self.waiting_bytes = 0
        self.counted = 0
        self.paused = False  # not read: too many requests in flight (max_inflight_per_client)
        self.backlog: Backlog | None = None  # not read either: commands of the last read wait
        self.closing = False
        self.authenticated = False
        self.resp3 = False
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.read_at = 0.0  # round of the oldest read not yet fully answered (0: none)


class BackendConn:
    """One connection to a backend: requests out (coalesced), replies in (FIFO)."""

    __slots__ = (
        "backend",
        "buf",
        "connected",
        "fd",
        "last_reply",  # last progress: a reply, or a request sent while none was pending
        "out",
        "resp3",
        "sock",
        "waiting",
    )

    def __init__(self, backend: Backend, resp3: bool, sock: socket.socket) -> None:
        self.backend = backend
        self.resp3 = resp3
        self.sock = sock
        self.fd = sock.fileno()
        self.connected = False
        self.out: list[bytes] = []
        self.waiting: deque[Slot | Waiter | Moved] = deque()
        self.buf = b""
        self.last_reply = time.monotonic()


class Merge:
    """Replies of the parts of a split or fanned-out command, combined when all are in."""

    __slots__ = ("combine", "finish", "left", "results")

    def __init__(
        self,
        finish: Callable[[bytes], None],
        parts: int,
        combine: Callable[[list[bytes]], bytes],
    ) -> None:
        self.finish = finish  # completes the client's slot (or an enclosing merge's part)
        self.left = parts
        self.results: list[bytes] = [b""] * parts
        self.combine = combine

    def part(self, index: int) -> Callable[[bytes], None]:
        def done(data: bytes) -> None:
            self.results[index] = data
            self.left -= 1
            if self.left == 0:
                self.finish(self.combine(self.results))

        return done


class GatewayServer:
    """Routes a Redis client's commands to the backends that own their partitions."""

    def __init__(self, config: GatewayConfig, partition_map: PartitionMap | None = None) -> None:
        self.config = config
        if partition_map is None:
            if not config.backends:
                raise ConfigError("no partition map: give --backend PN_RANGE=HOST:PORT")
            partition_map = PartitionMap.from_assignments(list(config.backends))
        self.map = partition_map
        self.limits = Limits(
            max_bulk_bytes=config.max_bulk_bytes,
            max_multibulk_len=config.max_multibulk_len,
            max_inline_bytes=config.max_inline_bytes,
        )
        self.blocks: BlockState[tuple[Slot, list[bytes]]] = BlockState(
            config.hold_timeout_ms / 1000, config.max_held_requests
        )
        retry_s = config.moving_retry_ms / 1000
        self.moving: moving.MovingHolds[Moved] = moving.MovingHolds(
            retry_s, retry_s * 8, config.max_held_requests
        )
        self.moving_hold_s = config.moving_hold_ms / 1000
        # Set by a map source that can be asked for a fresh map now (ZooKeeper); called when a
        # backend refuses a request because its partition is moving.
        self.refresh_map: Callable[[], None] | None = None
        self.local = LocalCommands(self)
        self._max_inflight = config.max_inflight_per_client
        self._resume_below = max(1, config.max_inflight_per_client // 2)
        self.port = 0
        self.admin_port = 0
        self.metrics_port = 0
        self.registry = new_registry(partial(gateway_metrics, self))
        self.started_at = time.time()
        self.clients: dict[int, Client] = {}
        self.inflight = [0] * 8192  # forwarded, unanswered requests per partition
        self.stats: dict[str, int] = {
            "connections_received": 0,
            "commands_processed": 0,
            "rejected_connections": 0,
            "output_limit_disconnects": 0,  # clients that stopped reading their replies
            "paused_clients": 0,  # times a client was not read: too many requests in flight
            "backend_errors": 0,
            "held_requests": 0,
            "expired_holds": 0,
            "moved_replies": 0,  # TRYAGAIN partition replies from backends (not forwarded)
            "moved_retries": 0,  # requests sent again after one
            "moved_timeouts": 0,  # clients answered TRYAGAIN: the hold deadline passed
            "moved_overflows": 0,  # clients answered TRYAGAIN: too many requests held
            "map_refreshes": 0,  # explicit re-reads of the map source
            "map_refresh_updates": 0,  # ... that found a newer map
        }
        # Per command name as sent (a KINDS key, so bounded): one increment per command;
        # gateway.metrics merges the spellings at scrape time.
        self.calls: dict[bytes, int] = {}
        self.errors: dict[bytes, int] = {}  # replies that were errors, per command
        self.latency = Histogram()  # per read batch: read -> last reply of it sent
        self._round_at = 0.0  # when the current reactor round started
        self._next_client_id = 1
        self._poller: select.epoll | None = None
        self._by_fd: dict[int, Client | BackendConn] = {}
        self._conns: dict[tuple[Backend, bool], BackendConn] = {}
        self._down_until: dict[Backend, float] = {}
        self._backoff: dict[Backend, float] = {}
        self._route: tuple[list[BackendConn | None], list[BackendConn | None]] = ([], [])
        self._dirty_backends: set[BackendConn] = set()
        self._dirty_clients: set[Client] = set()
        self._backlogged: list[Client] = []  # clients with a backlog, served once per round
        self._drain_waits: dict[str, tuple[tuple[tuple[int, int], ...], trio.Event]] = {}
        self._nursery: trio.Nursery | None = None
        self._rebuild_routes()

    # ------------------------------------------------------------------ lifecycle

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        from gateway.admin import AdminServer

        listener = _listen(self.config.bind, self.config.port, reuse_port=self.config.workers > 1)
        self.port = listener.getsockname()[1]
        freeze_startup_heap()
        GC_PAUSES.install()
        admin = AdminServer(self)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.admin_port = await nursery.start(admin.serve)
                if self.config.metrics_port is not None:
                    self.metrics_port = await nursery.start(
                        serve_metrics,
                        self.registry,
                        self.config.metrics_bind,
                        self.config.metrics_port,
                    )
                nursery.start_soon(self._housekeeping)
                task_status.started(self.port)
                log.info(
                    "gateway listening on %s:%d (admin %s:%d%s), %s",
                    self.config.bind,
                    self.port,
                    self.config.admin_bind,
                    self.admin_port,
                    f", metrics http://{self.config.metrics_bind}:{self.metrics_port}/metrics"
                    if self.metrics_port
                    else "",
                    self.map.describe(),
                )
                await self._reactor(listener)
        finally:
            listener.close()

    def shutdown(self) -> None:
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _reactor(self, listener: socket.socket) -> None:
        poller = self._poller = select.epoll()
        listener_fd = listener.fileno()
        poller.register(listener_fd, select.EPOLLIN)
        wait_readable = trio.lowlevel.wait_readable
        by_fd = self._by_fd
        try:
            while True:
                if self._backlogged:  # work without a socket event: only let other tasks run
                    await trio.lowlevel.checkpoint()
                else:
                    await wait_readable(poller)
                for _ in range(_POLLS_PER_WAKEUP):
                    events = poller.poll(0)
                    if not events and not self._backlogged:
                        break
                    self._round_at = time.monotonic()
                    if self._backlogged:
                        self._serve_backlogs()
                    for fd, mask in events:
                        if fd == listener_fd:
                            self._accept_all(listener)
                            continue
                        owner = by_fd.get(fd)
                        if owner is None:
                            continue
                        if type(owner) is Client:
                            self._on_client(owner, mask)
                        else:
                            self._on_backend(owner, mask)  # type: ignore[arg-type]
                    self._flush()
        finally:
            for client in list(self.clients.values()):
                self._close_client(client)
            for conn in list(self._conns.values()):
                self._close_backend(conn, "gateway shutting down")
            poller.close()
            self._poller = None

    # ------------------------------------------------------------------ clients

    def _accept_all(self, listener: socket.socket) -> None:
        assert self._poller is not None
        while True:
            try:
                sock, _addr = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("accept failed: %s", exc)
                    return
                raise
            self.stats["connections_received"] += 1
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self.clients) >= self.config.max_clients:
                self.stats["rejected_connections"] += 1
                with contextlib.suppress(OSError):
                    sock.send(b"-ERR max number of clients reached\r\n")
                sock.close()
                continue
            client = Client(sock, self._next_client_id, RequestParser(self.limits))
            self._next_client_id += 1
            client.authenticated = self.config.requirepass is None
            self.clients[client.id] = client
            self._by_fd[client.fd] = client
            self._poller.register(client.fd, select.EPOLLIN)

    def _on_client(self, client: Client, mask: int) -> None:
        if client.pending:
            # A client whose socket is full is still read (until max_inflight_per_client or
            # the output limit): one that sends its whole pipeline before reading would
            # otherwise wait for us while we wait for it.
            if mask & _EPOLLOUT or not mask & _EPOLLIN:  # writable, or an error to see
                self._drain_client(client)
            if not mask & _EPOLLIN or client.fd not in self._by_fd:
                return
        if client.backlog is not None:  # not reading: a hang-up is seen after the backlog
            return
        if client.closing:  # not reading any more: only a hang-up or an error wakes us
            self._close_client(client)
            return
        try:
            data = client.sock.recv(_RECV_BYTES)
        except BlockingIOError:
            return
        except OSError:
            self._close_client(client)
            return
        if not data:
            # End of the client's requests (it may have only shut down its sending side,
            # as `nc -N` does): answer what it sent, then close, as Redis does. While
            # requests are held for moving partitions it is closed at once instead: a client
            # that left must not have held requests sent later (docs/gateway-tryagain.md).
            if (client.queue or client.out) and not (self.moving.count or self.blocks.jobs):
                self._stop_reading(client)
            else:
                self._close_client(client)
            return
        if not client.read_at:
            client.read_at = self._round_at
        broken: RequestProtocolError | None = None
        try:
            commands = client.parser.feed(data)
        except RequestProtocolError as exc:
            commands, broken = exc.commands, exc
        self.stats["commands_processed"] += len(commands)
        self._serve(client, commands, data if client.parser.exact else None, broken)

    def _pause(self, client: Client) -> None:
        """Stop reading a client with too many requests in flight; _send_client resumes it
        once half of them are answered."""
        if client.fd in self._by_fd and not client.paused:
            client.paused = True
            self.stats["paused_clients"] += 1
            self._watch(client)

    def _stop_reading(self, client: Client) -> None:
        """Read nothing more (the parser may be mid-garbage); close once replies are out."""
        client.closing = True
        if client.fd in self._by_fd:
            self._watch(client)

    def _watch(self, client: Client) -> None:
        """Wait for what the client's state needs: writability while output is pending,
        readability unless paused, closing or backlogged (a hang-up or an error wakes us
        regardless)."""
        assert self._poller is not None
        reading = not (client.paused or client.closing or client.backlog is not None)
        self._poller.modify(
            client.fd, (_EPOLLOUT if client.pending else 0) | (_EPOLLIN if reading else 0)
        )

    def _serve(
        self,
        client: Client,
        commands: list[list[bytes]],
        data: bytes | None,
        broken: RequestProtocolError | None,
        start: int = 0,
        at: int = 0,
    ) -> None:
        """Dispatch a read's commands from commands[start], the common case inline.

        A single-key command of an authenticated client, with no partition blocked or held
        and its backend not known to be down, is queued here without a call per command; a
        run of them for one backend goes into that connection's output as one piece. `data`,
        when the parser vouched (`exact`) that it is exactly `commands` (commands[start] at
        `at`), is forwarded as it came, cut between runs, up to the first command that takes
        `_dispatch`; after that, commands are encoded again. Beyond _COMMANDS_PER_ROUND the
        rest becomes the client's backlog, served in the next round.
        """
        kinds = KINDS
        owner = self.map.owner
        route = self._route[client.resp3]
        fast = client.authenticated and not (self.blocks.jobs or self.moving.count)
        queue = client.queue
        inflight = self.inflight
        calls = self.calls
        run_conn: BackendConn | None = None  # where the run of queued commands goes
        first = start  # the run's first command (it starts at `at` in data)
        stop = len(commands)
        if stop - start > _COMMANDS_PER_ROUND:
            stop = start + _COMMANDS_PER_ROUND
        i = start
        while i < stop:
            argv = commands[i]
            name = argv[0]
            if fast and kinds.get(name) is _SINGLE and len(argv) > 1:
                pn = partition_of(argv[1])
                index = owner[pn]
                conn = route[index] or self._connect_route(client.resp3, index)
                if conn is not None:
                    if conn is not run_conn:
                        if run_conn is not None:
                            at = self._cut(run_conn, commands, first, i, data, at)
                        run_conn = conn
                        first = i
                        waiting = conn.waiting
                        if not waiting:  # the timeout counts from the oldest request
                            conn.last_reply = time.monotonic()
                    slot = Slot(client, None, argv, (pn,))
                    calls[name] = calls.get(name, 0) + 1
                    queue.append(slot)
                    waiting.append(slot)
                    inflight[pn] += 1
                    i += 1
                    continue
            if run_conn is not None:
                self._cut(run_conn, commands, first, i, data, at)
                run_conn = None
            data = None
            self._dispatch(client, argv)
            i += 1
            if client.closing:
                break
            # The command may have changed what the inline path depends on (AUTH, HELLO 3).
            route = self._route[client.resp3]
            fast = client.authenticated and not (self.blocks.jobs or self.moving.count)
        if run_conn is not None:
            if data is not None and first == 0 and i == len(commands):  # one run: the read
                run_conn.out.append(data)
                self._dirty_backends.add(run_conn)
            else:
                at = self._cut(run_conn, commands, first, i, data, at)
        if client.closing:
            self._stop_reading(client)
        elif i < len(commands):
            client.backlog = Backlog(commands, i, data, at, broken)
            self._backlogged.append(client)
            if not start and client.fd in self._by_fd:  # newly backlogged: stop reading it
                self._watch(client)
        elif broken is not None:
            self._reply(client, encode_error(broken.reply))
            self._stop_reading(client)
        elif start and client.fd in self._by_fd:  # a backlog done: read the client again
            self._watch(client)
        if len(queue) >= self._max_inflight:
            self._pause(client)

    def _serve_backlogs(self) -> None:
        """Serve the next commands of every client with a backlog (before new reads)."""
        clients, self._backlogged = self._backlogged, []
        for client in clients:
            backlog = client.backlog
            client.backlog = None
            if backlog is not None and client.fd in self._by_fd:
                self._serve(
                    client,
                    backlog.commands,
                    backlog.data,
                    backlog.broken,
                    backlog.start,
                    backlog.at,
                )

    def _cut(
        self,
        conn: BackendConn,
        commands: list[list[bytes]],
        first: int,
        stop: int,
        data: bytes | None,
        at: int,
    ) -> int:
        """Append commands[first:stop] (already queued on `conn`) to the connection's output:
        data[at:end] when the read's bytes are known to be them, else encoded one by one.
        Returns `end`, where the next command starts in data."""
        if data is None:
            conn.out.extend([encode_command(argv) for argv in commands[first:stop]])
            end = 0
        elif stop == len(commands):
            end = len(data)
            conn.out.append(data if at == 0 else data[at:])
        else:
            end = at + _encoded_size(commands, first, stop)
            conn.out.append(data[at:end])
        self._dirty_backends.add(conn)
        return end

    def _reply(self, client: Client, data: bytes) -> None:
        """Queue a reply that is known right away (after earlier ones, in order)."""
        if client.queue:
            client.queue.append(Slot(client, data))
        else:
            client.out.append(data)
            self._dirty_clients.add(client)

    def complete(self, slot: Slot, data: bytes) -> None:
        """A slot's reply arrived: release every finished reply at the queue's head."""
        slot.data = data
        if data[0] == 45 and slot.argv is not None:  # b"-": errors are rare
            self._count_error(slot.argv[0])
        client = slot.client
        queue = client.queue
        if queue and queue[0] is slot:
            out = client.out
            while queue and queue[0].data is not None:
                out.append(queue.popleft().data)  # type: ignore[arg-type]
            self._dirty_clients.add(client)

    def _count_error(self, name: bytes) -> None:
        name = name.lower()  # any spelling may get here: keep the label set bounded
        if name not in KINDS:
            name = b"unknown"
        self.errors[name] = self.errors.get(name, 0) + 1

    def _reply_error(self, client: Client, name: bytes, data: bytes) -> None:
        self._count_error(name)
        self._reply(client, data)

    def _dispatch(self, client: Client, argv: list[bytes]) -> None:
        name = argv[0]
        kind = KINDS.get(name)
        if kind is None:
            name = name.lower()
            kind = KINDS.get(name)
            if kind is None:
                self.calls[b"unknown"] = self.calls.get(b"unknown", 0) + 1
                text = unsupported_error(name)
                reply = encode_error(text) if text else unknown_command_reply(argv)
                self._reply_error(client, name, reply)
                return
        calls = self.calls
        calls[name] = calls.get(name, 0) + 1
        if kind is _SINGLE and client.authenticated:
            if len(argv) < 2:  # the backend checks the full arity; the key must be there
                self._reply_error(client, name, _arity_error(name))
                return
            slot = Slot(client, None, argv)
            client.queue.append(slot)
            self._route_single(slot, argv)
            return
        lowered = name.decode().lower()
        arity = COMMANDS[lowered][0] if lowered in COMMANDS else -1
        if (arity > 0 and len(argv) != arity) or len(argv) < -arity:
            self._reply_error(client, name, _arity_error(name))  # before NOAUTH, as Redis does
            return
        if not client.authenticated and lowered not in ("auth", "hello", "quit"):
            self._reply_error(client, name, _NOAUTH)
            return
        if kind is _SINGLE:
            slot = Slot(client, None, argv)
            client.queue.append(slot)
            self._route_single(slot, argv)
            return
        if kind is _LOCAL:
            reply = self.local.execute(client, lowered, argv)
            if reply[:1] == b"-":
                self._count_error(name)
            self._reply(client, reply)
            return
        if kind is _UNSUPPORTED:
            self._reply_error(
                client, name, encode_error(unsupported_error(name) or "ERR unsupported")
            )
            return
        slot = Slot(client, None, argv)  # argv: the command an error reply is counted for
        client.queue.append(slot)
        if kind is _SAME_SLOT:
            keys = command_keys(argv)
            if keys and len({keyslot(k) for k in keys}) > 1:
                self.complete(slot, _CROSSSLOT)
                return
            self._route_single(slot, argv, partition_of(keys[0]) if keys else 0)
        elif kind is _SPLIT:
            self._route_split(slot, argv, lowered)
        else:
            self._route_fanout(slot, argv, lowered)

    # ------------------------------------------------------------------ routing

    def _route_single(self, slot: Slot, argv: list[bytes], pn: int = -1) -> None:
        if pn < 0:
            pn = partition_of(argv[1])
        job = self.blocks.blocked_job[pn]
        if job is not None:
            self._hold(job, slot, argv)
            return
        if self.moving.count and self.moving.pn_held[pn]:
            self._hold_behind(slot, argv, (pn,))
            return
        conn = self._route[slot.client.resp3][self.map.owner[pn]]
        if conn is None:
            conn = self._connect_route(slot.client.resp3, self.map.owner[pn])
            if conn is None:
                self.complete(slot, self._unavailable(self.map.backend_of(pn)))
                return
        slot.pns = (pn,)
        slot.argv = argv
        self._send_to(conn, encode_command(argv), slot)

    def _hold(self, job: str, slot: Slot, argv: list[bytes]) -> None:
        if self.blocks.hold(job, (slot, argv), time.monotonic()):
            self.stats["held_requests"] += 1
        else:
            self.complete(slot, _TOO_MANY_HELD)

    def _route_split(self, slot: Slot, argv: list[bytes], name: str) -> None:
        step = 2 if name == "mset" else 1
        args = argv[1:]
        if len(args) % step:
            self.complete(slot, _arity_error(argv[0]))  # MSET k1 v1 k2: Redis writes nothing
            return
        pns = [partition_of(args[i]) for i in range(0, len(args), step)]
        blocked = self.blocks.blocked_job
        for pn in pns:
            job = blocked[pn]
            if job is not None:
                self._hold(job, slot, argv)
                return
        if self.moving.count and self.moving.touches(pns):
            self._hold_behind(slot, argv, tuple(pns))
            return
        groups = _split_groups(self.map.owner, pns)
        if len(groups) == 1:
            (index,) = groups
            self._forward(slot, argv, index, tuple(pns))
            return
        resp3 = slot.client.resp3
        combine = _MERGERS[name](len(pns), list(groups.values()), resp3)
        merge = Merge(partial(self.complete, slot), len(groups), combine)
        for part, (index, ordinals) in enumerate(groups.items()):
            sub = _split_part(argv, step, ordinals)
            part_pns = tuple(pns[k] for k in ordinals)
            conn = self._conn_for(resp3, index)
            if conn is None:
                merge.part(part)(self._unavailable(self.map.backends[index]))
            else:
                self._send_to(conn, encode_command(sub), Waiter(merge.part(part), part_pns, sub))

    def _forward(self, slot: Slot, argv: list[bytes], index: int, pns: tuple[int, ...]) -> None:
        conn = self._conn_for(slot.client.resp3, index)
        if conn is None:
            self.complete(slot, self._unavailable(self.map.backends[index]))
            return
        slot.pns = pns
        slot.argv = argv
        self._send_to(conn, encode_command(argv), slot)

    def _route_fanout(self, slot: Slot, argv: list[bytes], name: str) -> None:
        resp3 = slot.client.resp3
        backends = list(range(len(self.map.backends)))
        if name in ("flushall", "flushdb") and not self.config.allow_flush:
            self.complete(
                slot,
                encode_error(
                    f"ERR {name.upper()} through the gateway is disabled; "
                    "start it with --allow-flush"
                ),
            )
            return
        if self.blocks.jobs and name in ("flushall", "flushdb"):
            self.complete(slot, encode_error("TRYAGAIN partitions are being moved"))
            return
        if name == "scan":
            self._route_scan(slot, argv)
            return
        combine = _FANOUT_MERGERS[name](resp3)
        merge = Merge(partial(self.complete, slot), len(backends), combine)
        for part, index in enumerate(backends):
            conn = self._conn_for(resp3, index)
            if conn is None:
                merge.part(part)(self._unavailable(self.map.backends[index]))
            else:
                self._send_to(conn, encode_command(argv), Waiter(merge.part(part), ()))

    def _route_scan(self, slot: Slot, argv: list[bytes]) -> None:
        """SCAN visits backends one after the other; the cursor holds both positions.

        cursor = backend_cursor * 10000 + backend index (as nbase-arc's gateway does).
        """
        try:
            cursor = int(argv[1])
            if cursor < 0:
                raise ValueError
        except ValueError:
            self.complete(slot, encode_error("ERR invalid cursor"))
            return
        index, backend_cursor = cursor % 10000, cursor // 10000
        count = len(self.map.backends)
        if index >= count:
            self.complete(slot, encode([b"0", []], slot.client.resp3))
            return
        sub = [argv[0], str(backend_cursor).encode(), *argv[2:]]
        resp3 = slot.client.resp3

        def done(data: bytes) -> None:
            reply = _parse(data)
            if not isinstance(reply, list):
                self.complete(slot, data)
                return
            next_cursor = int(reply[0])
            if next_cursor == 0:
                combined = 0 if index + 1 >= count else index + 1
            else:
                combined = next_cursor * 10000 + index
            self.complete(slot, encode([str(combined).encode(), reply[1]], resp3))

        conn = self._conn_for(resp3, index)
        if conn is None:
            self.complete(slot, self._unavailable(self.map.backends[index]))
        else:
            self._send_to(conn, encode_command(sub), Waiter(done, ()))

    def _send_to(self, conn: BackendConn, request: bytes, waiter: Slot | Waiter | Moved) -> None:
        if not conn.waiting:
            conn.last_reply = time.monotonic()  # the timeout counts from the oldest request
        conn.out.append(request)
        conn.waiting.append(waiter)
        inflight = self.inflight
        for pn in waiter.pns:
            inflight[pn] += 1
        self._dirty_backends.add(conn)

    def _unavailable(self, backend: Backend) -> bytes:
        self.stats["backend_errors"] += 1
        return encode_error(f"ERR backend {backend.name} unavailable")

    # ------------------------------------------------------------------ backends

    def _rebuild_routes(self) -> None:
        self._route = (
            [self._conns.get((b, False)) for b in self.map.backends],
            [self._conns.get((b, True)) for b in self.map.backends],
        )

    def _conn_for(self, resp3: bool, index: int) -> BackendConn | None:
        conn = self._route[resp3][index]
        return conn if conn is not None else self._connect_route(resp3, index)

    def _connect_route(self, resp3: bool, index: int) -> BackendConn | None:
        backend = self.map.backends[index]
        conn = self._connect(backend, resp3)
        self._route[resp3][index] = conn
        return conn

    def _connect(self, backend: Backend, resp3: bool) -> BackendConn | None:
        """A (possibly still connecting) connection, or None while the backend is down."""
        existing = self._conns.get((backend, resp3))
        if existing is not None:
            return existing
        if self._down_until.get(backend, 0) > time.monotonic():
            return None
        sock = socket.socket(socket.AF_INET6 if ":" in backend.host else socket.AF_INET)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex((backend.host, backend.port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self._mark_down(backend)
            return None
        conn = BackendConn(backend, resp3, sock)
        secret = self.config.cluster_secret
        if secret is not None:  # pgservers refuse (and close) a connection without it
            conn.out.append(encode_command([b"AUTH", secret.encode()]))
            conn.waiting.append(Waiter(partial(_check_backend_auth, backend), ()))
        if resp3:
            conn.out.append(encode_command([b"HELLO", b"3"]))
            conn.waiting.append(Waiter(_ignore, ()))
        self._conns[(backend, resp3)] = conn
        self._by_fd[conn.fd] = conn
        assert self._poller is not None
        self._poller.register(conn.fd, select.EPOLLIN | select.EPOLLOUT)
        return conn

    def _mark_down(self, backend: Backend) -> None:
        backoff = min(
            self._backoff.get(backend, self.config.reconnect_backoff_ms / 2000) * 2,
            self.config.max_reconnect_backoff_ms / 1000,
        )
        self._backoff[backend] = backoff
        self._down_until[backend] = time.monotonic() + backoff

    def _on_backend(self, conn: BackendConn, mask: int) -> None:
        assert self._poller is not None
        if not conn.connected:
            err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err or (mask & (select.EPOLLERR | select.EPOLLHUP) and not mask & select.EPOLLIN):
                self._close_backend(conn, "connection refused")
                self._mark_down(conn.backend)
                return
            conn.connected = True
            self._backoff.pop(conn.backend, None)
            self._down_until.pop(conn.backend, None)
            self._poller.modify(conn.fd, select.EPOLLIN)
            if conn.out:
                self._dirty_backends.add(conn)
            if not mask & select.EPOLLIN:
                return
        elif mask & select.EPOLLOUT:
            self._poller.modify(conn.fd, select.EPOLLIN)
            self._dirty_backends.add(conn)
            if not mask & select.EPOLLIN:
                return
        try:
            data = conn.sock.recv(_RECV_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_backend(conn, "connection lost")
            return
        buf = conn.buf + data if conn.buf else data
        size = len(buf)
        pos = 0
        waiting = conn.waiting
        inflight = self.inflight
        try:
            while pos < size:
                # Bulk strings, simple strings, errors and integers (nearly every reply) are
                # cut by short compiled loops; scan_reply only for the others.
                kind = buf[pos]
                if kind == 36:  # b"$"
                    end = bulk_end(buf, pos, size)
                    if end < 0:
                        break
                elif kind in _SIMPLE_REPLIES:
                    end = line_end(buf, pos, size) + 2
                    if end < 2:
                        break
                else:
                    end = scan_reply(buf, pos)
                    if end < 0:
                        break
                if not waiting:
                    raise ValueError("reply without a request")
                waiter = waiting.popleft()
                for pn in waiter.pns:
                    inflight[pn] -= 1
                if (
                    kind == 45  # b"-": the one check a reply pays (errors are rare)
                    and waiter.argv is not None
                    and buf.startswith(_MOVED_PREFIX, pos)
                ):
                    self._on_moved(conn, waiter, buf[pos:end])
                elif type(waiter) is Slot:
                    self.complete(waiter, buf[pos:end])
                else:
                    waiter.done(buf[pos:end])  # type: ignore[union-attr]
                pos = end
        except (ValueError, ProtocolError) as exc:
            log.error(
                "backend %s sent garbage (%s); dropping the connection", conn.backend.name, exc
            )
            self._close_backend(conn, "protocol error")
            return
        conn.buf = buf[pos:] if pos < len(buf) else b""
        conn.last_reply = time.monotonic()

    def _close_backend(self, conn: BackendConn, why: str) -> None:
        """Close and forget a backend connection; every request it owed gets an error.

        A connection interrupted between request and reply is never reused.
        """
        if self._conns.get((conn.backend, conn.resp3)) is conn:
            del self._conns[(conn.backend, conn.resp3)]
        self._by_fd.pop(conn.fd, None)
        self._dirty_backends.discard(conn)
        if self._poller is not None:
            with contextlib.suppress(OSError, ValueError):
                self._poller.unregister(conn.fd)
        conn.sock.close()
        self._rebuild_routes()
        waiting, conn.waiting = conn.waiting, deque()
        if waiting:
            log.warning("backend %s: %s; failing %d requests", conn.backend.name, why, len(waiting))
        error = self._unavailable(conn.backend)
        for waiter in waiting:
            for pn in waiter.pns:
                self.inflight[pn] -= 1
            if isinstance(waiter, Slot):
                self.complete(waiter, error)
            else:
                waiter.done(error)
        if self.moving.count:  # requests this backend refused and that wait for a retry
            self._apply_moving(self.moving.handle(moving.BackendLost((conn.backend, conn.resp3))))

    # ------------------------------------------------------------------ output

    def _flush(self) -> None:
        """One send per backend with requests, then one per client with replies."""
        if self._dirty_backends:
            backends, self._dirty_backends = self._dirty_backends, set()
            for conn in backends:
                if not conn.connected or not conn.out:
                    continue
                data = b"".join(conn.out) if len(conn.out) > 1 else conn.out[0]
                conn.out = []
                try:
                    sent = conn.sock.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    self._close_backend(conn, "send failed")
                    continue
                if sent < len(data):
                    conn.out = [data[sent:]]
                    assert self._poller is not None
                    self._poller.modify(conn.fd, select.EPOLLIN | select.EPOLLOUT)
        if self._dirty_clients:
            clients, self._dirty_clients = self._dirty_clients, set()
            now = time.monotonic()
            for client in clients:
                self._send_client(client, now)

    def _send_client(self, client: Client, now: float) -> None:
        if client.fd not in self._by_fd:
            return
        if client.paused and len(client.queue) < self._resume_below:
            client.paused = False
            self._watch(client)
        out = client.out
        if client.pending:
            if len(out) > client.counted:
                self._check_output_limit(client)
            return
        if not out:
            if client.closing and not client.queue:
                self._close_client(client)
            return
        data = b"".join(out) if len(out) > 1 else out[0]
        client.out = []
        if client.counted:
            client.counted = client.waiting_bytes = 0
        try:
            sent = client.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close_client(client)
            return
        if sent < len(data):
            client.pending = memoryview(data)[sent:]
            self._watch(client)
            return
        if not client.queue:
            if client.read_at and client.backlog is None:  # all read so far answered
                self.latency.observe(now - client.read_at)
                client.read_at = 0.0
            if client.closing:
                self._close_client(client)

    def _check_output_limit(self, client: Client) -> None:
        """More replies queued behind output the client's socket has not taken: disconnect
        it once all that exceeds the limit (one reply alone is never cut)."""
        out = client.out
        client.waiting_bytes += sum(len(item) for item in out[client.counted :])
        client.counted = len(out)
        unsent = len(client.pending) + client.waiting_bytes
        if unsent > self.config.client_output_limit_bytes:
            self.stats["output_limit_disconnects"] += 1
            log.warning(
                "client %d does not read its replies (%d bytes unsent, limit %d): closing it",
                client.id,
                unsent,
                self.config.client_output_limit_bytes,
            )
            self._close_client(client)

    def _drain_client(self, client: Client) -> None:
        try:
            sent = client.sock.send(client.pending)
        except BlockingIOError:
            return
        except OSError:
            self._close_client(client)
            return
        client.pending = client.pending[sent:]
        if not client.pending:
            self._watch(client)
            self._dirty_clients.add(client)

    def _close_client(self, client: Client) -> None:
        if self._by_fd.pop(client.fd, None) is None:
            return
        self.clients.pop(client.id, None)
        self._dirty_clients.discard(client)
        if self._poller is not None:
            with contextlib.suppress(OSError, ValueError):
                self._poller.unregister(client.fd)
        client.sock.close()
        client.queue.clear()
        client.out = []
        client.pending = memoryview(b"")
        client.backlog = None

    # ------------------------------------------------------------------ block / redirect

    def apply_block_actions(self, actions: list[Any]) -> list[AdminReply]:
        """Carry out the block state machine's actions; admin replies are returned."""
        replies: list[AdminReply] = []
        for action in actions:
            if isinstance(action, AdminReply):
                replies.append(action)
                wait = self._drain_waits.get(action.job)
                if wait is not None and action.job not in self.blocks.jobs:
                    del self._drain_waits[action.job]  # ended while draining: wake its BLOCK
                    wait[1].set()
            elif isinstance(action, WaitDrain):
                if action.job not in self._drain_waits:  # a repeated BLOCK shares the wait
                    self._drain_waits[action.job] = (action.ranges, trio.Event())
            elif isinstance(action, UpdateMap):
                self.set_map(
                    self.map.with_ranges(
                        list(action.ranges), Backend.parse(action.backend), action.version
                    )
                )
            elif isinstance(action, Release):
                for slot, argv in action.items:
                    if slot.client.fd in self._by_fd:
                        self._dispatch_held(slot, argv)
            elif isinstance(action, Expire):
                for slot, _argv in action.items:
                    self.stats["expired_holds"] += 1
                    self.complete(slot, _HELD_TOO_LONG)
        self._flush()
        return replies

    def _dispatch_held(self, slot: Slot, argv: list[bytes]) -> None:
        name = argv[0].decode().lower()
        kind = KINDS[name.encode()]
        if kind is _SPLIT:
            self._route_split(slot, argv, name)
        elif kind is _SAME_SLOT:
            keys = command_keys(argv)
            self._route_single(slot, argv, partition_of(keys[0]))
        else:
            self._route_single(slot, argv)

    def drain_event(self, job: str) -> trio.Event | None:
        wait = self._drain_waits.get(job)
        return None if wait is None else wait[1]

    def backend_connections(self) -> int:
        return len(self._conns)

    def inflight_in(self, ranges: tuple[tuple[int, int], ...]) -> int:
        return sum(sum(self.inflight[a : b + 1]) for a, b in ranges)

    def set_map(self, new_map: PartitionMap) -> bool:
        """Adopt a newer map (never an older one); requests held for TRYAGAIN go again."""
        if new_map.version < self.map.version:
            return False
        newer = new_map.version > self.map.version
        old_map, self.map = self.map, new_map
        self._rebuild_routes()
        log.info("partition map %s", new_map.describe())
        for job in self._blocks_with_new_owners(old_map, new_map):
            log.info("the new map moves partitions blocked by %s: ending that block", job)
            self.apply_block_actions(self.blocks.handle(Unblock(job)))
        if newer and self.moving.count:
            self._apply_moving(self.moving.handle(moving.MapChanged()))
            self._flush()
        return True

    def _blocks_with_new_owners(self, old: PartitionMap, new: PartitionMap) -> list[str]:
        """Blocked jobs some of whose partitions the new map gives to another backend."""
        ended = []
        for name, job in self.blocks.jobs.items():
            for first, last in job.ranges:
                if any(
                    old.backend_of(pn).name != new.backend_of(pn).name
                    for pn in range(first, last + 1)
                ):
                    ended.append(name)
                    break
        return ended

    # ------------------------------------------------------------------ moving partitions

    def _on_moved(self, conn: BackendConn, waiter: Slot | Waiter | Moved, error: bytes) -> None:
        """A backend refused a request: its partition is fenced (moving). Hold, retry later.

        Its slot stays in the client's queue unfilled, so no later reply overtakes it.
        """
        self.stats["moved_replies"] += 1
        now = time.monotonic()
        if type(waiter) is Moved:
            moved = waiter
            moved.error = error
            moved.backend = conn.backend
        else:
            assert waiter.argv is not None
            moved = Moved(
                self,
                waiter if isinstance(waiter, Slot) else waiter.done,
                waiter.argv,
                waiter.pns,
                conn.resp3,
                now + self.moving_hold_s,
                error,
                conn.backend,
            )
        if now >= moved.deadline:
            self.stats["moved_timeouts"] += 1
            moved.done(error)
            return
        self._hold_moved(moved, now)
        self._request_refresh()

    def _hold_behind(self, slot: Slot, argv: list[bytes], pns: tuple[int, ...]) -> None:
        """A new request for partitions that have held requests waits behind them (order)."""
        now = time.monotonic()
        backend = self.map.backend_of(pns[0])
        error = _moved_error(pns[0])
        moved = Moved(
            self, slot, argv, pns, slot.client.resp3, now + self.moving_hold_s, error, backend
        )
        self._hold_moved(moved, now)

    def _hold_moved(self, moved: Moved, now: float) -> None:
        key = (moved.backend, moved.resp3)
        if not self.moving.hold(moved, moved.pns, key, moved.deadline, moved.attempts, now):
            self.stats["moved_overflows"] += 1
            moved.done(moved.error)

    def _request_refresh(self) -> None:
        if self.refresh_map is not None:
            self.refresh_map()

    def _apply_moving(self, actions: list[moving.Action[Moved]]) -> None:
        """Carry out the moving holds' actions (the caller flushes)."""
        for action in actions:
            if isinstance(action, moving.Resend):
                for moved in action.items:
                    if moved.alive():
                        self._resend(moved)
            elif isinstance(action, moving.Expire):
                self.stats["moved_timeouts"] += len(action.items)
                for moved in action.items:
                    moved.done(moved.error)
            elif isinstance(action, moving.Fail):
                for moved in action.items:
                    moved.done(self._unavailable(moved.backend))
            else:
                self._request_refresh()

    def _resend(self, moved: Moved) -> None:
        """Route a held request with the map as it is now (split again if need be)."""
        blocked = self.blocks.blocked_job
        if any(blocked[pn] is not None for pn in moved.pns):
            # A BLOCK came meanwhile: wait for its REDIRECT (a new map) or UNBLOCK.
            self._hold_moved(moved, time.monotonic())
            return
        moved.attempts += 1
        self.stats["moved_retries"] += 1
        argv = moved.argv
        owner = self.map.owner
        step = _SPLIT_STEP.get(argv[0].lower())
        if step is not None:
            groups = _split_groups(owner, list(moved.pns))
            if len(groups) > 1:  # the map changed under a multi-key request: split it again
                name = argv[0].decode().lower()
                combine = _MERGERS[name](len(moved.pns), list(groups.values()), moved.resp3)
                merge = Merge(moved.done, len(groups), combine)
                for part, (index, ordinals) in enumerate(groups.items()):
                    sub = Moved(
                        self,
                        merge.part(part),
                        _split_part(argv, step, ordinals),
                        tuple(moved.pns[k] for k in ordinals),
                        moved.resp3,
                        moved.deadline,
                        moved.error,
                        moved.backend,
                        moved.attempts,
                    )
                    self._send_moved(sub, index)
                return
        self._send_moved(moved, owner[moved.pns[0]])

    def _send_moved(self, moved: Moved, index: int) -> None:
        backend = self.map.backends[index]
        conn = self._conn_for(moved.resp3, index)
        if conn is None:
            moved.done(self._unavailable(backend))
            return
        moved.backend = backend
        self._send_to(conn, encode_command(moved.argv), moved)

    async def _housekeeping(self) -> None:
        """Hold deadlines, drain notices, backend timeouts: every 10 ms / 100 ms."""
        from gateway.blocking import Drained

        ticks = 0
        while True:
            await trio.sleep(0.01)
            ticks += 1
            now = time.monotonic()
            if self.blocks.jobs:
                self.apply_block_actions(self.blocks.handle(Tick(now)))
            if self.moving.count:
                self._apply_moving(self.moving.handle(moving.Tick(now)))
                self._flush()
            for job, (ranges, event) in list(self._drain_waits.items()):
                if self.inflight_in(ranges) == 0:
                    del self._drain_waits[job]
                    self.apply_block_actions(self.blocks.handle(Drained(job)))
                    event.set()
            if ticks % 10 == 0:
                timeout = self.config.backend_timeout_ms / 1000
                for conn in list(self._conns.values()):
                    if conn.waiting and now - conn.last_reply > timeout:
                        self._close_backend(conn, f"no reply for {timeout:.1f}s")
                self._flush()


def _bulk_size(n: int) -> int:
    """Bytes of a bulk string of n bytes: "$n\r\n...\r\n"."""
    return n + 5 + len(str(n))


_BULK_SIZE: Final = [_bulk_size(n) for n in range(4096)]  # the sizes most arguments have


def _encoded_size(commands: list[list[bytes]], first: int, stop: int) -> int:
    """Bytes of commands[first:stop] as RESP arrays of bulk strings.

    Exact only for the canonical encoding (no leading zeros or signs), which is what the
    parser's `exact` vouches for: hiredis refuses the others and the parser rescans them.
    """
    size = 0
    bulk = _BULK_SIZE
    try:
        for k in range(first, stop):
            argv = commands[k]
            size += bulk[len(argv)] - len(argv) - 2  # "*N\r\n"
            for arg in argv:
                size += bulk[len(arg)]
    except IndexError:  # an argument of 4 KB or more
        return sum(
            _bulk_size(len(argv)) - len(argv) - 2 + sum(_bulk_size(len(arg)) for arg in argv)
            for argv in commands[first:stop]
        )
    return size


def _ignore(data: bytes) -> None:
    return None


def _check_backend_auth(backend: Backend, data: bytes) -> None:
    """A refused cluster secret: the pgserver closes the connection, its requests fail."""
    if not auth_accepted(data.rstrip(b"\r\n")):
        log.error("backend %s refused the cluster secret: %r", backend.name, data[:200])


def _moved_error(pn: int) -> bytes:
    """What a fenced pgserver answers (pgserver.context.fenced_reply), for requests held
    behind a refused one that pass their deadline without having been sent."""
    return encode_error(
        f"TRYAGAIN partition {pn} is moving to another partition group; "
        "refresh the partition map and retry"
    )


def _split_groups(owner: bytes | tuple[int, ...], pns: list[int]) -> dict[int, list[int]]:
    """backend index -> ordinals of the keys (of a split command) it owns."""
    groups: dict[int, list[int]] = {}
    for ordinal, pn in enumerate(pns):
        groups.setdefault(owner[pn], []).append(ordinal)
    return groups


def _split_part(argv: list[bytes], step: int, ordinals: list[int]) -> list[bytes]:
    """The command for some of the keys (with their values for MSET)."""
    sub = [argv[0]]
    for k in ordinals:
        start = 1 + k * step
        sub.extend(argv[start : start + step])
    return sub


def _arity_error(name: bytes) -> bytes:
    return encode_error(f"ERR wrong number of arguments for '{name.decode().lower()}' command")


def _listen(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(1024)
    sock.setblocking(False)
    return sock


# ---------------------------------------------------------------------- merging replies


def _parse(data: bytes) -> Any:
    reader = hiredis.Reader()
    reader.feed(data)
    return reader.gets()


def _first_error(parts: list[bytes]) -> bytes | None:
    for part in parts:
        if part[:1] == b"-":
            return part
    return None


def _merge_mget(total: int, groups: list[list[int]], resp3: bool) -> Callable[[list[bytes]], bytes]:
    def combine(parts: list[bytes]) -> bytes:
        error = _first_error(parts)
        if error is not None:
            return error
        values: list[Any] = [None] * total
        for positions, part in zip(groups, parts, strict=True):
            for position, value in zip(positions, _parse(part), strict=True):
                values[position] = value
        return encode(values, resp3)

    return combine


def _merge_ok(total: int, groups: list[list[int]], resp3: bool) -> Callable[[list[bytes]], bytes]:
    def combine(parts: list[bytes]) -> bytes:
        return _first_error(parts) or b"+OK\r\n"

    return combine


def _merge_sum(total: int, groups: list[list[int]], resp3: bool) -> Callable[[list[bytes]], bytes]:
    def combine(parts: list[bytes]) -> bytes:
        error = _first_error(parts)
        if error is not None:
            return error
        return b":%d\r\n" % sum(int(part[1:-2]) for part in parts)

    return combine


_MERGERS: Final = {
    "mget": _merge_mget,
    "mset": _merge_ok,
    "del": _merge_sum,
    "unlink": _merge_sum,
    "exists": _merge_sum,
    "touch": _merge_sum,
}


def _fanout_sum(resp3: bool) -> Callable[[list[bytes]], bytes]:
    return _merge_sum(0, [], resp3)


def _fanout_ok(resp3: bool) -> Callable[[list[bytes]], bytes]:
    return _merge_ok(0, [], resp3)


def _fanout_keys(resp3: bool) -> Callable[[list[bytes]], bytes]:
    def combine(parts: list[bytes]) -> bytes:
        error = _first_error(parts)
        if error is not None:
            return error
        keys: list[Any] = []
        for part in parts:
            keys.extend(_parse(part))
        return encode(keys, resp3)

    return combine


def _fanout_randomkey(resp3: bool) -> Callable[[list[bytes]], bytes]:
    import random

    def combine(parts: list[bytes]) -> bytes:
        error = _first_error(parts)
        if error is not None:
            return error
        found = [p for p in parts if p not in (b"$-1\r\n", b"_\r\n")]
        return random.choice(found) if found else parts[0]

    return combine


_FANOUT_MERGERS: Final = {
    "dbsize": _fanout_sum,
    "flushall": _fanout_ok,
    "flushdb": _fanout_ok,
    "keys": _fanout_keys,
    "randomkey": _fanout_randomkey,
}

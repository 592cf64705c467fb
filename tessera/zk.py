"""A small typed trio adapter around kazoo's KazooClient.

kazoo is thread-based. Here every blocking call runs in `trio.to_thread.run_sync` with a
timeout, and everything kazoo calls back (watches, connection-state listeners) only *forwards*
into trio with `TrioToken.run_sync_soon`, which never waits: a kazoo thread is never blocked by
a slow trio consumer, and trio code never runs outside the trio thread. Subscribers get bounded
memory channels that drop stale values instead of growing (watches keep only the latest value).

kazoo exceptions are translated to `CoordinationError` subclasses here, at the boundary.

The chroot is applied by this adapter rather than by kazoo: kazoo cannot create a nested chroot
from a chrooted client, and warns (an error under pytest) when the chroot is missing at start.

Leader election (`campaign`) uses ephemeral sequential candidates; the lowest one leads, each
candidate watches only its predecessor, and every new leader bumps an epoch counter node whose
znode version *is* the epoch, so a leader fences its writes with `CheckOp(epoch_path, epoch)`.

Somewhat over 800 lines on purpose: `Leadership` is driven by the client's private forwarding
and watch plumbing, and this is the one module that imports kazoo.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

import trio
from kazoo import exceptions as kz
from kazoo.client import KazooClient
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.connection import _CONNECTION_DROP
from kazoo.recipe.watchers import ChildrenWatch, DataWatch
from kazoo.retry import KazooRetry
from kazoo.security import make_acl, make_digest_acl

from tessera.errors import CoordinationError
from tessera.security import ZkAuth

log = logging.getLogger(__name__)

T = TypeVar("T")

CONNECTED = "CONNECTED"
SUSPENDED = "SUSPENDED"
LOST = "LOST"

WATCH_BUFFER = 16
CONNECT_ATTEMPTS_PER_SESSION = 3
STATE_BUFFER = 64


# --- errors -------------------------------------------------------------------------------


class NoNodeError(CoordinationError):
    """The znode does not exist."""


class NodeExistsError(CoordinationError):
    """The znode already exists."""


class BadVersionError(CoordinationError):
    """A conditional write lost the race: the znode's version was not the one expected."""


class NotEmptyError(CoordinationError):
    """A znode with children cannot be deleted without `recursive=True`."""


class ConnectionLossError(CoordinationError):
    """The connection dropped mid-request; the request may or may not have been applied."""


class SessionExpiredError(CoordinationError):
    """The session is gone (expired or the client stopped): ephemerals and watches are gone."""


class NotAuthorizedError(CoordinationError):
    """The node's ACL does not let these credentials (or none) do that."""


class ZkTimeoutError(CoordinationError):
    """ZooKeeper did not answer in time; like a connection loss, the request may still apply."""


class TransactionError(CoordinationError):
    """A transaction was rolled back; `op` (at `index`) failed with `reason`."""

    def __init__(self, index: int, op: Op, reason: CoordinationError) -> None:
        super().__init__(f"transaction rolled back: op {index} {op!r} failed: {reason}")
        self.index = index
        self.op = op
        self.reason = reason


class LeadershipLostError(CoordinationError):
    """The candidacy ended (session lost, node deleted, resigned or client stopped)."""


_TRANSLATIONS: tuple[tuple[type[BaseException], type[CoordinationError], str], ...] = (
    (kz.NoNodeError, NoNodeError, "no such node"),
    (kz.NodeExistsError, NodeExistsError, "node already exists"),
    (kz.BadVersionError, BadVersionError, "version mismatch"),
    (kz.NotEmptyError, NotEmptyError, "node has children"),
    (kz.SessionExpiredError, SessionExpiredError, "session expired or client stopped"),
    (kz.ConnectionLoss, ConnectionLossError, "connection lost"),
    (kz.ConnectionDropped, ConnectionLossError, "connection dropped"),
    (KazooTimeoutError, ZkTimeoutError, "timed out"),
    (kz.NoAuthError, NotAuthorizedError, "not authorized by the node's ACL (ZooKeeper auth)"),
    (kz.AuthFailedError, NotAuthorizedError, "ZooKeeper refused the credentials"),
)


def _translate(exc: BaseException, what: str) -> CoordinationError:
    for foreign, ours, reason in _TRANSLATIONS:
        if isinstance(exc, foreign):
            return ours(f"{what}: {reason}")
    return CoordinationError(f"{what}: {type(exc).__name__}: {exc}")


_KAZOO_ERRORS = (kz.KazooException, KazooTimeoutError)


# --- values -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ZnodeStat:
    """A znode's metadata (ZooKeeper's Stat), typed; times are milliseconds since the epoch."""

    czxid: int
    mzxid: int
    ctime_ms: int
    mtime_ms: int
    version: int
    cversion: int
    aversion: int
    ephemeral_owner: int
    data_length: int
    num_children: int
    pzxid: int

    @classmethod
    def from_kazoo(cls, stat: Any) -> ZnodeStat:
        return cls(*stat)  # kazoo's ZnodeStat namedtuple has these fields in this order


def _stat_or_none(stat: Any) -> ZnodeStat | None:
    return None if stat is None else ZnodeStat.from_kazoo(stat)


@dataclass(frozen=True, slots=True)
class CheckOp:
    """Transaction guard: `path` must be at `version`."""

    path: str
    version: int


@dataclass(frozen=True, slots=True)
class CreateOp:
    path: str
    data: bytes = b""
    ephemeral: bool = False


@dataclass(frozen=True, slots=True)
class SetOp:
    path: str
    data: bytes
    version: int = -1


@dataclass(frozen=True, slots=True)
class DeleteOp:
    path: str
    version: int = -1


Op = CheckOp | CreateOp | SetOp | DeleteOp
OpResult = str | ZnodeStat | None


def dump_json(value: Any) -> bytes:
    """Compact JSON with sorted keys: equal values give equal bytes (and diffs stay readable)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _normalize_chroot(chroot: str) -> str:
    chroot = chroot.strip().rstrip("/")
    if chroot and not chroot.startswith("/"):
        chroot = "/" + chroot
    return chroot


# --- channels fed from kazoo threads -------------------------------------------------------


class _Sink(Generic[T]):
    """One subscriber's bounded channel. Used only in the trio thread.

    When the consumer is behind, `coalesce=True` drops everything queued and keeps the newest
    value (watch values are states: only the latest matters); otherwise only the oldest value
    is dropped (connection states are a history worth keeping as far as the buffer allows).
    The consumer stops a subscription by closing its receive channel.
    """

    def __init__(self, size: int, *, coalesce: bool) -> None:
        self.send, self.recv = trio.open_memory_channel[T](size)
        self.coalesce = coalesce
        self.closed = False

    def offer(self, value: T) -> None:
        if self.closed:
            return
        try:
            try:
                self.send.send_nowait(value)
            except trio.WouldBlock:
                self._drop_stale()
                self.send.send_nowait(value)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.WouldBlock):
            # The consumer closed its end (or, impossibly, refilled it): stop delivering.
            self.close()

    def _drop_stale(self) -> None:
        while True:
            try:
                self.recv.receive_nowait()
            except trio.WouldBlock:
                return
            if not self.coalesce:
                return

    def close(self) -> None:
        self.closed = True
        self.send.close()


# --- the client ----------------------------------------------------------------------------


class ZkClient:
    """A ZooKeeper session for trio code. Paths are relative to `chroot`.

    Connection states (`states()`): CONNECTED; SUSPENDED (connection down, session may come
    back: stop leader-only work); LOST (session gone: ephemerals and leadership are gone;
    kazoo then opens a new session and reports CONNECTED again).
    """

    def __init__(
        self, hosts: str, chroot: str = "", timeout_s: float = 10.0, auth: ZkAuth | None = None
    ) -> None:
        hosts, slash, hosts_chroot = hosts.partition("/")
        self.hosts = hosts
        self.auth = auth
        self.chroot = _normalize_chroot(("/" + hosts_chroot if slash else "") + chroot)
        self.timeout_s = timeout_s
        self._client = self._new_kazoo(client_id=None)
        self._token: trio.lowlevel.TrioToken | None = None
        self._state = LOST
        self._state_changed = trio.Event()
        self._lost_count = 0
        self._state_sinks: list[_Sink[str]] = []
        self._watch_sinks: list[_Sink[Any]] = []
        self._leaderships: set[Leadership] = set()

    def _new_kazoo(self, client_id: tuple[int, bytes] | None) -> Any:
        # Reconnect quickly (at most 1 s between attempts): a session lives only `timeout_s`.
        retry = {"max_tries": -1, "delay": 0.05, "backoff": 2, "max_jitter": 0.1, "max_delay": 1}
        # kazoo gives one connection handshake `timeout_s / len(hosts)`. ZooKeeper 3.8.0 (Debian
        # 12) never answers a connection accepted in the ~0.1 s between binding its port and
        # loading its database (an NPE in ZooKeeperServer.removeCnxn), so with one host a
        # reconnect during a restart would hang for the whole session timeout and lose the
        # session. Listing a lone host three times gives each attempt a third, as with a
        # three-server ensemble.
        hosts = self.hosts.split(",")
        hosts *= -(-CONNECT_ATTEMPTS_PER_SESSION // len(hosts))
        return KazooClient(
            hosts=",".join(hosts),
            timeout=self.timeout_s,
            client_id=client_id,
            connection_retry=retry,
            **_acl_options(self.auth),
        )

    # -- lifecycle --

    async def start(self) -> None:
        """Connect (within `timeout_s`) and create the chroot if it is missing."""
        if self._token is not None:
            return
        self._token = trio.lowlevel.current_trio_token()
        self._client.add_listener(self._on_kazoo_state)
        client, timeout_s = self._client, self.timeout_s

        def connect() -> bool:
            # kazoo logs every refused attempt; a failed start is reported once, below.
            kazoo_log = logging.getLogger("kazoo.client")
            level = kazoo_log.level
            if not log.isEnabledFor(logging.DEBUG):
                kazoo_log.setLevel(logging.ERROR)
            try:
                client.start_async().wait(timeout=timeout_s)
                if client.connected:
                    return True
                client.stop()
                client.close()
                return False
            finally:
                kazoo_log.setLevel(level)

        if not await trio.to_thread.run_sync(connect):
            self._client.remove_listener(self._on_kazoo_state)
            self._token = None
            raise ZkTimeoutError(f"cannot connect to ZooKeeper at {self.hosts} in {timeout_s}s")
        if self.chroot:
            await self._call(f"create chroot {self.chroot}", client.ensure_path_async, self.chroot)

    async def stop(self) -> None:
        """Close the session: ephemerals vanish, leaderships end, every channel is closed."""
        if self._token is None:
            return
        client = self._client

        def close() -> None:
            client.stop()
            client.close()

        await trio.to_thread.run_sync(close)
        # The LOST forwarded during stop() was queued before this point and has run.
        client.remove_listener(self._on_kazoo_state)
        for leadership in list(self._leaderships):
            leadership._end("client stopped")
        for sink in [*self._state_sinks, *self._watch_sinks]:
            sink.close()
        self._state_sinks.clear()
        self._watch_sinks.clear()
        self._token = None

    async def __aenter__(self) -> ZkClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def session_id(self) -> int | None:
        client_id = self._client.client_id
        return None if client_id is None else cast(int, client_id[0])

    @property
    def state(self) -> str:
        """The connection state as last forwarded into trio."""
        return self._state

    # -- forwarding from kazoo threads --

    def _forward(self, fn: Callable[..., object], *args: Any) -> None:
        """Called in kazoo threads: queue `fn(*args)` on the trio loop, never waiting."""
        token = self._token
        if token is None:
            return
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(_guarded, fn, *args)

    def _on_kazoo_state(self, state: str) -> None:
        self._forward(self._on_state, str(state))

    def _on_state(self, state: str) -> None:
        self._state = state
        if state == LOST:
            self._lost_count += 1
        for sink in self._state_sinks:
            sink.offer(state)
        self._state_sinks = [s for s in self._state_sinks if not s.closed]
        for leadership in list(self._leaderships):
            leadership._on_state(state)
        self._state_changed.set()
        self._state_changed = trio.Event()

    def states(self) -> trio.MemoryReceiveChannel[str]:
        """Connection state changes from now on ("CONNECTED", "SUSPENDED", "LOST")."""
        sink: _Sink[str] = _Sink(STATE_BUFFER, coalesce=False)
        self._state_sinks.append(sink)
        return sink.recv

    async def wait_state(self, state: str) -> None:
        """Wait until the connection state is `state` (e.g. CONNECTED after a reconnect)."""
        while self._state != state:
            await self._state_changed.wait()

    # -- blocking calls --

    def _abs(self, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError(f"ZooKeeper paths are absolute, got {path!r}")
        if path == "/":
            return self.chroot or "/"
        return self.chroot + path

    def _rel(self, path: str) -> str:
        if self.chroot and path.startswith(self.chroot):
            return path[len(self.chroot) :] or "/"
        return path

    async def _blocking(self, what: str, fn: Callable[[], T], *, abandon: bool = False) -> T:
        try:
            return await trio.to_thread.run_sync(fn, abandon_on_cancel=abandon)
        except _KAZOO_ERRORS as exc:
            raise _translate(exc, what) from exc

    async def _call(self, what: str, start: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run a kazoo `*_async` method in a worker thread and wait at most `timeout_s`."""
        timeout_s = self.timeout_s
        return await self._blocking(what, lambda: start(*args, **kw).get(timeout=timeout_s))

    async def get(self, path: str) -> tuple[bytes, ZnodeStat]:
        data, stat = await self._call(f"get {path}", self._client.get_async, self._abs(path))
        return cast(bytes, data), ZnodeStat.from_kazoo(stat)

    async def get_many(self, paths: list[str]) -> list[bytes | None]:
        """Several nodes' data in one round trip (None where a node is missing): the
        requests are pipelined on the session and cost one worker-thread hop, not one each."""
        return await self._many("get", self._client.get_async, paths, lambda r: r[0])

    async def children_many(self, paths: list[str]) -> list[list[str] | None]:
        """Several nodes' children (sorted) in one round trip; None where a node is missing."""
        return await self._many("children", self._client.get_children_async, paths, sorted)

    async def _many(
        self,
        what: str,
        start: Callable[[str], Any],
        paths: list[str],
        convert: Callable[[Any], T],
    ) -> list[T | None]:
        if not paths:
            return []
        timeout_s = self.timeout_s
        absolute = [self._abs(p) for p in paths]

        def run() -> list[T | None]:
            pending = [start(p) for p in absolute]
            out: list[T | None] = []
            for result in pending:
                try:
                    out.append(convert(result.get(timeout=timeout_s)))
                except kz.NoNodeError:
                    out.append(None)
            return out

        return await self._blocking(f"{what} {len(paths)} nodes", run)

    async def get_json(self, path: str) -> dict[str, Any]:
        data, _stat = await self.get(path)
        try:
            value = json.loads(data)
        except ValueError as exc:
            raise CoordinationError(f"get {path}: not JSON: {data[:80]!r}") from exc
        if not isinstance(value, dict):
            raise CoordinationError(f"get {path}: expected a JSON object, got {data[:80]!r}")
        return value

    async def exists(self, path: str) -> ZnodeStat | None:
        stat = await self._call(f"exists {path}", self._client.exists_async, self._abs(path))
        return _stat_or_none(stat)

    async def create(
        self,
        path: str,
        data: bytes = b"",
        *,
        ephemeral: bool = False,
        sequence: bool = False,
        makepath: bool = False,
    ) -> str:
        """Create a znode and return its path (with the sequence suffix, if any)."""
        created = await self._call(
            f"create {path}",
            self._client.create_async,
            self._abs(path),
            data,
            ephemeral=ephemeral,
            sequence=sequence,
            makepath=makepath,
        )
        return self._rel(cast(str, created))

    async def create_json(
        self,
        path: str,
        value: Any,
        *,
        ephemeral: bool = False,
        sequence: bool = False,
        makepath: bool = False,
    ) -> str:
        return await self.create(
            path, dump_json(value), ephemeral=ephemeral, sequence=sequence, makepath=makepath
        )

    async def set(self, path: str, data: bytes, version: int = -1) -> ZnodeStat:
        """Write data; with `version` >= 0 only if the znode is still at that version."""
        stat = await self._call(
            f"set {path}", self._client.set_async, self._abs(path), data, version
        )
        return ZnodeStat.from_kazoo(stat)

    async def set_json(self, path: str, value: Any, version: int = -1) -> ZnodeStat:
        return await self.set(path, dump_json(value), version)

    async def delete(self, path: str, version: int = -1, recursive: bool = False) -> None:
        target = self._abs(path)
        if recursive:
            # Only kazoo's synchronous delete walks the tree (one request per node).
            client = self._client
            await self._blocking(f"delete {path}", lambda: client.delete(target, recursive=True))
        else:
            await self._call(f"delete {path}", self._client.delete_async, target, version)

    async def ensure_path(self, path: str) -> None:
        """Create `path` and its missing parents (empty data); fine if it exists."""
        await self._call(f"ensure {path}", self._client.ensure_path_async, self._abs(path))

    async def children(self, path: str) -> list[str]:
        """Child names, sorted."""
        names = await self._call(
            f"children {path}", self._client.get_children_async, self._abs(path)
        )
        return sorted(names)

    async def transaction(self, ops: Sequence[Op]) -> list[OpResult]:
        """Apply `ops` atomically: all or nothing.

        Returns one result per op: the created path for CreateOp, the new stat for SetOp,
        None for CheckOp and DeleteOp. Raises TransactionError naming the op that failed.
        """
        if not ops:
            return []
        client, timeout_s = self._client, self.timeout_s
        absolute = self._abs

        def commit() -> list[Any]:
            tx = client.transaction()
            for op in ops:
                if isinstance(op, CheckOp):
                    tx.check(absolute(op.path), op.version)
                elif isinstance(op, CreateOp):
                    tx.create(absolute(op.path), op.data, ephemeral=op.ephemeral)
                elif isinstance(op, SetOp):
                    tx.set_data(absolute(op.path), op.data, op.version)
                else:
                    tx.delete(absolute(op.path), op.version)
            return cast(list[Any], tx.commit_async().get(timeout=timeout_s))

        results = await self._blocking("transaction", commit)
        failures = [
            (index, result)
            for index, result in enumerate(results)
            if isinstance(result, Exception)
            and not isinstance(result, kz.RolledBackError | kz.RuntimeInconsistency)
        ]
        if failures or len(results) != len(ops):
            index, cause = failures[0] if failures else (0, kz.RolledBackError())
            op = ops[index]
            raise TransactionError(index, op, _translate(cause, f"{op.path}")) from cause
        out: list[OpResult] = []
        for op, result in zip(ops, results, strict=True):
            if isinstance(op, CreateOp):
                out.append(self._rel(cast(str, result)))
            elif isinstance(op, SetOp):
                out.append(ZnodeStat.from_kazoo(result))
            else:
                out.append(None)
        return out

    # -- watches --

    def watch_data(
        self, path: str
    ) -> trio.MemoryReceiveChannel[tuple[bytes | None, ZnodeStat | None]]:
        """(data, stat) now and after every change; (None, None) while the node is missing.

        Survives reconnects and new sessions (kazoo's DataWatch re-arms itself). Close the
        returned channel to stop watching.
        """
        sink: _Sink[tuple[bytes | None, ZnodeStat | None]] = _Sink(WATCH_BUFFER, coalesce=True)
        forward = self._forward

        def on_change(data: bytes | None, stat: Any, event: Any = None) -> bool | None:
            if sink.closed:
                return False  # tells kazoo to drop this watch
            forward(sink.offer, (data, _stat_or_none(stat)))
            return None

        client, target = self._client, self._abs(path)
        self._subscribe(f"watch {path}", sink, lambda: DataWatch(client, target, on_change))
        return sink.recv

    def watch_children(self, path: str) -> trio.MemoryReceiveChannel[list[str]]:
        """Sorted child names now and after every change. Creates `path` if missing, because
        kazoo's ChildrenWatch on a missing path silently never fires. Close the channel to stop.
        """
        sink: _Sink[list[str]] = _Sink(WATCH_BUFFER, coalesce=True)
        forward = self._forward

        def on_children(children: list[str]) -> bool | None:
            if sink.closed:
                return False
            forward(sink.offer, sorted(children))
            return None

        client, target = self._client, self._abs(path)

        def register() -> None:
            retry = KazooRetry(max_tries=-1, delay=0.05, max_delay=1, ignore_expire=True)
            retry(client.ensure_path, target)
            ChildrenWatch(client, target, on_children)

        self._subscribe(f"watch children {path}", sink, register)
        return sink.recv

    def _subscribe(self, what: str, sink: _Sink[Any], register: Callable[[], object]) -> None:
        """Run `register` (it blocks on ZooKeeper) in a kazoo thread, so that subscribing is a
        plain call; should it fail, the channel is closed rather than left silent."""
        if self._token is None:
            raise CoordinationError(f"{what}: the client is not started")
        self._watch_sinks = [s for s in self._watch_sinks if not s.closed] + [sink]
        forward = self._forward

        def run() -> None:
            try:
                register()
            except kz.ConnectionClosedError:
                forward(sink.close)  # stopped meanwhile
            except Exception:
                log.exception("%s failed; closing its channel", what)
                forward(sink.close)

        self._client.handler.spawn(run)

    async def _watch_presence(self, path: str, on_gone: Callable[[], object]) -> None:
        """Call `on_gone()` in trio, once, when `path` does not exist (now or later)."""
        forward = self._forward

        def on_change(data: bytes | None, stat: Any, event: Any = None) -> bool | None:
            if stat is None:
                forward(on_gone)
                return False
            return None

        client, target = self._client, self._abs(path)
        await self._blocking(
            f"watch {path}", lambda: DataWatch(client, target, on_change), abandon=True
        )

    # -- leader election --

    async def campaign(self, path: str, identifier: str) -> Leadership:
        """Stand for leadership under `path`; see `Leadership`.

        The first candidate is already leader when this returns; others wait in line with
        `await leadership.won()`.
        """
        candidates = f"{path}/candidates"
        await self.ensure_path(candidates)
        with contextlib.suppress(NodeExistsError):
            await self.create_json(f"{path}/epoch", {"epoch": 0, "leader": None})
        # A unique prefix lets us find our node if the create's reply was lost (kazoo's
        # Election recipe does the same); otherwise an orphan would block the line.
        prefix = f"{uuid.uuid4().hex}-n_"
        try:
            node = await self.create(
                f"{candidates}/{prefix}", identifier.encode(), ephemeral=True, sequence=True
            )
        except ConnectionLossError:
            await self.wait_state(CONNECTED)
            mine = [n for n in await self.children(candidates) if n.startswith(prefix)]
            if not mine:
                raise
            node = f"{candidates}/{mine[0]}"
        leadership = Leadership(self, path, identifier, node)
        self._leaderships.add(leadership)
        await self._watch_presence(node, lambda: leadership._end("candidate node deleted"))
        await leadership._advance()
        return leadership

    # -- testing helpers --

    async def drop_connection(self) -> None:
        """Testing: break the TCP connection as a network fault would. The session survives:
        SUSPENDED, then CONNECTED again once kazoo has reconnected."""
        client = self._client
        client._call(_CONNECTION_DROP, client.handler.async_result())
        await trio.lowlevel.checkpoint()

    async def expire_session(self, timeout_s: float = 10.0) -> None:
        """Testing: make ZooKeeper really expire this session (ephemerals are deleted at once)
        and return once this client has seen LOST.

        A second client attaches to the same session id and password and closes it: unlike
        kazoo's client-side `_SESSION_EXPIRED` hook, the server really ends the session.
        Meanwhile our client's reconnects are refused, or, kicked off by the attach, it would
        race to take the session back before the close.
        """
        client_id = self._client.client_id
        if client_id is None:
            raise ConnectionLossError("expire_session: not connected")
        lost_before = self._lost_count
        handler = self._client.handler

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise ConnectionRefusedError("expire_session holds off reconnects")

        def close_session() -> None:
            handler.create_connection = refuse  # shadows the method on this instance only
            try:
                other = self._new_kazoo(client_id)
                other.start(timeout=timeout_s)
                other.stop()
                other.close()
            finally:
                del handler.create_connection

        with trio.fail_after(timeout_s):
            await self._blocking("expire session", close_session)
            await self._wait_lost(lost_before)

    async def _wait_lost(self, lost_before: int) -> None:
        while self._lost_count == lost_before:
            await self._state_changed.wait()


def _acl_options(auth: ZkAuth | None) -> dict[str, Any]:
    """With credentials, every node this client creates is the user's alone (read access
    for everyone if `world_read`); without, ZooKeeper's open default."""
    if auth is None:
        return {}
    acl = [make_digest_acl(auth.user, auth.password, all=True)]
    if auth.world_read:
        acl.append(make_acl("world", "anyone", read=True))
    return {"auth_data": [("digest", f"{auth.user}:{auth.password}")], "default_acl": acl}


def _guarded(fn: Callable[..., object], *args: Any) -> None:
    """An exception escaping a run_sync_soon callback would crash the trio run: log it."""
    try:
        fn(*args)
    except Exception:
        log.exception("ZooKeeper callback %r failed", fn)


def _sequence_number(name: str) -> int:
    return int(name[-10:])


class Leadership:
    """One candidacy under `path`, from `ZkClient.campaign`.

    Layout: `path/candidates/<uuid>-n_<seq>` (ephemeral sequential, data = identifier) and
    `path/epoch` whose znode version is the epoch (data: {"epoch": n, "leader": identifier}).
    Each new leader bumps it in a transaction that also checks its own candidate node, so only
    a live candidate gets an epoch, and every leader's epoch is higher than the last one.

    `lost` is set when the candidacy is over: session LOST, the node deleted, `resign()` or the
    client stopped. `suspended` is True while the connection is down: stop leader-only work
    then, as another candidate may take over if the session expires meanwhile.
    """

    def __init__(self, zk: ZkClient, path: str, identifier: str, node: str) -> None:
        self.zk = zk
        self.path = path
        self.identifier = identifier
        self.node = node
        self.epoch_path = f"{path}/epoch"
        self.lost = trio.Event()
        self.lost_reason = ""
        self.suspended = False
        self._elected = trio.Event()
        self._epoch: int | None = None
        self._wake = trio.Event()
        self._lock = trio.Lock()

    @property
    def is_leader(self) -> bool:
        return self._elected.is_set() and not self.lost.is_set()

    @property
    def epoch(self) -> int:
        """This leader's epoch; only valid once elected."""
        if self._epoch is None:
            raise CoordinationError(f"{self.node}: not elected yet")
        return self._epoch

    def fence(self) -> CheckOp:
        """A transaction guard that fails once a newer leader has been elected."""
        return CheckOp(self.epoch_path, self.epoch)

    async def won(self) -> int:
        """Wait until this candidate leads and return its epoch; LeadershipLostError if the
        candidacy ends first. Cancelling the wait keeps the place in line (see `resign`)."""
        while not self._elected.is_set():
            self._check_alive()
            if not await self._advance():
                # `_step` armed a fresh `_wake` before watching the predecessor, so a poke
                # that arrived meanwhile has set this very event.
                await self._wake.wait()
        self._check_alive()
        return self.epoch

    async def resign(self) -> None:
        """Step down (or leave the line): delete the candidate node and end this candidacy."""
        self._end("resigned")
        with contextlib.suppress(NoNodeError, SessionExpiredError):
            await self.zk.delete(self.node)

    def _check_alive(self) -> None:
        if self.lost.is_set():
            raise LeadershipLostError(f"{self.node}: {self.lost_reason}")

    async def _advance(self) -> bool:
        """One step: become leader if first in line, else watch the predecessor. True once
        elected; False means "wait for `_wake`". Connection trouble waits for a reconnect."""
        async with self._lock:
            if self._elected.is_set():
                return True
            self._check_alive()
            try:
                return await self._step()
            except (ConnectionLossError, ZkTimeoutError):
                while self.zk.state != CONNECTED and not self.lost.is_set():
                    await self.zk._state_changed.wait()
                self._poke()
                return False
            except SessionExpiredError:
                self._end("session lost")
                raise LeadershipLostError(f"{self.node}: session lost") from None

    async def _step(self) -> bool:
        candidates = f"{self.path}/candidates"
        names = await self.zk.children(candidates)
        mine = self.node.rsplit("/", 1)[1]
        if mine not in names:
            self._end("candidate node deleted")
            self._check_alive()
        ahead = [n for n in names if _sequence_number(n) < _sequence_number(mine)]
        if not ahead:
            await self._take_office()
            return True
        predecessor = max(ahead, key=_sequence_number)
        self._wake = trio.Event()
        await self.zk._watch_presence(f"{candidates}/{predecessor}", self._poke)
        return False

    async def _take_office(self) -> None:
        while True:
            _record, stat = await self.zk.get(self.epoch_path)
            epoch = stat.version + 1
            data = dump_json({"epoch": epoch, "leader": self.identifier})
            try:
                await self.zk.transaction(
                    [CheckOp(self.node, 0), SetOp(self.epoch_path, data, stat.version)]
                )
            except TransactionError as exc:
                if isinstance(exc.reason, BadVersionError) and exc.op.path == self.epoch_path:
                    continue  # a stale leader's retry raced us; read again
                self._end(f"cannot take office: {exc}")
                raise LeadershipLostError(f"{self.node}: {exc}") from exc
            self._epoch = epoch
            self._elected.set()
            return

    def _poke(self) -> None:
        self._wake.set()

    def _on_state(self, state: str) -> None:
        self.suspended = state == SUSPENDED
        if state == LOST:
            self._end("session lost")

    def _end(self, reason: str) -> None:
        if not self.lost.is_set():
            self.lost_reason = reason
            self.lost.set()
        self._wake.set()
        self.zk._leaderships.discard(self)

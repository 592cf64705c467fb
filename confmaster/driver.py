"""The trio driver of the failover machines: one `PgFailover` per PG while this confmaster leads.

It feeds each machine heartbeats, clock ticks and the results of what the machine asked for,
and carries out its actions: a PG record write is done at once (the next event of the
machine is its result), ROLE and SETQUORUM commands go to the pgservers from background
tasks whose answers come back as events. Every call into a machine happens with the
confmaster's metadata lock held, so machines, heartbeats and API requests never interleave.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from confmaster.cluster import ClusterError, ClusterState, pg_record_changes
from confmaster.failover import (
    EpochWritten,
    Event,
    FailoverConfig,
    Heartbeat,
    LeaderStarted,
    Log,
    PgFailover,
    QuorumApplied,
    Role,
    RoleApplied,
    SendRole,
    SetQuorum,
    Tick,
    WritePg,
)
from tessera.errors import CoordinationError
from tessera.http import HttpError
from tessera.layout import PgPayload
from tessera.resp import encode_command
from tessera.security import auth_accepted

if TYPE_CHECKING:
    from confmaster.server import Confmaster, Probe

log = logging.getLogger("tessera.confmaster.failover")

PgKey = tuple[str, int]  # (cluster, PG id)


@dataclass(frozen=True)
class _Promotion:
    """A failover written to ZooKeeper, until its new master has applied its role."""

    started_ms: int  # the old master's last good heartbeat, or the decision (manual)
    epoch: int
    master: str


class FailoverDriver:
    """Owns the machines of one leadership term; dropped when the leadership is lost."""

    def __init__(self, confmaster: Confmaster, config: FailoverConfig) -> None:
        self.confmaster = confmaster
        self.config = config
        self.machines: dict[PgKey, PgFailover] = {}
        self.addresses: dict[str, tuple[str, int]] = {}  # pgserver id -> (host, port)
        self.nursery: trio.Nursery | None = None
        self._ids = itertools.count(1)
        self._promotions: dict[PgKey, _Promotion] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the command tasks; the caller cancels this when the leadership ends."""
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    @staticmethod
    def now_ms() -> int:
        return int(trio.current_time() * 1000)

    def next_id(self) -> int:
        return next(self._ids)

    # ------------------------------------------------------------------ state sync

    def sync(self, state: ClusterState) -> list[PgKey]:
        """Machines for the PGs in `state` (a new one starts from the record); call with the
        lock held. A record with a newer epoch than a machine's (written by someone else)
        restarts that machine from it."""
        name = state.meta.name
        for pgs_id, server in state.pgservers.items():
            self.addresses[pgs_id] = (server.host, server.port)
        for key in [k for k in self.machines if k[0] == name and k[1] not in state.pgs]:
            del self.machines[key]
        started: list[PgKey] = []
        for pg_id, record in state.pgs.items():
            key = (name, pg_id)
            machine = self.machines.get(key)
            if machine is None:
                self.machines[key] = PgFailover(self.config)
                started.append(key)
            elif machine.writing is None and record.epoch > (machine.pg or record).epoch:
                started.append(key)
        return started

    async def start(self, key: PgKey, record: PgPayload) -> list[str]:
        return await self.handle(key, LeaderStarted(self.next_id(), record, self.now_ms()))

    async def heartbeat(self, key: PgKey, pgs_id: str, probe: Probe) -> None:
        role: Role = probe.role if probe.role in ("master", "slave") else "none"  # type: ignore[assignment]
        event = Heartbeat(
            self.next_id(),
            pgs_id,
            probe.ok,
            role,
            probe.synced_epoch or 0,
            probe.lsn or 0,
            self.now_ms(),
        )
        await self.handle(key, event)

    async def tick(self, key: PgKey) -> None:
        await self.handle(key, Tick(self.next_id(), self.now_ms()))

    # ------------------------------------------------------------------ the machine

    async def handle(self, key: PgKey, event: Event) -> list[str]:
        """Feed one event and carry out what follows; returns the machine's log lines.

        The confmaster's lock must be held.
        """
        machine = self.machines.get(key)
        if machine is None:
            return []
        queue: list[Event] = [event]
        said: list[str] = []
        while queue:
            for action in machine.handle(queue.pop(0)):
                if isinstance(action, Log):
                    said.append(action.message)
                    log.info(
                        "%s PG %d: %s", key[0], key[1], action.message, extra=_fields(key, machine)
                    )
                elif isinstance(action, WritePg):
                    self._note_write(key, machine, action.pg)
                    ok = await self._write_pg(key[0], action.pg)
                    queue.append(EpochWritten(self.next_id(), action.pg.epoch, ok))
                elif self.nursery is None:
                    continue  # not leading any more: the next leader sends its own commands
                elif isinstance(action, SendRole):
                    self.nursery.start_soon(self._send_role, key, action)
                elif isinstance(action, SetQuorum):
                    self.nursery.start_soon(self._set_quorum, key, action)
        self._note_promotion(key, machine)
        return said

    def _note_write(self, key: PgKey, machine: PgFailover, record: PgPayload) -> None:
        """A record write naming a new master starts a failover (timed until it serves)."""
        old = machine.pg
        if old is None or old.master is None or record.master in (None, old.master):
            return
        view = machine.views.get(old.master)
        now = self.now_ms()
        started = min(view.last_ok_ms, now) if view is not None and view.heard else now
        assert record.master is not None
        self._promotions[key] = _Promotion(started, record.epoch, record.master)
        log.info(
            "%s PG %d: failover %s -> %s: writing epoch %d",
            key[0],
            key[1],
            old.master,
            record.master,
            record.epoch,
            extra={**_fields(key, machine), "epoch": record.epoch, "master": record.master},
        )

    def _note_promotion(self, key: PgKey, machine: PgFailover) -> None:
        promotion = self._promotions.get(key)
        pg = machine.pg
        if promotion is None or pg is None:
            return
        if pg.epoch > promotion.epoch or (
            pg.epoch == promotion.epoch and pg.master != promotion.master
        ):
            del self._promotions[key]  # superseded by a newer decision
            return
        if pg.epoch == promotion.epoch and machine.applied.get(promotion.master) == pg.epoch:
            del self._promotions[key]
            seconds = max(self.now_ms() - promotion.started_ms, 0) / 1000
            self.confmaster.metrics.failover_done(key, seconds)
            log.info(
                "%s PG %d: failover done: %s is master at epoch %d, %.3f s after the old "
                "master was last heard",
                key[0],
                key[1],
                pg.master,
                pg.epoch,
                seconds,
                extra={**_fields(key, machine), "duration_s": round(seconds, 3)},
            )

    async def _locked(self, key: PgKey, event: Event) -> None:
        async with self.confmaster.lock:
            await self.handle(key, event)

    async def _write_pg(self, cluster: str, pg: PgPayload) -> bool:
        try:
            state = await self.confmaster.read_state(cluster)
            await self.confmaster.write(pg_record_changes(state, pg))
        except (CoordinationError, ClusterError, HttpError) as exc:
            log.warning("%s PG %d: writing its record failed: %s", cluster, pg.id, exc)
            return False
        return True

    def _seq(self, seq: int) -> list[bytes]:
        return [b"SEQ", b"%d" % self.confmaster.epoch, b"%d" % seq]

    async def _send_role(self, key: PgKey, cmd: SendRole) -> None:
        argv = [b"TSR.ROLE", cmd.role.upper().encode(), b"%d" % cmd.epoch]
        if cmd.role == "master":
            argv += [b"VOTERS", ",".join(cmd.voters).encode() or b"-"]
        else:
            master = self.addresses.get(cmd.master) if cmd.master is not None else None
            argv.append(f"{master[0]}:{master[1]}".encode() if master is not None else b"-")
        argv += [b"ID", cmd.pgs_id.encode(), *self._seq(cmd.seq)]
        log.info(
            "%s PG %d: ROLE %s epoch %d to %s",
            key[0],
            key[1],
            cmd.role,
            cmd.epoch,
            cmd.pgs_id,
            extra={"cluster": key[0], "pg": key[1], "epoch": cmd.epoch, "pgserver": cmd.pgs_id},
        )
        ok, lsn = await self._command(cmd.pgs_id, argv)
        event = RoleApplied(self.next_id(), cmd.pgs_id, cmd.epoch, ok, lsn, cmd.seq)
        await self._locked(key, event)

    async def _set_quorum(self, key: PgKey, cmd: SetQuorum) -> None:
        voters = ",".join(cmd.voters).encode() or b"-"
        argv = [b"TSR.SETQUORUM", b"%d" % cmd.epoch, voters, *self._seq(cmd.seq)]
        log.info(
            "%s PG %d: SETQUORUM epoch %d voters %s to %s",
            key[0],
            key[1],
            cmd.epoch,
            ",".join(cmd.voters) or "-",
            cmd.pgs_id,
            extra={"cluster": key[0], "pg": key[1], "epoch": cmd.epoch, "pgserver": cmd.pgs_id},
        )
        ok, lsn = await self._command(cmd.pgs_id, argv)
        event = QuorumApplied(self.next_id(), cmd.pgs_id, cmd.epoch, cmd.voters, ok, lsn, cmd.seq)
        await self._locked(key, event)

    async def _command(self, pgs_id: str, argv: list[bytes]) -> tuple[bool, int]:
        """Send one command; (True, log end LSN) when the pgserver applied it."""
        address = self.addresses.get(pgs_id)
        if address is None:
            return False, 0
        reply = await send_command(
            address[0],
            address[1],
            argv,
            self.config.retry_ms / 1000,
            self.confmaster.config.cluster_secret,
        )
        if reply.startswith(":"):
            return True, int(reply[1:])
        log.warning("pgserver %s: %s -> %s", pgs_id, b" ".join(argv[:3]).decode(), reply)
        return False, 0


def _fields(key: PgKey, machine: PgFailover) -> dict[str, Any]:
    """Structured log fields of a PG's failover steps."""
    pg = machine.pg
    return {
        "cluster": key[0],
        "pg": key[1],
        "epoch": pg.epoch if pg is not None else None,
        "master": pg.master if pg is not None else None,
    }


async def send_command(
    host: str, port: int, argv: list[bytes], timeout_s: float, secret: str | None = None
) -> str:
    """One command on a fresh connection (after AUTH with the cluster secret, if set);
    returns the first reply line ("-ERR ..." on trouble)."""
    with trio.move_on_after(timeout_s):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            return f"-ERR {exc}"
        async with stream:
            try:
                line = await exchange_line(stream, argv, secret)
            except (OSError, trio.BrokenResourceError) as exc:
                return f"-ERR {exc}"
            return "-ERR connection closed" if line is None else line
    return "-ERR timeout"


async def exchange_line(
    stream: trio.abc.Stream, argv: list[bytes], secret: str | None
) -> str | None:
    """Send `argv` (after AUTH <secret> if given) and return the first line of its reply,
    or of the refused AUTH's; None if the peer closed first."""
    request = encode_command(argv)
    if secret is not None:
        request = encode_command([b"AUTH", secret.encode()]) + request
    await stream.send_all(request)
    data = b""
    lines: list[str] = []
    while len(lines) < (2 if secret is not None else 1):
        while b"\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return None
            data += chunk
        line, _, data = data.partition(b"\r\n")
        lines.append(line.decode("utf-8", "replace"))
        if secret is not None and len(lines) == 1 and not auth_accepted(line):
            return lines[0]  # the AUTH was refused (and the connection is closing)
    return lines[-1]

"""Replication inside a partition group: roles, epochs, the commit rule, log streaming.

Master: a slave opens a connection and sends
`TSR.SYNC <epoch> <end_lsn> <synced_epoch> [member_id]`; the master answers `+STREAM <lsn>`
and from then on pushes its log bytes (identical bytes, so identical LSNs) on that
connection; the slave answers with `TSR.ACK <lsn>` once the records are in its own log
file. A write is answered only when it is acknowledged (group commit: one wait per batch)
by every one of the master's *voters* (named slaves, given by the confmaster), or, without
a voter list, by any `quorum` slaves. A slave whose log no longer overlaps the master's
gets `+FULLSYNC <lsn> <size>` and the master's latest checkpoint first.

Slave: refuses writes, applies the stream in LSN order (with the master's timestamps; it
never expires keys on its own), and after a role change to a new epoch it sends the epoch
it last synced in: if its log runs past the new epoch's start LSN that tail was never
committed, and the master tells it to `-TRUNCATE <lsn>` it and reload.

Roles and epochs come from the confmaster (`TSR.ROLE`, `TSR.SETQUORUM`); a ROLE with an
older epoch than the one a pgserver already has is refused, which fences deposed masters.
Commands may carry `SEQ <leader_epoch> <seq>`: one is applied only if that pair is above
the last one applied, so a delayed or retried command of a deposed confmaster leader never
undoes a newer decision. Both reply with the log end LSN once applied (the confmaster's
fence point for the new voters).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import hiredis
import trio

from pgserver.checkpoint import list_snapshots, snapshot_name
from pgserver.log import LogTruncated
from pgserver.log_format import KIND_COMMAND, decode_records
from tessera.errors import CommandError, ReplicationError
from tessera.resp import encode_command
from tessera.security import auth_accepted

if TYPE_CHECKING:
    from pgserver.server import PgServer, _Connection

log = logging.getLogger("tessera.pgserver.replication")

Role = Literal["master", "slave", "none"]
_CATCH_UP_CHUNK = 1 << 20
_MAX_BACKLOG = 64 << 20


class Replica:
    """A slave attached to this master.

    A plain class, not a dataclass: compiled, a dataclass's annotations are built when the
    module is imported, and `_Connection` (pgserver.server imports this module) did not
    exist yet (a segfault).
    """

    __slots__ = (
        "acked_lsn",
        "backlog",
        "backlog_bytes",
        "conn",
        "full_sync",
        "full_sync_offset",
        "live",
        "member_id",
        "next_lsn",
    )

    def __init__(
        self, conn: _Connection, next_lsn: int, acked_lsn: int, member_id: str = ""
    ) -> None:
        self.conn = conn
        self.next_lsn = next_lsn  # first LSN not yet queued for it
        self.acked_lsn = acked_lsn
        self.member_id = member_id  # as the confmaster names it in voter lists
        self.live = False  # caught up: fed from log writes, not from files
        self.backlog: list[bytes] = []
        self.backlog_bytes = 0
        self.full_sync: Path | None = None  # checkpoint still to send
        self.full_sync_offset = 0


class Replication:
    """Role state of one pgserver and, on a master, its attached slaves."""

    def __init__(self, server: PgServer, managed: bool) -> None:
        self.server = server
        self.state_path = Path(server.config.data_dir) / "role.json"
        saved = self._load()
        self.epoch: int = saved.get("epoch", 0)
        self.synced_epoch: int = saved.get("synced_epoch", 0)
        self.member_id: str = str(saved.get("member_id", ""))
        self.last_seq: tuple[int, int] = (saved.get("seq_epoch", 0), saved.get("seq", 0))
        self.role: Role = "none" if managed else "master"
        self.quorum = 0
        self.voters: frozenset[str] | None = None  # None: any `quorum` slaves will do
        self.master: tuple[str, int] | None = None
        self.epoch_start_lsn: int = saved.get("epoch_start_lsn", 0)
        self.committed = 0
        self.replicas: dict[int, Replica] = {}
        self._slave_attached = trio.Event()
        self._follow_scope: trio.CancelScope | None = None
        self._generation = 0  # bumped whenever following stops or starts anew
        self.slave_applied_lsn = 0
        self.slave_state = "idle"

    # ------------------------------------------------------------------ persistence

    def _load(self) -> dict[str, Any]:
        try:
            loaded: dict[str, Any] = json.loads(self.state_path.read_text())
            return loaded
        except (OSError, ValueError):
            return {}

    def _save(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        state = {
            "epoch": self.epoch,
            "synced_epoch": self.synced_epoch,
            "epoch_start_lsn": self.epoch_start_lsn,
            "member_id": self.member_id,
            "seq_epoch": self.last_seq[0],
            "seq": self.last_seq[1],
        }
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_path)

    def check_seq(self, seq: tuple[int, int] | None) -> None:
        """Refuse a command older than (or a replay of) the last one applied."""
        if seq is None:
            return
        if seq <= self.last_seq:
            raise CommandError(
                f"ERR stale command seq {seq[0]}.{seq[1]}: "
                f"already at {self.last_seq[0]}.{self.last_seq[1]}"
            )
        self.last_seq = seq

    def log_end(self) -> int:
        """The log end LSN with every executed write in the file (a role's fence point)."""
        self.server.durability.log.write()
        return self.server.durability.log.end_lsn

    # ------------------------------------------------------------------ roles

    def set_role(
        self,
        role: str,
        epoch: int,
        quorum: int,
        master: str | None,
        *,
        voters: frozenset[str] | None = None,
        member_id: str | None = None,
        seq: tuple[int, int] | None = None,
    ) -> None:
        """TSR.ROLE: apply a role the confmaster decided; older epochs are refused.

        A slave with `master` "-" is put on hold: it follows nobody (the confmaster does
        this before choosing a new master, so an old master cut off from the confmaster
        cannot go on collecting acknowledgements from it).
        """
        if epoch < self.epoch:
            raise CommandError(f"ERR stale epoch {epoch}: this pgserver is at epoch {self.epoch}")
        self.check_seq(seq)
        renamed = bool(member_id) and member_id != self.member_id
        if member_id:
            self.member_id = member_id
        server = self.server
        if role == "master":
            if self.role == "master" and epoch == self.epoch:
                self.quorum, self.voters = quorum, voters
                self._save()
                server.release_replies()
                return
            self._stop_following()
            if epoch > self.epoch:
                self.epoch_start_lsn = server.durability.log.end_lsn
            # Everything in the log when it becomes master was committed by the old one
            # (the confmaster promotes the slave that has all of it).
            self.committed = max(self.committed, server.durability.log.end_lsn)
            self.role = "master"
            self.epoch = self.synced_epoch = epoch
            self.quorum, self.voters = quorum, voters
            self.master = None
            server.keyspace.passive = False
            self._save()
            log.info(
                "master at epoch %d (quorum %d, log end %d)", epoch, quorum, self.epoch_start_lsn
            )
        elif role == "slave":
            if master is None:
                raise CommandError("ERR a slave needs its master's HOST:PORT (or - to hold)")
            target: tuple[str, int] | None = None
            if master != "-":
                host, _, port = master.rpartition(":")
                target = (host, int(port))
            if self.role == "slave" and epoch == self.epoch and self.master == target:
                self._save()
                if renamed:  # the master must learn the new name: sync again
                    self._start_following()
                return
            self._stop_following()
            self._drop_replicas()
            self.role = "slave"
            self.epoch = epoch
            self.quorum, self.voters = 0, None
            self.master = target
            server.keyspace.passive = True
            server.fail_uncommitted("READONLY this pgserver became a slave; retry on the master")
            self._save()
            if target is not None:
                self._start_following()
                log.info("slave of %s at epoch %d", master, epoch)
            else:
                self.slave_state = "on hold"
                log.info("on hold at epoch %d (following nobody)", epoch)
        else:
            self._stop_following()
            self._drop_replicas()
            self.role = "none"
            server.keyspace.passive = True
            server.fail_uncommitted("READONLY this pgserver has no role now")
        server.update_restrictions()

    # ------------------------------------------------------------------ master side

    def set_voters(self, epoch: int, voters: frozenset[str], seq: tuple[int, int] | None) -> None:
        """TSR.SETQUORUM: from now on a write needs an acknowledgement from every voter."""
        if self.role != "master" or epoch != self.epoch:
            raise CommandError(f"ERR not the master at epoch {epoch}")
        self.check_seq(seq)
        self.voters, self.quorum = voters, len(voters)
        self._save()
        self.server.release_replies()
        log.info("voters now %s", ",".join(sorted(voters)) or "none")

    def attach(
        self, conn: _Connection, epoch: int, end_lsn: int, synced_epoch: int, member_id: str = ""
    ) -> bytes:
        """TSR.SYNC from a slave: decide where its stream starts."""
        if self.role != "master":
            raise CommandError("ERR not a master")
        if epoch != self.epoch:
            raise CommandError(f"ERR epoch mismatch: master at {self.epoch}, slave says {epoch}")
        log_ = self.server.durability.log
        log_.write()
        if synced_epoch < self.epoch and end_lsn > self.epoch_start_lsn:
            # Its tail past the epoch start was written by an old master and never committed.
            return b"-TRUNCATE %d\r\n" % self.epoch_start_lsn
        if end_lsn > log_.written_lsn:
            return b"-TRUNCATE %d\r\n" % log_.written_lsn
        replica = Replica(conn, end_lsn, end_lsn, member_id)
        header: bytes
        if end_lsn < log_.first_lsn:
            snapshots = list_snapshots(self.server.durability.directory)
            if not snapshots or snapshots[0][0] < log_.first_lsn:
                raise CommandError("ERR no checkpoint covers the log's start; take a BGSAVE")
            lsn, path = snapshots[0]
            replica.full_sync = path
            replica.next_lsn = replica.acked_lsn = lsn
            header = b"+FULLSYNC %d %d\r\n" % (lsn, path.stat().st_size)
        else:
            header = b"+STREAM %d\r\n" % end_lsn
        self.replicas[id(conn)] = replica
        conn.replica = replica
        self._slave_attached.set()
        log.info(
            "slave %s (%s) attached at LSN %d", member_id or "?", conn.ctx.addr, replica.next_lsn
        )
        return header

    def on_log_write(self, data: bytes, start_lsn: int) -> None:
        """Feed freshly written log bytes to every caught-up slave."""
        for replica in self.replicas.values():
            if replica.live and replica.next_lsn == start_lsn:
                self._queue(replica, data)
                replica.next_lsn = start_lsn + len(data)

    def _queue(self, replica: Replica, data: bytes) -> None:
        replica.backlog.append(data)
        replica.backlog_bytes += len(data)
        if replica.backlog_bytes > _MAX_BACKLOG:
            log.warning("slave %s is too slow; dropping it (it will resync)", replica.conn.ctx.addr)
            self.server.close_connection(replica.conn)
            return
        self.server.push_replica(replica)

    async def wait_for_catching_up(self) -> None:
        """Return when a slave is catching up from the files; until then `pump` has nothing
        to do (a caught-up slave is fed by log writes), so its loop need not poll."""
        while all(replica.live for replica in self.replicas.values()):
            self._slave_attached = trio.Event()
            await self._slave_attached.wait()

    def pump(self) -> None:
        """Move catching-up slaves forward by one chunk from the files (called often)."""
        log_ = self.server.durability.log
        for replica in list(self.replicas.values()):
            if replica.live or replica.backlog_bytes > _CATCH_UP_CHUNK:
                continue
            if replica.full_sync is not None:
                with open(replica.full_sync, "rb") as f:
                    f.seek(replica.full_sync_offset)
                    chunk = f.read(_CATCH_UP_CHUNK)
                if chunk:
                    replica.full_sync_offset += len(chunk)
                    self._queue(replica, chunk)
                    continue
                replica.full_sync = None
            if replica.next_lsn >= log_.written_lsn:
                replica.live = True
                continue
            try:
                chunk = log_.read_bytes(replica.next_lsn, _CATCH_UP_CHUNK)
            except LogTruncated:
                self.server.close_connection(replica.conn)
                continue
            replica.next_lsn += len(chunk)
            self._queue(replica, chunk)

    def ack(self, conn: _Connection, lsn: int) -> None:
        replica = self.replicas.get(id(conn))
        if replica is not None and lsn > replica.acked_lsn:
            replica.acked_lsn = lsn
            self.server.release_replies()

    def detach(self, conn: _Connection) -> None:
        if self.replicas.pop(id(conn), None) is not None:
            log.info("slave %s detached", conn.ctx.addr)

    def _drop_replicas(self) -> None:
        for replica in list(self.replicas.values()):
            self.server.close_connection(replica.conn)
        self.replicas.clear()

    def commit_lsn(self, end_lsn: int) -> int:
        """Highest LSN acknowledged by every voter, or by `quorum` slaves without a voter
        list (everything, with neither).

        Never goes back: what was committed under a smaller quorum stays committed. Not a
        master: what it committed as one, or what it applied as a slave — never the rest of
        its log, whose writes were not acknowledged by a quorum (they are failed, and a new
        master has it truncated).
        """
        if self.role != "master":
            return max(self.committed, self.slave_applied_lsn)
        voters = self.voters
        if voters is not None:
            if not voters:
                self.committed = end_lsn
                return end_lsn
            acked = {r.member_id: r.acked_lsn for r in self.replicas.values()}
            if voters <= acked.keys():
                self.committed = max(self.committed, min(acked[v] for v in voters))
            return self.committed
        if self.quorum <= 0:
            self.committed = end_lsn
            return end_lsn
        acks = sorted((r.acked_lsn for r in self.replicas.values()), reverse=True)
        if len(acks) >= self.quorum:
            self.committed = max(self.committed, acks[self.quorum - 1])
        return self.committed

    # ------------------------------------------------------------------ slave side

    def _start_following(self) -> None:
        self._stop_following()
        nursery = self.server.nursery
        if nursery is not None:
            nursery.start_soon(self._follow, self._generation)

    def _stop_following(self) -> None:
        self._generation += 1
        if self._follow_scope is not None:
            self._follow_scope.cancel()
            self._follow_scope = None

    def _following(self, generation: int) -> bool:
        """Whether a follow task started as `generation` may still change local data.

        Cancelling the task is not enough: it may already be running with data in hand
        when the role changes, and must not touch the log after that."""
        return generation == self._generation and self.role == "slave"

    async def _follow(self, generation: int) -> None:
        with trio.CancelScope() as scope:
            self._follow_scope = scope
            delay = 0.05
            while self._following(generation):
                try:
                    await self._follow_once(generation)
                    delay = 0.05
                except (OSError, ReplicationError, trio.BrokenResourceError) as exc:
                    self.slave_state = f"disconnected ({exc})"
                    log.warning("replication from %s: %s; retrying", self.master, exc)
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _follow_once(self, generation: int) -> None:
        assert self.master is not None
        server = self.server
        durability = server.durability
        log_ = durability.log
        log_.write()
        host, port = self.master
        self.slave_state = "connecting"
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            sync = [
                b"TSR.SYNC",
                b"%d" % self.epoch,
                b"%d" % log_.end_lsn,
                b"%d" % self.synced_epoch,
                self.member_id.encode(),
            ]
            secret = server.config.password  # the master's too: a PG shares one secret
            request = encode_command(sync)
            if secret is not None:
                request = encode_command([b"AUTH", secret.encode()]) + request
            await stream.send_all(request)
            line, buf = await _handshake_line(stream, b"")
            if secret is not None:
                if not auth_accepted(line):
                    raise ReplicationError(
                        f"master refused the cluster secret: {line.decode(errors='replace')}"
                    )
                line, buf = await _handshake_line(stream, buf)
            if not self._following(generation):
                return
            if line.startswith(b"-TRUNCATE "):
                lsn = int(line.split()[1])
                log.warning(
                    "truncating the log from %d to %d (uncommitted tail of an old epoch)",
                    log_.end_lsn,
                    lsn,
                )
                server.reload_truncated(lsn)
                return
            if line.startswith(b"+FULLSYNC "):
                _, lsn_text, size_text = line.split()
                buf = await self._receive_checkpoint(
                    stream, buf, int(lsn_text), int(size_text), generation
                )
            elif not line.startswith(b"+STREAM "):
                raise ReplicationError(f"master refused to stream: {line.decode(errors='replace')}")
            if self.synced_epoch != self.epoch:
                self.synced_epoch = self.epoch
                self._save()
            self.slave_state = "streaming"
            # Its log now matches the master's up to here: reads may see all of it.
            self.slave_applied_lsn = server.durability.log.end_lsn
            server.release_replies()
            await self._apply_stream(stream, buf, generation)

    async def _receive_checkpoint(
        self, stream: trio.SocketStream, buf: bytes, lsn: int, size: int, generation: int
    ) -> bytes:
        """Receive the master's checkpoint file, then restart this node's data from it."""
        self.slave_state = "full sync"
        directory = self.server.durability.directory
        path = directory / (snapshot_name(lsn) + ".incoming")
        async with await trio.open_file(path, "wb") as f:
            got = min(len(buf), size)
            await f.write(buf[:got])
            buf = buf[got:]
            while got < size:
                chunk = await stream.receive_some(min(1 << 20, size - got + 65536))
                if not chunk:
                    raise ReplicationError("master closed the connection during a full sync")
                take = min(len(chunk), size - got)
                await f.write(chunk[:take])
                got += take
                buf = chunk[take:]
            await f.flush()
            await trio.to_thread.run_sync(os.fsync, f.fileno())
        if not self._following(generation):
            path.unlink(missing_ok=True)
            raise ReplicationError("the role changed during a full sync")
        self.server.reset_from_checkpoint(path, lsn)
        return buf

    async def _apply_stream(self, stream: trio.SocketStream, buf: bytes, generation: int) -> None:
        server = self.server
        log_ = server.durability.log
        reader = hiredis.Reader()
        while True:
            if buf:
                records, consumed, problem = decode_records(buf, log_.end_lsn)
                if problem is not None:
                    raise ReplicationError(f"bad record from the master: {problem}")
                if records:
                    if not self._following(generation):
                        return  # the role changed while this data was on its way
                    # Acknowledged once in the log file, as nbase-arc's replicator does,
                    # then applied: the master's commit does not wait for the slave to
                    # execute the batch. Nothing between the log write and the apply
                    # yields to other tasks (the ack goes out with a non-blocking send),
                    # so no role change or checkpoint ever finds the log ahead of the
                    # keyspace.
                    log_.append_raw(buf[:consumed])
                    buf = buf[consumed:]
                    log_.write()
                    ack = encode_command([b"TSR.ACK", b"%d" % log_.end_lsn])
                    sent = _send_now(stream, ack)
                    server.logging = False
                    try:
                        for record in records:
                            if record.kind != KIND_COMMAND:
                                continue
                            reader.feed(record.payload)
                            while (argv := reader.gets()) is not False:
                                server.apply_replicated(argv, record.timestamp_ms)
                    finally:
                        server.logging = server.config.log_enabled
                    self.slave_applied_lsn = log_.end_lsn
                    if sent < len(ack):
                        await stream.send_all(ack[sent:])
            chunk = await stream.receive_some(1 << 20)
            if not chunk:
                raise ReplicationError("master closed the replication stream")
            buf = buf + chunk if buf else chunk

    def info_fields(self) -> list[tuple[str, object]]:
        fields: list[tuple[str, object]] = [
            ("role", self.role),
            ("epoch", self.epoch),
            ("synced_epoch", self.synced_epoch),
            ("quorum", self.quorum),
            ("member_id", self.member_id),
            ("seq", f"{self.last_seq[0]}.{self.last_seq[1]}"),
        ]
        log_ = self.server.durability.log
        if self.role == "master":
            fields.append(("epoch_start_lsn", self.epoch_start_lsn))
            fields.append(("connected_slaves", len(self.replicas)))
            if self.voters is not None:
                fields.append(("voters", ",".join(sorted(self.voters)) or "-"))
            fields.append(("commit_lsn", self.commit_lsn(log_.end_lsn)))
            for i, replica in enumerate(self.replicas.values()):
                lag = log_.end_lsn - replica.acked_lsn
                fields.append(
                    (
                        f"slave{i}",
                        f"id={replica.member_id or '?'},addr={replica.conn.ctx.addr},"
                        f"acked_lsn={replica.acked_lsn},lag={lag}",
                    )
                )
        elif self.role == "slave":
            master = f"{self.master[0]}:{self.master[1]}" if self.master is not None else "-"
            fields.append(("master", master))
            fields.append(("master_link", self.slave_state))
            fields.append(("applied_lsn", self.slave_applied_lsn))
        return fields


async def _handshake_line(stream: trio.SocketStream, buf: bytes) -> tuple[bytes, bytes]:
    """The next reply line of the sync handshake, and what came after it."""
    while b"\r\n" not in buf:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ReplicationError("master closed the connection during the handshake")
        buf += chunk
    line, _, rest = buf.partition(b"\r\n")
    return line, rest


def _send_now(stream: trio.SocketStream, data: bytes) -> int:
    """Send what the socket takes without waiting (its fd is non-blocking); the bytes sent.

    0 on a full buffer or a broken connection: the caller's `send_all` of the rest then
    waits or reports the broken stream the usual way.
    """
    try:
        return os.write(stream.socket.fileno(), data)
    except OSError:
        return 0

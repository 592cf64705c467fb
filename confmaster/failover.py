"""Failover decisions for one partition group: a pure `handle(event) -> actions` state machine.

The confmaster leader's trio driver feeds it heartbeats, clock ticks and the results of the
actions it carried out (ZooKeeper writes, ROLE / SETQUORUM commands), and carries out what it
returns. No I/O, no clock: time comes in events. `validate()` checks the invariants.

What it relies on from pgservers and the driver (the replication work must provide it):

- Fully synchronous replication to the master's *voters*: a write is acknowledged once every
  voter logged it. A pgserver refuses a ROLE whose epoch is below its own.
- A heartbeat's `epoch` is that of the newest epoch marker in its log (a new master logs one
  first): logs with the same epoch are prefixes of one stream and compare by LSN, and a
  higher epoch beats a longer log (Raft's up-to-date rule).
- ROLE and SETQUORUM replies carry the log end LSN, and a pgserver applies a command only if
  its (leader epoch, `seq`) is above the last one applied, so a retried, delayed or deposed
  leader's command never undoes a newer one (the driver adds the leader epoch).

The leader tracks `trusted`: slaves known to hold every acknowledged write. Only they are
promoted automatically; a trusted winner is a voter of the old master, so even an old master
cut off from the leader but not from its slaves cannot acknowledge a write the winner lacks.
The record's `quorum` never exceeds len(trusted) (lowered in ZooKeeper before the master,
raised after), so a new leader knowing only the record still decides safely (see `_elect`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tessera.layout import PgPayload

Role = Literal["master", "slave", "none"]


class FailoverConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout_ms: int = Field(default=2000, ge=1)  # dead after this long without an ok heartbeat
    retry_ms: int = Field(default=1000, ge=1)  # resend an unanswered or failed command after
    catchup_lag_bytes: int = Field(default=1 << 20, ge=0)  # "close to the master" for a slave


# ---------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Heartbeat:
    id: int
    pgs_id: str
    ok: bool
    role: Role
    epoch: int  # epoch of the newest epoch marker in its log
    lsn: int  # its log end
    now_ms: int


@dataclass(frozen=True)
class Tick:
    id: int
    now_ms: int


@dataclass(frozen=True)
class ManualFailover:
    id: int
    to: str | None = None  # None: the best in-sync slave


@dataclass(frozen=True)
class RoleApplied:
    id: int
    pgs_id: str
    epoch: int
    ok: bool
    lsn: int = 0  # the pgserver's log end once the role was applied
    seq: int = 0  # echo of SendRole.seq: only the answer to the latest ROLE counts


@dataclass(frozen=True)
class QuorumApplied:
    id: int
    pgs_id: str
    epoch: int
    voters: tuple[str, ...]
    ok: bool
    lsn: int = 0  # the master's log end once the new voters were applied
    seq: int = 0  # echo of SetQuorum.seq


@dataclass(frozen=True)
class EpochWritten:
    """Result of the one WritePg in flight (the commit point when it names a new master)."""

    id: int
    epoch: int
    ok: bool


@dataclass(frozen=True)
class MemberAdded:
    id: int
    pgs_id: str


@dataclass(frozen=True)
class MemberRemoved:
    id: int
    pgs_id: str


@dataclass(frozen=True)
class LeaderStarted:
    id: int
    pg: PgPayload  # the record as read from ZooKeeper
    now_ms: int


Event = (
    Heartbeat
    | Tick
    | ManualFailover
    | RoleApplied
    | QuorumApplied
    | EpochWritten
    | MemberAdded
    | MemberRemoved
    | LeaderStarted
)

# --------------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class WritePg:
    """Write the PG record, fenced by the leader epoch; answer with EpochWritten."""

    pg: PgPayload


@dataclass(frozen=True)
class SendRole:
    """ROLE to a pgserver; answer with RoleApplied. `master` None on a slave: hold, follow none."""

    pgs_id: str
    role: Literal["master", "slave"]
    epoch: int
    master: str | None
    quorum: int = 0
    voters: tuple[str, ...] = ()
    seq: int = 0


@dataclass(frozen=True)
class SetQuorum:
    """SETQUORUM on the master: acknowledge a write once all `voters` logged it."""

    pgs_id: str
    quorum: int
    epoch: int
    voters: tuple[str, ...]
    seq: int = 0


@dataclass(frozen=True)
class Log:
    message: str


Action = WritePg | SendRole | SetQuorum | Log


def choose_master(candidates: dict[str, int], alive: set[str]) -> str | None:
    """The live candidate with the highest LSN; ties go to the smallest id (deterministic)."""
    live = [(-lsn, pgs_id) for pgs_id, lsn in candidates.items() if pgs_id in alive]
    return min(live)[1] if live else None


# ----------------------------------------------------------------------------------- state


@dataclass
class _View:
    """What the leader last heard from one member."""

    last_ok_ms: int
    heard: bool = False
    alive: bool = False  # as of the last _advance, to log transitions
    role: Role = "none"
    epoch: int = 0
    lsn: int = 0


@dataclass(frozen=True)
class _Write:
    pg: PgPayload
    kind: Literal["failover", "quorum", "member"]
    voters: frozenset[str] = frozenset()  # the new master's voters (failover)
    trusted: frozenset[str] | None = None  # trusted once committed (failover)


@dataclass(frozen=True)
class Decision:
    """The last promotion decided, for logs and tests."""

    winner: str
    candidates: dict[str, int]
    manual: bool


@dataclass
class PgFailover:
    """One PG as the confmaster leader sees it; changed only by `handle`."""

    config: FailoverConfig = field(default_factory=FailoverConfig)
    pg: PgPayload | None = None
    now_ms: int = 0
    views: dict[str, _View] = field(default_factory=dict)
    trusted: frozenset[str] | None = None  # None: unknown (new leader), decide by counting
    voters: frozenset[str] | None = None  # the master's voters as last applied or sent in ROLE
    fence_lsn: int | None = None  # master's log end when `voters` took effect
    quorum_sent: tuple[frozenset[str], int, int] | None = None  # in flight: voters, ms, seq
    applied: dict[str, int] = field(default_factory=dict)  # member -> epoch of its applied role
    roles_sent: dict[str, int] = field(default_factory=dict)  # member -> ms ROLE was sent
    last_role: dict[str, SendRole] = field(default_factory=dict)  # member -> its last ROLE
    detached: dict[str, int | None] = field(default_factory=dict)  # counting mode: lsn on hold
    writing: _Write | None = None
    write_retry_ms: int = 0
    master_regressed: bool = False  # the master came back with a shorter log: fail it over
    data_loss_seen: bool = False  # a trusted slave came back with a shorter log
    waiting: str | None = None  # last reason logged for not acting (logged once)
    decision: Decision | None = None
    seq: int = 0  # last command sequence number
    masters_sent: dict[int, set[str]] = field(default_factory=dict)  # epoch -> sent ROLE master
    _validated_epoch: int = 0

    # ------------------------------------------------------------------------- entry

    def handle(self, event: Event) -> list[Action]:
        out: list[Action] = []
        if isinstance(event, LeaderStarted):
            self._start(event, out)
        elif self.pg is None:
            return [Log(f"event {event.id} before LeaderStarted ignored")]
        elif isinstance(event, Heartbeat):
            self._heartbeat(event, out)
        elif isinstance(event, Tick):
            self.now_ms = max(self.now_ms, event.now_ms)
        elif isinstance(event, RoleApplied):
            self._role_applied(event, out)
        elif isinstance(event, QuorumApplied):
            self._quorum_applied(event, out)
        elif isinstance(event, EpochWritten):
            self._written(event, out)
        elif isinstance(event, ManualFailover):
            self._manual(event, out)
        elif isinstance(event, MemberAdded):
            self._member_added(event, out)
        else:
            self._member_removed(event, out)
        if self.pg is not None:
            self._advance(out)
            self._reconcile(out)
        return out

    # --------------------------------------------------------------------- helpers

    def alive(self, pgs_id: str) -> bool:
        v = self.views.get(pgs_id)
        return v is not None and v.heard and self.now_ms - v.last_ok_ms < self.config.timeout_ms

    def _settled(self) -> bool:
        """Every member heard from or timed out: a new leader must not act on silence."""
        limit = self.config.timeout_ms
        return all(v.heard or self.now_ms - v.last_ok_ms >= limit for v in self.views.values())

    def _slaves(self) -> frozenset[str]:
        assert self.pg is not None
        return frozenset(m for m in self.pg.members if m != self.pg.master)

    def _following(self, m: str, min_lsn: int) -> bool:
        """Alive slave following the master and holding its log up to `min_lsn`."""
        assert self.pg is not None
        v, epoch = self.views[m], self.pg.epoch
        return (
            self.alive(m) and self.applied.get(m) == epoch and v.epoch == epoch and v.lsn >= min_lsn
        )

    def _seq(self) -> int:
        self.seq += 1
        return self.seq

    def _role(
        self,
        m: str,
        role: Literal["master", "slave"],
        master: str | None,
        voters: Iterable[str] = (),
    ) -> SendRole:
        assert self.pg is not None
        v = tuple(sorted(voters))
        cmd = SendRole(m, role, self.pg.epoch, master, len(v), v, self._seq())
        self.roles_sent[m], self.last_role[m] = self.now_ms, cmd
        return cmd

    def _wait(self, reason: str, out: list[Action]) -> None:
        if reason != self.waiting:
            self.waiting = reason
            out.append(Log(reason))

    def _write(self, w: _Write, why: str, out: list[Action]) -> None:
        if self.now_ms < self.write_retry_ms:
            return  # the last write failed: wait retry_ms (a Tick brings us back)
        self.writing = w
        out += [Log(why), WritePg(w.pg)]

    # ---------------------------------------------------------------------- events

    def _start(self, ev: LeaderStarted, out: list[Action]) -> None:
        if self.pg is not None and ev.pg.epoch < self.pg.epoch:
            out.append(Log(f"record epoch {ev.pg.epoch} is older than {self.pg.epoch}: ignored"))
            return
        max_epoch = max(self._validated_epoch, ev.pg.epoch)
        vars(self).update(vars(PgFailover(self.config)))  # a new leader knows only the record
        self.pg, self.now_ms, self._validated_epoch = ev.pg, ev.now_ms, max_epoch
        self.views = {m: _View(last_ok_ms=ev.now_ms) for m in ev.pg.members}
        if not self._slaves():
            self.trusted = frozenset()  # a lone master: nothing to be unsure about
        out.append(Log(f"PG {ev.pg.id}: leading from epoch {ev.pg.epoch}, master {ev.pg.master}"))

    def _heartbeat(self, ev: Heartbeat, out: list[Action]) -> None:
        assert self.pg is not None
        self.now_ms = max(self.now_ms, ev.now_ms)
        v = self.views.get(ev.pgs_id)
        if v is None or not ev.ok:
            return  # not ours, or a failed ping: death comes from the timeout
        # A log with the current epoch's marker only grows; shorter means it lost data.
        shorter = v.heard and v.epoch == self.pg.epoch and ev.lsn < v.lsn
        v.heard, v.last_ok_ms, v.role, v.epoch, v.lsn = True, self.now_ms, ev.role, ev.epoch, ev.lsn
        pg, m = self.pg, ev.pgs_id
        if shorter and m == pg.master:
            self.master_regressed = True
            out.append(Log(f"master {m} came back with a shorter log (lsn {ev.lsn}): failing over"))
        if shorter and self.trusted is not None and m in self.trusted:
            self.trusted -= {m}
            self.data_loss_seen = True
            out.append(Log(f"slave {m} came back with a shorter log: no longer in sync"))
        if ev.epoch > pg.epoch:
            self._wait(f"{m} reports epoch {ev.epoch} > record {pg.epoch}: not a candidate", out)
        if m == pg.master:
            # A new leader learns the master's role from its heartbeat. Slaves always get one
            # ROLE from a new leader: a heartbeat cannot tell "following" from "on hold".
            if ev.role == "master" and ev.epoch == pg.epoch:
                self.applied[m] = pg.epoch
            else:
                self.applied.pop(m, None)
        elif ev.role != "slave":  # restarted, or a stale master: needs its role again
            self.applied.pop(m, None)
            if ev.role == "master":
                self._wait(f"{m} claims master at epoch {ev.epoch}: telling it to follow", out)

    def _role_applied(self, ev: RoleApplied, out: list[Action]) -> None:
        assert self.pg is not None
        m, sent = ev.pgs_id, self.last_role.get(ev.pgs_id)
        if sent is None or ev.seq != sent.seq or ev.epoch != self.pg.epoch:
            out.append(Log(f"stale role result from {m} (seq {ev.seq}) ignored"))
            return
        if sent.role == "slave" and sent.master is None:  # it was put on hold
            if m in self.detached:
                if ev.ok:
                    self.detached[m] = ev.lsn
                else:
                    del self.detached[m]  # sent again after retry_ms
            return
        if not ev.ok:
            out.append(Log(f"role for {m} at epoch {ev.epoch} failed; will resend"))
            return  # roles_sent keeps its time: resent after retry_ms
        self.applied[m] = ev.epoch
        self.roles_sent.pop(m, None)
        if m == self.pg.master:
            self.fence_lsn = ev.lsn  # the role carried `voters`

    def _quorum_applied(self, ev: QuorumApplied, out: list[Action]) -> None:
        assert self.pg is not None
        sent = self.quorum_sent
        if sent is None or ev.seq != sent[2] or ev.epoch != self.pg.epoch:
            out.append(Log(f"stale quorum result from {ev.pgs_id} ignored"))
            return
        if not ev.ok:
            out.append(Log(f"SETQUORUM on {ev.pgs_id} failed; will resend"))
            return
        self.quorum_sent = None
        self.voters, self.fence_lsn = sent[0], ev.lsn

    def _written(self, ev: EpochWritten, out: list[Action]) -> None:
        w = self.writing
        if w is None or ev.epoch != w.pg.epoch:
            out.append(Log(f"unexpected write result for epoch {ev.epoch} ignored"))
            return
        self.writing = None
        if not ev.ok:
            self.write_retry_ms = self.now_ms + self.config.retry_ms
            then = "the request is dropped" if w.kind == "member" else "deciding again"
            out.append(Log(f"writing the PG record ({w.kind}) failed: {then}"))
            return
        old, self.pg = self.pg, w.pg
        assert old is not None
        if w.pg.epoch != old.epoch:  # committed: a new master from now on
            self.applied.clear()
            self.roles_sent.clear()
            self.detached.clear()
            self.quorum_sent, self.fence_lsn, self.master_regressed = None, None, False
            self.voters, self.trusted, self.waiting = w.voters, w.trusted, None
            out.append(Log(f"epoch {w.pg.epoch} committed: master {w.pg.master}"))
        for gone in set(old.members) - set(w.pg.members):
            self.views.pop(gone, None)
            self.applied.pop(gone, None)
            self.roles_sent.pop(gone, None)
            if self.trusted is not None:
                self.trusted -= {gone}
        for new in set(w.pg.members) - set(old.members):  # dead until its first heartbeat
            self.views[new] = _View(last_ok_ms=self.now_ms - self.config.timeout_ms)

    def _manual(self, ev: ManualFailover, out: list[Action]) -> None:
        pg = self.pg
        assert pg is not None
        master, trusted = pg.master, self.trusted

        def refuse(why: str) -> None:
            out.append(Log(f"manual failover of PG {pg.id} refused: {why}"))

        if ev.to is not None and ev.to not in pg.members:
            return refuse(f"{ev.to} is not a member")
        if ev.to is not None and not self.alive(ev.to):
            return refuse(f"{ev.to} is dead")
        if ev.to is not None and ev.to == master:
            return refuse(f"{ev.to} is already the master")
        if self.writing is not None:
            return refuse("a record write is in flight")
        if master is None or not self.alive(master) or self.applied.get(master) != pg.epoch:
            return refuse("no live master (automatic failover is in charge)")
        if trusted is None:
            return refuse("which slaves are in sync is not known yet")
        pool = {m: self.views[m].lsn for m in trusted if self.alive(m)}
        to = ev.to if ev.to is not None else choose_master(pool, set(pool))
        if to is None:
            return refuse("no live in-sync slave")
        if to not in pool:
            return refuse(f"{to} is not in sync")
        # The old master holds every acknowledged write and becomes a voter of the new one.
        voters = frozenset(pool) - {to} | {master}
        new = pg.model_copy(update={"master": to, "epoch": pg.epoch + 1, "quorum": len(voters)})
        why = f"manual failover of PG {pg.id}: {master} -> {to} at epoch {pg.epoch + 1}"
        self._write(_Write(new, "failover", voters, voters), why, out)
        if self.writing is not None:
            self.decision = Decision(to, pool, manual=True)

    def _member_added(self, ev: MemberAdded, out: list[Action]) -> None:
        pg = self.pg
        assert pg is not None
        if ev.pgs_id in pg.members:
            out.append(Log(f"{ev.pgs_id} is already a member of PG {pg.id}"))
        elif self.writing is not None:
            out.append(Log(f"adding {ev.pgs_id} refused: a record write is in flight; retry"))
        elif not pg.members:  # the first member is the master of a new epoch
            new = pg.model_copy(
                update={"members": [ev.pgs_id], "master": ev.pgs_id, "epoch": pg.epoch + 1}
            )
            self._write(
                _Write(new, "failover", frozenset(), frozenset()), f"{ev.pgs_id} first", out
            )
        else:  # joins as a slave; it becomes a voter once it has caught up
            new = pg.model_copy(update={"members": [*pg.members, ev.pgs_id]})
            self._write(_Write(new, "member"), f"adding {ev.pgs_id} to PG {pg.id}", out)

    def _member_removed(self, ev: MemberRemoved, out: list[Action]) -> None:
        pg = self.pg
        assert pg is not None
        m = ev.pgs_id
        if m not in pg.members:
            out.append(Log(f"{m} is not a member of PG {pg.id}"))
        elif self.writing is not None:
            out.append(Log(f"removing {m} refused: a record write is in flight; retry"))
        elif m == pg.master and len(pg.members) > 1:
            out.append(Log(f"removing {m} refused: it is the master; fail over first"))
        else:
            members = [x for x in pg.members if x != m]
            if self.trusted is not None:
                quorum = min(pg.quorum, len(self.trusted - {m}))
            else:  # m may have been one of the `quorum` slaves holding each write
                quorum = max(pg.quorum - (m != pg.master), 0)
            update = {"members": members, "quorum": quorum}
            if m == pg.master:
                update["master"] = None
            self._write(_Write(pg.model_copy(update=update), "member"), f"removing {m}", out)

    # ---------------------------------------------------------------- reconciling

    def _advance(self, out: list[Action]) -> None:
        """Apply the clock: members silent for timeout_ms are dead."""
        for m, v in self.views.items():
            now_alive = self.alive(m)
            if now_alive != v.alive:
                v.alive = now_alive
                out.append(Log(f"{m} is {'alive' if now_alive else 'dead'}"))
                if not now_alive:
                    self.applied.pop(m, None)
                    self.roles_sent.pop(m, None)
                    self.detached.pop(m, None)

    def _reconcile(self, out: list[Action]) -> None:
        pg = self.pg
        assert pg is not None
        if self.writing is not None or not self._settled() or not pg.members:
            return
        if pg.master is None or not self.alive(pg.master) or self.master_regressed:
            return self._elect(out)
        for m in self.detached:  # the master is back: slaves on hold follow it again
            self.applied.pop(m, None)
            self.roles_sent.pop(m, None)
        self.detached.clear()
        self._send_roles(out)
        if self.applied.get(pg.master) == pg.epoch:
            self._adjust_quorum(out)

    def _send_roles(self, out: list[Action]) -> None:
        """Roll forward: every live member gets its role at the current epoch until applied."""
        pg = self.pg
        assert pg is not None
        assert pg.master is not None
        for m in pg.members:
            sent = self.roles_sent.get(m)
            if not self.alive(m) or self.applied.get(m) == pg.epoch:
                continue
            if sent is not None and self.now_ms - sent < self.config.retry_ms:
                continue
            if m != pg.master:
                out.append(self._role(m, "slave", pg.master))
                continue
            if self.voters is None:  # unknown: every slave (more voters is only slower)
                self.voters = self._slaves()
            self.masters_sent.setdefault(pg.epoch, set()).add(m)
            out.append(self._role(m, "master", None, self.voters))

    def _adjust_quorum(self, out: list[Action]) -> None:
        """Voters = live voters + caught-up slaves, never fewer than min_copies - 1."""
        pg, trusted = self.pg, self.trusted
        assert pg is not None
        assert pg.master is not None
        if self.quorum_sent is not None:
            if self.now_ms - self.quorum_sent[1] < self.config.retry_ms:
                return
            # Unanswered or failed: it may still land, so what the master runs is unknown
            # until a new SETQUORUM is confirmed (a newer seq always wins at the pgserver).
            self.quorum_sent, self.fence_lsn = None, None
        slaves, master_lsn = self._slaves(), self.views[pg.master].lsn
        # Unknown voters (a new leader): assume every slave, so nothing is dropped on silence.
        current = self.voters & slaves if self.voters is not None else slaves
        grow = {m for m in slaves if self._following(m, master_lsn - self.config.catchup_lag_bytes)}
        target = frozenset({m for m in current if self.alive(m)} | grow)
        if len(target) + 1 < pg.min_copies:
            self._wait(
                f"PG {pg.id}: {len(target) + 1} live copies < min_copies {pg.min_copies}: "
                "writes wait for a member to return",
                out,
            )
            target = current | grow
        voters, fence = self.voters, self.fence_lsn
        changing = voters is None or fence is None or target != voters
        # New writes will be on every target voter; old ones on every trusted slave.
        bound = len(trusted & target) if trusted is not None else len(target)
        if bound < pg.quorum and (changing or trusted is not None):
            new = pg.model_copy(update={"quorum": bound})
            self._write(_Write(new, "quorum"), f"PG {pg.id}: quorum {bound} first", out)
            return
        if voters is None or fence is None or changing:
            if trusted is not None:
                self.trusted = trusted & target
            self.quorum_sent = (target, self.now_ms, self._seq())
            ordered = tuple(sorted(target))
            out.append(SetQuorum(pg.master, len(ordered), pg.epoch, ordered, self.seq))
            return
        # A voter that reached the fence holds every write acknowledged before the change,
        # and has acknowledged every one since.
        passed = {v for v in voters if self._following(v, fence)}
        if trusted is None:
            if passed == voters:
                self.trusted = voters
        else:
            self.trusted = trusted | passed
        if self.trusted is not None and len(self.trusted) > pg.quorum:
            new = pg.model_copy(update={"quorum": len(self.trusted)})
            self._write(_Write(new, "quorum"), f"PG {pg.id}: quorum {len(self.trusted)}", out)

    def _elect(self, out: list[Action]) -> None:
        """The master is dead: promote the most up-to-date slave that is safe to promote.

        With `trusted` known, any live trusted slave holds every acknowledged write. Without
        it (a new leader), the record says each acknowledged write is on `quorum` of the n
        slaves, so more than n - quorum slaves include one holding it; they are first put on
        hold (following nobody) so that an old master cut off only from us cannot go on
        acknowledging writes, and their held LSNs decide.
        """
        pg = self.pg
        assert pg is not None
        others = [m for m in pg.members if m != pg.master and self.alive(m)]
        usable = [m for m in others if self.views[m].epoch <= pg.epoch]
        lsns = {m: self.views[m].lsn for m in usable}
        if self.trusted is not None:
            pool = [m for m in usable if m in self.trusted]
            if not pool:
                why = f"no live in-sync slave (in sync: {sorted(self.trusted) or 'none'})"
                return self._wait(f"PG {pg.id} has no master: {why}", out)
        else:
            n = len(pg.members) - (pg.master is not None)
            if len(usable) <= n - pg.quorum:
                why = f"{len(usable)} live of {n} slaves, each write is on {pg.quorum}"
                return self._wait(f"PG {pg.id} has no master: {why}", out)
            for m in usable:  # hold every live slave, then decide on their held LSNs
                sent = self.roles_sent.get(m)
                if m not in self.detached and (
                    sent is None or self.now_ms - sent >= self.config.retry_ms
                ):
                    self.detached[m] = None
                    out.append(self._role(m, "slave", None))
            held = {m: lsn for m, lsn in self.detached.items() if lsn is not None and m in lsns}
            if None in self.detached.values() or len(held) <= n - pg.quorum:
                return self._wait(f"PG {pg.id} has no master: putting slaves on hold", out)
            lsns.update(held)
            pool = list(held)
        top = max(self.views[m].epoch for m in pool)
        cands = {m: lsns[m] for m in pool if self.views[m].epoch == top}
        winner = choose_master(cands, set(cands))
        assert winner is not None
        # Live slaves with the winner's epoch hold a prefix of its log: its voters to be.
        voters = frozenset(m for m in usable if m != winner and self.views[m].epoch == top)
        if len(voters) + 1 < pg.min_copies:
            why = f"promoting {winner} leaves {len(voters) + 1} copies < {pg.min_copies}"
            return self._wait(f"PG {pg.id} has no master: {why}", out)
        trusted = self.trusted & voters if self.trusted is not None else None
        quorum = len(trusted) if trusted is not None else min(pg.quorum, len(voters))
        new = pg.model_copy(update={"master": winner, "epoch": pg.epoch + 1, "quorum": quorum})
        why = f"PG {pg.id}: failover {pg.master} -> {winner} (lsn {cands[winner]}) at {new.epoch}"
        self._write(_Write(new, "failover", voters, trusted), why, out)
        if self.writing is not None:
            self.decision = Decision(winner, cands, manual=False)

    # ----------------------------------------------------------------- invariants

    def validate(self) -> None:
        """Invariants that hold after every event."""
        pg = self.pg
        if pg is None:
            return
        assert pg.epoch >= self._validated_epoch, "epoch decreased"
        self._validated_epoch = pg.epoch
        assert pg.master is None or pg.master in pg.members, "master is not a member"
        assert len(set(pg.members)) == len(pg.members), "duplicate member"
        assert set(self.views) == set(pg.members)
        if self.writing is not None:
            assert self.writing.pg.epoch in (pg.epoch, pg.epoch + 1)
        for epoch, sent in self.masters_sent.items():
            assert len(sent) == 1, f"ROLE master sent to {sorted(sent)} at epoch {epoch}"
            assert epoch < pg.epoch or sent == {pg.master}, "ROLE master sent to a non-master"
        slaves = self._slaves()
        if self.trusted is not None:
            assert self.trusted <= slaves, "a trusted slave is not a slave member"
            if self.voters is not None:
                assert self.trusted <= self.voters, "a trusted slave is not a voter"
            if self.writing is None and not self.data_loss_seen:
                assert pg.quorum <= len(self.trusted), "record promises more copies than known"
        idle = self.writing is None and self.quorum_sent is None and self._settled()
        idle = idle and self.now_ms >= self.write_retry_ms
        master = pg.master
        serving = master is not None and self.applied.get(master) == pg.epoch
        if idle and serving and self.voters is not None and not self.master_regressed:
            assert master is not None
            live = {v for v in self.voters if self.alive(v)}
            stalled = len(live) + 1 < pg.min_copies
            if self.alive(master):
                assert live == self.voters & slaves or stalled, "dead voter kept needlessly"
            assert pg.quorum <= len(self.voters), "quorum above the master's voters"

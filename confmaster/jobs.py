"""The trio driver of migration jobs: one `MigrationJob` machine per running job while this
confmaster leads (docs/migration.md).

Each job gets a task that feeds its machine events and carries out the actions: record
writes and the map commit inline (fenced by the leader epoch, under the metadata lock),
everything that talks to pgservers and gateways from background tasks whose outcomes come
back as events. The mover (migrator.RangeMover) runs inside this process, so "the migrator
died" and "the confmaster leader died" are the same fault, and its resume state lives in the
job record. A job whose task stopped (a failed record write, a new leadership) is picked up
again from its record by the scan, with `Resume`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import trio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from confmaster.cluster import ClusterError, ClusterState, commit_migration, plan_migration
from confmaster.driver import exchange_line
from confmaster.migration import (
    FINISHED,
    Action,
    Begin,
    BlockAndFence,
    CancelRequested,
    CleanTarget,
    CommitMap,
    CutoverFailed,
    Event,
    Fenced,
    Finished,
    Log,
    MapCommitted,
    MigrationConfig,
    MigrationJob,
    MoverFailed,
    Persist,
    Prepared,
    PrepareTarget,
    Progress,
    ReachedL1,
    Resume,
    RollForward,
    StartMover,
    StopMover,
    Tick,
    Unblocked,
    Unfence,
    WaitForL1,
)
from migrator.batching import marker_key
from migrator.config import MoverConfig
from migrator.connection import Address, PgConnection, open_connection
from migrator.mover import RangeMover, as_map, overlaps, partitions_of
from migrator.mover_state import MoverState, canonical_ranges
from migrator.progress import Progress as MoverProgress
from tessera.errors import CoordinationError, TesseraError
from tessera.http import HttpError
from tessera.layout import (
    MigrationJobPayload,
    PgServerPayload,
    RoutePayload,
    live_gateways_path,
    migration_path,
    migrations_path,
    route_path,
)
from tessera.partition import PartitionSet, parse_ranges
from tessera.zk import NoNodeError

if TYPE_CHECKING:
    from confmaster.server import Confmaster

log = logging.getLogger("tessera.confmaster.migration")

UNKNOWN_LAG = 1 << 30  # the tail's lag before the source's log end is known


class JobsConfig(BaseModel):
    """How the leader runs migration jobs (times in milliseconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tick_ms: int = Field(default=20, ge=1)
    scan_ms: int = Field(default=1000, ge=10)  # look for jobs without a task this often
    keep_jobs: int = Field(default=100, ge=1)  # finished jobs kept in ZooKeeper
    gateway_timeout_ms: int = Field(default=500, ge=1)  # a gateway slower than this is skipped
    command_timeout_ms: int = Field(default=5000, ge=1)
    retry_ms: int = Field(default=300, ge=1)  # between attempts of a roll-forward step
    cutover_lag_bytes: int = Field(default=256 << 10, ge=0)
    lease_margin_ms: int = Field(default=2000, ge=0)  # gateway block lease: budget + this
    # presented to pgservers (the mover's connections) and gateway admin ports
    cluster_secret: str | None = Field(default=None, repr=False)


@dataclass(frozen=True)
class _Cutover:
    """What a cutover attempt needs, read once before the gateways block: reading ZooKeeper
    at each step would lengthen the time they hold requests."""

    gateways: list[tuple[str, int]]
    source: Address
    target: Address
    route_version: int


@dataclass
class _Runner:
    """One job's machine and the state of its background work."""

    cluster: str
    machine: MigrationJob
    send: trio.MemorySendChannel[Event]
    receive: trio.MemoryReceiveChannel[Event]
    nursery: trio.Nursery | None = None
    mover: RangeMover | None = None
    mover_scope: trio.CancelScope | None = None
    fence_lock: trio.Lock = field(default_factory=trio.Lock)
    fence_gen: int = 0
    unfenced: trio.Event = field(default_factory=trio.Event)
    persisted: MigrationJobPayload | None = None
    persisted_at: float = 0.0
    cutover: _Cutover | None = None
    blocks_seen: int = 0  # entries of job.block_ms already counted in the metrics

    @property
    def job(self) -> MigrationJobPayload:
        return self.machine.job

    @property
    def ranges(self) -> str:
        return canonical_ranges([tuple(r) for r in self.job.ranges])  # type: ignore[misc]

    def fields(self, **more: Any) -> dict[str, Any]:
        """Structured log fields of this job's steps."""
        job = self.job
        return {
            "cluster": self.cluster,
            "job": job.id,
            "phase": job.phase,
            "attempt": job.attempts,
            "source_pg": job.source_pg,
            "target_pg": job.target_pg,
            **more,
        }

    def post(self, event: Event) -> None:
        # A job whose task ended has nobody listening any more.
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            self.send.send_nowait(event)


class _Stop(Exception):
    """This leader can no longer act for the job (a record write failed)."""


def now_ms() -> int:
    return int(time.time() * 1000)


class JobsDriver:
    """Owns the job tasks of one leadership term; dropped when the leadership is lost."""

    def __init__(self, confmaster: Confmaster, config: JobsConfig) -> None:
        self.confmaster = confmaster
        self.config = config
        self.runners: dict[tuple[str, str], _Runner] = {}
        self.nursery: trio.Nursery | None = None
        self.mover_config = MoverConfig(
            password=config.cluster_secret, info_interval_ms=100, progress_interval_ms=100
        )

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Resume the jobs found in ZooKeeper, then keep looking for orphaned ones."""
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            task_status.started()
            while True:
                try:
                    await self._scan()
                except (CoordinationError, TesseraError) as exc:
                    log.warning("scanning migration jobs failed: %s", exc)
                await trio.sleep(self.config.scan_ms / 1000)

    async def _scan(self) -> None:
        for cluster in await self.confmaster.clusters():
            async with self.confmaster.lock:
                for job in await self.read_jobs(cluster):
                    if job.phase not in FINISHED and (cluster, job.id) not in self.runners:
                        self._spawn(cluster, job, Resume(now_ms()))

    def _spawn(self, cluster: str, job: MigrationJobPayload, first: Event) -> _Runner:
        assert self.nursery is not None
        send, receive = trio.open_memory_channel[Event](math.inf)
        config = MigrationConfig(cutover_lag_bytes=self.config.cutover_lag_bytes)
        runner = _Runner(cluster, MigrationJob(job, config), send, receive, persisted=job)
        runner.blocks_seen = len(job.block_ms)  # attempts of an earlier leadership
        self.runners[(cluster, job.id)] = runner
        runner.post(first)
        self.nursery.start_soon(self._run_job, runner)
        return runner

    # ------------------------------------------------------------------ API

    async def read_jobs(self, cluster: str) -> list[MigrationJobPayload]:
        """Every job record of the cluster, oldest first."""
        return await read_jobs(self.confmaster, cluster)

    async def start_jobs(
        self,
        cluster: str,
        moves: list[tuple[int, int, int]],
        rate_mb_s: float,
        block_budget_ms: int,
    ) -> list[MigrationJobPayload]:
        """Validate and record the jobs of one request, then start them (lock held)."""
        state = await self.confmaster.read_state(cluster)
        existing = await self.read_jobs(cluster)
        running = [job for job in existing if job.phase not in FINISHED]
        first_id = max((int(job.id) for job in existing if job.id.isdigit()), default=0) + 1
        jobs = plan_migration(
            state,
            moves,
            running,
            lambda n: str(first_id + n),
            now_ms(),
            rate_mb_s=rate_mb_s,
            block_budget_ms=block_budget_ms,
        )
        await self.confmaster.write([(migration_path(cluster, job.id), job) for job in jobs])
        for job in jobs:
            runner = self._spawn(cluster, job, Begin(now_ms()))
            log.info(
                "job %s: move %s from PG %d to PG %d",
                job.id,
                _ranges_text(job),
                job.source_pg,
                job.target_pg,
                extra=runner.fields(ranges=_ranges_text(job)),
            )
        return jobs

    async def cancel(self, cluster: str, job_id: str) -> MigrationJobPayload:
        """Ask a job to cancel; ClusterError when it already committed or ended."""
        runner = self.runners.get((cluster, job_id))
        if runner is not None:
            job = runner.job
        else:
            found = [j for j in await self.read_jobs(cluster) if j.id == job_id]
            if not found:
                raise ClusterError(f"no migration job {job_id!r}")
            job = found[0]
        if job.phase in ("committed", "done"):
            raise ClusterError(f"job {job_id} already committed: it cannot be cancelled")
        if job.phase in FINISHED:
            raise ClusterError(f"job {job_id} already ended ({job.phase})")
        if runner is None:
            raise ClusterError(f"job {job_id} is being resumed; try again in a moment")
        log.info("job %s: cancel requested in phase %s", job_id, job.phase, extra=runner.fields())
        runner.post(CancelRequested(now_ms()))
        return job

    # ------------------------------------------------------------------ one job

    async def _run_job(self, runner: _Runner) -> None:
        key = (runner.cluster, runner.job.id)
        try:
            async with trio.open_nursery() as nursery:
                runner.nursery = nursery
                nursery.start_soon(self._ticker, runner)
                async for event in runner.receive:
                    await self._feed(runner, event)
                    if runner.job.phase in FINISHED:
                        break
                nursery.cancel_scope.cancel()
            if runner.job.phase in FINISHED:
                await self._trim(runner.cluster)
        except* _Stop as stopped:  # raised in the nursery: it comes wrapped in a group
            for exc in stopped.exceptions:
                log.warning(
                    "job %s: stopped acting for it: %s", runner.job.id, exc, extra=runner.fields()
                )
        finally:
            runner.send.close()
            if self.runners.get(key) is runner:
                del self.runners[key]

    async def _ticker(self, runner: _Runner) -> None:
        while True:
            await trio.sleep(self.config.tick_ms / 1000)
            runner.post(Tick(now_ms()))

    async def _feed(self, runner: _Runner, event: Event) -> None:
        before = runner.job.phase
        actions = runner.machine.handle(event)
        after = runner.job.phase
        if after != before:
            log.info("job %s: phase %s -> %s", runner.job.id, before, after, extra=runner.fields())
            if after in FINISHED:
                self.confmaster.metrics.job_ended(after)
        self._count_blocks(runner, isinstance(event, Unblocked))
        for action in actions:
            await self._act(runner, action)
        if (
            runner.job != runner.persisted
            and time.monotonic() - runner.persisted_at > 0.5
            and runner.job.phase != "cutover"  # not while gateways hold requests
        ):
            await self._persist(runner, runner.job)  # progress, at most twice a second

    def _count_blocks(self, runner: _Runner, unblocked: bool) -> None:
        """Cutover attempts whose block time is final go into the block-time histogram: a
        rolled-back attempt at once, a committed one at the redirect (Unblocked)."""
        job = runner.job
        final = len(job.block_ms)
        if job.phase == "committed" and not unblocked:
            final -= 1  # the committed attempt's block lasts until the redirect
        for index in range(runner.blocks_seen, final):
            committed = job.phase in ("committed", "done") and index == len(job.block_ms) - 1
            seconds = job.block_ms[index] / 1000
            outcome = "committed" if committed else "rolled_back"
            self.confmaster.metrics.cutover_block(outcome, seconds)
            log.info(
                "job %s: cutover attempt %d blocked its partitions for %d ms (%s)",
                job.id,
                index + 1,
                job.block_ms[index],
                outcome.replace("_", " "),
                extra=runner.fields(block_ms=job.block_ms[index], outcome=outcome),
            )
        runner.blocks_seen = max(runner.blocks_seen, final)

    async def _act(self, runner: _Runner, action: Action) -> None:
        nursery = runner.nursery
        assert nursery is not None
        step = _STEP_LOG.get(type(action))
        if step is not None:
            log.info("job %s: %s", runner.job.id, step, extra=runner.fields())
        if isinstance(action, Persist):
            await self._persist(runner, action.job)
        elif isinstance(action, Log):
            log.info("%s", action.message, extra=runner.fields())
        elif isinstance(action, PrepareTarget):
            nursery.start_soon(self._prepare, runner)
        elif isinstance(action, StartMover):
            nursery.start_soon(self._mover, runner, action.mover)
        elif isinstance(action, StopMover):
            self._stop_mover(runner)
        elif isinstance(action, BlockAndFence):
            nursery.start_soon(self._block_and_fence, runner, action.budget_ms)
        elif isinstance(action, WaitForL1):
            nursery.start_soon(self._wait_for_l1, runner, action.l1, action.deadline_ms)
        elif isinstance(action, Unfence):
            nursery.start_soon(self._unfence, runner)
        elif isinstance(action, CommitMap):
            runner.post(await self._commit_map(runner, action.job))
        elif isinstance(action, RollForward):
            nursery.start_soon(self._roll_forward, runner)
        elif isinstance(action, CleanTarget):
            nursery.start_soon(self._clean_target, runner)

    async def _persist(self, runner: _Runner, job: MigrationJobPayload) -> None:
        try:
            async with self.confmaster.lock:
                await self.confmaster.write([(migration_path(runner.cluster, job.id), job)])
        except (CoordinationError, TesseraError, OSError) as exc:
            raise _Stop(f"cannot write the job record: {exc}") from exc
        except Exception as exc:  # HttpError: not the leader any more
            raise _Stop(f"cannot write the job record: {exc}") from exc
        runner.persisted, runner.persisted_at = job, time.monotonic()

    # ------------------------------------------------------------------ addresses

    async def _master(self, cluster: str, pg: int) -> Address:
        state = await self.confmaster.read_state(cluster)
        group = state.pgs.get(pg)
        if group is None or group.master is None:
            raise ClusterError(f"PG {pg} has no master")
        server: PgServerPayload = state.pgservers[group.master]
        return Address(server.host, server.port)

    async def _gateways(
        self, cluster: str, state: ClusterState | None = None
    ) -> list[tuple[str, int]]:
        """Admin addresses of the gateways: registered ones not known dead, and live ones."""
        if state is None:
            state = await self.confmaster.read_state(cluster)
        found = {(g.host, g.admin_port) for g in state.gateways.values() if g.state != "down"}
        zk = self.confmaster.zk
        live = live_gateways_path(cluster)
        children = (await zk.children_many([live]))[0] or []
        datas = await zk.get_many([f"{live}/{child}" for child in children])
        for child, data in zip(children, datas, strict=True):
            try:
                info = json.loads(data) if data is not None else None
            except ValueError:
                continue
            if not isinstance(info, dict):
                continue
            host = child.rpartition(":")[0]
            if host in ("0.0.0.0", "::", ""):
                host = "127.0.0.1"
            if isinstance(info.get("admin_port"), int) and info["admin_port"] > 0:
                found.add((host, info["admin_port"]))
        return sorted(found)

    async def _admin_all(
        self, cluster: str, argv: list[bytes], gateways: list[tuple[str, int]] | None = None
    ) -> dict[str, str]:
        """One admin command on every gateway at once; replies by gateway, "" if silent."""
        replies: dict[str, str] = {}
        timeout = self.config.gateway_timeout_ms / 1000

        async def one(host: str, port: int) -> None:
            replies[f"{host}:{port}"] = await _admin_command(
                host, port, argv, timeout, self.config.cluster_secret
            )

        if gateways is None:
            gateways = await self._gateways(cluster)
        async with trio.open_nursery() as nursery:
            for host, port in gateways:
                nursery.start_soon(one, host, port)
        return replies

    # ------------------------------------------------------------------ steps

    async def _prepare(self, runner: _Runner) -> None:
        """Mark the target importing (and lift a fence an earlier move left there), then
        count what the source has to move."""
        job, ranges = runner.job, runner.ranges
        try:
            target = await self._master(runner.cluster, job.target_pg)
            source = await self._master(runner.cluster, job.source_pg)
            async with open_connection(target, "target", self.mover_config) as conn:
                await conn.call("TSR.IMPORTING", "ADD", ranges)
                await conn.call("TSR.FENCE", "DEL", ranges)
            async with open_connection(source, "source", self.mover_config) as conn:
                keys, size = await conn.call("TSR.COUNT", ranges)
        except (TesseraError, OSError, ValueError) as exc:
            runner.post(MoverFailed(f"prepare: {exc}", now_ms()))
            return
        runner.post(Prepared(int(keys), int(size)))

    async def _mover(self, runner: _Runner, saved: dict[str, Any]) -> None:
        job = runner.job
        mover: RangeMover | None = None
        with trio.CancelScope() as scope:
            runner.mover_scope = scope
            try:
                source = await self._master(runner.cluster, job.source_pg)
                target = await self._master(runner.cluster, job.target_pg)
                state = MoverState.model_validate(saved) if saved else None
                config = self.mover_config
                if job.rate_mb_s > 0:  # small batches, so the throttle shapes even short loads
                    batch = int(min(config.batch_bytes, max(4096, job.rate_mb_s * 2**20 / 20)))
                    config = config.model_copy(
                        update={"rate_mb_s": job.rate_mb_s, "batch_bytes": batch}
                    )

                def report(progress: MoverProgress) -> None:
                    assert mover is not None
                    runner.post(_progress_event(progress, mover.state))

                async def save(state: MoverState) -> None:
                    if mover is not None:
                        runner.post(_progress_event(mover.progress, state))

                mover = RangeMover(
                    source,
                    target,
                    runner.ranges,
                    config,
                    state=state,
                    on_progress=report,
                    save_state=save,
                )
                runner.mover = mover
                await mover.run()
                runner.post(MoverFailed(f"the mover stopped in phase {mover.phase}", now_ms()))
            except (TesseraError, OSError, ValueError, ValidationError) as exc:
                runner.post(MoverFailed(str(exc), now_ms()))
            finally:
                if runner.mover is mover:
                    runner.mover = None

    def _stop_mover(self, runner: _Runner) -> None:
        if runner.mover_scope is not None:
            runner.mover_scope.cancel()
        runner.mover = None

    async def _block_and_fence(self, runner: _Runner, budget_ms: int) -> None:
        job = runner.job
        lease = budget_ms + self.config.lease_margin_ms
        try:
            plan = await self._plan_cutover(runner)
        except (TesseraError, CoordinationError, ValidationError, HttpError) as exc:
            runner.post(CutoverFailed(f"reading the cluster failed: {exc}", now_ms()))
            return
        # The version lets a gateway that gets this BLOCK late (it was stopped) refuse it.
        argv = [b"BLOCK", _job_name(job).encode(), runner.ranges.encode(), b"%d" % lease]
        argv.append(b"%d" % plan.route_version)
        replies = await self._admin_all(runner.cluster, argv, plan.gateways)
        skipped = sorted(gw for gw, reply in replies.items() if reply != "+OK")
        fields = runner.fields(attempt=job.attempts + 1, route_version=plan.route_version)
        log.info(
            "job %s: cutover attempt %d: %d gateways blocked (lease %d ms)",
            job.id,
            job.attempts + 1,
            len(replies) - len(skipped),
            lease,
            extra=fields,
        )
        if skipped:
            log.warning(
                "job %s: BLOCK not confirmed by %s (the fence covers them)",
                job.id,
                skipped,
                extra=fields,
            )
        try:
            l1 = await self._fence(runner, plan.source)
        except (TesseraError, OSError, ValueError) as exc:
            runner.post(CutoverFailed(f"fencing the source failed: {exc}", now_ms()))
            return
        log.info("job %s: source fenced at L1 %d", job.id, l1, extra={**fields, "l1": l1})
        runner.post(Fenced(l1, now_ms()))

    async def _plan_cutover(self, runner: _Runner) -> _Cutover:
        cluster, job = runner.cluster, runner.job
        state = await self.confmaster.read_state(cluster)
        if state.route is None:
            raise ClusterError("the cluster has no route yet")
        addresses = []
        for pg in (job.source_pg, job.target_pg):
            group = state.pgs.get(pg)
            if group is None or group.master is None:
                raise ClusterError(f"PG {pg} has no master")
            server = state.pgservers[group.master]
            addresses.append(Address(server.host, server.port))
        gateways = await self._gateways(cluster, state)
        runner.cutover = _Cutover(gateways, addresses[0], addresses[1], state.route.version)
        return runner.cutover

    async def _fence(self, runner: _Runner, source: Address) -> int:
        async with runner.fence_lock:
            runner.fence_gen += 1
            runner.unfenced = trio.Event()
            async with open_connection(source, "source", self.mover_config) as conn:
                return int(await conn.call("TSR.FENCE", "ADD", runner.ranges))

    async def _unfence(self, runner: _Runner) -> None:
        """UNBLOCK the gateways and lift the source's fence, retrying until it is lifted or a
        newer fence supersedes this request (commands on the fence never overtake)."""
        job = runner.job
        await self._admin_all(runner.cluster, [b"UNBLOCK", _job_name(job).encode()])
        generation = runner.fence_gen
        while True:
            async with runner.fence_lock:
                if runner.fence_gen != generation:
                    return
                try:
                    source = await self._master(runner.cluster, job.source_pg)
                    async with open_connection(source, "source", self.mover_config) as conn:
                        await conn.call("TSR.FENCE", "DEL", runner.ranges)
                except (TesseraError, OSError, ValueError) as exc:
                    log.warning("job %s: lifting the source's fence failed: %s", job.id, exc)
                else:
                    runner.unfenced.set()
                    return
            await trio.sleep(self.config.retry_ms / 1000)

    async def _wait_for_l1(self, runner: _Runner, l1: int, deadline_ms: int) -> None:
        mover = runner.mover
        if mover is None:
            runner.post(CutoverFailed("the mover is not running", now_ms()))
            return
        timeout = max(deadline_ms - now_ms(), 0) / 1000
        try:
            reached = await mover.wait_applied(l1, timeout)
        except TesseraError as exc:
            runner.post(CutoverFailed(str(exc), now_ms()))
            return
        if reached:
            runner.post(ReachedL1(now_ms()))
        else:
            why = f"the target did not apply up to L1 {l1} within the block budget"
            runner.post(CutoverFailed(why, now_ms()))

    async def _commit_map(self, runner: _Runner, job: MigrationJobPayload) -> Event:
        """The commit point. A write whose outcome is unknown is settled by reading the
        record back; if even that fails this leader stops acting (the next one reads it)."""
        cluster = runner.cluster
        try:
            async with self.confmaster.lock:
                state = await self.confmaster.read_state(cluster)
                changes = commit_migration(state, job)
                await self.confmaster.write(changes)
            if runner.cutover is not None:
                routes = [c for _p, c in changes if isinstance(c, RoutePayload)]
                version = routes[0].version if routes else runner.cutover.route_version
                runner.cutover = replace(runner.cutover, route_version=version)
            log.info(
                "job %s: map version %d committed (the ranges belong to PG %d)",
                job.id,
                state.map.version + 1,
                job.target_pg,
                extra=runner.fields(map_version=state.map.version + 1),
            )
        except ClusterError as exc:
            return MapCommitted(False, now_ms(), str(exc))
        except Exception as exc:
            try:
                data, _stat = await self.confmaster.zk.get(migration_path(cluster, job.id))
                landed = MigrationJobPayload.from_json(data).phase == "committed"
            except Exception as again:
                raise _Stop(f"the map commit's outcome is unknown: {again}") from exc
            if not landed:
                return MapCommitted(False, now_ms(), str(exc))
        runner.persisted, runner.persisted_at = job, time.monotonic()
        return MapCommitted(True, now_ms())

    async def _roll_forward(self, runner: _Runner) -> None:
        """After the commit: stop the tail, end the import on the target, redirect the
        gateways, then delete the ranges on the source, which stays fenced for them."""
        self._stop_mover(runner)
        job, ranges = runner.job, runner.ranges
        cluster = runner.cluster
        marker = marker_key(ranges)

        async def commit_target(conn: PgConnection) -> None:
            await conn.call("DEL", marker)
            await conn.call("TSR.IMPORTING", "DEL", ranges)

        plan = runner.cutover  # None when this leader took the job over after the commit
        target_done = await self._attempt(
            runner, job.target_pg, "target", commit_target, plan.target if plan else None
        )
        if plan is not None and target_done:
            gateways, target, version = plan.gateways, plan.target, plan.route_version
        else:
            route = RoutePayload.from_json((await self.confmaster.zk.get(route_path(cluster)))[0])
            target = await self._master(cluster, job.target_pg)
            gateways, version = await self._gateways(cluster), route.version
        argv = [b"REDIRECT", _job_name(job).encode(), ranges.encode(), str(target).encode()]
        await self._admin_all(cluster, [*argv, b"%d" % version], gateways)
        log.info(
            "job %s: gateways redirected to %s (route version %d)",
            job.id,
            target,
            version,
            extra=runner.fields(route_version=version),
        )
        runner.post(Unblocked(now_ms()))
        if not target_done:
            await self._retry(runner, job.target_pg, "target", commit_target)

        async def clean_source(conn: PgConnection) -> None:
            await conn.call("TSR.FENCE", "ADD", ranges)  # already there: kept for good
            await _delete_ranges(conn, ranges, self.config.retry_ms)

        log.info("job %s: deleting the ranges on the source", job.id, extra=runner.fields())
        await self._retry(runner, job.source_pg, "source", clean_source)
        log.info("job %s: source cleaned up", job.id, extra=runner.fields())
        runner.post(Finished(now_ms()))

    async def _clean_target(self, runner: _Runner) -> None:
        """Cancel or failure: once the source is unfenced, drop the dump and leave the
        target without a key of the ranges and without the importing mark."""
        job, ranges = runner.job, runner.ranges
        await runner.unfenced.wait()
        dump_id = job.mover.get("dump_id") if job.mover else None
        if dump_id:

            async def drop(conn: PgConnection) -> None:
                await conn.call("TSR.DUMPDROP", dump_id)

            await self._attempt(runner, job.source_pg, "source", drop)

        async def clean(conn: PgConnection) -> None:
            await _delete_ranges(conn, ranges, self.config.retry_ms)
            await conn.call("DEL", marker_key(ranges))
            await conn.call("TSR.IMPORTING", "DEL", ranges)

        await self._retry(runner, job.target_pg, "target", clean)
        log.info("job %s: target cleaned up", job.id, extra=runner.fields())
        runner.post(Finished(now_ms()))

    async def _attempt(
        self,
        runner: _Runner,
        pg: int,
        role: str,
        work: Callable[[PgConnection], Awaitable[None]],
        address: Address | None = None,
    ) -> bool:
        """Run `work` on the PG's master (`address`, else read from the cluster) once;
        False (logged) if it failed."""
        try:
            with trio.fail_after(self.config.command_timeout_ms / 1000):
                if address is None:
                    address = await self._master(runner.cluster, pg)
                async with open_connection(address, role, self.mover_config) as conn:
                    await work(conn)
            return True
        except (TesseraError, OSError, ValueError, trio.TooSlowError) as exc:
            log.warning(
                "job %s: %s PG %d: %s",
                runner.job.id,
                role,
                pg,
                exc or "timeout",
                extra=runner.fields(),
            )
            return False

    async def _retry(
        self,
        runner: _Runner,
        pg: int,
        role: str,
        work: Callable[[PgConnection], Awaitable[None]],
    ) -> None:
        while True:
            if await self._attempt(runner, pg, role, work):
                return
            await trio.sleep(self.config.retry_ms / 1000)

    async def _trim(self, cluster: str) -> None:
        """Keep the newest `keep_jobs` finished jobs."""
        try:
            async with self.confmaster.lock:
                jobs = await self.read_jobs(cluster)
                finished = [job for job in jobs if job.phase in FINISHED]
                extra = len(finished) - self.config.keep_jobs
                for job in finished[: max(extra, 0)]:
                    await self.confmaster.zk.delete(migration_path(cluster, job.id))
        except (CoordinationError, TesseraError) as exc:
            log.warning("trimming old migration jobs failed: %s", exc)


async def read_jobs(confmaster: Confmaster, cluster: str) -> list[MigrationJobPayload]:
    """Every job record of a cluster, oldest first (any confmaster can answer): the list,
    then every record in one pipelined round trip."""
    zk = confmaster.zk
    try:
        names = await zk.children(migrations_path(cluster))
    except NoNodeError:
        return []
    records = await zk.get_many([migration_path(cluster, name) for name in names])
    jobs = [job for data in records if (job := _parse_job(data)) is not None]
    jobs.sort(key=lambda job: (int(job.id) if job.id.isdigit() else 0, job.id))
    return jobs


async def read_job(confmaster: Confmaster, cluster: str, job_id: str) -> MigrationJobPayload | None:
    """One job record (one ZooKeeper read: what a dashboard polling a job costs), or None."""
    try:
        data, _stat = await confmaster.zk.get(migration_path(cluster, job_id))
    except NoNodeError:
        return None
    return _parse_job(data)


def _parse_job(data: bytes | None) -> MigrationJobPayload | None:
    """A job record's payload; None for a node gone meanwhile or one that does not parse."""
    if data is None:
        return None
    try:
        return MigrationJobPayload.model_validate_json(data)
    except ValidationError:
        return None


# The steps logged as the driver starts them (outcomes are logged where they happen).
_STEP_LOG: dict[type, str] = {
    PrepareTarget: "preparing: target marked importing, counting the source",
    StartMover: "starting the mover (dump and load, then log catch-up)",
    StopMover: "stopping the mover",
    BlockAndFence: "cutover: blocking the gateways and fencing the source",
    WaitForL1: "cutover: waiting for the target to apply up to L1",
    Unfence: "unblocking the gateways and lifting the source's fence",
    CommitMap: "commit point: writing the new map",
    RollForward: "rolling forward: target commit, redirect, source cleanup",
    CleanTarget: "cleaning the target",
}


def job_view(job: MigrationJobPayload) -> dict[str, Any]:
    """A job record as the API shows it: the record plus an ETA of the copy (seconds)."""
    view = job.model_dump(by_alias=True)
    eta = None
    if job.phase == "copy" and job.bytes_copied and job.bytes_total:
        spent = max(job.updated_ms - job.created_ms, 1) / 1000
        eta = max(job.bytes_total - job.bytes_copied, 0) / (job.bytes_copied / spent)
    view["eta_s"] = eta
    return view


def _job_name(job: MigrationJobPayload) -> str:
    return f"migration-{job.id}"


def _ranges_text(job: MigrationJobPayload) -> str:
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in job.ranges)


def _progress_event(progress: MoverProgress, state: MoverState) -> Progress:
    lag = progress.lag_bytes
    return Progress(
        l0=state.l0,
        keys_copied=progress.keys_loaded,
        bytes_copied=progress.bytes_loaded,
        applied_lsn=state.applied_lsn or 0,
        lag_bytes=UNKNOWN_LAG if lag is None else lag,
        copied=state.phase in ("catching_up", "tail_closed"),
        mover=state.model_dump(),
        lag_records=progress.lag_records,
    )


async def _delete_ranges(conn: PgConnection, ranges: str, poll_ms: int) -> None:
    """TSR.DELRANGE, then wait until the ranges hold no key and nothing is queued for them."""
    wanted = PartitionSet(parse_ranges(ranges))
    await conn.call("TSR.DELRANGE", ranges)
    while True:
        status = as_map(await conn.call("TSR.DELRANGE", "STATUS"))
        deleting = partitions_of(status.get(b"ranges", b""))
        keys = int((await conn.call("TSR.COUNT", ranges))[0])
        if keys == 0 and not overlaps(deleting, wanted):
            return
        await trio.sleep(min(poll_ms, 20) / 1000)


async def _admin_command(
    host: str, port: int, argv: list[bytes], timeout_s: float, secret: str | None
) -> str:
    """One gateway admin command on a fresh connection; its first reply line, "" if none."""
    with trio.move_on_after(timeout_s):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            return ""
        async with stream:
            try:
                return await exchange_line(stream, argv, secret) or ""
            except (OSError, trio.BrokenResourceError):
                return ""
    return ""

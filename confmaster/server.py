"""The confmaster: leader election, cluster metadata in ZooKeeper, heartbeats, operator API.

Every instance serves the read-only API from ZooKeeper. One instance, elected through
ZooKeeper, is the leader: only it changes metadata, and each of its writes is a ZooKeeper
transaction that also checks the version of the leader node it wrote when it won, so a
deposed leader's late writes fail instead of landing (epoch fencing). Followers answer
mutations with 421 and the leader's address; confmaster-cli follows that pointer.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from confmaster.cluster import (
    Change,
    ClusterError,
    ClusterState,
    add_gateway,
    add_pg,
    create_cluster,
    mark_gateway,
    mark_pgserver,
    register_pgserver,
    remove_gateway,
    remove_pg,
    set_map,
    unregister_pgserver,
)
from confmaster.driver import FailoverDriver
from confmaster.failover import FailoverConfig, ManualFailover, MemberAdded, MemberRemoved
from confmaster.jobs import JobsConfig, JobsDriver, job_view, read_job, read_jobs
from confmaster.metrics import ConfmasterMetrics
from confmaster.metrics import collect as confmaster_metrics
from tessera.errors import CoordinationError
from tessera.gcstats import freeze_startup_heap
from tessera.http import HttpError, Request, Response, serve_http
from tessera.layout import (
    CONFMASTER,
    ELECTION,
    LEADER,
    ROOT,
    ClusterMeta,
    GatewayPayload,
    LeaderPayload,
    PartitionMapPayload,
    PgPayload,
    PgServerPayload,
    RoutePayload,
    cluster_path,
    gateways_path,
    live_gateways_path,
    map_path,
    migrations_path,
    pg_path,
    pgs_path,
    pgservers_path,
    route_path,
)
from tessera.metrics import metrics_response, new_registry
from tessera.resp import encode_command
from tessera.security import ZkAuth, auth_accepted
from tessera.zk import CheckOp, CreateOp, DeleteOp, Leadership, NoNodeError, SetOp, ZkClient

log = logging.getLogger("tessera.confmaster")


class ConfmasterConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    zk: str = "127.0.0.1:2181"
    zk_chroot: str = ""
    bind: str = "127.0.0.1"
    port: int = Field(default=1122, ge=0, le=65535)
    instance_id: str = ""
    # A master is failed over after heartbeat_timeout_ms without an answer: with these
    # defaults writes are served again ~1.5 s after it dies (docs/benchmarks.md).
    heartbeat_interval_ms: int = Field(default=200, ge=10)
    heartbeat_timeout_ms: int = Field(default=1000, ge=50)
    zk_session_timeout_ms: int = Field(default=4000, ge=1000)  # bounds leader takeover time
    keep_migrations: int = Field(default=100, ge=1)  # finished migration jobs kept in ZK
    # Required of API clients (Authorization: Bearer) and presented to pgservers and
    # gateway admin ports.
    cluster_secret: str | None = Field(default=None, repr=False)
    zk_auth: ZkAuth | None = None


class Confmaster:
    def __init__(self, config: ConfmasterConfig) -> None:
        self.config = config
        self.zk = ZkClient(
            config.zk,
            chroot=config.zk_chroot,
            timeout_s=config.zk_session_timeout_ms / 1000,
            auth=config.zk_auth,
        )
        self.port = 0
        self.instance_id = config.instance_id or f"{config.bind}:{config.port}/{os.getpid()}"
        self.is_leader = False
        self.epoch = 0
        self.leadership: Leadership | None = None
        self.leader_api = ""
        self.lock = trio.Lock()
        self._last_ok: dict[str, float] = {}
        self._last_written: dict[str, float] = {}
        self.driver: FailoverDriver | None = None
        self.jobs: JobsDriver | None = None
        self.metrics = ConfmasterMetrics()
        self.registry = new_registry(partial(confmaster_metrics, self))

    # ------------------------------------------------------------------ lifecycle

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        await self.zk.start()
        try:
            for path in (ROOT, f"{ROOT}/clusters", CONFMASTER, ELECTION):
                await self.zk.ensure_path(path)
            freeze_startup_heap()
            async with trio.open_nursery() as nursery:
                self.port = await nursery.start(
                    serve_http,
                    self.handle,
                    self.config.bind,
                    self.config.port,
                    self.config.cluster_secret,
                )
                nursery.start_soon(self._campaign)
                nursery.start_soon(self._follow_leader)
                task_status.started(self.port)
                log.info(
                    "confmaster %s serving the API on %s:%d",
                    self.instance_id,
                    self.config.bind,
                    self.port,
                )
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self.zk.stop()

    @property
    def api_address(self) -> str:
        return f"{self.config.bind}:{self.port}"

    async def _campaign(self) -> None:
        """Win the election, then lead until the ZooKeeper session or the node is lost."""
        while True:
            ident = json.dumps({"id": self.instance_id, "api": self.api_address})
            try:
                leadership = await self.zk.campaign(ELECTION, ident)
                await leadership.won()
            except CoordinationError as exc:  # includes LeadershipLostError
                log.warning("election attempt failed (%s); standing again", exc)
                await trio.sleep(0.5)
                continue
            self.leadership = leadership
            self.epoch = leadership.epoch
            payload = LeaderPayload(
                id=self.instance_id, api=self.api_address, epoch=self.epoch, since_ms=_now_ms()
            )
            try:
                if await self.zk.exists(LEADER) is None:
                    await self.zk.transaction(
                        [leadership.fence(), CreateOp(LEADER, payload.to_json())]
                    )
                else:
                    await self.zk.transaction(
                        [leadership.fence(), SetOp(LEADER, payload.to_json())]
                    )
            except CoordinationError as exc:
                log.warning("could not record the leadership (%s); standing again", exc)
                await leadership.resign()
                continue
            self.leader_api = self.api_address
            self.metrics.leaderships += 1
            log.info(
                "confmaster %s is the leader (epoch %d)",
                self.instance_id,
                self.epoch,
                extra={"leader_epoch": self.epoch},
            )
            try:
                async with trio.open_nursery() as nursery:
                    interval = self.config.heartbeat_interval_ms
                    failover = FailoverConfig(
                        timeout_ms=self.config.heartbeat_timeout_ms,
                        retry_ms=max(2 * interval, 500),
                    )
                    self.driver = FailoverDriver(self, failover)
                    await nursery.start(self.driver.run)
                    self.is_leader = True
                    jobs = JobsConfig(
                        keep_jobs=self.config.keep_migrations,
                        cluster_secret=self.config.cluster_secret,
                    )
                    self.jobs = JobsDriver(self, jobs)
                    await nursery.start(self.jobs.run)
                    nursery.start_soon(self._heartbeats)
                    await leadership.lost.wait()
                    nursery.cancel_scope.cancel()
            finally:
                self.is_leader = False
                self.driver = None
                self.jobs = None
                log.warning(
                    "confmaster %s lost the leadership (epoch %d)",
                    self.instance_id,
                    self.epoch,
                    extra={"leader_epoch": self.epoch},
                )

    async def _follow_leader(self) -> None:
        """Keep `leader_api` current so followers can point clients at the leader."""
        channel = self.zk.watch_data(LEADER)
        async for data, _stat in channel:
            if data:
                try:
                    self.leader_api = LeaderPayload.from_json(data).api
                except ValidationError:
                    continue

    # ------------------------------------------------------------------ ZooKeeper state

    async def clusters(self) -> list[str]:
        try:
            return sorted(await self.zk.children(f"{ROOT}/clusters"))
        except NoNodeError:
            return []

    async def read_state(self, name: str) -> ClusterState:
        """The cluster's nodes in two pipelined round trips (the cutover of a migration
        reads it while gateways hold requests, so it must not cost a trip per node)."""
        zk = self.zk
        sections = [pgs_path(name), pgservers_path(name), gateways_path(name)]
        meta_data, map_data, route_data = await zk.get_many(
            [cluster_path(name), map_path(name), route_path(name)]
        )
        if meta_data is None or map_data is None:
            raise HttpError(404, f"unknown cluster {name!r}")
        listed = await zk.children_many(sections)
        paths = [
            f"{section}/{child}"
            for section, children in zip(sections, listed, strict=True)
            for child in children or []
        ]
        values = dict(zip(paths, await zk.get_many(paths), strict=True))
        state = ClusterState(
            ClusterMeta.from_json(meta_data), PartitionMapPayload.from_json(map_data)
        )
        state.route = RoutePayload.from_json(route_data) if route_data is not None else None
        for path, data in values.items():
            if data is None:  # removed between listing and reading
                continue
            section, _, child = path.rpartition("/")
            if section == sections[0]:
                state.pgs[int(child)] = PgPayload.from_json(data)
            elif section == sections[1]:
                state.pgservers[child] = PgServerPayload.from_json(data)
            else:
                state.gateways[child] = GatewayPayload.from_json(data)
        return state

    async def write(self, changes: list[Change]) -> None:
        """Apply node writes atomically, fenced by this leader's epoch."""
        if not changes:
            return
        if not self.is_leader or self.leadership is None:
            raise HttpError(421, "not the leader")
        ops: list[Any] = [self.leadership.fence()]
        for path, payload in changes:
            exists = await self.zk.exists(path) is not None
            if payload is None:
                if exists:
                    ops.append(DeleteOp(path))
            elif exists:
                ops.append(SetOp(path, payload.to_json()))
            else:
                ops.append(CreateOp(path, payload.to_json()))
        await self.zk.transaction(ops)

    # ------------------------------------------------------------------ heartbeats

    async def _heartbeats(self) -> None:
        interval = self.config.heartbeat_interval_ms / 1000
        while True:
            started = trio.current_time()
            try:
                names = await self.clusters()
            except CoordinationError as exc:  # e.g. the connection dropped: try next round
                log.warning("heartbeat round failed: %s", exc)
                names = []
            for name in names:
                try:
                    await self._beat_cluster(name)
                except (CoordinationError, HttpError) as exc:
                    log.warning("heartbeat round for %s failed: %s", name, exc)
            took = trio.current_time() - started
            if took > interval:
                log.info(
                    "heartbeat round took %.0f ms (interval %.0f)", took * 1000, interval * 1000
                )
            await trio.sleep_until(started + interval)

    async def _beat_cluster(self, name: str) -> None:
        """Probe every pgserver and gateway, record up/down, and drive the PGs' failover."""
        state = await self.read_state(name)
        timeout = self.config.heartbeat_timeout_ms / 1000
        # A slow answer is still an answer: only silence for the whole timeout is death.
        probe_timeout = timeout / 2
        now = time.monotonic()
        results: dict[str, Probe] = {}

        async def run_probe(key: str, host: str, port: int, info: bool) -> None:
            # Gateways are probed on their client port, which knows no cluster secret.
            secret = self.config.cluster_secret if info else None
            results[key] = result = await _ping(host, port, probe_timeout, info, secret)
            driver = self.driver
            if info and driver is not None:  # into the failover machine as it comes
                pgs_id = key.split("/", 1)[1]
                async with self.lock:
                    await driver.heartbeat((name, state.pgservers[pgs_id].pg), pgs_id, result)

        async with trio.open_nursery() as nursery:
            for pgs_id, server in state.pgservers.items():
                nursery.start_soon(run_probe, "pgs/" + pgs_id, server.host, server.port, True)
            for gw_id, gateway in state.gateways.items():
                nursery.start_soon(run_probe, "gw/" + gw_id, gateway.host, gateway.port, False)
        async with self.lock:
            state = await self.read_state(name)  # as of now: the API may have changed it
            changes: list[Change] = []
            for key, result in results.items():
                kind, ident = key.split("/", 1)
                table = state.pgservers if kind == "pgs" else state.gateways
                if ident not in table:
                    continue
                if result.ok:
                    self._last_ok[key] = now
                alive = now - self._last_ok.setdefault(key, now) < timeout
                current = table[ident].state
                refresh = now - self._last_written.get(key, 0) > 10
                if (alive and (current != "up" or refresh)) or (not alive and current != "down"):
                    self._last_written[key] = now
                    if kind == "pgs":
                        changes += mark_pgserver(state, ident, alive, _now_ms(), result.lsn)
                    else:
                        changes += mark_gateway(state, ident, alive, _now_ms())
                    if current != ("up" if alive else "down"):
                        what = "pgserver" if kind == "pgs" else "gateway"
                        log.info("%s %s is %s", what, ident, "up" if alive else "down")
            await self.write(changes)
            await self._drive_failover(state.apply(changes))

    async def _drive_failover(self, state: ClusterState) -> None:
        """New machines for new PGs, and a clock tick into each (lock held)."""
        driver = self.driver
        if driver is None:
            return
        for key in driver.sync(state):
            await driver.start(key, state.pgs[key[1]])
        for pg_id in state.pgs:
            await driver.tick((state.meta.name, pg_id))

    # ------------------------------------------------------------------ API

    async def handle(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        if parts == [] and method == "GET":
            return Response(200, await self._overview())
        if parts == ["metrics"]:
            return metrics_response(self.registry, request)
        if parts == ["clusters"] and method == "GET":
            return Response(200, {"clusters": await self.clusters()})
        if method == "GET" and len(parts) == 4 and parts[::2] == ["clusters", "migrations"]:
            # One read, not the whole cluster and every job: dashboards poll this.
            job = await read_job(self, parts[1], parts[3])
            if job is not None:
                return Response(200, job_view(job))
            await self.read_state(parts[1])  # a 404 naming the cluster if it is missing
            raise HttpError(404, f"no migration job {parts[3]!r}")
        if len(parts) >= 2 and parts[0] == "clusters" and method == "GET":
            state = await self.read_state(parts[1])
            if len(parts) == 2:
                return Response(200, await self._status(state))
            if parts[2:] == ["map"]:
                return Response(200, state.map.model_dump(by_alias=True))
            if parts[2:] == ["migrations"]:
                jobs = await read_jobs(self, parts[1])
                return Response(200, {"jobs": [job_view(job) for job in jobs]})
        if method in ("POST", "PUT", "DELETE"):
            if not self.is_leader:
                return Response(
                    421, {"error": "this confmaster is not the leader", "leader": self.leader_api}
                )
            async with self.lock:
                try:
                    return await self._mutate(method, parts, request.body or {})
                except ClusterError as exc:
                    return Response(409, {"error": str(exc)})
                except (KeyError, TypeError, ValueError) as exc:
                    return Response(400, {"error": f"bad request: {exc}"})
        raise HttpError(
            404 if method == "GET" else 405, f"no such endpoint: {method} {request.path}"
        )

    async def _mutate(self, method: str, parts: list[str], body: dict[str, Any]) -> Response:
        if parts == ["clusters"] and method == "POST":
            name = str(body["name"])
            if await self.zk.exists(cluster_path(name)) is not None:
                raise ClusterError(f"cluster {name!r} already exists")
            created = create_cluster(name, int(body.get("pgs", 2)), _now_ms())
            for path in (
                pgs_path(name),
                pgservers_path(name),
                gateways_path(name),
                live_gateways_path(name),
                migrations_path(name),
            ):
                created.append((path, None))
            await self._create_cluster(name, created)
            if body.get("ranges"):
                state = await self.read_state(name)
                ranges = [(int(a), int(b), int(pg)) for a, b, pg in body["ranges"]]
                await self.write(set_map(state, ranges))
            return Response(201, await self._status(await self.read_state(name)))
        if len(parts) < 3 or parts[0] != "clusters":
            raise HttpError(404, "no such endpoint")
        state = await self.read_state(parts[1])
        what = parts[2]
        changes: list[Change]
        if what == "pgs" and method == "POST" and len(parts) == 3:
            changes = add_pg(state, int(body["id"]) if body.get("id") is not None else None)
        elif what == "pgs" and method == "DELETE" and len(parts) == 4:
            changes = remove_pg(state, int(parts[3]))
        elif what == "pgservers" and method == "POST" and len(parts) == 3:
            pg = int(body["pg"])
            await self.write(register_pgserver(state, pg, str(body["host"]), int(body["port"])))
            pgs_id = f"{body['host']}:{body['port']}"
            await self._membership(parts[1], pg, MemberAdded(0, pgs_id))
            return Response(200, await self._status(await self.read_state(parts[1])))
        elif what == "pgservers" and method == "DELETE" and len(parts) == 4:
            server = state.pgservers.get(parts[3])
            if server is None:
                raise ClusterError(f"pgserver {parts[3]} is not registered")
            if server.pg in state.pgs and parts[3] in state.pgs[server.pg].members:
                await self._membership(parts[1], server.pg, MemberRemoved(0, parts[3]))
            changes = unregister_pgserver(await self.read_state(parts[1]), parts[3])
        elif what == "pgs" and method == "PUT" and len(parts) == 4:
            return await self._set_min_copies(parts[1], int(parts[3]), int(body["min_copies"]))
        elif what == "pgs" and method == "POST" and len(parts) == 5 and parts[4] == "failover":
            return await self._manual_failover(parts[1], int(parts[3]), body.get("to"))
        elif what == "gateways" and method == "POST" and len(parts) == 3:
            changes = add_gateway(
                state,
                str(body["host"]),
                int(body["port"]),
                int(body.get("admin_port", int(body["port"]) + 1)),
            )
        elif what == "gateways" and method == "DELETE" and len(parts) == 4:
            changes = remove_gateway(state, parts[3])
        elif what == "migrations" and method == "POST" and len(parts) == 3:
            return await self._start_migrations(parts[1], body)
        elif what == "migrations" and method == "POST" and parts[4:] == ["cancel"]:
            if self.jobs is None:
                raise HttpError(421, "not the leader")
            return Response(202, job_view(await self.jobs.cancel(parts[1], parts[3])))
        elif what == "map" and method == "PUT" and len(parts) == 3:
            changes = set_map(state, [(int(a), int(b), int(pg)) for a, b, pg in body["ranges"]])
        else:
            raise HttpError(404, f"no such endpoint: {method} /{'/'.join(parts)}")
        await self.write(changes)
        return Response(200, await self._status(await self.read_state(parts[1])))

    async def _start_migrations(self, name: str, body: dict[str, Any]) -> Response:
        """Start one job per (source, target) pair of the requested ranges (lock held)."""
        if self.jobs is None:
            raise HttpError(421, "not the leader")
        moves = [(int(a), int(b), int(pg)) for a, b, pg in body["ranges"]]
        if not moves:
            raise ClusterError("no ranges given")
        rate = float(body.get("rate_mb_s", 0.0))
        budget = int(body.get("block_budget_ms", 3000))
        if rate < 0 or budget < 1:
            raise ClusterError("rate_mb_s must be >= 0 and block_budget_ms >= 1")
        jobs = await self.jobs.start_jobs(name, moves, rate, budget)
        return Response(201, {"jobs": [job.id for job in jobs]})

    async def _membership(self, name: str, pg: int, event: MemberAdded | MemberRemoved) -> None:
        """Add or remove a member through the PG's failover machine (lock held)."""
        driver = self.driver
        if driver is None:
            raise HttpError(421, "not the leader")
        state = await self.read_state(name)
        for key in driver.sync(state):
            await driver.start(key, state.pgs[key[1]])
        said = await driver.handle((name, pg), event)
        members = (await self.read_state(name)).pgs[pg].members
        wanted = isinstance(event, MemberAdded)
        if (event.pgs_id in members) != wanted:
            raise ClusterError("; ".join(said) or "the PG record could not be written")

    async def _set_min_copies(self, name: str, pg: int, min_copies: int) -> Response:
        """Change how many copies (master included) a PG keeps before writes wait.

        The failover machine restarts from the new record, as a new leader would: it
        learns again which slaves are in sync before lowering anything.
        """
        driver = self.driver
        if driver is None:
            raise HttpError(421, "not the leader")
        if min_copies < 1:
            raise ClusterError("min_copies is at least 1 (the master)")
        state = await self.read_state(name)
        if pg not in state.pgs:
            raise HttpError(404, f"PG {pg} does not exist")
        record = state.pgs[pg].model_copy(update={"min_copies": min_copies})
        await self.write([(pg_path(name, pg), record)])
        driver.sync(state)
        await driver.start((name, pg), record)
        return Response(200, await self._status(await self.read_state(name)))

    async def _manual_failover(self, name: str, pg: int, to: object) -> Response:
        driver = self.driver
        if driver is None:
            raise HttpError(421, "not the leader")
        state = await self.read_state(name)
        if pg not in state.pgs:
            raise HttpError(404, f"PG {pg} does not exist")
        for key in driver.sync(state):
            await driver.start(key, state.pgs[key[1]])
        before = state.pgs[pg]
        said = await driver.handle((name, pg), ManualFailover(0, str(to) if to else None))
        after = (await self.read_state(name)).pgs[pg]
        if after.epoch == before.epoch:
            raise ClusterError("; ".join(said) or "failover refused")
        return Response(
            200,
            {"pg": pg, "old_master": before.master, "master": after.master, "epoch": after.epoch},
        )

    async def _create_cluster(self, name: str, changes: list[Change]) -> None:
        if self.leadership is None:
            raise HttpError(421, "not the leader")
        ops: list[Any] = [self.leadership.fence()]
        for path, payload in changes:
            ops.append(CreateOp(path, payload.to_json() if payload is not None else b""))
        # parents before children: the cluster node first, then its folders and nodes
        ops.sort(key=lambda op: (not isinstance(op, CheckOp), getattr(op, "path", "").count("/")))
        await self.zk.transaction(ops)

    async def _overview(self) -> dict[str, Any]:
        return {
            "self": {"id": self.instance_id, "api": self.api_address},
            "is_leader": self.is_leader,
            "leader": self.leader_api,
            "epoch": self.epoch if self.is_leader else None,
            "clusters": await self.clusters(),
        }

    async def _status(self, state: ClusterState) -> dict[str, Any]:
        name = state.meta.name
        try:
            live = sorted(await self.zk.children(live_gateways_path(name)))
        except NoNodeError:
            live = []
        return {
            "cluster": state.meta.model_dump(by_alias=True),
            "map": state.map.model_dump(by_alias=True),
            "route": state.route.model_dump(by_alias=True) if state.route else None,
            "pgs": [state.pgs[pg].model_dump(by_alias=True) for pg in sorted(state.pgs)],
            "pgservers": [s.model_dump(by_alias=True) for _, s in sorted(state.pgservers.items())],
            "gateways": [g.model_dump(by_alias=True) for _, g in sorted(state.gateways.items())],
            "live_gateways": live,
            "leader": self.leader_api,
        }


@dataclass
class Probe:
    ok: bool = False
    lsn: int | None = None
    role: str | None = None
    epoch: int | None = None
    synced_epoch: int | None = None  # the epoch its log was last synced in


async def _ping(
    host: str, port: int, timeout_s: float, info: bool, secret: str | None = None
) -> Probe:
    """One heartbeat: PING (gateways) or INFO persistence+replication (pgservers).

    Any trouble (refused, reset, timeout, a reply that does not parse, a refused cluster
    secret) is a failed probe.
    """
    with trio.move_on_after(timeout_s):
        try:
            return await _exchange(host, port, info, secret)
        except (OSError, trio.BrokenResourceError, ValueError, UnicodeDecodeError):
            return Probe()
    return Probe()


_refused_secret: set[tuple[str, int]] = set()  # logged once each


async def _exchange(host: str, port: int, info: bool, secret: str | None) -> Probe:
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        request = (
            encode_command([b"INFO", b"persistence", b"replication"])
            if info
            else encode_command([b"PING"])
        )
        if secret is not None:
            request = encode_command([b"AUTH", secret.encode()]) + request
        await stream.send_all(request)
        data = b""
        authenticating = secret is not None
        while True:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return Probe()
            data += chunk
            if authenticating:
                if b"\r\n" not in data:
                    continue
                line, _, data = data.partition(b"\r\n")
                if not auth_accepted(line):
                    if (host, port) not in _refused_secret:
                        _refused_secret.add((host, port))
                        log.error("%s:%d refused the cluster secret: %r", host, port, line)
                    return Probe()
                authenticating = False
            if not info and data.endswith(b"\r\n"):
                return Probe(ok=data.startswith((b"+PONG", b"-NOAUTH")))
            if info and data.startswith(b"-"):
                return Probe(ok=data.startswith(b"-NOAUTH"))
            if info and data.startswith(b"$") and b"\r\n" in data:
                header, _, rest = data.partition(b"\r\n")
                if len(rest) >= int(header[1:]) + 2:
                    fields = dict(
                        line.split(b":", 1) for line in rest.split(b"\r\n") if b":" in line
                    )
                    return Probe(
                        ok=True,
                        lsn=int(fields[b"log_end_lsn"]) if b"log_end_lsn" in fields else None,
                        role=fields[b"role"].decode() if b"role" in fields else None,
                        epoch=int(fields[b"epoch"]) if b"epoch" in fields else None,
                        synced_epoch=_int_field(fields, b"synced_epoch"),
                    )


def _int_field(fields: dict[bytes, bytes], name: bytes) -> int | None:
    return int(fields[name]) if name in fields else None


def _now_ms() -> int:
    return int(time.time() * 1000)

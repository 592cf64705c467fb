"""The gateway's dynamic map source: follow the cluster's route node in ZooKeeper.

The confmaster leader rewrites /tessera/clusters/<name>/route whenever the partition map or
a PG master changes; the gateway applies each newer version (never an older one) and keeps
an ephemeral registration under gateways_live so the confmaster sees it is alive.

When a backend refuses a request because its partition is moving (TRYAGAIN partition), the
gateway asks for a fresh map now (`request_refresh`): the route node is read again rather
than waiting for the watch, which may be late or lost. Reads are coalesced (one at a time,
at most one per `REFRESH_INTERVAL_S`).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import trio
from pydantic import ValidationError

from gateway.routing import PartitionMap
from tessera.errors import CoordinationError
from tessera.layout import RoutePayload, live_gateways_path, route_path
from tessera.security import ZkAuth
from tessera.zk import NodeExistsError, ZkClient, ZnodeStat

if TYPE_CHECKING:
    from gateway.server import GatewayServer

log = logging.getLogger("tessera.gateway.zk")

REFRESH_INTERVAL_S = 0.02
TAKEOVER_POLL_S = 0.5  # how often a gateway looks whether a stale registration is gone
REFRESH_WARNING_EVERY_S = 10.0  # while ZooKeeper is unreachable, refusals keep asking


def route_to_map(route: RoutePayload) -> PartitionMap:
    return PartitionMap.from_assignments(
        [(f"{first}-{last}", address) for first, last, address in route.ranges],
        version=route.version,
    )


class ZkMapSource:
    def __init__(
        self, zk_hosts: str, chroot: str, cluster: str, auth: ZkAuth | None = None
    ) -> None:
        self.zk = ZkClient(zk_hosts, chroot=chroot, auth=auth)
        self.cluster = cluster
        self._routes: trio.MemoryReceiveChannel[tuple[bytes | None, ZnodeStat | None]] | None = None
        self._refresh_wanted = trio.Event()

    async def first_map(self, wait_s: float = 60.0) -> PartitionMap:
        """Connect and wait until the cluster has a complete route (every PG has a master)."""
        await self.zk.start()
        self._routes = self.zk.watch_data(route_path(self.cluster))
        routes = self._routes
        with trio.move_on_after(wait_s):
            async for data, _stat in routes:
                partition_map = _decode(data)
                if partition_map is not None:
                    return partition_map
                log.info("waiting for cluster %r to get a complete route", self.cluster)
        raise CoordinationError(
            f"cluster {self.cluster!r} has no complete route in ZooKeeper after {wait_s:.0f}s "
            "(is the cluster created and does every PG have a master?)"
        )

    async def follow(
        self,
        gateway: GatewayServer,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Apply newer route versions as they appear; keep the live registration."""
        assert self._routes is not None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._register, gateway)
            nursery.start_soon(self._refresher, gateway)
            gateway.refresh_map = self.request_refresh
            task_status.started()
            async for data, _stat in self._routes:
                partition_map = _decode(data)
                if partition_map is not None and gateway.set_map(partition_map):
                    log.info("applied route version %d from ZooKeeper", partition_map.version)

    def request_refresh(self) -> None:
        """Read the route node again soon (called from the gateway's reactor; never blocks)."""
        self._refresh_wanted.set()

    async def _refresher(self, gateway: GatewayServer) -> None:
        path = route_path(self.cluster)
        warned: float | None = None
        while True:
            await self._refresh_wanted.wait()
            self._refresh_wanted = trio.Event()  # requests from now on ask for another read
            gateway.stats["map_refreshes"] += 1
            try:
                data, _stat = await self.zk.get(path)
            except CoordinationError as exc:
                now = trio.current_time()
                if warned is None or now - warned >= REFRESH_WARNING_EVERY_S:
                    warned = now
                    log.warning("cannot re-read the route node: %s", exc)
            else:
                partition_map = _decode(data)
                if (
                    partition_map is not None
                    and partition_map.version > gateway.map.version
                    and gateway.set_map(partition_map)
                ):
                    gateway.stats["map_refresh_updates"] += 1
                    log.info("applied route version %d (re-read)", partition_map.version)
            await trio.sleep(REFRESH_INTERVAL_S)

    async def _register(self, gateway: GatewayServer) -> None:
        """An ephemeral node per gateway process; re-created after a lost session, and
        taken over once a node of another session under the same name is gone.

        Named HOST:PORT, and HOST:PORT#K for worker K > 0 of a `--workers` gateway: the
        workers share the client port but each has its own admin port, and the cutover
        must block every one of them."""
        ident = f"{gateway.config.bind}:{gateway.port}"
        if gateway.config.worker:
            ident += f"#{gateway.config.worker}"
        path = f"{live_gateways_path(self.cluster)}/{ident}"
        payload = json.dumps({"admin_port": gateway.admin_port, "pid_port": gateway.port}).encode()
        states = self.zk.states()
        while True:
            try:
                await self.zk.create(path, payload, ephemeral=True, makepath=True)
            except NodeExistsError:
                owner = await self._owner(path)
                if owner != self.zk.session_id:
                    # A gateway killed and restarted on this port left its node behind (with
                    # its old admin port) until its session expires, and the expiry would
                    # unregister us. Take over once gone.
                    if owner is not None:
                        await trio.sleep(TAKEOVER_POLL_S)
                    continue
            except CoordinationError as exc:
                log.warning("cannot register in ZooKeeper: %s", exc)
            async for state in states:
                if state == "LOST" or state == "CONNECTED":
                    break

    async def _owner(self, path: str) -> int | None:
        """The session owning the node at `path` (0 if unknown), None once it is gone."""
        try:
            stat = await self.zk.exists(path)
        except CoordinationError:
            return 0
        return None if stat is None else stat.ephemeral_owner

    async def close(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await self.zk.stop()


def _decode(data: bytes | None) -> PartitionMap | None:
    if not data:
        return None
    try:
        return route_to_map(RoutePayload.from_json(data))
    except (ValidationError, ValueError) as exc:
        log.error("ignoring an unreadable route node: %s", exc)
        return None

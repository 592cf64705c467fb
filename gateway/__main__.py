"""`gateway --port 6000 --admin-port 6001 --backend 0-4095=HOST:PORT ...`: the client proxy."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import time

import trio

from gateway.config import GatewayConfig
from gateway.routing import PartitionMap
from gateway.server import GatewayServer
from gateway.zk_source import ZkMapSource
from tessera.cli import (
    ArgumentParser,
    add_common_arguments,
    fail,
    run_main,
    serve_until_signalled,
    setup_logging,
)
from tessera.security import (
    add_cluster_secret_argument,
    add_requirepass_arguments,
    add_zk_auth_arguments,
    cluster_secret_from,
    requirepass_from,
    warn_if_exposed,
    zk_auth_from,
)
from tessera.slowsteps import instruments


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="gateway", description="Tessera gateway: routes Redis clients to partition groups."
    )
    parser.add_argument("--port", type=int, default=6000, help="client port (default 6000)")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--admin-port", type=int, default=6001, help="admin port (default 6001)")
    parser.add_argument("--admin-bind", default="127.0.0.1")
    add_cluster_secret_argument(parser)
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve GET /metrics (Prometheus) on this port (default: off; 0: any free port; "
        "worker N of --workers uses PORT+N)",
    )
    parser.add_argument("--metrics-bind", default="127.0.0.1")
    parser.add_argument(
        "--backend",
        action="append",
        default=[],
        metavar="PN_RANGE=HOST:PORT",
        help="static map entry, repeatable; ranges must cover 0-8191 exactly once",
    )
    add_requirepass_arguments(parser)
    parser.add_argument("--zk", help="follow the map of --cluster in this ZooKeeper (HOST:PORT)")
    parser.add_argument("--zk-chroot", default="")
    parser.add_argument("--cluster", default="default", help="cluster name (with --zk)")
    parser.add_argument("--hold-timeout-ms", type=int, default=5000)
    parser.add_argument("--backend-timeout-ms", type=int, default=5000)
    parser.add_argument(
        "--moving-hold-ms",
        type=int,
        default=5000,
        help="how long a request refused with TRYAGAIN partition (a fenced, moving partition) "
        "is held and retried before the client gets the error (default 5000)",
    )
    parser.add_argument(
        "--moving-retry-ms",
        type=int,
        default=50,
        help="first retry backoff for such requests; doubles, at most 8x (default 50)",
    )
    parser.add_argument("--allow-flush", action="store_true", help="allow FLUSHALL/FLUSHDB")
    parser.add_argument(
        "--max-clients",
        "--maxclients",
        type=int,
        default=10_000,
        help="clients beyond this get -ERR max number of clients reached (default 10000)",
    )
    parser.add_argument(
        "--max-inflight-per-client",
        type=int,
        default=10_000,
        help="stop reading a client with this many unanswered requests (default 10000)",
    )
    parser.add_argument(
        "--client-output-limit-mb",
        type=int,
        default=256,
        help="disconnect a client that does not read while this much output waits (default 256)",
    )
    add_zk_auth_arguments(parser)
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    add_common_arguments(parser)
    return parser


async def _serve(server: GatewayServer, source: ZkMapSource | None = None) -> None:
    if source is None:
        await serve_until_signalled(server.serve)
        return

    async def follow(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await source.follow(server, task_status=task_status)

    await serve_until_signalled(server.serve, follow)


async def _run(
    config: GatewayConfig, assignments: list[tuple[str, str]], args: argparse.Namespace
) -> None:
    if args.zk:
        source = ZkMapSource(args.zk, args.zk_chroot, args.cluster, zk_auth_from(args))
        try:
            partition_map = await source.first_map()
            await _serve(GatewayServer(config, partition_map), source)
        finally:
            await source.close()
    else:
        await _serve(GatewayServer(config, PartitionMap.from_assignments(assignments)))


def _die_with_parent(parent: int) -> None:
    """A worker gets SIGTERM when the first process exits (Linux prctl PR_SET_PDEATHSIG),
    even by SIGKILL; one whose parent is already gone (before the prctl) exits now."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(0)


def _stop_workers(pids: list[int], timeout: float = 10) -> None:
    """SIGTERM the workers and reap them (SIGKILL past `timeout`): when the first process
    exits, so has every worker, and none is left serving the shared port."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.01)


def main() -> None:
    args = build_parser().parse_args()

    def body() -> None:
        setup_logging(args.log_level, args.log_json)
        assignments = []
        for item in args.backend:
            ranges, sep, address = item.partition("=")
            if not sep:
                fail("gateway", f"bad --backend {item!r} (expected PN_RANGE=HOST:PORT)")
            assignments.append((ranges, address))
        cluster_secret = cluster_secret_from(args)
        requirepass = requirepass_from(args)
        warn_if_exposed(
            "the gateway's client port",
            args.bind,
            {"requirepass": requirepass is None, "a cluster secret": cluster_secret is None},
        )
        warn_if_exposed(
            "the gateway's admin port", args.admin_bind, {"a cluster secret": not cluster_secret}
        )
        config = GatewayConfig(
            bind=args.bind,
            port=args.port,
            admin_bind=args.admin_bind,
            admin_port=args.admin_port,
            cluster_secret=cluster_secret,
            metrics_bind=args.metrics_bind,
            metrics_port=args.metrics_port,
            requirepass=requirepass,
            backends=tuple(assignments),
            hold_timeout_ms=args.hold_timeout_ms,
            backend_timeout_ms=args.backend_timeout_ms,
            moving_hold_ms=args.moving_hold_ms,
            moving_retry_ms=args.moving_retry_ms,
            allow_flush=args.allow_flush,
            max_clients=args.max_clients,
            max_inflight_per_client=args.max_inflight_per_client,
            client_output_limit_bytes=args.client_output_limit_mb << 20,
            workers=args.workers,
        )
        if args.zk and assignments:
            fail("gateway", "give either --zk (dynamic map) or --backend (static map), not both")
        if not args.zk and not assignments:
            fail("gateway", "no map: give --backend PN_RANGE=HOST:PORT ... or --zk HOST:PORT")
        worker = 0
        workers: list[int] = []  # the first process's children
        parent = os.getpid()
        for child in range(1, config.workers):
            pid = os.fork()
            if pid == 0:  # children share the client port via SO_REUSEPORT
                worker = child
                workers = []
                _die_with_parent(parent)
                break
            workers.append(pid)
        if worker:
            update = {"admin_port": config.admin_port + worker, "worker": worker}
            if config.metrics_port:
                update["metrics_port"] = config.metrics_port + worker
            config = config.model_copy(update=update)
        try:
            trio.run(_run, config, assignments, args, instruments=instruments(args.slow_step_ms))
        finally:
            _stop_workers(workers)

    run_main("gateway", body)


if __name__ == "__main__":
    main()

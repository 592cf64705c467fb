"""`confmaster --zk 127.0.0.1:2181 --port 1122`: the cluster's control plane."""

from __future__ import annotations

import argparse

import trio

from confmaster.server import Confmaster, ConfmasterConfig
from tessera.cli import (
    ArgumentParser,
    add_common_arguments,
    run_main,
    serve_until_signalled,
    setup_logging,
)
from tessera.security import (
    add_cluster_secret_argument,
    add_zk_auth_arguments,
    cluster_secret_from,
    warn_if_exposed,
    zk_auth_from,
)
from tessera.slowsteps import instruments


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="confmaster", description="Tessera confmaster: cluster metadata, failover, migration."
    )
    parser.add_argument("--zk", default="127.0.0.1:2181", help="ZooKeeper HOST:PORT[,HOST:PORT]")
    parser.add_argument("--zk-chroot", default="", help="ZooKeeper chroot for this deployment")
    parser.add_argument("--port", type=int, default=1122, help="operator API port (default 1122)")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--id", default="", help="instance name (default bind:port/pid)")
    defaults = ConfmasterConfig()
    parser.add_argument(
        "--heartbeat-interval-ms",
        type=int,
        default=defaults.heartbeat_interval_ms,
        help=f"probe every member this often (default {defaults.heartbeat_interval_ms})",
    )
    parser.add_argument(
        "--heartbeat-timeout-ms",
        type=int,
        default=defaults.heartbeat_timeout_ms,
        help="a member silent this long is dead; a dead master is failed over "
        f"(default {defaults.heartbeat_timeout_ms})",
    )
    parser.add_argument(
        "--keep-migrations",
        type=int,
        default=defaults.keep_migrations,
        help="finished migration jobs kept in ZooKeeper for `migrate list` "
        f"(default {defaults.keep_migrations})",
    )
    add_cluster_secret_argument(parser)
    add_zk_auth_arguments(parser)
    add_common_arguments(parser)
    return parser


async def _serve(server: Confmaster) -> None:
    await serve_until_signalled(server.serve)


def main() -> None:
    args = build_parser().parse_args()

    def body() -> None:
        setup_logging(args.log_level, args.log_json)
        cluster_secret = cluster_secret_from(args)
        warn_if_exposed("the confmaster API", args.bind, {"a cluster secret": not cluster_secret})
        config = ConfmasterConfig(
            cluster_secret=cluster_secret,
            zk_auth=zk_auth_from(args),
            zk=args.zk,
            zk_chroot=args.zk_chroot,
            bind=args.bind,
            port=args.port,
            instance_id=args.id,
            heartbeat_interval_ms=args.heartbeat_interval_ms,
            heartbeat_timeout_ms=args.heartbeat_timeout_ms,
            keep_migrations=args.keep_migrations,
        )
        trio.run(_serve, Confmaster(config), instruments=instruments(args.slow_step_ms))

    run_main("confmaster", body)


if __name__ == "__main__":
    main()

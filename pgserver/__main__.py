"""`pgserver --port 7000 --data-dir DIR`: one partition-group member."""

from __future__ import annotations

import argparse
from pathlib import Path

import trio

from pgserver.config import PgServerConfig
from pgserver.server import PgServer
from tessera.cli import (
    ArgumentParser,
    add_common_arguments,
    fail,
    run_main,
    serve_until_signalled,
    setup_logging,
)
from tessera.errors import ConfigError
from tessera.security import (
    add_cluster_secret_argument,
    add_requirepass_arguments,
    cluster_secret_from,
    requirepass_from,
    warn_if_exposed,
)
from tessera.slowsteps import instruments


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="pgserver", description="Tessera partition-group server (Redis protocol)."
    )
    parser.add_argument("--port", type=int, default=7000, help="TCP port (default 7000)")
    parser.add_argument("--bind", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--data-dir", type=Path, default=Path("data/pgserver"))
    add_cluster_secret_argument(parser)
    add_requirepass_arguments(parser)
    parser.add_argument("--max-clients", "--maxclients", type=int, default=10_000)
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve GET /metrics (Prometheus) on this port (default: off; 0: any free port)",
    )
    parser.add_argument("--metrics-bind", default="127.0.0.1")
    parser.add_argument(
        "--fsync",
        choices=["always", "everysec", "no"],
        default="everysec",
        help="when the log is fsynced: before every reply batch, once a second, or never",
    )
    parser.add_argument(
        "--checkpoint-every-mb",
        type=int,
        default=256,
        help="take a checkpoint after this much log growth (0: only on BGSAVE/SAVE)",
    )
    parser.add_argument("--log-segment-mb", type=int, default=64)
    parser.add_argument(
        "--managed",
        action="store_true",
        help="take roles from the confmaster (no role until told); else a standalone master",
    )
    parser.add_argument(
        "--no-log",
        action="store_true",
        help="benchmarking only: keep no log, nothing survives a restart",
    )
    parser.add_argument(
        "--keep-log-mb", type=int, default=256, help="log kept behind the newest checkpoint"
    )
    parser.add_argument(
        "--dump-idle-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="drop a finished migration dump that nobody has read for this long",
    )
    parser.add_argument("--banner", action="store_true", help="print how to connect once listening")
    add_common_arguments(parser)
    return parser


async def _serve(server: PgServer, banner: bool) -> None:
    def announce(port: int) -> None:
        if banner:
            host = server.config.bind
            print(
                f"pgserver is serving on {host}:{port} "
                + (
                    "(managed: waiting for its role from the confmaster)\n"
                    if server.config.managed
                    else "(standalone master: owns all 8192 partitions)\n"
                )
                + f"  connect:  redis-cli -h {host} -p {port}\n"
                f"  stop:     Ctrl-C",
                flush=True,
            )

    async def serve(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            announce(port)
            task_status.started()

    await serve_until_signalled(serve)


def main() -> None:
    args = build_parser().parse_args()

    def body() -> None:
        setup_logging(args.log_level, args.log_json)
        try:
            args.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot use --data-dir {args.data_dir}: {exc.strerror}") from exc
        cluster_secret = cluster_secret_from(args)
        requirepass = requirepass_from(args)
        if cluster_secret is not None and requirepass not in (None, cluster_secret):
            fail(
                "pgserver",
                "a pgserver has one password: the cluster secret (pgservers serve only "
                "internal clients); drop --requirepass",
            )
        warn_if_exposed(
            "pgserver", args.bind, {"a cluster secret": (cluster_secret or requirepass) is None}
        )
        config = PgServerConfig(
            bind=args.bind,
            port=args.port,
            data_dir=args.data_dir,
            requirepass=requirepass,
            cluster_secret=cluster_secret,
            metrics_bind=args.metrics_bind,
            metrics_port=args.metrics_port,
            max_clients=args.max_clients,
            fsync=args.fsync,
            checkpoint_every_mb=args.checkpoint_every_mb,
            log_segment_mb=args.log_segment_mb,
            keep_log_mb=args.keep_log_mb,
            dump_idle_timeout_s=args.dump_idle_timeout,
            log_enabled=not args.no_log,
            managed=args.managed,
        )
        trio.run(_serve, PgServer(config), args.banner, instruments=instruments(args.slow_step_ms))

    run_main("pgserver", body)


if __name__ == "__main__":
    main()

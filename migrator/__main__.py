"""`migrator --source HOST:PORT --target HOST:PORT --range 0-2047 [--cutover]`: move partition
ranges between two PG masters by hand (the confmaster drives RangeMover itself).

Without --cutover it copies the ranges, catches up with the source's log and stops (the
target then holds a hidden, up-to-date copy; run again with --cutover to finish). With
--cutover it then fences the ranges on the source, waits until the target applied
everything up to the fence, commits the target and deletes the ranges on the source. The
partition map is not its business: it prints when the map must point to the target.

Progress goes to stderr, results to stdout; a failure is one line and exit status 2.
--state-file keeps the resume state, so a run that died (or was stopped) is taken over by
the next one with the same file.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import trio
from pydantic import ValidationError

from migrator.config import MoverConfig
from migrator.connection import Address
from migrator.metrics import collect_movers
from migrator.mover import MB, RangeMover, SaveCallback
from migrator.mover_state import MoverState, canonical_ranges
from migrator.progress import Progress
from tessera.cli import ArgumentParser, add_common_arguments, fail, run_main, setup_logging
from tessera.errors import ConfigError, MigrationError
from tessera.metrics import new_registry, serve_metrics
from tessera.security import (
    CLUSTER_SECRET_ENV,
    add_cluster_secret_argument,
    resolve_secret,
)
from tessera.slowsteps import instruments

PROG = "migrator"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Move partition ranges from a source PG master to a target PG master: "
        "dump and load, log catch-up, and with --cutover fence, commit and clean up.",
    )
    parser.add_argument("--source", required=True, metavar="HOST:PORT", help="source master")
    parser.add_argument("--target", required=True, metavar="HOST:PORT", help="target master")
    parser.add_argument(
        "--range",
        action="append",
        default=[],
        metavar="RANGES",
        help="partitions to move, e.g. 0-2047 or 0-10,4096 (repeatable; "
        "optional with an existing --state-file)",
    )
    parser.add_argument(
        "--rate-mb-s", type=float, default=0.0, help="throttle the load to this (0: no limit)"
    )
    parser.add_argument(
        "--cutover", action="store_true", help="finish the move: fence, commit, clean up"
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="without --cutover: keep applying the source's writes until SIGINT/SIGTERM",
    )
    parser.add_argument(
        "--max-lag-kb",
        type=int,
        default=256,
        help="caught up once the target is at most this far behind the source's log (default 256)",
    )
    parser.add_argument(
        "--cutover-timeout-ms",
        type=int,
        default=5000,
        help="how long the fenced ranges may wait for the target before rolling back",
    )
    parser.add_argument("--cutover-attempts", type=int, default=3)
    parser.add_argument(
        "--state-file",
        type=Path,
        help="keep the resume state in this JSON file; resume from it when it exists",
    )
    parser.add_argument(
        "--cancel",
        action="store_true",
        help="cancel the move instead: the target keeps no key of the ranges",
    )
    parser.add_argument(
        "--chunk-elements", type=int, default=256, help="collection elements per dump command"
    )
    add_cluster_secret_argument(parser)
    parser.add_argument(
        "--password",
        help="AUTH password of standalone pgservers (--requirepass); visible in `ps`, "
        "prefer --cluster-secret-file",
    )
    parser.add_argument("--progress-interval-ms", type=int, default=1000)
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve GET /metrics (Prometheus) while moving (default: off; 0: any free port)",
    )
    parser.add_argument("--metrics-bind", default="127.0.0.1")
    add_common_arguments(parser)
    parser.set_defaults(log_level="warning")
    return parser


def say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _mb(nbytes: int | None) -> str:
    return "?" if nbytes is None else f"{nbytes / MB:.1f}"


def describe(p: Progress) -> str:
    """One progress line."""
    if p.phase == "loading":
        keys = f"{p.keys_loaded}/{p.keys_estimate if p.keys_estimate is not None else '?'}"
        total = p.dump_bytes if p.dump_bytes is not None else p.bytes_estimate
        line = f"loading {p.ranges}: {keys} keys, {_mb(p.bytes_loaded)}/{_mb(total)} MB"
        if p.load_mb_s is not None:
            line += f" at {p.load_mb_s:.1f} MB/s"
        if p.eta_s is not None:
            line += f", about {p.eta_s:.0f} s left"
        return line
    if p.phase == "catching_up":
        lag = "?" if p.lag_bytes is None else f"{p.lag_bytes} bytes"
        line = (
            f"catching up {p.ranges}: applied LSN {p.applied_lsn}, lag {lag} "
            f"({p.lag_records} records), {p.commands_applied} commands applied"
        )
        return line + (f" ({p.note})" if p.note else "")
    line = f"{p.phase.replace('_', ' ')} {p.ranges}"
    return line + (f": {p.note}" if p.note else "")


class Printer:
    """Progress lines: every phase change, else at most one per interval."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.last = 0.0
        self.phase = ""
        self.note: str | None = None

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        changed = progress.phase != self.phase or progress.note != self.note
        if changed or now - self.last >= self.interval_s:
            self.phase = progress.phase
            self.note = progress.note
            self.last = now
            say(describe(progress))


def load_state(path: Path | None) -> MoverState | None:
    if path is None or not path.exists():
        return None
    try:
        return MoverState.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read the state file {path}: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        raise ConfigError(
            f"{path} is not a migrator state file ({where}: {first['msg']})"
        ) from None


def state_saver(path: Path | None) -> SaveCallback | None:
    if path is None:
        return None

    async def save(state: MoverState) -> None:
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(state.model_dump(), indent=1) + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            raise MigrationError(f"cannot write the state file {path}: {exc}") from exc

    return save


async def cutover(mover: RangeMover, args: argparse.Namespace) -> None:
    """Fence, wait for the target to apply up to L1; unfence and retry if it is too slow."""
    max_lag = args.max_lag_kb * 1024
    for attempt in range(1, args.cutover_attempts + 1):
        await mover.wait_caught_up(max_lag)
        l1 = await mover.fence_source()
        say(f"fenced {mover.ranges} on the source at LSN {l1}; waiting for the target")
        if await mover.wait_applied(l1, args.cutover_timeout_ms / 1000):
            return
        await mover.unfence_source()
        say(
            f"the target did not reach LSN {l1} within {args.cutover_timeout_ms} ms "
            f"(attempt {attempt} of {args.cutover_attempts}): unfenced"
        )
    raise MigrationError(
        f"the target could not catch up within {args.cutover_timeout_ms} ms of a fence in "
        f"{args.cutover_attempts} attempts; the source still owns {mover.ranges}"
    )


async def finish(mover: RangeMover) -> None:
    await mover.commit_target()
    print(
        f"{PROG}: the partition map must now send partitions {mover.ranges} to the target "
        f"{mover.target}: the target owns them, the source refuses them until it is "
        "cleaned, then no longer holds them",
        flush=True,
    )
    await mover.cleanup_source()
    print(f"{PROG}: done: {mover.ranges} moved from {mover.source} to {mover.target}", flush=True)


async def until_signalled() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            return


async def main_async(mover: RangeMover, args: argparse.Namespace) -> None:
    """The move, with /metrics served beside it when asked for."""
    if args.metrics_port is None:
        await move(mover, args)
        return
    registry = new_registry(lambda: collect_movers([([], mover)], []))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_metrics, registry, args.metrics_bind, args.metrics_port)
        say(f"metrics on http://{args.metrics_bind}:{port}/metrics")
        await move(mover, args)
        nursery.cancel_scope.cancel()


async def move(mover: RangeMover, args: argparse.Namespace) -> None:
    state = mover.state
    if args.cancel:
        await mover.cancel()
        print(f"{PROG}: cancelled: the target {mover.target} holds no key of {mover.ranges}")
        return
    if state.phase == "done":
        print(f"{PROG}: already done: {mover.ranges} was moved to {mover.target}")
        return
    if state.phase == "cancelled":
        raise MigrationError("this move was cancelled; remove the state file to start again")
    if state.target_committed or state.source_cleanup != "no":
        say("the target is already committed: finishing")
        await finish(mover)
        return
    async with trio.open_nursery() as nursery:
        await nursery.start(mover.run)
        if args.cutover:
            await cutover(mover, args)
        elif args.follow:
            await until_signalled()
        else:
            await mover.wait_caught_up(args.max_lag_kb * 1024)
        applied = await mover.close_tail()
    if not args.cutover:
        again = f" --state-file {args.state_file}" if args.state_file else ""
        print(
            f"{PROG}: caught up: the target holds {mover.ranges} as of source LSN {applied} "
            f"(hidden until committed); finish with --cutover{again}, or --cancel{again}",
            flush=True,
        )
        return
    await finish(mover)


def main() -> None:
    args = build_parser().parse_args()

    def body() -> None:
        setup_logging(args.log_level, args.log_json)
        if args.cutover and args.follow:
            fail(PROG, "--cutover and --follow do not go together")
        state = load_state(args.state_file)
        if args.range:
            try:
                ranges = canonical_ranges(",".join(args.range))
            except ValueError as exc:
                raise ConfigError(f"bad --range: {exc}") from None
        elif state is not None:
            ranges = state.ranges
        else:
            fail(PROG, "--range is required (unless --state-file holds a move)")
        config = MoverConfig(
            password=resolve_secret(
                "pgserver password", args.password, args.cluster_secret_file, CLUSTER_SECRET_ENV
            ),
            rate_mb_s=args.rate_mb_s,
            dump_chunk_elements=args.chunk_elements,
            progress_interval_ms=args.progress_interval_ms,
        )
        save = state_saver(args.state_file)
        mover = RangeMover(
            Address.parse(args.source),
            Address.parse(args.target),
            ranges,
            config,
            state=state,
            on_progress=Printer(args.progress_interval_ms / 1000),
            save_state=save,
        )
        trio.run(main_async, mover, args, instruments=instruments(args.slow_step_ms))

    run_main(PROG, body)  # a state file that is not one: a ValidationError, one line


if __name__ == "__main__":
    main()

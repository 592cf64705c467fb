"""Command-line plumbing shared by every service: logging setup and clean fatal errors."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn

import trio
from pydantic import ValidationError

from tessera.errors import TesseraError


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


def fail(prog: str, message: str) -> NoReturn:
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block), like every other failure."""

    def error(self, message: str) -> NoReturn:
        fail(self.prog, f"{message} (see {self.prog} --help)")


def run_main(prog: str, body: Callable[[], None]) -> None:
    """Run a service's main; configuration errors become one line and exit code 2."""
    try:
        body()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        fail(prog, f"invalid {where}: {first['msg']}")
    except TesseraError as exc:
        fail(prog, str(exc))
    except BaseExceptionGroup as group:
        matched, _rest = group.split(TesseraError)
        if matched is None:
            raise
        fail(prog, str(_first_leaf(matched)))


def _first_leaf(group: BaseExceptionGroup[TesseraError]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


async def serve_until_signalled(
    serve: Callable[..., Awaitable[None]], *extra: Callable[..., Awaitable[None]]
) -> None:
    """Start a server (and helpers) in one nursery; SIGTERM or SIGINT stops them all."""
    async with trio.open_nursery() as nursery:
        await nursery.start(serve)
        for start in extra:
            await nursery.start(start)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )

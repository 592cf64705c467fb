"""Command-line plumbing shared by every service: logging setup and clean fatal errors."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import trio
from pydantic import ValidationError

from tessera.compiled import stale_modules
from tessera.errors import TesseraError

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def structured_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a log call passed with `extra=` (job, cluster, epoch, ...)."""
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _RECORD_FIELDS and not key.startswith("_")
    }


class TextFormatter(logging.Formatter):
    """`time logger LEVEL message key=value ...`: the structured fields stay visible."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(name)s %(levelname)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = structured_fields(record)
        if not fields:
            return line
        pairs = " ".join(f"{key}={value}" for key, value in fields.items())
        head, newline, rest = line.partition("\n")  # a traceback stays below the fields
        return f"{head} [{pairs}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ISO 8601), level, logger, msg, then the fields
    passed with `extra=`, and `exc` with the traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, Any] = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in structured_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str = "info", json_lines: bool = False) -> None:
    """Log to stderr: human-readable lines, or one JSON object per line (`--log-json`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    stale = stale_modules(Path(__file__).resolve().parent.parent)
    if stale:
        logging.getLogger("tessera").warning(
            "compiled modules older than their source run the old code: %s "
            "(rebuild with `make compiled`, or `make pure` to run the sources)",
            ", ".join(stale),
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
    """Start a server (and helpers) in one nursery; SIGTERM or SIGINT stops them all.

    The signal receiver is installed before anything binds a port, so a SIGTERM sent as soon
    as the port answers still means a clean stop (exit 0), not the default signal death.
    """
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve)
            for start in extra:
                await nursery.start(start)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument(
        "--log-json",
        action="store_true",
        help="log one JSON object per line (ts, level, logger, msg and structured fields)",
    )
    default_slow = os.environ.get("TESSERA_SLOW_STEP_MS")
    parser.add_argument(
        "--slow-step-ms",
        type=float,
        default=float(default_slow) if default_slow else None,
        metavar="MS",
        help="log every event-loop task step that takes MS or longer, with the task's name "
        "(a diagnostic; default: off, or $TESSERA_SLOW_STEP_MS)",
    )

"""Argument parsing shared by command modules, with Redis's exact error texts."""

from __future__ import annotations

import math
import re

from tessera.errors import CommandError

SYNTAX = "ERR syntax error"
NOT_INTEGER = "ERR value is not an integer or out of range"
NOT_FLOAT = "ERR value is not a valid float"
OVERFLOW = "ERR increment or decrement would overflow"

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_INT_RE = re.compile(rb"(?:0|-?[1-9][0-9]*)\Z")
_FLOAT_RE = re.compile(
    rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity)\Z", re.IGNORECASE
)


def parse_int(raw: bytes, error: str = NOT_INTEGER) -> int:
    """A signed 64-bit integer written exactly as Redis's string2ll accepts it."""
    if len(raw) > 20 or not _INT_RE.match(raw):
        raise CommandError(error)
    value = int(raw)
    if not INT64_MIN <= value <= INT64_MAX:
        raise CommandError(error)
    return value


def try_int(raw: bytes) -> int | None:
    """parse_int without raising: None when `raw` is not a canonical 64-bit integer."""
    if len(raw) > 20 or not _INT_RE.match(raw):
        return None
    value = int(raw)
    return value if INT64_MIN <= value <= INT64_MAX else None


def parse_float(raw: bytes, error: str = NOT_FLOAT) -> float:
    """A double as strtod accepts it (no spaces, no NaN); inf/-inf allowed."""
    if not raw or not _FLOAT_RE.match(raw):
        raise CommandError(error)
    value = float(raw)
    if math.isnan(value):
        raise CommandError(error)
    return value


# A negative count (SRANDMEMBER, HRANDFIELD, ZRANDMEMBER) asks for that many picks with
# repeats, whatever the collection's size. Redis streams such a reply; this server builds it
# in memory first, so `SRANDMEMBER s -10000000000` would take the machine's memory before
# the first byte went out. Bigger requests are refused instead.
MAX_RANDOM_PICKS = 10_000_000


def check_random_picks(picks: int) -> None:
    """Refuse a reply of more than MAX_RANDOM_PICKS random picks with repeats."""
    if picks > MAX_RANDOM_PICKS:
        raise CommandError(
            f"ERR value is out of range, a negative count may ask for at most "
            f"{MAX_RANDOM_PICKS} elements"
        )


def wrong_arity(name: str) -> CommandError:
    return CommandError(f"ERR wrong number of arguments for '{name}' command")


def unknown_subcommand(sub: bytes, container: str) -> CommandError:
    text = sub.decode("utf-8", "replace")
    return CommandError(f"ERR unknown subcommand '{text}'. Try {container.upper()} HELP.")

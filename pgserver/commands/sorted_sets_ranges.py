"""Sorted set range commands: ZRANGE ZRANGEBYSCORE ZREVRANGE ZREVRANGEBYSCORE ZRANGEBYLEX
ZREVRANGEBYLEX ZCOUNT ZLEXCOUNT ZREMRANGEBYRANK ZREMRANGEBYSCORE ZREMRANGEBYLEX.

Also the argument parsing they share with the rest of the family: Redis's score texts
(parsed with C's strtod, whose leniency differs between ZADD scores and range ends) and
lex range items. Imported by pgserver.commands.sorted_sets.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, cast

from pgserver.commands import command
from pgserver.commands._util import SYNTAX, parse_int
from pgserver.zset import LEX_MAX, LEX_MIN, LEX_STR, Item, LexRange, ZSet
from tessera.errors import CommandError
from tessera.resp import Double

if TYPE_CHECKING:
    from pgserver.context import Context
    from pgserver.keyspace import Keyspace

NOT_SCORE_RANGE = "ERR min or max is not a float"
NOT_LEX_RANGE = "ERR min or max not valid string range item"
LIMIT_NEEDS_BY = (
    "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
)
WITHSCORES_BYLEX = "ERR syntax error, WITHSCORES not supported in combination with BYLEX"

# What glibc strtod consumes (NaN left out: Redis rejects it whatever its spelling).
# Groups: 1 = inf/infinity, 2 = hex mantissa, 3 = decimal mantissa.
_STRTOD_RE = re.compile(
    rb"[ \t\n\x0b\x0c\r]*[+-]?(?:(inf(?:inity)?)"
    rb"|0x([0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?[0-9]+)?"
    rb"|([0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)\Z",
    re.IGNORECASE,
)
_SPACES = b" \t\n\x0b\x0c\r"


def _strtod_value(match: re.Match[bytes], raw: bytes) -> float:
    if match.group(2) is None:
        return float(raw)
    try:
        return float.fromhex(raw.decode())
    except OverflowError:
        return -math.inf if raw.lstrip(_SPACES)[:1] == b"-" else math.inf


def strict_float(raw: bytes) -> float | None:
    """A double as getDoubleFromObject takes it (ZADD scores, increments, WEIGHTS).

    The whole text must be a number, with no leading space, no NaN, and neither
    overflow to infinity nor underflow to zero.
    """
    match = _STRTOD_RE.match(raw)
    if match is None or raw[0] in _SPACES:
        return None
    value = _strtod_value(match, raw)
    if value == 0.0:
        mantissa = match.group(2) or match.group(3)
        if mantissa is not None and mantissa.strip(b"0."):
            return None
    elif value in (math.inf, -math.inf) and match.group(1) is None:
        return None
    return value


def range_float(raw: bytes) -> float | None:
    """A range end's number as zslParseRange reads it: strtod up to a NUL, no NaN.

    Plain strtod is laxer than ZADD: leading spaces, overflow to inf, even the empty
    string (0) are accepted.
    """
    if b"\0" in raw:
        raw = raw[: raw.index(b"\0")]
    if not raw:
        return 0.0
    match = _STRTOD_RE.match(raw)
    if match is None:
        return None
    return _strtod_value(match, raw)


def parse_score_range(lo_raw: bytes, hi_raw: bytes) -> tuple[float, bool, float, bool]:
    """(min, min exclusive, max, max exclusive) from "1", "(1", "-inf", "+inf" forms."""
    loex = lo_raw[:1] == b"("
    hiex = hi_raw[:1] == b"("
    lo = range_float(lo_raw[1:] if loex else lo_raw)
    hi = range_float(hi_raw[1:] if hiex else hi_raw)
    if lo is None or hi is None:
        raise CommandError(NOT_SCORE_RANGE)
    return lo, loex, hi, hiex


def _lex_item(raw: bytes) -> tuple[int, bytes, bool] | None:
    if not raw:
        return None
    first = raw[0]
    if first == 0x28:  # (
        return LEX_STR, raw[1:], True
    if first == 0x5B:  # [
        return LEX_STR, raw[1:], False
    if first == 0x2B or first == 0x2D:  # + -
        if len(raw) > 1 and raw[1] != 0:
            return None
        return (LEX_MAX if first == 0x2B else LEX_MIN), b"", True
    return None


def parse_lex_range(lo_raw: bytes, hi_raw: bytes) -> LexRange:
    lo = _lex_item(lo_raw)
    hi = _lex_item(hi_raw)
    if lo is None or hi is None:
        raise CommandError(NOT_LEX_RANGE)
    return LexRange(lo[0], lo[1], lo[2], hi[0], hi[1], hi[2])


def lookup(ks: Keyspace, key: bytes) -> ZSet | None:
    """The sorted set at `key`, None if absent; WRONGTYPE for another type."""
    return cast("ZSet | None", ks.get_typed(key, ZSet))


def with_scores(items: list[Item], resp3: bool) -> list[object]:
    """member, score, ... in RESP2; [member, score] pairs in RESP3."""
    if resp3:
        return [[member, Double(score)] for score, member in items]
    out: list[object] = []
    append = out.append
    for score, member in items:
        append(member)
        append(Double(score))
    return out


def rank_bounds(start: int, end: int, llen: int) -> tuple[int, int] | None:
    """Redis's sanitising of rank indexes: an inclusive [start, end], None when empty."""
    if start < 0:
        start += llen
    if end < 0:
        end += llen
    if start < 0:
        start = 0
    if start > end or start >= llen:
        return None
    return start, min(end, llen - 1)


# --------------------------------------------------------------------------- ZRANGE family

_RANK = 0
_SCORE = 1
_LEX = 2


def _zrange(ctx: Context, argv: list[bytes], rangetype: int | None, reverse: bool | None) -> object:
    """zrangeGenericCommand: options, then conflicts, then range parsing, then the key."""
    withscores = False
    offset = 0
    limit = -1
    n = len(argv)
    j = 4
    while j < n:
        opt = argv[j].lower()
        if opt == b"withscores":
            withscores = True
        elif opt == b"limit" and n - j > 2:
            offset = parse_int(argv[j + 1])
            limit = parse_int(argv[j + 2])
            j += 2
        elif reverse is None and opt == b"rev":
            reverse = True
        elif rangetype is None and opt == b"bylex":
            rangetype = _LEX
        elif rangetype is None and opt == b"byscore":
            rangetype = _SCORE
        else:
            raise CommandError(SYNTAX)
        j += 1
    if rangetype is None:
        rangetype = _RANK
    if limit != -1 and rangetype == _RANK:
        raise CommandError(LIMIT_NEEDS_BY)
    if withscores and rangetype == _LEX:
        raise CommandError(WITHSCORES_BYLEX)
    lo_raw, hi_raw = argv[2], argv[3]
    if reverse and rangetype != _RANK:
        lo_raw, hi_raw = hi_raw, lo_raw

    if rangetype == _RANK:
        start = parse_int(lo_raw)
        end = parse_int(hi_raw)
        zset = lookup(ctx.ks, argv[1])
        if zset is None:
            return []
        llen = len(zset)
        bounds = rank_bounds(start, end, llen)
        if bounds is None:
            return []
        if reverse:
            items = zset.items(llen - 1 - bounds[1], llen - bounds[0], reverse=True)
        else:
            items = zset.items(bounds[0], bounds[1] + 1)
    elif rangetype == _SCORE:
        lo, loex, hi, hiex = parse_score_range(lo_raw, hi_raw)
        zset = lookup(ctx.ks, argv[1])
        if zset is None:
            return []
        if offset < 0 or (offset > 0 and offset >= len(zset)):
            return []
        first, stop = zset.score_bounds(lo, loex, hi, hiex)
        if reverse:
            stop -= offset
            if limit >= 0:
                first = max(first, stop - limit)
            items = zset.items(first, stop, reverse=True)
        else:
            first += offset
            if limit >= 0:
                stop = min(stop, first + limit)
            items = zset.items(first, stop)
    else:
        lex = parse_lex_range(lo_raw, hi_raw)
        zset = lookup(ctx.ks, argv[1])
        if zset is None:
            return []
        items = zset.lex_range(lex, bool(reverse), offset, limit)

    if withscores:
        return with_scores(items, ctx.resp3)
    return [member for _score, member in items]


@command("zrange")
def zrange(ctx: Context, argv: list[bytes]) -> object:
    return _zrange(ctx, argv, None, None)


@command("zrevrange")
def zrevrange(ctx: Context, argv: list[bytes]) -> object:
    return _zrange(ctx, argv, _RANK, True)


@command("zrangebyscore")
def zrangebyscore(ctx: Context, argv: list[bytes]) -> object:
    return _zrange(ctx, argv, _SCORE, False)


@command("zrevrangebyscore")
def zrevrangebyscore(ctx: Context, argv: list[bytes]) -> object:
    return _zrange(ctx, argv, _SCORE, True)


@command("zrangebylex")
def zrangebylex(ctx: Context, argv: list[bytes]) -> object:
    return _zrange(ctx, argv, _LEX, False)


@command("zrevrangebylex")
def zrevrangebylex(ctx: Context, argv: list[bytes]) -> object:
    return _zrange(ctx, argv, _LEX, True)


# --------------------------------------------------------------------------- counting


@command("zcount")
def zcount(ctx: Context, argv: list[bytes]) -> object:
    lo, loex, hi, hiex = parse_score_range(argv[2], argv[3])
    zset = lookup(ctx.ks, argv[1])
    if zset is None:
        return 0
    start, stop = zset.score_bounds(lo, loex, hi, hiex)
    return stop - start


@command("zlexcount")
def zlexcount(ctx: Context, argv: list[bytes]) -> object:
    lex = parse_lex_range(argv[2], argv[3])
    zset = lookup(ctx.ks, argv[1])
    if zset is None:
        return 0
    start, stop = zset.lex_bounds(lex)
    return stop - start


# --------------------------------------------------------------------------- removal


def _removed(ctx: Context, key: bytes, zset: ZSet, start: int, stop: int) -> int:
    removed = zset.delete_slice(start, stop)
    if removed:
        ctx.ks.remove_if_empty(key, zset)
    else:
        ctx.rewrite()
    return removed


@command("zremrangebyrank")
def zremrangebyrank(ctx: Context, argv: list[bytes]) -> object:
    start = parse_int(argv[2])
    end = parse_int(argv[3])
    key = argv[1]
    zset = lookup(ctx.ks, key)
    if zset is None:
        ctx.rewrite()
        return 0
    bounds = rank_bounds(start, end, len(zset))
    if bounds is None:
        ctx.rewrite()
        return 0
    return _removed(ctx, key, zset, bounds[0], bounds[1] + 1)


@command("zremrangebyscore")
def zremrangebyscore(ctx: Context, argv: list[bytes]) -> object:
    lo, loex, hi, hiex = parse_score_range(argv[2], argv[3])
    key = argv[1]
    zset = lookup(ctx.ks, key)
    if zset is None:
        ctx.rewrite()
        return 0
    start, stop = zset.score_bounds(lo, loex, hi, hiex)
    return _removed(ctx, key, zset, start, stop)


@command("zremrangebylex")
def zremrangebylex(ctx: Context, argv: list[bytes]) -> object:
    lex = parse_lex_range(argv[2], argv[3])
    key = argv[1]
    zset = lookup(ctx.ks, key)
    if zset is None:
        ctx.rewrite()
        return 0
    start, stop = zset.lex_bounds(lex)
    return _removed(ctx, key, zset, start, stop)

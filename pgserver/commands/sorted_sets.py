"""Sorted set commands: ZADD ZINCRBY ZREM ZSCORE ZMSCORE ZCARD ZRANK ZREVRANK ZPOPMIN
ZPOPMAX ZRANDMEMBER ZSCAN ZUNIONSTORE ZINTERSTORE.

The range commands (ZRANGE and friends, ZCOUNT, ZLEXCOUNT, ZREMRANGEBY*) live in
sorted_sets_ranges, imported here so that loading this module registers the whole family.
Score increments are logged as the ZADD of their result (a float sum is not something a
replica should recompute); everything else here is deterministic and logged as sent.
"""

from __future__ import annotations

import math
import random
import re
from typing import TYPE_CHECKING

from pgserver.commands import command, sorted_sets_ranges
from pgserver.commands._util import (
    INT64_MAX,
    NOT_FLOAT,
    SYNTAX,
    check_random_picks,
    parse_int,
    try_int,
)
from pgserver.commands.sorted_sets_ranges import lookup, strict_float, with_scores
from pgserver.glob import compile_glob
from pgserver.keyspace import WRONGTYPE
from pgserver.zset import Item, ZSet
from tessera.errors import CommandError
from tessera.resp import Double, format_double

if TYPE_CHECKING:
    from pgserver.context import Context

__all__ = ["sorted_sets_ranges"]

_NAN_SCORE = "ERR resulting score is not a number (NaN)"
_XX_NX = "ERR XX and NX options at the same time are not compatible"
_GT_LT_NX = "ERR GT, LT, and/or NX options at the same time are not compatible"
_INCR_PAIRS = "ERR INCR option supports a single increment-element pair"
_NOT_POSITIVE = "ERR value is out of range, must be positive"
_WEIGHT = "ERR weight value is not a float"
_LONG_MAX = INT64_MAX

_ZADD_FLAGS = {b"nx": 1, b"xx": 2, b"ch": 4, b"incr": 8, b"gt": 16, b"lt": 32}


# --------------------------------------------------------------------------- ZADD / ZINCRBY


def _zadd(ctx: Context, argv: list[bytes], incr: bool) -> object:
    """zaddGenericCommand: flags, checks, scores, then the key; ZINCRBY is ZADD INCR."""
    n = len(argv)
    flags = 8 if incr else 0
    idx = 2
    get_flag = _ZADD_FLAGS.get
    while idx < n:
        flag = get_flag(argv[idx].lower())
        if flag is None:
            break
        flags |= flag
        idx += 1
    elements = n - idx
    if elements == 0 or elements % 2:
        raise CommandError(SYNTAX)
    nx = flags & 1
    xx = flags & 2
    gt = flags & 16
    lt = flags & 32
    incr = bool(flags & 8)
    if nx and xx:
        raise CommandError(_XX_NX)
    if (gt and nx) or (lt and nx) or (gt and lt):
        raise CommandError(_GT_LT_NX)
    if incr and elements > 2:
        raise CommandError(_INCR_PAIRS)
    pairs: list[tuple[float, bytes]] = []
    for j in range(idx, n, 2):
        score = strict_float(argv[j])
        if score is None:
            raise CommandError(NOT_FLOAT)
        pairs.append((score, argv[j + 1]))

    key = argv[1]
    ks = ctx.ks
    zset = lookup(ks, key)
    if zset is None:
        if xx:
            ctx.rewrite()
            return None if incr else 0
        zset = ZSet()
        ks.add_new(key, zset)
    scores = zset.scores
    added = updated = processed = 0
    score = 0.0
    for score, member in pairs:
        old = scores.get(member)
        if old is not None:
            if nx:
                continue
            if incr:
                score += old
                if math.isnan(score):
                    raise CommandError(_NAN_SCORE)
            if (lt and score >= old) or (gt and score <= old):
                continue
            processed += 1
            if score != old:
                zset.add(member, score)
                updated += 1
        elif not xx:
            zset.add(member, score)
            added += 1
            processed += 1

    if incr:
        if not processed:
            ctx.rewrite()
            return None
        ctx.rewrite([b"ZADD", key, format_double(score), pairs[0][1]])
        return Double(score)
    if not (added or updated):
        ctx.rewrite()
    return added + updated if flags & 4 else added


@command("zadd")
def zadd(ctx: Context, argv: list[bytes]) -> object:
    return _zadd(ctx, argv, False)


@command("zincrby")
def zincrby(ctx: Context, argv: list[bytes]) -> object:
    return _zadd(ctx, argv, True)


# --------------------------------------------------------------------------- simple access


@command("zrem")
def zrem(ctx: Context, argv: list[bytes]) -> object:
    key = argv[1]
    zset = lookup(ctx.ks, key)
    if zset is None:
        ctx.rewrite()
        return 0
    remove = zset.remove
    removed = 0
    for member in argv[2:]:
        if remove(member):
            removed += 1
    if removed:
        ctx.ks.remove_if_empty(key, zset)
    else:
        ctx.rewrite()
    return removed


@command("zscore")
def zscore(ctx: Context, argv: list[bytes]) -> object:
    zset = lookup(ctx.ks, argv[1])
    if zset is None:
        return None
    score = zset.scores.get(argv[2])
    return None if score is None else Double(score)


@command("zmscore")
def zmscore(ctx: Context, argv: list[bytes]) -> object:
    zset = lookup(ctx.ks, argv[1])
    if zset is None:
        return [None] * (len(argv) - 2)
    get = zset.scores.get
    out: list[object] = []
    for member in argv[2:]:
        score = get(member)
        out.append(None if score is None else Double(score))
    return out


@command("zcard")
def zcard(ctx: Context, argv: list[bytes]) -> object:
    zset = lookup(ctx.ks, argv[1])
    return 0 if zset is None else len(zset)


@command("zrank")
def zrank(ctx: Context, argv: list[bytes]) -> object:
    zset = lookup(ctx.ks, argv[1])
    return None if zset is None else zset.rank(argv[2])


@command("zrevrank")
def zrevrank(ctx: Context, argv: list[bytes]) -> object:
    zset = lookup(ctx.ks, argv[1])
    return None if zset is None else zset.rank(argv[2], reverse=True)


# --------------------------------------------------------------------------- pops and random


def _zpop(ctx: Context, argv: list[bytes], highest: bool) -> object:
    """ZPOPMIN/ZPOPMAX: flat member/score array, nested pairs in RESP3 when a count is given."""
    n = len(argv)
    if n > 3:
        raise CommandError(SYNTAX)
    count = -1
    if n == 3:
        value = try_int(argv[2])
        if value is None or value < 0:
            raise CommandError(_NOT_POSITIVE)
        count = value
    key = argv[1]
    zset = lookup(ctx.ks, key)
    if zset is None or count == 0:
        ctx.rewrite()
        return []
    popped = zset.pop(1 if count == -1 else count, highest)
    ctx.ks.remove_if_empty(key, zset)
    if ctx.resp3 and count != -1:
        return [[member, Double(score)] for score, member in popped]
    return with_scores(popped, False)


@command("zpopmin")
def zpopmin(ctx: Context, argv: list[bytes]) -> object:
    return _zpop(ctx, argv, False)


@command("zpopmax")
def zpopmax(ctx: Context, argv: list[bytes]) -> object:
    return _zpop(ctx, argv, True)


@command("zrandmember")
def zrandmember(ctx: Context, argv: list[bytes]) -> object:
    n = len(argv)
    if n == 2:
        zset = lookup(ctx.ks, argv[1])
        if zset is None:
            return None
        item: Item = zset.index[random.randrange(len(zset))]
        return item[1]
    count = parse_int(argv[2])
    if count < -_LONG_MAX:
        raise CommandError(
            f"ERR value is out of range, value must between {-_LONG_MAX} and {_LONG_MAX}"
        )
    if n > 4 or (n == 4 and argv[3].lower() != b"withscores"):
        raise CommandError(SYNTAX)
    withscores = n == 4
    if withscores and not -(_LONG_MAX // 2) <= count <= _LONG_MAX // 2:
        raise CommandError("ERR value is out of range")
    zset = lookup(ctx.ks, argv[1])
    if zset is None or count == 0:
        return []
    index = zset.index
    size = len(zset)
    items: list[Item]
    if count < 0 or count == 1:
        # Drawn independently: members may repeat, as with a negative count.
        check_random_picks(abs(count))
        randrange = random.randrange
        items = [index[randrange(size)] for _ in range(abs(count))]
    elif count >= size:
        # The whole set, walked from the top as Redis's zset iterator does.
        items = list(reversed(index))
    else:
        items = [index[pos] for pos in random.sample(range(size), count)]
    if not withscores:
        return [member for _score, member in items]
    return with_scores(items, ctx.resp3)


# --------------------------------------------------------------------------- ZSCAN

_CURSOR_RE = re.compile(rb"[+-]?[0-9]+\Z")


def _check_cursor(raw: bytes) -> None:
    """Validate the cursor as strtoul does (Redis's parseScanCursorOrReply)."""
    if b"\0" in raw:
        raw = raw[: raw.index(b"\0")]
    if not raw:
        return
    if not _CURSOR_RE.match(raw) or int(raw.lstrip(b"+-")) > 2**64 - 1:
        raise CommandError("ERR invalid cursor")


@command("zscan")
def zscan(ctx: Context, argv: list[bytes]) -> object:
    """The whole set in one reply with cursor 0, as Redis does for listpack-encoded sets."""
    _check_cursor(argv[2])
    zset = lookup(ctx.ks, argv[1])
    if zset is None:
        return [b"0", []]
    pattern: bytes | None = None
    n = len(argv)
    i = 3
    while i < n:
        opt = argv[i].lower()
        if opt == b"count" and n - i >= 2:
            if parse_int(argv[i + 1]) < 1:
                raise CommandError(SYNTAX)
        elif opt == b"match" and n - i >= 2:
            pattern = argv[i + 1]
        else:
            raise CommandError(SYNTAX)
        i += 2
    out: list[object] = []
    append = out.append
    if pattern is None or pattern == b"*":
        for score, member in zset.index:
            append(member)
            append(format_double(score))
    else:
        match = compile_glob(pattern).match
        for score, member in zset.index:
            if match(member) is not None:
                append(member)
                append(format_double(score))
    return [b"0", out]


# ------------------------------------------------------------------------- ZUNIONSTORE ZINTERSTORE

_SUM = 0
_MIN = 1
_MAX = 2
_AGGREGATES = {b"sum": _SUM, b"min": _MIN, b"max": _MAX}

Source = ZSet | set[bytes] | None


def _source_items(src: Source) -> list[tuple[bytes, float]]:
    if src is None:
        return []
    if isinstance(src, ZSet):
        return list(src.scores.items())
    return [(member, 1.0) for member in src]


def _source_score(src: Source, member: bytes) -> float | None:
    if isinstance(src, ZSet):
        return src.scores.get(member)
    if src is not None and member in src:
        return 1.0
    return None


def _aggregate(target: float, value: float, how: int) -> float:
    """zunionInterAggregate, including its inf + -inf = 0 rule for SUM."""
    if how == _SUM:
        target = target + value
        return 0.0 if math.isnan(target) else target
    if how == _MIN:
        return value if value < target else target
    return value if value > target else target


def _zstore(ctx: Context, argv: list[bytes], inter: bool) -> object:
    """zunionInterDiffGenericCommand for the STORE variants."""
    setnum = parse_int(argv[2])
    if setnum < 1:
        name = "zinterstore" if inter else "zunionstore"
        raise CommandError(f"ERR at least 1 input key is needed for '{name}' command")
    n = len(argv)
    if setnum > n - 3:
        raise CommandError(SYNTAX)
    ks = ctx.ks
    sources: list[Source] = []
    for key in argv[3 : 3 + setnum]:
        found = ks.get(key)
        if found is not None and type(found) is not ZSet and type(found) is not set:
            raise CommandError(WRONGTYPE)
        sources.append(found)
    weights = [1.0] * setnum
    how = _SUM
    j = 3 + setnum
    while j < n:
        remaining = n - j
        opt = argv[j].lower()
        if remaining >= setnum + 1 and opt == b"weights":
            for i in range(setnum):
                weight = strict_float(argv[j + 1 + i])
                if weight is None:
                    raise CommandError(_WEIGHT)
                weights[i] = weight
            j += setnum + 1
        elif remaining >= 2 and opt == b"aggregate":
            aggregate = _AGGREGATES.get(argv[j + 1].lower())
            if aggregate is None:
                raise CommandError(SYNTAX)
            how = aggregate
            j += 2
        else:
            raise CommandError(SYNTAX)

    # Smallest input first, as Redis's (stable) qsort orders them: this fixes the order in
    # which floating point sums are done.
    sizes = [0 if src is None else len(src) for src in sources]
    order = sorted(range(setnum), key=sizes.__getitem__)
    result: dict[bytes, float] = {}
    if inter:
        first = sources[order[0]]
        if first is not None and len(first):
            w0 = weights[order[0]]
            rest = [(sources[i], weights[i]) for i in order[1:]]
            for member, score in _source_items(first):
                total = w0 * score
                if math.isnan(total):
                    total = 0.0
                for src, weight in rest:
                    value = _source_score(src, member)
                    if value is None:
                        break
                    total = _aggregate(total, value * weight, how)
                else:
                    result[member] = total
    else:
        for i in order:
            weight = weights[i]
            for member, score in _source_items(sources[i]):
                total = weight * score
                if math.isnan(total):
                    total = 0.0
                old = result.get(member)
                result[member] = total if old is None else _aggregate(old, total, how)

    dest = argv[1]
    if not result:
        ks.delete(dest)
        return 0
    ks.set(dest, ZSet.from_scores(result))
    return len(result)


@command("zunionstore")
def zunionstore(ctx: Context, argv: list[bytes]) -> object:
    return _zstore(ctx, argv, False)


@command("zinterstore")
def zinterstore(ctx: Context, argv: list[bytes]) -> object:
    return _zstore(ctx, argv, True)

"""Set commands: SADD SREM SMEMBERS SISMEMBER SMISMEMBER SCARD SPOP SRANDMEMBER SMOVE
SINTER SUNION SDIFF SINTERSTORE SUNIONSTORE SDIFFSTORE SINTERCARD SSCAN.

A set is a plain Python set. Redis 7.0 keeps a set of at most 512 integers as an intset and
then replies in ascending numeric order; any other set is a hash table with no defined order.
`_members` reproduces the intset order whenever the set could be one, which is never wrong:
where Redis would have a hash table instead, its order is arbitrary anyway.
"""

from __future__ import annotations

import random
import re
from itertools import islice
from typing import TYPE_CHECKING, cast

from pgserver.commands import command
from pgserver.commands._util import INT64_MAX, INT64_MIN, SYNTAX, check_random_picks, try_int
from pgserver.commands.hashes import parse_range_long, parse_scan_cursor, parse_scan_options
from pgserver.keyspace import WRONGTYPE
from tessera.errors import CommandError
from tessera.resp import SetReply

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pgserver.context import Context
    from pgserver.keyspace import Keyspace

Set = set[bytes]

_INTSET_MAX = 512  # set-max-intset-entries
# Members joined by newlines, each spelled as Redis's string2ll accepts (range checked apart).
_INTSET_RE = re.compile(rb"(?:0|-?[1-9][0-9]{0,18})(?:\n(?:0|-?[1-9][0-9]{0,18}))*\Z")
_EMPTY_SCAN: list[object] = [b"0", []]
_SREM = b"SREM"


def _lookup(ks: Keyspace, key: bytes) -> Set | None:
    """The set at `key`, None if absent; WRONGTYPE for another type."""
    return cast("Set | None", ks.get_typed(key, set))


def _members(s: Set) -> list[bytes]:
    """The members in the order Redis replies them (see the module docstring)."""
    if len(s) > _INTSET_MAX or not s or _INTSET_RE.match(b"\n".join(s)) is None:
        return list(s)
    try:
        out = sorted(s, key=int)
    except ValueError:  # a member with a newline inside fooled the joined match
        return list(s)
    if int(out[0]) < INT64_MIN or int(out[-1]) > INT64_MAX:
        return list(s)
    return out


def _random_member(s: Set) -> bytes:
    """A uniformly random member (a Python set has no O(1) random access)."""
    return next(islice(s, random.randrange(len(s)), None))


# --------------------------------------------------------------------------- single-set writes


@command("sadd")
def sadd(ctx: Context, argv: list[bytes]) -> object:
    ks = ctx.ks
    key = argv[1]
    s = _lookup(ks, key)
    if s is None:
        s = set(islice(argv, 2, None))
        ks.add_new(key, s)
        return len(s)
    before = len(s)
    s.update(islice(argv, 2, None))
    return len(s) - before


@command("srem")
def srem(ctx: Context, argv: list[bytes]) -> object:
    ks = ctx.ks
    s = _lookup(ks, argv[1])
    if s is None:
        return 0
    before = len(s)
    s.difference_update(islice(argv, 2, None))
    ks.remove_if_empty(argv[1], s)
    return before - len(s)


@command("spop")
def spop(ctx: Context, argv: list[bytes]) -> object:
    """Random, so logged as SREM of exactly what was popped (nothing if nothing was)."""
    n = len(argv)
    if n > 3:
        raise CommandError(SYNTAX)
    ks = ctx.ks
    key = argv[1]
    if n == 2:
        s = _lookup(ks, key)
        if s is None:
            ctx.rewrite()
            return None
        member = _random_member(s)
        s.discard(member)
        ks.remove_if_empty(key, s)
        ctx.rewrite([_SREM, key, member])
        return member
    count = try_int(argv[2])
    if count is None or count < 0:
        raise CommandError("ERR value is out of range, must be positive")
    s = _lookup(ks, key)
    if s is None or count == 0:
        ctx.rewrite()
        return SetReply()
    if count >= len(s):
        popped = _members(s)
        ks.delete(key)
    else:
        popped = random.sample(tuple(s), count)
        s.difference_update(popped)
    ctx.rewrite([_SREM, key, *popped])
    return SetReply(popped)


@command("smove")
def smove(ctx: Context, argv: list[bytes]) -> object:
    ks = ctx.ks
    src_key, dst_key, member = argv[1], argv[2], argv[3]
    src = ks.get(src_key)
    dst = ks.get(dst_key)
    if src is None:
        return 0
    if type(src) is not set or (dst is not None and type(dst) is not set):
        raise CommandError(WRONGTYPE)
    if src is dst:
        return 1 if member in src else 0
    if member not in src:
        return 0
    src.discard(member)
    ks.remove_if_empty(src_key, src)
    if dst is None:
        ks.add_new(dst_key, {member})
    else:
        dst.add(member)
    return 1


# --------------------------------------------------------------------------- single-set reads


@command("smembers")
def smembers(ctx: Context, argv: list[bytes]) -> object:
    s = _lookup(ctx.ks, argv[1])
    return SetReply() if s is None else SetReply(_members(s))


@command("sismember")
def sismember(ctx: Context, argv: list[bytes]) -> object:
    s = _lookup(ctx.ks, argv[1])
    return 1 if s is not None and argv[2] in s else 0


@command("smismember")
def smismember(ctx: Context, argv: list[bytes]) -> object:
    s = _lookup(ctx.ks, argv[1])
    if s is None:
        return [0] * (len(argv) - 2)
    return [1 if m in s else 0 for m in islice(argv, 2, None)]


@command("scard")
def scard(ctx: Context, argv: list[bytes]) -> object:
    s = _lookup(ctx.ks, argv[1])
    return 0 if s is None else len(s)


@command("srandmember")
def srandmember(ctx: Context, argv: list[bytes]) -> object:
    n = len(argv)
    if n > 3:
        raise CommandError(SYNTAX)
    if n == 2:
        s = _lookup(ctx.ks, argv[1])
        return None if s is None else _random_member(s)
    count = parse_range_long(argv[2])
    s = _lookup(ctx.ks, argv[1])
    if s is None or count == 0:
        return []
    if count < 0:
        check_random_picks(-count)
        return random.choices(tuple(s), k=-count)
    if count == 1:
        return [_random_member(s)]
    if count >= len(s):
        return _members(s)
    return random.sample(tuple(s), count)


@command("sscan")
def sscan(ctx: Context, argv: list[bytes]) -> object:
    """The whole set in one reply with cursor 0 (see HSCAN)."""
    parse_scan_cursor(argv[2])
    s = _lookup(ctx.ks, argv[1])
    if s is None:
        return _EMPTY_SCAN
    pattern = parse_scan_options(argv, 3)
    members = _members(s)
    if pattern is not None:
        match = pattern.match
        members = [m for m in members if match(m) is not None]
    return [b"0", members]


# --------------------------------------------------------------------------- multi-set algebra


def _sources(ks: Keyspace, keys: Iterable[bytes]) -> list[Set | None]:
    """Every key's set (None when missing); WRONGTYPE if any key holds another type."""
    get_typed = ks.get_typed
    return [cast("Set | None", get_typed(key, set)) for key in keys]


def _inter(sets: list[Set | None]) -> Set:
    if None in sets:
        return set()
    present = cast("list[Set]", sets)
    present.sort(key=len)
    return present[0].intersection(*present[1:])


def _union(sets: list[Set | None]) -> Set:
    return set().union(*[s for s in sets if s is not None])


def _diff(sets: list[Set | None]) -> Set:
    first = sets[0]
    if first is None:
        return set()
    return first.difference(*[s for s in islice(sets, 1, None) if s is not None])


def _store(ctx: Context, argv: list[bytes], result: Set) -> int:
    """Replace the destination by `result` (TTL cleared); an empty result deletes it."""
    ks = ctx.ks
    if result:
        ks.set(argv[1], result)
    else:
        ks.delete(argv[1])
    return len(result)


@command("sinter")
def sinter(ctx: Context, argv: list[bytes]) -> object:
    return SetReply(_members(_inter(_sources(ctx.ks, islice(argv, 1, None)))))


@command("sunion")
def sunion(ctx: Context, argv: list[bytes]) -> object:
    return SetReply(_members(_union(_sources(ctx.ks, islice(argv, 1, None)))))


@command("sdiff")
def sdiff(ctx: Context, argv: list[bytes]) -> object:
    return SetReply(_members(_diff(_sources(ctx.ks, islice(argv, 1, None)))))


@command("sinterstore")
def sinterstore(ctx: Context, argv: list[bytes]) -> object:
    return _store(ctx, argv, _inter(_sources(ctx.ks, islice(argv, 2, None))))


@command("sunionstore")
def sunionstore(ctx: Context, argv: list[bytes]) -> object:
    return _store(ctx, argv, _union(_sources(ctx.ks, islice(argv, 2, None))))


@command("sdiffstore")
def sdiffstore(ctx: Context, argv: list[bytes]) -> object:
    return _store(ctx, argv, _diff(_sources(ctx.ks, islice(argv, 2, None))))


@command("sintercard")
def sintercard(ctx: Context, argv: list[bytes]) -> object:
    numkeys = try_int(argv[1])
    if numkeys is None or numkeys < 1:
        raise CommandError("ERR numkeys should be greater than 0")
    n = len(argv)
    if numkeys > n - 2:
        raise CommandError("ERR Number of keys can't be greater than number of args")
    limit = 0
    i = 2 + numkeys
    while i < n:
        if argv[i].lower() == b"limit" and i + 1 < n:
            i += 1
            parsed = try_int(argv[i])
            if parsed is None or parsed < 0:
                raise CommandError("ERR LIMIT can't be negative")
            limit = parsed
        else:
            raise CommandError(SYNTAX)
        i += 1
    sets = _sources(ctx.ks, islice(argv, 2, 2 + numkeys))
    if None in sets:
        return 0
    present = cast("list[Set]", sets)
    present.sort(key=len)
    smallest, others = present[0], present[1:]
    if not limit:
        return len(smallest.intersection(*others)) if others else len(smallest)
    found = 0
    for member in smallest:
        for other in others:
            if member not in other:
                break
        else:
            found += 1
            if found >= limit:
                break
    return found

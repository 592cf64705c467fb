"""List commands: LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LLEN LRANGE LINDEX LSET LINSERT LREM
LTRIM LPOS LMOVE RPOPLPUSH.

A list is a `collections.deque[bytes]`, so both ends are O(1) like Redis's quicklist.
Scans (LPOS, LREM) find each match with `operator.indexOf` on one shared iterator: a C
loop that resumes where the last match was found, so they stop early as Redis does.
Every write is deterministic, so nothing here calls `ctx.rewrite`.

Argument checks follow Redis's order exactly (some commands parse numbers before looking
the key up, others after), because that order decides which error a client sees.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from itertools import islice, repeat
from operator import indexOf
from typing import TYPE_CHECKING

from pgserver.commands import command
from pgserver.commands._util import INT64_MIN, SYNTAX, parse_int, wrong_arity
from tessera.errors import CommandError
from tessera.resp import NULL_ARRAY, OK

if TYPE_CHECKING:
    from pgserver.context import Context
    from pgserver.keyspace import Keyspace

NOT_POSITIVE = "ERR value is out of range, must be positive"
NO_SUCH_KEY = "ERR no such key"
INDEX_OUT_OF_RANGE = "ERR index out of range"
RANK_ZERO = (
    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... "
    "or use negative to start from the end of the list"
)
COUNT_NEGATIVE = "ERR COUNT can't be negative"
MAXLEN_NEGATIVE = "ERR MAXLEN can't be negative"

# Up to this many LREM matches are deleted one by one (each an O(distance) C rotate);
# beyond it the affected end of the list is rebuilt in one pass.
_LREM_DEL_LIMIT = 16


def _get_list(ks: Keyspace, key: bytes) -> deque[bytes] | None:
    """The list at `key`, None if absent; WRONGTYPE for another type."""
    return ks.get_typed(key, deque)  # type: ignore[return-value]


def _non_negative(raw: bytes, error: str) -> int:
    """Redis's getPositiveLongFromObjectOrReply with a message: the same text for
    non-integers and negatives."""
    value = parse_int(raw, error)
    if value < 0:
        raise CommandError(error)
    return value


def _is_left(raw: bytes) -> bool:
    """LEFT/RIGHT of LMOVE, case-insensitive."""
    where = raw.lower()
    if where == b"left":
        return True
    if where == b"right":
        return False
    raise CommandError(SYNTAX)


def _match_positions(source: Iterator[bytes], elem: bytes) -> Iterator[int]:
    """Offsets in `source` of the items equal to `elem`, lazily.

    indexOf consumes `source` up to and including each match, so successive calls scan
    the list once in total, in C (much faster than a Python-level comparison per item).
    """
    pos = -1
    while True:
        try:
            pos += indexOf(source, elem) + 1
        except ValueError:
            return
        yield pos


# --------------------------------------------------------------------------- push


def _push(ctx: Context, argv: list[bytes], left: bool, only_existing: bool) -> int:
    ks = ctx.ks
    key = argv[1]
    lst = _get_list(ks, key)
    if lst is None:
        if only_existing:
            return 0
        lst = deque()
        ks.add_new(key, lst)
    if left:
        # extendleft reverses its input: LPUSH k a b c leaves c b a, as Redis does.
        lst.extendleft(islice(argv, 2, None))
    else:
        lst.extend(islice(argv, 2, None))
    return len(lst)


@command("lpush")
def lpush(ctx: Context, argv: list[bytes]) -> object:
    return _push(ctx, argv, True, False)


@command("rpush")
def rpush(ctx: Context, argv: list[bytes]) -> object:
    return _push(ctx, argv, False, False)


@command("lpushx")
def lpushx(ctx: Context, argv: list[bytes]) -> object:
    return _push(ctx, argv, True, True)


@command("rpushx")
def rpushx(ctx: Context, argv: list[bytes]) -> object:
    return _push(ctx, argv, False, True)


# --------------------------------------------------------------------------- pop


def _pop(ctx: Context, argv: list[bytes], left: bool, name: str) -> object:
    """LPOP/RPOP: the count is checked before the key (so a bad count beats WRONGTYPE),
    and a missing key with a count is a null array, not a null bulk."""
    n = len(argv)
    if n > 3:
        raise wrong_arity(name)
    many = n == 3
    wanted = _non_negative(argv[2], NOT_POSITIVE) if many else 1
    ks = ctx.ks
    key = argv[1]
    lst = _get_list(ks, key)
    if lst is None:
        return NULL_ARRAY if many else None
    if not many:
        value = lst.popleft() if left else lst.pop()
        if not lst:
            ks.remove_if_empty(key, lst)
        return value
    if wanted == 0:
        return []
    if wanted >= len(lst):
        out = list(lst)
        if not left:
            out.reverse()
        lst.clear()
        ks.remove_if_empty(key, lst)
        return out
    pop = lst.popleft if left else lst.pop
    return [pop() for _ in repeat(None, wanted)]


@command("lpop")
def lpop(ctx: Context, argv: list[bytes]) -> object:
    return _pop(ctx, argv, True, "lpop")


@command("rpop")
def rpop(ctx: Context, argv: list[bytes]) -> object:
    return _pop(ctx, argv, False, "rpop")


# --------------------------------------------------------------------------- read


@command("llen")
def llen(ctx: Context, argv: list[bytes]) -> object:
    lst = _get_list(ctx.ks, argv[1])
    return 0 if lst is None else len(lst)


@command("lrange")
def lrange(ctx: Context, argv: list[bytes]) -> object:
    start = parse_int(argv[2])
    end = parse_int(argv[3])
    lst = _get_list(ctx.ks, argv[1])
    if lst is None:
        return []
    size = len(lst)
    if start < 0:
        start += size
    if end < 0:
        end += size
    if start < 0:
        start = 0
    if start > end or start >= size:
        return []
    if end >= size:
        end = size - 1
    if start == 0 and end == size - 1:
        return list(lst)
    tail_skip = size - 1 - end
    if tail_skip < start:
        # Nearer the tail: walk from that end instead of skipping `start` elements.
        out = list(islice(reversed(lst), tail_skip, size - start))
        out.reverse()
        return out
    return list(islice(lst, start, end + 1))


@command("lindex")
def lindex(ctx: Context, argv: list[bytes]) -> object:
    """The key is looked up before the index is parsed (Redis's order)."""
    lst = _get_list(ctx.ks, argv[1])
    if lst is None:
        return None
    index = parse_int(argv[2])
    size = len(lst)
    if -size <= index < size:
        return lst[index]
    return None


@command("lpos")
def lpos(ctx: Context, argv: list[bytes]) -> object:
    rank = 1
    wanted = -1  # -1: no COUNT option
    maxlen = 0
    i = 3
    n = len(argv)
    while i < n:
        opt = argv[i].lower()
        if i + 1 >= n:
            raise CommandError(SYNTAX)
        i += 1
        if opt == b"rank":
            rank = parse_int(argv[i])
            if rank == 0:
                raise CommandError(RANK_ZERO)
        elif opt == b"count":
            wanted = _non_negative(argv[i], COUNT_NEGATIVE)
        elif opt == b"maxlen":
            maxlen = _non_negative(argv[i], MAXLEN_NEGATIVE)
        else:
            raise CommandError(SYNTAX)
        i += 1

    lst = _get_list(ctx.ks, argv[1])
    if lst is None:
        return [] if wanted != -1 else None

    from_tail = rank < 0
    # Redis negates RANK in a C long: -LONG_MIN stays negative, so every match qualifies
    # and the COUNT limit is never reached. Reproduce that instead of the "fixed" result.
    unlimited = rank == INT64_MIN
    skip = 0 if unlimited else abs(rank) - 1
    source: Iterator[bytes] = reversed(lst) if from_tail else iter(lst)
    if maxlen:
        source = islice(source, maxlen)
    matches = _match_positions(source, argv[2])
    if skip:
        matches = islice(matches, skip, None)
    last = len(lst) - 1

    if wanted == -1:
        found = next(matches, None)
        if found is None:
            return None
        return last - found if from_tail else found
    if wanted and not unlimited:
        matches = islice(matches, wanted)
    if from_tail:
        return [last - pos for pos in matches]
    return list(matches)


# --------------------------------------------------------------------------- write


@command("lset")
def lset(ctx: Context, argv: list[bytes]) -> object:
    """The key is looked up before the index is parsed (Redis's order)."""
    lst = _get_list(ctx.ks, argv[1])
    if lst is None:
        raise CommandError(NO_SUCH_KEY)
    index = parse_int(argv[2])
    size = len(lst)
    if not -size <= index < size:
        raise CommandError(INDEX_OUT_OF_RANGE)
    lst[index] = argv[3]
    return OK


@command("linsert")
def linsert(ctx: Context, argv: list[bytes]) -> object:
    where = argv[2].lower()
    if where == b"after":
        after = 1
    elif where == b"before":
        after = 0
    else:
        raise CommandError(SYNTAX)
    lst = _get_list(ctx.ks, argv[1])
    if lst is None:
        return 0
    try:
        pos = lst.index(argv[3])
    except ValueError:
        return -1
    lst.insert(pos + after, argv[4])
    return len(lst)


@command("lrem")
def lrem(ctx: Context, argv: list[bytes]) -> object:
    limit = parse_int(argv[2])
    ks = ctx.ks
    key = argv[1]
    lst = _get_list(ks, key)
    if lst is None:
        return 0
    elem = argv[3]
    if limit == 0:
        removed = lst.count(elem)
        if removed > _LREM_DEL_LIMIT:
            kept = [x for x in lst if x != elem]
            lst.clear()
            lst.extend(kept)
            ks.remove_if_empty(key, lst)
            return removed
        if not removed:
            return 0
    from_tail = limit < 0
    # Capped at the length: -LONG_MIN would overflow islice, and removes every match anyway.
    limit = min(abs(limit), len(lst)) if limit else len(lst)
    found = list(islice(_match_positions(reversed(lst) if from_tail else iter(lst), elem), limit))
    if not found:
        return 0
    if len(found) <= _LREM_DEL_LIMIT:
        last = len(lst) - 1
        # Delete from the highest position down so the others stay valid.
        positions = [last - p for p in found] if from_tail else reversed(found)
        for pos in positions:
            del lst[pos]
    else:
        # Rebuild only the stretch up to the last match, from its own end.
        span = found[-1] + 1
        if from_tail:
            pop = lst.pop
            stretch = [pop() for _ in repeat(None, span)]
            stretch.reverse()
            lst.extend([x for x in stretch if x != elem])
        else:
            popleft = lst.popleft
            stretch = [popleft() for _ in repeat(None, span)]
            stretch.reverse()
            lst.extendleft([x for x in stretch if x != elem])
    ks.remove_if_empty(key, lst)
    return len(found)


@command("ltrim")
def ltrim(ctx: Context, argv: list[bytes]) -> object:
    start = parse_int(argv[2])
    end = parse_int(argv[3])
    ks = ctx.ks
    key = argv[1]
    lst = _get_list(ks, key)
    if lst is None:
        return OK
    size = len(lst)
    if start < 0:
        start += size
    if end < 0:
        end += size
    if start < 0:
        start = 0
    if start > end or start >= size:
        lst.clear()
        ks.remove_if_empty(key, lst)
        return OK
    if end >= size:
        end = size - 1
    head = start
    tail = size - 1 - end
    keep = size - head - tail
    if head + tail <= keep:
        popleft = lst.popleft
        for _ in repeat(None, head):
            popleft()
        pop = lst.pop
        for _ in repeat(None, tail):
            pop()
    else:
        kept = list(islice(lst, head, end + 1))
        lst.clear()
        lst.extend(kept)
    return OK


def _move(ctx: Context, argv: list[bytes], from_left: bool, to_left: bool) -> object:
    """LMOVE/RPOPLPUSH: both keys are type-checked before anything moves; with the same
    key on both sides the list rotates."""
    ks = ctx.ks
    src_key = argv[1]
    src = _get_list(ks, src_key)
    if src is None:
        return None
    dst_key = argv[2]
    dst = src if dst_key == src_key else _get_list(ks, dst_key)
    value = src.popleft() if from_left else src.pop()
    if dst is None:
        dst = deque()
        ks.add_new(dst_key, dst)
    if to_left:
        dst.appendleft(value)
    else:
        dst.append(value)
    if not src:
        ks.remove_if_empty(src_key, src)
    return value


@command("lmove")
def lmove(ctx: Context, argv: list[bytes]) -> object:
    return _move(ctx, argv, _is_left(argv[3]), _is_left(argv[4]))


@command("rpoplpush")
def rpoplpush(ctx: Context, argv: list[bytes]) -> object:
    return _move(ctx, argv, False, True)

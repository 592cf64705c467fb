"""Hash commands: HSET HSETNX HGET HMSET HMGET HDEL HEXISTS HLEN HGETALL HKEYS HVALS
HINCRBY HINCRBYFLOAT HSTRLEN HSCAN HRANDFIELD.

A hash is a plain dict, whose insertion order is exactly the order Redis 7.0 replies in
while the hash is listpack-encoded (small hashes); big hashes are unordered in Redis anyway.
Also home of the *SCAN argument parsing shared with SSCAN and of the x87 long double
arithmetic HINCRBYFLOAT needs (Redis computes it in `long double`, not `double`).
"""

from __future__ import annotations

import random
import re
from itertools import chain, islice
from typing import TYPE_CHECKING, cast

from pgserver.commands import command
from pgserver.commands._util import (
    INT64_MAX,
    INT64_MIN,
    NOT_FLOAT,
    OVERFLOW,
    SYNTAX,
    check_random_picks,
    parse_int,
    try_int,
    wrong_arity,
)
from pgserver.glob import compile_glob
from tessera.errors import CommandError
from tessera.resp import OK, Map

if TYPE_CHECKING:
    from pgserver.context import Context
    from pgserver.keyspace import Keyspace

Hash = dict[bytes, bytes]

_LONG_MAX = INT64_MAX


def _lookup(ks: Keyspace, key: bytes) -> Hash | None:
    """The hash at `key`, None if absent; WRONGTYPE for another type."""
    return cast("Hash | None", ks.get_typed(key, dict))


def _lookup_or_create(ks: Keyspace, key: bytes) -> Hash:
    h = cast("Hash | None", ks.get_typed(key, dict))
    if h is None:
        h = {}
        ks.add_new(key, h)
    return h


# --------------------------------------------------------------------------- shared *SCAN parsing

_EMPTY_SCAN: list[object] = [b"0", []]
_CURSOR_RE = re.compile(rb"[+-]?[0-9]+\Z")
_ULONG_MAX = 2**64 - 1


def parse_scan_cursor(raw: bytes) -> None:
    """Validate a cursor as Redis's strtoul-based parseScanCursorOrReply does.

    The value itself is irrelevant here: every *SCAN of a value returns it whole at once.
    strtoul stops at a NUL, accepts a sign and leading zeros, and an empty string is 0.
    """
    nul = raw.find(b"\0")
    if nul >= 0:
        raw = raw[:nul]
    if not raw:
        return
    if not _CURSOR_RE.match(raw) or int(raw.lstrip(b"+-")) > _ULONG_MAX:
        raise CommandError("ERR invalid cursor")


def parse_scan_options(argv: list[bytes], start: int) -> re.Pattern[bytes] | None:
    """COUNT/MATCH options of HSCAN/SSCAN; the compiled MATCH pattern, None if it is `*`."""
    pattern: bytes | None = None
    i, n = start, len(argv)
    while i < n:
        opt = argv[i].lower()
        if opt == b"count" and i + 1 < n:
            if parse_int(argv[i + 1]) < 1:
                raise CommandError(SYNTAX)
        elif opt == b"match" and i + 1 < n:
            pattern = argv[i + 1]
        else:
            raise CommandError(SYNTAX)
        i += 2
    if pattern is None or pattern == b"*":
        return None
    return compile_glob(pattern)


def parse_range_long(raw: bytes) -> int:
    """getRangeLongFromObjectOrReply(-LONG_MAX, LONG_MAX) with Redis's own wording."""
    value = parse_int(raw)
    if value == INT64_MIN:
        raise CommandError(
            f"ERR value is out of range, value must between {-_LONG_MAX} and {_LONG_MAX}"
        )
    return value


# --------------------------------------------------------------------------- x87 long double
#
# A finite long double is an exact binary value m * 2**q (m a signed int); rounding to the
# x87 80-bit format (64-bit significand, exponents down to 2**-16382, subnormals below) is
# done with integers, so results are bit-identical to redis-server on x86-64 Linux.

_LD_BITS = 64
_LD_EMIN = -16382
_LD_MAX_BITLEN = 16384  # |v| >= 2**16384 overflows
_LD_LIMIT = 5 * 1024  # MAX_LONG_DOUBLE_CHARS: string2ld refuses strings this long
_INF = (1, 1 << 30)  # an explicit infinity; no finite value has so large an exponent
_LD_RE = re.compile(
    rb"([+-]?)(?:(inf(?:inity)?)"
    rb"|0x([0-9a-f]*)(?:\.([0-9a-f]*))?(?:p([+-]?[0-9]+))?"
    rb"|([0-9]*)(?:\.([0-9]*))?(?:e([+-]?[0-9]+))?)\Z",
    re.IGNORECASE,
)
_POW10_17 = 10**17
_CHUNK = 4000  # below Python's int <-> decimal str digit limit
_TEN_CHUNK: int = 10**_CHUNK


def _ld_round(num: int, den: int) -> tuple[int, int]:
    """num/den (both > 0) rounded to nearest-even long double: (m, q), m may be 0."""
    e = num.bit_length() - den.bit_length()
    if (num < (den << e)) if e >= 0 else ((num << -e) < den):
        e -= 1
    q = (e if e > _LD_EMIN else _LD_EMIN) - (_LD_BITS - 1)
    if q >= 0:
        m, r = divmod(num, den << q)
        d = den << q
    else:
        m, r = divmod(num << -q, den)
        d = den
    r <<= 1
    if r > d or (r == d and m & 1):
        m += 1
    return m, q


def _big_int(digits: bytes) -> int:
    if len(digits) <= _CHUNK:
        return int(digits) if digits else 0
    low = digits[-_CHUNK:]
    return _big_int(digits[:-_CHUNK]) * _TEN_CHUNK + int(low)


def _big_digits(n: int) -> bytes:
    if n < _TEN_CHUNK:
        return b"%d" % n
    high, low = divmod(n, _TEN_CHUNK)
    return _big_digits(high) + (b"%d" % low).rjust(_CHUNK, b"0")


def _exponent(raw: bytes | None) -> int:
    """An exponent, clamped to a magnitude that already over/underflows everything."""
    if not raw:
        return 0
    body = raw.lstrip(b"+-").lstrip(b"0")
    value = (int(body) if len(body) < 10 else 10**9) if body else 0
    return -value if raw[:1] == b"-" else value


def parse_long_double(raw: bytes) -> tuple[int, int] | None:
    """string2ld: strtold over the whole string, refusing NaN, overflow and underflow to 0.

    Returns (m, q) meaning m * 2**q, or the `_INF` sentinel for an explicit infinity.
    """
    if not raw or len(raw) >= _LD_LIMIT:
        return None
    match = _LD_RE.match(raw)
    if match is None:
        return None
    sign, inf, hex_int, hex_frac, hex_exp, dec_int, dec_frac, dec_exp = match.groups()
    if inf is not None:
        return _INF
    if hex_int is not None:
        digits = hex_int + (hex_frac or b"")
        if not digits:
            return None
        mant = int(digits, 16)
        exp2 = _exponent(hex_exp) - 4 * len(hex_frac or b"")
        if mant == 0:
            return 0, 0
        size = mant.bit_length() + exp2
        if size > _LD_MAX_BITLEN:
            return None
        if size < _LD_EMIN - _LD_BITS - 2:
            return None
        if exp2 >= 0:
            m, q = _ld_round(mant << exp2, 1)
        else:
            m, q = _ld_round(mant, 1 << -exp2)
    else:
        digits = (dec_int + (dec_frac or b"")).lstrip(b"0")
        if not dec_int and not dec_frac:
            return None
        if not digits:
            return 0, 0
        exp10 = _exponent(dec_exp) - len(dec_frac or b"")
        stripped = digits.rstrip(b"0")
        exp10 += len(digits) - len(stripped)
        size = len(stripped) + exp10  # value < 10**size
        if size > 4934:
            return None
        if size < -4953:
            return None
        mant = _big_int(stripped)
        if exp10 >= 0:
            m, q = _ld_round(mant * 10**exp10, 1)
        else:
            m, q = _ld_round(mant, 10**-exp10)
    if m == 0 or m.bit_length() + q > _LD_MAX_BITLEN:
        return None
    return (-m if sign == b"-" else m), q


def ld_add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int] | None:
    """a + b rounded to long double; None when it overflows to infinity."""
    (ma, qa), (mb, qb) = a, b
    q = qa if qa < qb else qb
    total = (ma << (qa - q)) + (mb << (qb - q))
    if total == 0:
        return 0, 0
    mag = -total if total < 0 else total
    if q >= 0:
        m, q = _ld_round(mag << q, 1)
    else:
        m, q = _ld_round(mag, 1 << -q)
    if m.bit_length() + q > _LD_MAX_BITLEN:
        return None
    return (-m if total < 0 else m), q


def format_long_double(value: tuple[int, int]) -> bytes:
    """ld2string(LD_STR_HUMAN): "%.17Lf" (exact, ties to even), trailing zeros dropped."""
    m, q = value
    if m == 0:
        return b"0"
    mag = -m if m < 0 else m
    if q >= 0:
        scaled = (mag << q) * _POW10_17
    else:
        den = 1 << -q
        scaled, rem = divmod(mag * _POW10_17, den)
        rem <<= 1
        if rem > den or (rem == den and scaled & 1):
            scaled += 1
    text = _big_digits(scaled).rjust(18, b"0")
    whole, frac = text[:-17], text[-17:].rstrip(b"0")
    out = whole + b"." + frac if frac else whole
    if m < 0 and out != b"0":
        out = b"-" + out
    return out


# --------------------------------------------------------------------------- writes


@command("hset")
def hset(ctx: Context, argv: list[bytes]) -> object:
    if len(argv) % 2:
        raise wrong_arity("hset")
    h = _lookup_or_create(ctx.ks, argv[1])
    before = len(h)
    h.update(zip(argv[2::2], argv[3::2], strict=True))
    return len(h) - before


@command("hmset")
def hmset(ctx: Context, argv: list[bytes]) -> object:
    if len(argv) % 2:
        raise wrong_arity("hmset")
    _lookup_or_create(ctx.ks, argv[1]).update(zip(argv[2::2], argv[3::2], strict=True))
    return OK


@command("hsetnx")
def hsetnx(ctx: Context, argv: list[bytes]) -> object:
    h = _lookup_or_create(ctx.ks, argv[1])
    field = argv[2]
    if field in h:
        return 0
    h[field] = argv[3]
    return 1


@command("hdel")
def hdel(ctx: Context, argv: list[bytes]) -> object:
    ks = ctx.ks
    h = _lookup(ks, argv[1])
    if h is None:
        return 0
    removed = 0
    pop = h.pop
    for field in islice(argv, 2, None):
        if pop(field, None) is not None:
            removed += 1
    ks.remove_if_empty(argv[1], h)
    return removed


@command("hincrby")
def hincrby(ctx: Context, argv: list[bytes]) -> object:
    incr = parse_int(argv[3])
    h = _lookup_or_create(ctx.ks, argv[1])
    field = argv[2]
    old = h.get(field)
    if old is None:
        value = 0
    else:
        parsed = try_int(old)
        if parsed is None:
            raise CommandError("ERR hash value is not an integer")
        value = parsed
    result = value + incr
    if not INT64_MIN <= result <= INT64_MAX:
        raise CommandError(OVERFLOW)
    h[field] = b"%d" % result
    return result


@command("hincrbyfloat")
def hincrbyfloat(ctx: Context, argv: list[bytes]) -> object:
    """Computed in long double as Redis does; logged as HSET of the result it stored."""
    incr = parse_long_double(argv[3])
    if incr is None:
        raise CommandError(NOT_FLOAT)
    if incr == _INF:
        raise CommandError("ERR value is NaN or Infinity")
    key, field = argv[1], argv[2]
    h = _lookup_or_create(ctx.ks, key)
    old = h.get(field)
    result: tuple[int, int] | None = incr
    if old is not None:
        value = parse_long_double(old)
        if value is None:
            raise CommandError("ERR hash value is not a float")
        result = None if value == _INF else ld_add(value, incr)
    if result is None:
        raise CommandError("ERR increment would produce NaN or Infinity")
    text = format_long_double(result)
    h[field] = text
    ctx.rewrite([b"HSET", key, field, text])
    return text


# --------------------------------------------------------------------------- reads


@command("hget")
def hget(ctx: Context, argv: list[bytes]) -> object:
    h = _lookup(ctx.ks, argv[1])
    return None if h is None else h.get(argv[2])


@command("hmget")
def hmget(ctx: Context, argv: list[bytes]) -> object:
    h = _lookup(ctx.ks, argv[1])
    if h is None:
        return [None] * (len(argv) - 2)
    get = h.get
    return [get(field) for field in islice(argv, 2, None)]


@command("hexists")
def hexists(ctx: Context, argv: list[bytes]) -> object:
    h = _lookup(ctx.ks, argv[1])
    return 1 if h is not None and argv[2] in h else 0


@command("hlen")
def hlen(ctx: Context, argv: list[bytes]) -> object:
    h = _lookup(ctx.ks, argv[1])
    return 0 if h is None else len(h)


@command("hstrlen")
def hstrlen(ctx: Context, argv: list[bytes]) -> object:
    h = _lookup(ctx.ks, argv[1])
    if h is None:
        return 0
    value = h.get(argv[2])
    return 0 if value is None else len(value)


@command("hgetall")
def hgetall(ctx: Context, argv: list[bytes]) -> object:
    h = _lookup(ctx.ks, argv[1])
    return Map() if h is None else Map(h.items())


@command("hkeys")
def hkeys(ctx: Context, argv: list[bytes]) -> object:
    h = _lookup(ctx.ks, argv[1])
    return [] if h is None else list(h)


@command("hvals")
def hvals(ctx: Context, argv: list[bytes]) -> object:
    h = _lookup(ctx.ks, argv[1])
    return [] if h is None else list(h.values())


@command("hscan")
def hscan(ctx: Context, argv: list[bytes]) -> object:
    """The whole hash in one reply with cursor 0, as Redis does for listpack hashes."""
    parse_scan_cursor(argv[2])
    h = _lookup(ctx.ks, argv[1])
    if h is None:
        return _EMPTY_SCAN
    pattern = parse_scan_options(argv, 3)
    if pattern is None:
        return [b"0", list(chain.from_iterable(h.items()))]
    match = pattern.match
    out: list[bytes] = []
    for field, value in h.items():
        if match(field) is not None:
            out.append(field)
            out.append(value)
    return [b"0", out]


@command("hrandfield")
def hrandfield(ctx: Context, argv: list[bytes]) -> object:
    n = len(argv)
    if n == 2:
        h = _lookup(ctx.ks, argv[1])
        if h is None or not h:
            return None
        return next(islice(h, random.randrange(len(h)), None))
    count = parse_range_long(argv[2])
    withvalues = False
    if n > 4 or (n == 4 and argv[3].lower() != b"withvalues"):
        raise CommandError(SYNTAX)
    if n == 4:
        withvalues = True
        if not -(_LONG_MAX // 2) <= count <= _LONG_MAX // 2:
            raise CommandError("ERR value is out of range")
    h = _lookup(ctx.ks, argv[1])
    if h is None or count == 0:
        return []
    size = len(h)
    if count < 0 or count == 1:
        # Repeats allowed (or a single pick): independent uniform picks, in random order.
        k = -count if count < 0 else 1
        check_random_picks(k)
        if not withvalues:
            return random.choices(list(h), k=k)
        picked: list[tuple[bytes, bytes]] = random.choices(list(h.items()), k=k)
    elif count >= size:
        if not withvalues:
            return list(h)
        picked = list(h.items())
    else:
        if not withvalues:
            return random.sample(list(h), count)
        picked = random.sample(list(h.items()), count)
    if ctx.resp3:
        return [list(pair) for pair in picked]
    return list(chain.from_iterable(picked))

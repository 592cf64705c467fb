"""String commands: GET SET SETNX SETEX PSETEX GETSET GETDEL GETEX MGET MSET MSETNX APPEND
STRLEN GETRANGE SETRANGE INCR DECR INCRBY DECRBY INCRBYFLOAT.

GET and plain SET are the benchmark's hot path, so they take the shortest route to the
keyspace. Argument checks follow Redis's order (e.g. SET validates its expire time before
looking at the key), because that order decides which error a client sees.

Log rewriting makes every write deterministic: relative expire times are logged as
`SET key value PXAT <absolute ms>` / `PEXPIREAT`, INCRBYFLOAT as `SET key <result> KEEPTTL`,
GETDEL as `DEL`, and writes that changed nothing are not logged at all.

INCRBYFLOAT uses C `long double` arithmetic in Redis. Python has no such type, so it is
emulated exactly with integers (see the "long double" section below).
"""

from __future__ import annotations

import platform
import re
from typing import TYPE_CHECKING

from pgserver.commands import command
from pgserver.commands._util import (
    INT64_MAX,
    INT64_MIN,
    NOT_FLOAT,
    NOT_INTEGER,
    OVERFLOW,
    SYNTAX,
    parse_int,
    try_int,
    wrong_arity,
)
from tessera.errors import CommandError
from tessera.resp import OK

if TYPE_CHECKING:
    from pgserver.context import Context

OFFSET_RANGE = "ERR offset is out of range"
TOO_BIG = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
DECR_OVERFLOW = "ERR decrement would overflow"
NAN_OR_INF = "ERR increment would produce NaN or Infinity"

_SET = b"SET"
_PXAT_ARG = b"PXAT"
_KEEPTTL_ARG = b"KEEPTTL"
_DEL = b"DEL"

# SET / GETEX option flags (Redis's OBJ_SET_* / OBJ_* flags).
_NX = 1
_XX = 2
_GET = 4
_KEEPTTL = 8
_PERSIST = 16
_EX = 32
_PX = 64
_EXAT = 128
_PXAT = 256
_SECONDS = _EX | _EXAT
_RELATIVE = _EX | _PX

# Option name -> (flag, flags that must not be set already, takes a value, SET only).
# The "must not be set" masks are exactly Redis's parseExtendedStringArgumentsOrReply
# conditions: e.g. EX may repeat (the last value wins) but not follow PX.
_OPTIONS: dict[bytes, tuple[int, int, bool, bool]] = {
    b"NX": (_NX, _XX, False, True),
    b"XX": (_XX, _NX, False, True),
    b"GET": (_GET, 0, False, True),
    b"KEEPTTL": (_KEEPTTL, _PERSIST | _EX | _EXAT | _PX | _PXAT, False, True),
    b"EX": (_EX, _KEEPTTL | _PERSIST | _EXAT | _PX | _PXAT, True, False),
    b"PX": (_PX, _KEEPTTL | _PERSIST | _EX | _EXAT | _PXAT, True, False),
    b"EXAT": (_EXAT, _KEEPTTL | _PERSIST | _EX | _PX | _PXAT, True, False),
    b"PXAT": (_PXAT, _KEEPTTL | _PERSIST | _EX | _EXAT | _PX, True, False),
}
_PERSIST_BLOCKERS = _EX | _EXAT | _PX | _PXAT | _KEEPTTL


def _parse_options(argv: list[bytes], start: int, for_set: bool) -> tuple[int, bytes | None]:
    """SET/GETEX options from argv[start:]: (flags, raw expire value or None)."""
    flags = 0
    expire: bytes | None = None
    n = len(argv)
    j = start
    while j < n:
        opt = argv[j].upper()
        spec = _OPTIONS.get(opt)
        if spec is not None:
            flag, blockers, takes_value, set_only = spec
            if flags & blockers or (set_only and not for_set) or (takes_value and j + 1 >= n):
                raise CommandError(SYNTAX)
            flags |= flag
            if takes_value:
                j += 1
                expire = argv[j]
        elif opt == b"PERSIST" and not for_set and not flags & _PERSIST_BLOCKERS:
            flags |= _PERSIST
        else:
            raise CommandError(SYNTAX)
        j += 1
    return flags, expire


def _expire_at(ctx: Context, raw: bytes, flags: int, name: str) -> int:
    """The absolute expire time in ms, validated as Redis's getExpireMillisecondsOrReply."""
    ms = parse_int(raw)
    if ms <= 0 or (flags & _SECONDS and ms > INT64_MAX // 1000):
        raise CommandError(f"ERR invalid expire time in '{name}' command")
    if flags & _SECONDS:
        ms *= 1000
    if flags & _RELATIVE:
        ms += ctx.ks.now
        if ms > INT64_MAX:  # Redis sees the signed overflow as a negative time
            raise CommandError(f"ERR invalid expire time in '{name}' command")
    return ms


def _store_with_expire(ctx: Context, key: bytes, value: bytes, when: int) -> None:
    """Store `value` expiring at `when`, logged as SET key value PXAT when.

    A time already past stores and expires at once (the keyspace's lazy expiry, counted
    and logged as any expiry), which is what Redis 7.0 does on the next access; replaying
    the logged SET does the same, so the replayed keyspace matches.
    """
    ks = ctx.ks
    ks.set(key, value)
    ks.set_expire(key, when)
    if when < ks.now:
        ks.get(key)
    ctx.rewrite([_SET, key, value, _PXAT_ARG, b"%d" % when])


# --------------------------------------------------------------------------- get / set


@command("get")
def get(ctx: Context, argv: list[bytes]) -> object:
    return ctx.ks.get_string(argv[1])


@command("set")
def set_(ctx: Context, argv: list[bytes]) -> object:
    if len(argv) == 3:
        ctx.ks.set(argv[1], argv[2])
        return OK
    return _set_with_options(ctx, argv)


def _set_with_options(ctx: Context, argv: list[bytes]) -> object:
    """SET with NX XX GET KEEPTTL EX PX EXAT PXAT, in Redis's setGenericCommand order."""
    flags, raw_expire = _parse_options(argv, 3, True)
    when = _expire_at(ctx, raw_expire, flags, "set") if raw_expire is not None else None
    ks = ctx.ks
    key, value = argv[1], argv[2]
    old: bytes | None = None
    if flags & _GET:
        old = ks.get_string(key)
        found = old is not None
    elif flags & (_NX | _XX):
        found = ks.get(key) is not None
    else:
        found = False
    if (flags & _NX and found) or (flags & _XX and not found):
        ctx.rewrite()
        return old
    if when is not None:
        _store_with_expire(ctx, key, value, when)
    elif flags & _KEEPTTL:
        ks.set(key, value, keep_ttl=True)
        ctx.rewrite([_SET, key, value, _KEEPTTL_ARG])
    else:
        ks.set(key, value)
        ctx.rewrite([_SET, key, value])
    return old if flags & _GET else OK


@command("setnx")
def setnx(ctx: Context, argv: list[bytes]) -> object:
    ks = ctx.ks
    key = argv[1]
    if ks.get(key) is not None:
        ctx.rewrite()
        return 0
    ks.add_new(key, argv[2])
    return 1


@command("setex")
def setex(ctx: Context, argv: list[bytes]) -> object:
    _store_with_expire(ctx, argv[1], argv[3], _expire_at(ctx, argv[2], _EX, "setex"))
    return OK


@command("psetex")
def psetex(ctx: Context, argv: list[bytes]) -> object:
    _store_with_expire(ctx, argv[1], argv[3], _expire_at(ctx, argv[2], _PX, "psetex"))
    return OK


@command("getset")
def getset(ctx: Context, argv: list[bytes]) -> object:
    ks = ctx.ks
    old = ks.get_string(argv[1])
    ks.set(argv[1], argv[2])
    return old


@command("getdel")
def getdel(ctx: Context, argv: list[bytes]) -> object:
    ks = ctx.ks
    key = argv[1]
    old = ks.get_string(key)
    if old is None:
        ctx.rewrite()
    else:
        ks.delete(key)
        ctx.rewrite([_DEL, key])
    return old


@command("getex")
def getex(ctx: Context, argv: list[bytes]) -> object:
    """GET with EX PX EXAT PXAT PERSIST; logged as PEXPIREAT, DEL or PERSIST (or nothing)."""
    flags, raw_expire = _parse_options(argv, 2, False) if len(argv) > 2 else (0, None)
    ks = ctx.ks
    key = argv[1]
    value = ks.get_string(key)
    if value is None:
        ctx.rewrite()
        return None
    if raw_expire is not None:
        when = _expire_at(ctx, raw_expire, flags, "getex")
        if not flags & _RELATIVE and when <= ks.now:
            ks.delete(key)
            ctx.rewrite([_DEL, key])
        else:
            ks.set_expire(key, when)
            ctx.rewrite([b"PEXPIREAT", key, b"%d" % when])
    elif flags & _PERSIST and ks.persist(key):
        ctx.rewrite([b"PERSIST", key])
    else:
        ctx.rewrite()
    return value


# --------------------------------------------------------------------------- multi-key


@command("mget")
def mget(ctx: Context, argv: list[bytes]) -> object:
    get_value = ctx.ks.get
    out: list[bytes | None] = []
    append = out.append
    for key in argv[1:]:
        value = get_value(key)
        append(value if type(value) is bytes else None)
    return out


def _check_pairs(argv: list[bytes], name: str) -> None:
    if not len(argv) & 1:
        raise wrong_arity(name)


@command("mset")
def mset(ctx: Context, argv: list[bytes]) -> object:
    _check_pairs(argv, "mset")
    set_value = ctx.ks.set
    for i in range(1, len(argv), 2):
        set_value(argv[i], argv[i + 1])
    return OK


@command("msetnx")
def msetnx(ctx: Context, argv: list[bytes]) -> object:
    _check_pairs(argv, "msetnx")
    ks = ctx.ks
    get_value = ks.get
    for i in range(1, len(argv), 2):
        if get_value(argv[i]) is not None:
            ctx.rewrite()
            return 0
    set_value = ks.set
    for i in range(1, len(argv), 2):
        set_value(argv[i], argv[i + 1])
    return 1


# --------------------------------------------------------------------------- byte ranges


def _check_length(ctx: Context, size: int) -> None:
    if size > ctx.server.config.max_bulk_bytes:
        raise CommandError(TOO_BIG)


@command("append")
def append(ctx: Context, argv: list[bytes]) -> object:
    ks = ctx.ks
    key, suffix = argv[1], argv[2]
    value = ks.get_string(key)
    if value is None:
        ks.add_new(key, suffix)
        return len(suffix)
    total = len(value) + len(suffix)
    _check_length(ctx, total)
    if suffix:
        ks.data[key] = value + suffix
    return total


@command("strlen")
def strlen(ctx: Context, argv: list[bytes]) -> object:
    value = ctx.ks.get_string(argv[1])
    return 0 if value is None else len(value)


@command("getrange")
def getrange(ctx: Context, argv: list[bytes]) -> object:
    start = parse_int(argv[2])
    end = parse_int(argv[3])
    value = ctx.ks.get_string(argv[1])
    if value is None:
        return b""
    if start < 0 and end < 0 and start > end:
        return b""
    n = len(value)
    if start < 0:
        start = max(start + n, 0)
    if end < 0:
        end = max(end + n, 0)
    if end >= n:
        end = n - 1
    if start > end or n == 0:
        return b""
    return value[start : end + 1]


@command("setrange")
def setrange(ctx: Context, argv: list[bytes]) -> object:
    offset = parse_int(argv[2])
    if offset < 0:
        raise CommandError(OFFSET_RANGE)
    ks = ctx.ks
    key, patch = argv[1], argv[3]
    value = ks.get_string(key)
    if not patch:
        ctx.rewrite()
        return 0 if value is None else len(value)
    end = offset + len(patch)
    _check_length(ctx, end)
    if value is None:
        ks.add_new(key, bytes(offset) + patch)
        return end
    size = len(value)
    if offset > size:
        new = value + bytes(offset - size) + patch
    else:
        new = value[:offset] + patch + value[end:]
    ks.data[key] = new
    return len(new)


# --------------------------------------------------------------------------- counters


def _incr_by(ctx: Context, key: bytes, delta: int) -> int:
    """Redis's incrDecrCommand: the TTL is kept, the result must fit in 64 bits."""
    ks = ctx.ks
    value = ks.get_string(key)
    if value is None:
        ks.add_new(key, b"%d" % delta)
        return delta
    current = try_int(value)
    if current is None:
        raise CommandError(NOT_INTEGER)
    result = current + delta
    if result > INT64_MAX or result < INT64_MIN:
        raise CommandError(OVERFLOW)
    ks.data[key] = b"%d" % result
    return result


@command("incr")
def incr(ctx: Context, argv: list[bytes]) -> object:
    return _incr_by(ctx, argv[1], 1)


@command("decr")
def decr(ctx: Context, argv: list[bytes]) -> object:
    return _incr_by(ctx, argv[1], -1)


@command("incrby")
def incrby(ctx: Context, argv: list[bytes]) -> object:
    return _incr_by(ctx, argv[1], parse_int(argv[2]))


@command("decrby")
def decrby(ctx: Context, argv: list[bytes]) -> object:
    delta = parse_int(argv[2])
    if delta == INT64_MIN:
        raise CommandError(DECR_OVERFLOW)
    return _incr_by(ctx, argv[1], -delta)


@command("incrbyfloat")
def incrbyfloat(ctx: Context, argv: list[bytes]) -> object:
    """Logged as SET key <result> KEEPTTL, so replay does not redo float arithmetic."""
    ks = ctx.ks
    key = argv[1]
    value = ks.get_string(key)
    current = _ZERO if value is None else _ld_parse(value)
    delta = _ld_parse(argv[2])
    if current is None or delta is None:
        raise CommandError(NAN_OR_INF)
    total = _ld_add(current, delta)
    if total is None:
        raise CommandError(NAN_OR_INF)
    result = _ld_format(total)
    if value is None:
        ks.add_new(key, result)
    else:
        ks.data[key] = result
    ctx.rewrite([_SET, key, result, _KEEPTTL_ARG])
    return result


# --------------------------------------------------------------------------- long double
#
# A finite long double is held exactly as (m, e) meaning m * 2**e (m a signed int), and
# every operation rounds to nearest-even at the platform's precision, as the FPU does:
# x86 extended precision (64-bit significand) on x86, IEEE quad (113 bits) elsewhere
# (aarch64 Linux), and plain double on platforms whose long double is a double. Infinity
# is None. Parsing follows glibc strtold as wrapped by Redis's string2ld; formatting
# follows printf("%.17Lf") with Redis's trailing-zero trimming (ld2string, LD_STR_HUMAN).

LongDouble = tuple[int, int]

_machine = platform.machine().lower()
if _machine in ("x86_64", "amd64", "i386", "i686", "x86"):
    _LD_BITS, _LD_EMAX = 64, 16384  # significand bits; values must stay below 2**_LD_EMAX
elif _machine in ("aarch64", "arm64", "s390x", "riscv64", "ppc64le"):
    _LD_BITS, _LD_EMAX = 113, 16384
else:
    _LD_BITS, _LD_EMAX = 53, 1024
_LD_QMIN = 3 - _LD_EMAX - _LD_BITS  # exponent of the smallest subnormal
# Decimal exponents (of the leading digit) beyond which a value surely over/underflows.
_DEC_MAX = int(_LD_EMAX * 0.30103) + 1
_DEC_MIN = int(_LD_QMIN * 0.30103) - 2
_MAX_LD_CHARS = 5 * 1024  # Redis's MAX_LONG_DOUBLE_CHARS: longer inputs are refused

_ZERO: LongDouble = (0, 0)
_DECIMAL = re.compile(rb"([+-]?)(?:([0-9]+)(?:\.([0-9]*))?|\.([0-9]+))(?:[eE]([+-]?[0-9]+))?")
_HEX = re.compile(
    rb"([+-]?)0[xX](?:([0-9a-fA-F]+)(?:\.([0-9a-fA-F]*))?|\.([0-9a-fA-F]+))(?:[pP]([+-]?[0-9]+))?"
)
_INF = re.compile(rb"[+-]?(?:inf|infinity)", re.IGNORECASE)
_CHUNK_DIGITS = 4000  # stays under Python's int<->str digit limit
_CHUNK: int = 10**_CHUNK_DIGITS
_TEN17: int = 10**17


def _ld_round(num: int, den: int) -> LongDouble | None:
    """num/den (both > 0) rounded to the nearest long double; None when it overflows."""
    e = num.bit_length() - den.bit_length()
    if (num < den << e) if e >= 0 else (num << -e < den):
        e -= 1
    q = max(e - _LD_BITS + 1, _LD_QMIN)  # exponent of one unit in the last place
    if q >= 0:
        den <<= q
    else:
        num <<= -q
    m, r = divmod(num, den)
    r <<= 1
    if r > den or (r == den and m & 1):
        m += 1
    if m.bit_length() + q > _LD_EMAX:
        return None
    return m, q


def _exponent(raw: bytes | None) -> int:
    """A strtold exponent, saturated far beyond any long double's range."""
    if not raw:
        return 0
    digits = raw.lstrip(b"+-").lstrip(b"0")
    value = int(digits) if 0 < len(digits) <= 9 else (0 if not digits else 10**9)
    return -value if raw[:1] == b"-" else value


def _big_int(digits: bytes) -> int:
    """int(digits) for strings longer than Python's int<->str digit limit."""
    if len(digits) <= _CHUNK_DIGITS:
        return int(digits)
    head, tail = digits[:-_CHUNK_DIGITS], digits[-_CHUNK_DIGITS:]
    return _big_int(head) * _CHUNK + int(tail)


def _ld_parse(raw: bytes) -> LongDouble | None:
    """A stored value or argument as strtold reads it; None for +-inf.

    Raises "value is not a valid float" exactly where Redis's string2ld fails: empty, too
    long, spaces or junk, NaN, and results that overflow or underflow to zero.
    """
    if not raw or len(raw) >= _MAX_LD_CHARS:
        raise CommandError(NOT_FLOAT)
    match = _DECIMAL.fullmatch(raw)
    if match is not None:
        sign, whole, frac, only_frac, exp = match.groups()
        digits = (whole or b"") + (frac or b"") + (only_frac or b"")
        scale = len(frac or only_frac or b"")
        return _ld_from_parts(sign, digits, _exponent(exp) - scale, 10)
    match = _HEX.fullmatch(raw)
    if match is not None:
        sign, whole, frac, only_frac, exp = match.groups()
        digits = (whole or b"") + (frac or b"") + (only_frac or b"")
        scale = len(frac or only_frac or b"")
        return _ld_from_parts(sign, digits, _exponent(exp) - 4 * scale, 16)
    if _INF.fullmatch(raw) is not None:
        return None
    raise CommandError(NOT_FLOAT)


def _ld_from_parts(sign: bytes, digits: bytes, exp: int, base: int) -> LongDouble:
    """digits * 10**exp (base 10) or digits * 2**exp (base 16), rounded; errors as strtold."""
    digits = digits.lstrip(b"0")
    if not digits:
        return _ZERO
    stripped = digits.rstrip(b"0")
    if base == 10:
        exp += len(digits) - len(stripped)
        lead = exp + len(stripped) - 1  # decimal exponent of the leading digit
        if lead > _DEC_MAX or lead < _DEC_MIN:
            raise CommandError(NOT_FLOAT)
        mantissa = _big_int(stripped)
        if exp >= 0:
            rounded = _ld_round(mantissa * 10**exp, 1)
        else:
            rounded = _ld_round(mantissa, 10**-exp)
    else:
        mantissa = int(digits, 16)
        lead = exp + mantissa.bit_length()
        if lead > _LD_EMAX + 1 or lead < _LD_QMIN - 1:
            raise CommandError(NOT_FLOAT)
        rounded = _ld_round(mantissa << exp, 1) if exp >= 0 else _ld_round(mantissa, 1 << -exp)
    if rounded is None or rounded[0] == 0:  # ERANGE: overflow, or underflow to zero
        raise CommandError(NOT_FLOAT)
    m, e = rounded
    return (-m, e) if sign == b"-" else (m, e)


def _ld_add(a: LongDouble, b: LongDouble) -> LongDouble | None:
    """a + b rounded to a long double; None on overflow."""
    (ma, ea), (mb, eb) = a, b
    e = min(ea, eb)
    total = (ma << (ea - e)) + (mb << (eb - e))
    if total == 0:
        return _ZERO
    magnitude = -total if total < 0 else total
    if e >= 0:
        rounded = _ld_round(magnitude << e, 1)
    else:
        rounded = _ld_round(magnitude, 1 << -e)
    if rounded is None:
        return None
    return (-rounded[0], rounded[1]) if total < 0 else rounded


def _decimal(n: int) -> bytes:
    """str(n) for non-negative ints longer than Python's int<->str digit limit."""
    if n < _CHUNK:
        return b"%d" % n
    high, low = divmod(n, _CHUNK)
    return _decimal(high) + (b"%d" % low).rjust(_CHUNK_DIGITS, b"0")


def _ld_format(value: LongDouble) -> bytes:
    """printf("%.17Lf") without trailing zeros (and "-0" as "0"), as Redis's ld2string."""
    m, e = value
    negative = m < 0
    if negative:
        m = -m
    if e >= 0:
        scaled = (m << e) * _TEN17
    else:
        shift = -e
        product = m * _TEN17
        scaled = product >> shift
        rest = product - (scaled << shift)
        half = 1 << (shift - 1)
        if rest > half or (rest == half and scaled & 1):
            scaled += 1
    text = _decimal(scaled)
    if len(text) > 17:
        whole, frac = text[:-17], text[-17:].rstrip(b"0")
    else:
        whole, frac = b"0", text.rjust(17, b"0").rstrip(b"0")
    out = whole + b"." + frac if frac else whole
    if negative and out != b"0":
        return b"-" + out
    return out

"""Generic key commands: DEL UNLINK EXISTS TOUCH TYPE RENAME RENAMENX RANDOMKEY KEYS SCAN
OBJECT, and expiry: EXPIRE PEXPIRE EXPIREAT PEXPIREAT TTL PTTL EXPIRETIME PEXPIRETIME PERSIST.

Expiry writes are logged in their absolute form (PEXPIREAT key <ms>), or as DEL when the
deadline was already past and the key got deleted, so replaying the log is deterministic.
Writes that changed nothing log nothing.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from pgserver.commands import command
from pgserver.commands._util import (
    INT64_MAX,
    SYNTAX,
    parse_int,
    try_int,
    unknown_subcommand,
    wrong_arity,
)
from pgserver.glob import compile_glob
from pgserver.keyspace import TYPE_NAMES, Value
from pgserver.zset import ZSet
from tessera.errors import CommandError
from tessera.resp import OK, SimpleString

if TYPE_CHECKING:
    from pgserver.context import Context

_TYPE_REPLIES: dict[type, SimpleString] = {t: SimpleString(n) for t, n in TYPE_NAMES.items()}
_NONE = SimpleString(b"none")
_NO_SUCH_KEY = "ERR no such key"


# ---------------------------------------------------------------------------- existence


def _delete(ctx: Context, argv: list[bytes]) -> int:
    delete = ctx.ks.delete
    deleted = 0
    for key in argv[1:]:
        if delete(key):
            deleted += 1
    if not deleted:
        ctx.rewrite()
    return deleted


@command("del")
def del_(ctx: Context, argv: list[bytes]) -> object:
    return _delete(ctx, argv)


@command("unlink")
def unlink(ctx: Context, argv: list[bytes]) -> object:
    return _delete(ctx, argv)


def _count_live(ctx: Context, argv: list[bytes]) -> int:
    """How many of the arguments name live keys; a repeated key counts each time."""
    get = ctx.ks.get
    found = 0
    for key in argv[1:]:
        if get(key) is not None:
            found += 1
    return found


@command("exists")
def exists(ctx: Context, argv: list[bytes]) -> object:
    return _count_live(ctx, argv)


@command("touch")
def touch(ctx: Context, argv: list[bytes]) -> object:
    # Tessera keeps no access times, so touching is just counting.
    return _count_live(ctx, argv)


@command("type")
def type_(ctx: Context, argv: list[bytes]) -> object:
    value = ctx.ks.get(argv[1])
    return _NONE if value is None else _TYPE_REPLIES[type(value)]


# ---------------------------------------------------------------------------- expiry

_NX, _XX, _GT, _LT = 1, 2, 4, 8
_EXPIRE_FLAGS = {b"nx": _NX, b"xx": _XX, b"gt": _GT, b"lt": _LT}
# C's LLONG_MIN / 1000 truncates towards zero.
_MIN_SECONDS = -(2**63 // 1000)
_MAX_SECONDS = INT64_MAX // 1000


def _c_string(raw: bytes) -> str:
    """An argument as Redis prints it with %s: up to the first NUL byte."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _expire_flags(argv: list[bytes]) -> int:
    flags = 0
    for opt in argv[3:]:
        flag = _EXPIRE_FLAGS.get(opt.lower())
        if flag is None:
            raise CommandError(f"ERR Unsupported option {_c_string(opt)}")
        flags |= flag
    if flags & _NX and flags & (_XX | _GT | _LT):
        raise CommandError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if flags & _GT and flags & _LT:
        raise CommandError("ERR GT and LT options at the same time are not compatible")
    return flags


def _expire(ctx: Context, argv: list[bytes], name: str, relative: bool, seconds: bool) -> int:
    """expireGenericCommand: set, or refuse, a deadline; a deadline already past deletes."""
    flags = _expire_flags(argv) if len(argv) > 3 else 0
    when = parse_int(argv[2])
    if seconds:
        if when > _MAX_SECONDS or when < _MIN_SECONDS:
            raise CommandError(f"ERR invalid expire time in '{name}' command")
        when *= 1000
    ks = ctx.ks
    if relative:
        now = ks.now
        if when > INT64_MAX - now:
            raise CommandError(f"ERR invalid expire time in '{name}' command")
        when += now
    key = argv[1]
    if ks.get(key) is None:
        ctx.rewrite()
        return 0
    if flags:
        current = ks.get_expire(key)
        if (
            (flags & _NX and current is not None)
            or (flags & _XX and current is None)
            or (flags & _GT and (current is None or when <= current))
            or (flags & _LT and current is not None and when >= current)
        ):
            ctx.rewrite()
            return 0
    if when <= ks.now:
        ks.delete(key)
        ctx.rewrite([b"DEL", key])
        return 1
    ks.set_expire(key, when)
    ctx.rewrite([b"PEXPIREAT", key, b"%d" % when])
    return 1


@command("expire")
def expire(ctx: Context, argv: list[bytes]) -> object:
    return _expire(ctx, argv, "expire", relative=True, seconds=True)


@command("pexpire")
def pexpire(ctx: Context, argv: list[bytes]) -> object:
    return _expire(ctx, argv, "pexpire", relative=True, seconds=False)


@command("expireat")
def expireat(ctx: Context, argv: list[bytes]) -> object:
    return _expire(ctx, argv, "expireat", relative=False, seconds=True)


@command("pexpireat")
def pexpireat(ctx: Context, argv: list[bytes]) -> object:
    return _expire(ctx, argv, "pexpireat", relative=False, seconds=False)


def _ttl(ctx: Context, key: bytes, absolute: bool, millis: bool) -> int:
    """ttlGenericCommand: -2 missing, -1 no deadline; seconds are rounded to nearest."""
    ks = ctx.ks
    if ks.get(key) is None:
        return -2
    when = ks.get_expire(key)
    if when is None:
        return -1
    if not absolute:
        when -= ks.now
        if when < 0:
            when = 0
    return when if millis else (when + 500) // 1000


@command("ttl")
def ttl(ctx: Context, argv: list[bytes]) -> object:
    return _ttl(ctx, argv[1], absolute=False, millis=False)


@command("pttl")
def pttl(ctx: Context, argv: list[bytes]) -> object:
    return _ttl(ctx, argv[1], absolute=False, millis=True)


@command("expiretime")
def expiretime(ctx: Context, argv: list[bytes]) -> object:
    return _ttl(ctx, argv[1], absolute=True, millis=False)


@command("pexpiretime")
def pexpiretime(ctx: Context, argv: list[bytes]) -> object:
    return _ttl(ctx, argv[1], absolute=True, millis=True)


@command("persist")
def persist(ctx: Context, argv: list[bytes]) -> object:
    ks = ctx.ks
    key = argv[1]
    if ks.get(key) is not None and ks.persist(key):
        return 1
    ctx.rewrite()
    return 0


# ---------------------------------------------------------------------------- rename


@command("rename")
def rename(ctx: Context, argv: list[bytes]) -> object:
    ks = ctx.ks
    src, dst = argv[1], argv[2]
    if ks.get(src) is None:
        raise CommandError(_NO_SUCH_KEY)
    if src == dst:
        ctx.rewrite()
        return OK
    ks.rename(src, dst)
    return OK


@command("renamenx")
def renamenx(ctx: Context, argv: list[bytes]) -> object:
    ks = ctx.ks
    src, dst = argv[1], argv[2]
    if ks.get(src) is None:
        raise CommandError(_NO_SUCH_KEY)
    if src == dst or ks.get(dst) is not None:
        ctx.rewrite()
        return 0
    ks.rename(src, dst)
    return 1


# ---------------------------------------------------------------------------- iteration


@command("randomkey")
def randomkey(ctx: Context, argv: list[bytes]) -> object:
    return ctx.ks.random_key()


@command("keys")
def keys(ctx: Context, argv: list[bytes]) -> object:
    ks = ctx.ks
    pattern = argv[1]
    if pattern == b"*":
        found = list(ks.visible_keys())
    else:
        match = compile_glob(pattern).match
        found = [key for key in ks.visible_keys() if match(key)]
    expires = ks.expires
    if expires and found:
        # KEYS hides expired keys but, like Redis, does not delete them.
        now = ks.now
        get = expires.get
        found = [key for key in found if get(key, now) >= now]
    return found


_ULONG_LIMIT = 2**64
_SPACES = frozenset(b" \t\n\v\f\r")


def _scan_cursor(raw: bytes) -> int:
    """The cursor as Redis reads it with strtoul(): sign allowed, -1 wraps, no spaces."""
    if raw and raw[0] in _SPACES:
        raise CommandError("ERR invalid cursor")
    text = raw.split(b"\0", 1)[0] if b"\0" in raw else raw
    if not text:
        return 0
    negative = text[0] == 0x2D
    digits = text[1:] if text[0] in (0x2B, 0x2D) else text
    if not digits.isdigit():
        raise CommandError("ERR invalid cursor")
    value = int(digits)
    if value >= _ULONG_LIMIT:
        raise CommandError("ERR invalid cursor")
    return (-value) % _ULONG_LIMIT if negative else value


@command("scan")
def scan(ctx: Context, argv: list[bytes]) -> object:
    cursor = _scan_cursor(argv[1])
    count = 10
    pattern: bytes | None = None
    kind: bytes | None = None
    i, n = 2, len(argv)
    while i < n:
        if i + 1 >= n:
            raise CommandError(SYNTAX)
        opt = argv[i].lower()
        if opt == b"count":
            count = parse_int(argv[i + 1])
            if count < 1:
                raise CommandError(SYNTAX)
        elif opt == b"match":
            pattern = argv[i + 1]
            if pattern == b"*":
                pattern = None
        elif opt == b"type":
            kind = argv[i + 1].lower()
        else:
            raise CommandError(SYNTAX)
        i += 2
    ks = ctx.ks
    next_cursor, found = ks.scan(cursor, count)
    if pattern is not None:
        match = compile_glob(pattern).match
        found = [key for key in found if match(key)]
    if kind is not None:
        names = TYPE_NAMES
        get = ks.get
        found = [key for key in found if names.get(type(get(key))) == kind]
    elif ks.expires:
        get = ks.get
        found = [key for key in found if get(key) is not None]
    return [b"%d" % next_cursor, found]


# ---------------------------------------------------------------------------- OBJECT

_OBJECT_HELP = [
    SimpleString(line)
    for line in (
        b"OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        b"ENCODING <key>",
        b"    Return the kind of internal representation used in order to store the value",
        b"    associated with a <key>.",
        b"FREQ <key>",
        b"    Return the access frequency index of the <key>. The returned integer is",
        b"    proportional to the logarithm of the recent access frequency of the key.",
        b"IDLETIME <key>",
        b"    Return the idle time of the <key>, that is the approximated number of",
        b"    seconds elapsed since the last access to the key.",
        b"REFCOUNT <key>",
        b"    Return the number of references of the value associated with the specified",
        b"    <key>.",
        b"HELP",
        b"    Prints this help.",
    )
]
_OBJECT_KEY_SUBCOMMANDS = {b"encoding", b"freq", b"idletime", b"refcount"}
_LFU_ERROR = (
    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note "
    "that when switching between policies at runtime LRU and LFU data will take some time to "
    "adjust."
)
_IDLETIME_ERROR = "ERR OBJECT IDLETIME is not supported by Tessera: key access times are not kept"
# Redis 7.0.15 defaults: hash-max-listpack-entries/value, set-max-intset-entries,
# OBJ_ENCODING_EMBSTR_SIZE_LIMIT, OBJ_SHARED_INTEGERS.
_HASH_MAX_ENTRIES, _HASH_MAX_VALUE = 512, 64
_INTSET_MAX_ENTRIES = 512
_EMBSTR_LIMIT = 44
_SHARED_INTEGERS = 10000
_SHARED_REFCOUNT = 2147483647


def encoding_of(value: Value) -> bytes:
    """The encoding Redis 7.0 would report for a value with this content.

    Sorted sets track their encoding themselves. For the other types Tessera keeps no
    history: Redis never converts a hash or set back to its compact encoding when it
    shrinks, and APPEND/SETRANGE make strings "raw", but here the answer comes from the
    current content, which is what Redis reports for values built by plain writes.
    """
    kind = type(value)
    if kind is bytes:
        text: bytes = value  # type: ignore[assignment]
        if len(text) <= 20 and try_int(text) is not None:
            return b"int"
        return b"embstr" if len(text) <= _EMBSTR_LIMIT else b"raw"
    if kind is dict:
        fields: dict[bytes, bytes] = value  # type: ignore[assignment]
        if len(fields) > _HASH_MAX_ENTRIES:
            return b"hashtable"
        for field, item in fields.items():
            if len(field) > _HASH_MAX_VALUE or len(item) > _HASH_MAX_VALUE:
                return b"hashtable"
        return b"listpack"
    if kind is deque:
        return b"quicklist"
    if kind is set:
        members: set[bytes] = value  # type: ignore[assignment]
        if len(members) > _INTSET_MAX_ENTRIES:
            return b"hashtable"
        for member in members:
            if len(member) > 20 or try_int(member) is None:
                return b"hashtable"
        return b"intset"
    if kind is ZSet:
        zset: ZSet = value  # type: ignore[assignment]
        return zset.encoding  # tracked by ZSet itself, one-way conversion included
    raise TypeError(f"no encoding for {kind.__name__}")


def _refcount(value: Value) -> int:
    """Small integers are shared objects in Redis and report the shared refcount."""
    if type(value) is bytes and len(value) <= 4:
        number = try_int(value)
        if number is not None and 0 <= number < _SHARED_INTEGERS:
            return _SHARED_REFCOUNT
    return 1


@command("object")
def object_(ctx: Context, argv: list[bytes]) -> object:
    sub = argv[1].lower()
    if sub == b"help":
        if len(argv) != 2:
            raise wrong_arity("object|help")
        return _OBJECT_HELP
    if sub not in _OBJECT_KEY_SUBCOMMANDS:
        raise unknown_subcommand(argv[1][:128], "object")
    if len(argv) != 3:
        raise wrong_arity("object|" + sub.decode())
    value = ctx.ks.get(argv[2])
    if value is None:
        return None
    if sub == b"encoding":
        return encoding_of(value)
    if sub == b"refcount":
        return _refcount(value)
    if sub == b"freq":
        raise CommandError(_LFU_ERROR)
    raise CommandError(_IDLETIME_ERROR)

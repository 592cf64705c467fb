"""How the gateway treats each command: answer locally, route by key, split, fan out, refuse."""

from __future__ import annotations

from enum import Enum
from typing import Final

from tessera.command_table import COMMANDS


class Kind(Enum):
    LOCAL = 1  # answered by the gateway itself
    SINGLE = 2  # one key: route by its partition
    SPLIT = 3  # many keys: split per backend, merge the replies
    SAME_SLOT = 4  # many keys that must share one partition (hash tags), else CROSSSLOT
    FANOUT = 5  # keyless, asks every backend
    UNSUPPORTED = 6


LOCAL = {
    "ping",
    "echo",
    "hello",
    "auth",
    "select",
    "quit",
    "client",
    "command",
    "info",
    "time",
    "config",
}
SPLIT = {"mget", "mset", "del", "unlink", "exists", "touch"}
FANOUT = {"dbsize", "keys", "scan", "flushall", "flushdb", "randomkey"}
PER_NODE = {"bgsave", "save", "lastsave"}

# Redis commands a gateway deliberately refuses, and why (shown to the user).
UNSUPPORTED_REASONS = {
    "multi": "transactions",
    "exec": "transactions",
    "discard": "transactions",
    "watch": "transactions",
    "unwatch": "transactions",
    "eval": "scripting",
    "evalsha": "scripting",
    "eval_ro": "scripting",
    "evalsha_ro": "scripting",
    "script": "scripting",
    "fcall": "scripting",
    "fcall_ro": "scripting",
    "function": "scripting",
    "subscribe": "pub/sub",
    "psubscribe": "pub/sub",
    "ssubscribe": "pub/sub",
    "unsubscribe": "pub/sub",
    "punsubscribe": "pub/sub",
    "publish": "pub/sub",
    "spublish": "pub/sub",
    "pubsub": "pub/sub",
    "blpop": "blocking commands",
    "brpop": "blocking commands",
    "blmove": "blocking commands",
    "brpoplpush": "blocking commands",
    "blmpop": "blocking commands",
    "bzpopmin": "blocking commands",
    "bzpopmax": "blocking commands",
    "bzmpop": "blocking commands",
    "wait": "blocking commands",
    "migrate": "cluster administration",
    "move": "multiple databases",
    "swapdb": "multiple databases",
    "cluster": "cluster administration",
    "readonly": "cluster administration",
    "readwrite": "cluster administration",
    "monitor": "server administration",
    "shutdown": "server administration",
    "debug": "server administration",
    "slaveof": "server administration",
    "replicaof": "server administration",
    "sync": "server administration",
    "psync": "server administration",
    "failover": "server administration",
    "bgsave": "per-node persistence",
    "save": "per-node persistence",
    "lastsave": "per-node persistence",
    "bgrewriteaof": "per-node persistence",
}


def classify(name: str) -> Kind:
    if name in LOCAL:
        return Kind.LOCAL
    if name in SPLIT:
        return Kind.SPLIT
    if name in FANOUT:
        return Kind.FANOUT
    spec = COMMANDS.get(name)
    if spec is None or name in UNSUPPORTED_REASONS:
        return Kind.UNSUPPORTED
    _arity, flags, first, last, _step = spec
    if "movablekeys" in flags or (first > 0 and last != first):
        return Kind.SAME_SLOT
    if first == 1:
        return Kind.SINGLE
    return Kind.UNSUPPORTED


# name (as sent, any case we expect) -> Kind; unknown spellings fall back to .lower()
KINDS: Final[dict[bytes, Kind]] = {}
for _name in COMMANDS:
    KINDS[_name.encode()] = KINDS[_name.upper().encode()] = classify(_name)


def unsupported_error(name: bytes) -> str:
    text = name.decode("utf-8", "replace").lower()
    reason = UNSUPPORTED_REASONS.get(text)
    if reason is not None:
        return f"ERR command '{text}' is not supported by the Tessera gateway ({reason})"
    if text in COMMANDS:
        return f"ERR command '{text}' is not supported by the Tessera gateway"
    return ""  # not a Redis command at all: the caller uses Redis's unknown-command text

"""Regenerate tessera/command_table.py from a running redis-server's COMMAND INFO / DOCS.

Why: arity, flags and key positions must match Redis exactly (clients and the gateway
rely on them), so they are copied from the reference server rather than typed by hand.
Usage: python scripts/gen_command_table.py PORT
"""

from __future__ import annotations

import json
import pprint
import socket
import sys
from typing import Any

import hiredis

SUPPORTED = [
    "ping",
    "echo",
    "hello",
    "auth",
    "select",
    "quit",
    "client",
    "command",
    "info",
    "config",
    "time",
    "dbsize",
    "flushdb",
    "flushall",
    "bgsave",
    "save",
    "lastsave",
    "del",
    "unlink",
    "exists",
    "touch",
    "type",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "ttl",
    "pttl",
    "expiretime",
    "pexpiretime",
    "persist",
    "rename",
    "renamenx",
    "randomkey",
    "keys",
    "scan",
    "object",
    "get",
    "set",
    "setnx",
    "setex",
    "psetex",
    "getset",
    "getdel",
    "getex",
    "mget",
    "mset",
    "msetnx",
    "append",
    "strlen",
    "getrange",
    "setrange",
    "incr",
    "decr",
    "incrby",
    "decrby",
    "incrbyfloat",
    "hset",
    "hsetnx",
    "hget",
    "hmset",
    "hmget",
    "hdel",
    "hexists",
    "hlen",
    "hgetall",
    "hkeys",
    "hvals",
    "hincrby",
    "hincrbyfloat",
    "hstrlen",
    "hscan",
    "hrandfield",
    "lpush",
    "rpush",
    "lpushx",
    "rpushx",
    "lpop",
    "rpop",
    "llen",
    "lrange",
    "lindex",
    "lset",
    "linsert",
    "lrem",
    "ltrim",
    "lpos",
    "lmove",
    "rpoplpush",
    "sadd",
    "srem",
    "smembers",
    "sismember",
    "smismember",
    "scard",
    "spop",
    "srandmember",
    "smove",
    "sinter",
    "sunion",
    "sdiff",
    "sinterstore",
    "sunionstore",
    "sdiffstore",
    "sintercard",
    "sscan",
    "zadd",
    "zrem",
    "zscore",
    "zmscore",
    "zincrby",
    "zcard",
    "zcount",
    "zrange",
    "zrangebyscore",
    "zrevrange",
    "zrevrangebyscore",
    "zrangebylex",
    "zrevrangebylex",
    "zlexcount",
    "zrank",
    "zrevrank",
    "zremrangebyrank",
    "zremrangebyscore",
    "zremrangebylex",
    "zpopmin",
    "zpopmax",
    "zrandmember",
    "zscan",
    "zunionstore",
    "zinterstore",
]


def to_text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [to_text(v) for v in value]
    if isinstance(value, dict):
        return {to_text(k): to_text(v) for k, v in value.items()}
    return value


def main() -> None:
    port = int(sys.argv[1])
    sock = socket.create_connection(("127.0.0.1", port))

    def call(*args: str) -> Any:
        return call_raw(*args)[0]

    def call_raw(*args: str) -> tuple[Any, bytes]:
        """The parsed reply and its raw RESP2 bytes."""
        sock.sendall(hiredis.pack_command(tuple[Any, ...](args)))
        reader = hiredis.Reader()
        raw = b""
        while True:
            reply = reader.gets()
            if reply is not False:
                return reply, raw
            chunk = sock.recv(1 << 20)
            raw += chunk
            reader.feed(chunk)

    table: dict[str, tuple[int, tuple[str, ...], int, int, int]] = {}
    subcommands: dict[str, list[str]] = {}
    infos: list[list[Any]] = call("COMMAND", "INFO", *SUPPORTED)
    for info in infos:
        name, arity, flags, first, last, step = (to_text(x) for x in info[:6])
        table[name] = (arity, tuple(flags), first, last, step)
        subs = info[9] if len(info) > 9 else []
        if subs:
            subcommands[name] = sorted(to_text(s[0]).split("|")[1] for s in subs)
    with open("tessera/command_table.py", "w") as out:
        out.write(
            '"""Command metadata copied from redis-server 7.0 (scripts/gen_command_table.py).\n\n'
        )
        out.write(
            "Generated; do not edit by hand.\n"
            "Each entry: arity, flags, first key, last key, key step.\n"
        )
        out.write('"""\n\n')
        out.write("COMMANDS: dict[str, tuple[int, tuple[str, ...], int, int, int]] = ")
        out.write(pprint.pformat(table, width=100, sort_dicts=True))
        out.write("\n\nSUBCOMMANDS: dict[str, list[str]] = ")
        out.write(pprint.pformat(subcommands, width=100, sort_dicts=True))
        out.write("\n")
    raw_replies: dict[str, dict[str, str]] = {"info": {}, "docs": {}}
    for name in SUPPORTED:
        _, info_raw = call_raw("COMMAND", "INFO", name)
        raw_replies["info"][name] = info_raw[len(b"*1\r\n") :].decode("latin-1")
        _, docs_raw_one = call_raw("COMMAND", "DOCS", name)
        header = b"*2\r\n$%d\r\n%s\r\n" % (len(name), name.encode())
        assert docs_raw_one.startswith(header), name
        raw_replies["docs"][name] = docs_raw_one[len(header) :].decode("latin-1")
    with open("tessera/command_replies.json", "w") as out:
        json.dump(raw_replies, out, separators=(",", ":"), sort_keys=True)
    print(len(table), "commands")


if __name__ == "__main__":
    main()

"""Server commands: COMMAND INFO CONFIG TIME DBSIZE FLUSHDB FLUSHALL."""

from __future__ import annotations

import json
import os
import resource
import time
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from pgserver.commands import TABLE, command
from pgserver.commands._util import unknown_subcommand, wrong_arity
from pgserver.glob import glob_match
from tessera import __version__
from tessera.command_table import COMMANDS
from tessera.compiled import loaded_compiled
from tessera.errors import CommandError
from tessera.gcstats import GC_PAUSES
from tessera.resp import OK, Map, RawReply

if TYPE_CHECKING:
    from pgserver.context import Context


@cache
def _raw_replies() -> dict[str, dict[str, str]]:
    text = resources.files("tessera").joinpath("command_replies.json").read_text()
    loaded: dict[str, dict[str, str]] = json.loads(text)
    return loaded


def _implemented() -> list[str]:
    return sorted({entry.name for entry in TABLE.values()})


def _info_reply(name: str) -> object:
    raw = _raw_replies()["info"].get(name)
    return RawReply(raw.encode("latin-1")) if raw is not None else None


@command("command")
def command_(ctx: Context, argv: list[bytes]) -> object:
    if len(argv) == 1:
        return [_info_reply(name) for name in _implemented()]
    sub = argv[1].lower()
    if sub == b"count" and len(argv) == 2:
        return len(_implemented())
    if sub == b"list" and len(argv) == 2:
        return [name.encode() for name in _implemented()]
    if sub == b"info":
        names = [a.decode("utf-8", "replace").lower() for a in argv[2:]] or _implemented()
        return [
            _info_reply(name) if name in COMMANDS and name.encode() in TABLE else None
            for name in names
        ]
    if sub == b"docs":
        names = [a.decode("utf-8", "replace").lower() for a in argv[2:]] or _implemented()
        docs = _raw_replies()["docs"]
        return Map(
            [
                (name.encode(), RawReply(docs[name].encode("latin-1")))
                for name in names
                if name in docs and name.encode() in TABLE
            ]
        )
    if sub in (b"count", b"list"):
        raise wrong_arity("command|" + sub.decode())
    raise unknown_subcommand(argv[1], "command")


_CONFIG = {
    b"maxmemory": b"0",
    b"maxmemory-policy": b"noeviction",
    b"save": b"",
    b"appendonly": b"no",
    b"databases": b"1",
    b"cluster-enabled": b"no",
    b"proto-max-bulk-len": None,
    b"maxclients": None,
    b"port": None,
    b"bind": None,
    b"timeout": b"0",
}


@command("config")
def config(ctx: Context, argv: list[bytes]) -> object:
    sub = argv[1].lower()
    if sub == b"get":
        if len(argv) < 3:
            raise wrong_arity("config|get")
        cfg = ctx.server.config
        values = dict(_CONFIG)
        values[b"proto-max-bulk-len"] = str(cfg.max_bulk_bytes).encode()
        values[b"maxclients"] = str(cfg.max_clients).encode()
        values[b"port"] = str(ctx.server.port).encode()
        values[b"bind"] = cfg.bind.encode()
        pairs: list[tuple[object, object]] = []
        for name, value in values.items():
            if any(glob_match(p.lower(), name) for p in argv[2:]):
                pairs.append((name, value))
        return Map(pairs)
    if sub in (b"set", b"resetstat", b"rewrite"):
        raise CommandError(
            f"ERR CONFIG {sub.decode().upper()} is not supported by Tessera; "
            "pgserver settings come from its command line"
        )
    raise unknown_subcommand(argv[1], "config")


@command("time")
def time_(ctx: Context, argv: list[bytes]) -> object:
    now_us = time.time_ns() // 1000
    return [str(now_us // 1_000_000).encode(), str(now_us % 1_000_000).encode()]


@command("dbsize")
def dbsize(ctx: Context, argv: list[bytes]) -> object:
    return ctx.ks.visible_len()


def _flush(ctx: Context, argv: list[bytes]) -> object:
    if len(argv) > 2 or (len(argv) == 2 and argv[1].lower() not in (b"async", b"sync")):
        raise CommandError("ERR syntax error")
    ctx.ks.flush()
    return OK


@command("flushdb")
def flushdb(ctx: Context, argv: list[bytes]) -> object:
    return _flush(ctx, argv)


@command("flushall")
def flushall(ctx: Context, argv: list[bytes]) -> object:
    return _flush(ctx, argv)


def info_sections(ctx: Context) -> dict[str, list[tuple[str, object]]]:
    """INFO's sections as ordered (field, value) lists; other modules may add sections."""
    server = ctx.server
    ks = ctx.ks
    usage = resource.getrusage(resource.RUSAGE_SELF)
    uptime = int(time.time() - server.started_at)
    visible = ks.visible_len()
    return {
        "Server": [
            ("redis_version", "7.0.15"),
            ("tessera_version", __version__),
            ("tessera_compiled_modules", len(loaded_compiled())),
            ("redis_mode", "standalone"),
            ("os", os.uname().sysname),
            ("process_id", os.getpid()),
            ("tcp_port", server.port),
            ("uptime_in_seconds", uptime),
            ("uptime_in_days", uptime // 86400),
        ],
        "Clients": [
            ("connected_clients", len(server.clients)),
            ("maxclients", server.config.max_clients),
        ],
        "Memory": [
            ("used_memory", usage.ru_maxrss * 1024),
            ("used_memory_peak", usage.ru_maxrss * 1024),
            ("maxmemory", 0),
            ("maxmemory_policy", "noeviction"),
        ],
        "Persistence": [
            *server.durability.info_fields(),
            ("rdb_changes_since_last_save", server.dirty),
        ],
        "Stats": [
            ("total_connections_received", server.connections_received),
            ("total_commands_processed", server.commands_processed),
            ("rejected_connections", server.rejected_connections),
            ("expired_keys", ks.expired_keys),
            *GC_PAUSES.info_fields(),
        ],
        "Replication": server.replication.info_fields(),
        "CPU": [
            ("used_cpu_sys", f"{usage.ru_stime:.6f}"),
            ("used_cpu_user", f"{usage.ru_utime:.6f}"),
        ],
        "Migration": server.migration.info_fields(),
        "Keyspace": (
            [("db0", f"keys={visible},expires={len(ks.expires)},avg_ttl=0")] if visible else []
        ),
    }


@command("info")
def info(ctx: Context, argv: list[bytes]) -> object:
    sections = info_sections(ctx)
    wanted = {a.decode("utf-8", "replace").lower() for a in argv[1:]}
    everything = not wanted or wanted & {"all", "everything", "default"}
    chunks: list[str] = []
    for title, fields in sections.items():
        if not everything and title.lower() not in wanted:
            continue
        lines = [f"# {title}"] + [f"{k}:{v}" for k, v in fields]
        chunks.append("\r\n".join(lines) + "\r\n")
    return "\r\n".join(chunks).encode()

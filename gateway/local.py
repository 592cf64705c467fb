"""Commands the gateway answers itself (connection state, introspection)."""

from __future__ import annotations

import hmac
import json
import os
import resource
import time
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from gateway.commands import KINDS, Kind
from tessera import __version__
from tessera.compiled import loaded_compiled
from tessera.gcstats import GC_PAUSES
from tessera.metrics import by_command
from tessera.resp import Map, RawReply, encode, encode_error

if TYPE_CHECKING:
    from gateway.server import Client, GatewayServer

_OK = b"+OK\r\n"
_WRONGPASS = encode_error("WRONGPASS invalid username-password pair or user is disabled.")


@cache
def _raw_replies() -> dict[str, dict[str, str]]:
    loaded: dict[str, dict[str, str]] = json.loads(
        resources.files("tessera").joinpath("command_replies.json").read_text()
    )
    return loaded


def _supported() -> list[str]:
    names = {n.decode().lower() for n, kind in KINDS.items() if kind is not Kind.UNSUPPORTED}
    return sorted(n for n in names if n in _raw_replies()["info"])


def _valid_name(name: bytes) -> bool:
    return all(0x21 <= c <= 0x7E for c in name)


class LocalCommands:
    def __init__(self, server: GatewayServer) -> None:
        self.server = server

    def execute(self, client: Client, name: str, argv: list[bytes]) -> bytes:
        handler = getattr(self, "cmd_" + name)
        reply: bytes = handler(client, argv)
        return reply

    def cmd_ping(self, client: Client, argv: list[bytes]) -> bytes:
        if len(argv) > 2:
            return encode_error("ERR wrong number of arguments for 'ping' command")
        return encode(argv[1], client.resp3) if len(argv) == 2 else b"+PONG\r\n"

    def cmd_echo(self, client: Client, argv: list[bytes]) -> bytes:
        return encode(argv[1], client.resp3)

    def cmd_quit(self, client: Client, argv: list[bytes]) -> bytes:
        client.closing = True
        return _OK

    def cmd_select(self, client: Client, argv: list[bytes]) -> bytes:
        if argv[1] == b"0":
            return _OK
        if argv[1].lstrip(b"-").isdigit():
            return encode_error("ERR DB index is out of range")
        return encode_error("ERR value is not an integer or out of range")

    def _check_password(self, client: Client, user: bytes, password: bytes) -> bool:
        expected = self.server.config.requirepass
        ok = (
            expected is not None
            and user == b"default"
            and hmac.compare_digest(password, expected.encode())
        )
        client.authenticated = client.authenticated or ok
        return ok

    def cmd_auth(self, client: Client, argv: list[bytes]) -> bytes:
        if len(argv) > 3:
            return encode_error("ERR syntax error")
        if self.server.config.requirepass is None and len(argv) == 2:
            return encode_error(
                "ERR AUTH <password> called without any password configured for the default "
                "user. Are you sure your configuration is correct?"
            )
        user, password = (b"default", argv[1]) if len(argv) == 2 else (argv[1], argv[2])
        return _OK if self._check_password(client, user, password) else _WRONGPASS

    def cmd_hello(self, client: Client, argv: list[bytes]) -> bytes:
        version = 3 if client.resp3 else 2
        i = 1
        if len(argv) > 1:
            if not argv[1].isdigit():
                return encode_error("ERR Protocol version is not an integer or out of range")
            version = int(argv[1])
            if version not in (2, 3):
                return encode_error("NOPROTO unsupported protocol version")
            i = 2
        name = None
        while i < len(argv):
            opt = argv[i].lower()
            if opt == b"auth" and i + 2 < len(argv):
                if not self._check_password(client, argv[i + 1], argv[i + 2]):
                    return _WRONGPASS
                i += 3
            elif opt == b"setname" and i + 1 < len(argv):
                name = argv[i + 1]
                i += 2
            else:
                return encode_error(
                    f"ERR Syntax error in HELLO option '{argv[i].decode('utf-8', 'replace')}'"
                )
        if not client.authenticated:
            return encode_error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise "
                "the HELLO AUTH <user> <pass> option can be used to authenticate the client and "
                "select the RESP protocol version at the same time"
            )
        if name is not None:
            client.name = name
        client.resp3 = version == 3
        return encode(
            Map(
                [
                    (b"server", b"redis"),
                    (b"version", b"7.0.15"),
                    (b"proto", version),
                    (b"id", client.id),
                    (b"mode", b"cluster-proxy"),
                    (b"role", b"master"),
                    (b"modules", []),
                ]
            ),
            client.resp3,
        )

    def cmd_client(self, client: Client, argv: list[bytes]) -> bytes:
        sub = argv[1].lower()
        n = len(argv)
        if sub == b"id" and n == 2:
            return b":%d\r\n" % client.id
        if sub == b"getname" and n == 2:
            return encode(client.name or None, client.resp3)
        if sub == b"setname" and n == 3:
            if not _valid_name(argv[2]):
                return encode_error(
                    "ERR Client names cannot contain spaces, newlines or special characters."
                )
            client.name = argv[2]
            return _OK
        if sub == b"setinfo" and n == 4:
            attr = argv[2].lower()
            if attr == b"lib-name":
                client.lib_name = argv[3]
            elif attr == b"lib-ver":
                client.lib_ver = argv[3]
            else:
                return encode_error(
                    f"ERR Unrecognized option '{argv[2].decode('utf-8', 'replace')}'"
                )
            return _OK
        if sub in (b"info", b"list") and n == 2:
            clients = [client] if sub == b"info" else list(self.server.clients.values())
            lines = b"".join(
                b"id=%d name=%b resp=%d lib-name=%b lib-ver=%b\n"
                % (c.id, c.name, 3 if c.resp3 else 2, c.lib_name, c.lib_ver)
                for c in clients
            )
            return encode(lines, client.resp3)
        text = argv[1].decode("utf-8", "replace")
        return encode_error(f"ERR unknown subcommand '{text}'. Try CLIENT HELP.")

    def cmd_command(self, client: Client, argv: list[bytes]) -> bytes:
        names = _supported()
        infos = _raw_replies()["info"]
        if len(argv) == 1:
            return encode([RawReply(infos[n].encode("latin-1")) for n in names], client.resp3)
        sub = argv[1].lower()
        if sub == b"count":
            return b":%d\r\n" % len(names)
        if sub == b"list":
            return encode([n.encode() for n in names], client.resp3)
        if sub == b"info":
            wanted = [a.decode("utf-8", "replace").lower() for a in argv[2:]] or names
            return encode(
                [RawReply(infos[n].encode("latin-1")) if n in names else None for n in wanted],
                client.resp3,
            )
        if sub == b"docs":
            docs = _raw_replies()["docs"]
            wanted = [a.decode("utf-8", "replace").lower() for a in argv[2:]] or names
            return encode(
                Map(
                    [
                        (n.encode(), RawReply(docs[n].encode("latin-1")))
                        for n in wanted
                        if n in names and n in docs
                    ]
                ),
                client.resp3,
            )
        text = argv[1].decode("utf-8", "replace")
        return encode_error(f"ERR unknown subcommand '{text}'. Try COMMAND HELP.")

    def cmd_time(self, client: Client, argv: list[bytes]) -> bytes:
        now_us = time.time_ns() // 1000
        return encode(
            [str(now_us // 1_000_000).encode(), str(now_us % 1_000_000).encode()], client.resp3
        )

    def cmd_config(self, client: Client, argv: list[bytes]) -> bytes:
        if argv[1].lower() == b"get":
            # The gateway has no Redis configuration of its own; answer the parameters
            # clients such as redis-benchmark ask about.
            known = {b"save": b"", b"appendonly": b"no"}
            wanted = {a.lower() for a in argv[2:]}
            pairs = [(k, v) for k, v in known.items() if k in wanted or b"*" in wanted]
            return encode(Map(pairs), client.resp3)
        return encode_error("ERR CONFIG is not supported by the Tessera gateway, except GET")

    def cmd_info(self, client: Client, argv: list[bytes]) -> bytes:
        server = self.server
        usage = resource.getrusage(resource.RUSAGE_SELF)
        errors = by_command(server.errors)
        uptime = int(time.time() - server.started_at)
        sections: dict[str, list[tuple[str, object]]] = {
            "Server": [
                ("redis_version", "7.0.15"),
                ("tessera_version", __version__),
                ("tessera_compiled_modules", len(loaded_compiled())),
                ("redis_mode", "cluster-proxy"),
                ("process_id", os.getpid()),
                ("tcp_port", server.port),
                ("admin_port", server.admin_port),
                ("uptime_in_seconds", uptime),
            ],
            "Clients": [
                ("connected_clients", len(server.clients)),
                ("maxclients", server.config.max_clients),
                ("held_requests", server.blocks.held_count),
                ("moving_held_requests", server.moving.count),
            ],
            "Stats": [
                ("total_connections_received", server.stats["connections_received"]),
                ("total_commands_processed", server.stats["commands_processed"]),
                ("rejected_connections", server.stats["rejected_connections"]),
                ("backend_errors", server.stats["backend_errors"]),
                ("total_held_requests", server.stats["held_requests"]),
                ("expired_holds", server.stats["expired_holds"]),
                *[
                    (name, server.stats[name])
                    for name in (
                        "moved_replies",
                        "moved_retries",
                        "moved_timeouts",
                        "moved_overflows",
                        "map_refreshes",
                        "map_refresh_updates",
                    )
                ],
                *GC_PAUSES.info_fields(),
            ],
            "Commandstats": [
                (f"cmdstat_{name}", f"calls={count},failed_calls={errors.get(name, 0)}")
                for name, count in sorted(by_command(server.calls).items())
            ],
            "Cluster": [
                ("map_version", server.map.version),
                ("backends", len(server.map.backends)),
                *[(f"range_{a}_{b}", backend.name) for (a, b), backend in server.map.ranges()],
                ("blocked_jobs", ",".join(server.blocks.jobs) or "-"),
            ],
            "CPU": [
                ("used_cpu_sys", f"{usage.ru_stime:.6f}"),
                ("used_cpu_user", f"{usage.ru_utime:.6f}"),
            ],
        }
        wanted = {a.decode("utf-8", "replace").lower() for a in argv[1:]}
        everything = not wanted or wanted & {"all", "everything", "default"}
        chunks = []
        for title, fields in sections.items():
            if everything or title.lower() in wanted:
                lines = [f"# {title}"] + [f"{k}:{v}" for k, v in fields]
                chunks.append("\r\n".join(lines) + "\r\n")
        return encode("\r\n".join(chunks).encode(), client.resp3)

"""Secrets and exposure checks shared by every service (pure: no sockets, no ZooKeeper).

Three secrets exist (docs/operations.md, "Security"):

- the *cluster secret*, which every internal port requires (pgservers, gateway admin ports,
  the confmaster API) and every internal client presents;
- a gateway's *requirepass*, the Redis password of application clients;
- optional ZooKeeper digest credentials (`user:password`) for the cluster's subtree.

Each can come from a file or an environment variable, so that it never appears on a command
line (`ps` shows those to every local user).
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import logging
import os
import secrets
import stat
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tessera.errors import ConfigError

log = logging.getLogger("tessera.security")

CLUSTER_SECRET_ENV = "TESSERA_CLUSTER_SECRET"
REQUIREPASS_ENV = "TESSERA_REQUIREPASS"
ZK_AUTH_ENV = "TESSERA_ZK_AUTH"


class ZkAuth(BaseModel):
    """ZooKeeper digest credentials; nodes created with them are the user's alone, plus
    read access for everyone when `world_read` (dashboards)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str = Field(min_length=1)
    password: str = Field(min_length=1, repr=False)
    world_read: bool = False

    @classmethod
    def parse(cls, text: str, world_read: bool = False) -> ZkAuth:
        user, sep, password = text.strip().partition(":")
        if not sep or not user or not password:
            raise ConfigError("ZooKeeper auth must be USER:PASSWORD")
        return cls(user=user, password=password, world_read=world_read)


NO_PASSWORD_ERROR = (
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)


def auth_accepted(line: bytes) -> bool:
    """Whether a server's reply line to our AUTH lets us go on: +OK, or Redis's error for
    a server that needs no password (a misconfiguration, but no reason to stop working)."""
    return line == b"+OK" or line == b"-" + NO_PASSWORD_ERROR.encode()


def secret_matches(given: bytes, expected: str | None) -> bool:
    """Constant-time comparison; nothing matches when no secret is configured."""
    return expected is not None and hmac.compare_digest(given, expected.encode())


def read_secret_file(path: Path, what: str) -> str:
    """The file's content without surrounding whitespace (a trailing newline is common)."""
    try:
        text = path.read_text()
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from exc
    secret = text.strip()
    if not secret:
        raise ConfigError(f"the {what} file {path} is empty")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "the %s file %s can be read by other users (mode %o); chmod 600 it",
            what,
            path,
            stat.S_IMODE(mode),
        )
    return secret


def resolve_secret(what: str, value: str | None, path: Path | None, env_name: str) -> str | None:
    """A secret from its flag, else its file, else the environment; None if none is given."""
    if value is not None and path is not None:
        raise ConfigError(f"give the {what} either directly or as a file, not both")
    if value is not None:
        if not value:
            raise ConfigError(f"the {what} is empty")
        return value
    if path is not None:
        return read_secret_file(path, what)
    from_env = os.environ.get(env_name)
    return from_env or None


def add_cluster_secret_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster-secret-file",
        type=Path,
        metavar="PATH",
        help=f"file holding the cluster secret that internal ports require and internal "
        f"clients present (or ${CLUSTER_SECRET_ENV})",
    )


def cluster_secret_from(args: argparse.Namespace) -> str | None:
    return resolve_secret("cluster secret", None, args.cluster_secret_file, CLUSTER_SECRET_ENV)


def add_requirepass_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--requirepass",
        help="password clients must AUTH with; visible in `ps`, prefer --requirepass-file "
        f"or ${REQUIREPASS_ENV}",
    )
    parser.add_argument(
        "--requirepass-file", type=Path, metavar="PATH", help="file holding that password"
    )


def requirepass_from(args: argparse.Namespace) -> str | None:
    return resolve_secret("requirepass", args.requirepass, args.requirepass_file, REQUIREPASS_ENV)


def add_zk_auth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--zk-auth-file",
        type=Path,
        metavar="PATH",
        help="file holding USER:PASSWORD, ZooKeeper digest credentials: nodes this service "
        f"creates are that user's only (or ${ZK_AUTH_ENV})",
    )
    parser.add_argument(
        "--zk-world-read",
        action="store_true",
        help="with ZooKeeper credentials, let anyone read (not change) the nodes created",
    )


def zk_auth_from(args: argparse.Namespace) -> ZkAuth | None:
    text = resolve_secret("ZooKeeper auth", None, args.zk_auth_file, ZK_AUTH_ENV)
    if text is None:
        if args.zk_world_read:
            raise ConfigError("--zk-world-read needs ZooKeeper credentials (--zk-auth-file)")
        return None
    return ZkAuth.parse(text, world_read=args.zk_world_read)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def exposure_warning(service: str, host: str, missing: dict[str, bool]) -> str | None:
    """The warning to log when `host` is reachable from other machines and a protection
    is missing (`missing` maps its name to True when it is absent), else None."""
    absent = [name for name, is_missing in missing.items() if is_missing]
    if is_loopback(host) or not absent:
        return None
    return (
        f"!!! SECURITY WARNING: {service} listens on {host}, reachable from other machines, "
        f"without {' and without '.join(absent)}: anyone who can reach it has full access. "
        "See docs/operations.md, section Security. !!!"
    )


def warn_if_exposed(service: str, host: str, missing: dict[str, bool]) -> None:
    warning = exposure_warning(service, host, missing)
    if warning is not None:
        log.warning(warning)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def write_secret_file(path: Path, secret: str) -> None:
    """Create `path` readable by its owner only (mode 0600 from the start, never wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")

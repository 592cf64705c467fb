"""A whole cluster of real processes for fault tests, and a write load that can be verified.

`LocalCluster` runs a confmaster on the session's ZooKeeper (own chroot), partition groups of
managed pgservers and one gateway following ZooKeeper. `WriteLoad` writes unique values
through the gateway from a thread, remembers which were acknowledged, and afterwards checks
that every key holds its last acknowledged value (or a later write whose reply was lost).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tessera.zkserver import ZooKeeperServer
from tests.procs import REPO, free_port, start_pgserver, stop, wait_for_port


def wait_until(condition: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = condition()
            if value:
                return value
        except (OSError, ValueError, KeyError, redis.RedisError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.02)


@dataclass
class Member:
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def id(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class LocalCluster:
    zk: ZooKeeperServer
    chroot: str
    tmp_path: Path
    pgs: int = 1
    replicas: int = 1
    name: str = "default"
    members: dict[str, Member] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    confmaster_port: int = 0
    gateway_port: int = 0
    log_level: str = "warning"
    # The cluster secret every process gets (and the test's clients present), and
    # ZooKeeper digest credentials USER:PASSWORD for the confmaster and the gateway.
    secret: str | None = None
    zk_auth: str | None = None
    log_files: bool = False  # confmaster and gateway log to TMP/<module>.log (log_text)
    confmaster_args: tuple[str, ...] = ()  # e.g. ("--log-json",)
    confmaster_log: Path | None = None  # the confmaster's stderr goes here if set

    # ------------------------------------------------------------------ lifecycle

    @property
    def secret_args(self) -> list[str]:
        if self.secret is None:
            return []
        path = self.tmp_path / "cluster.secret"
        if not path.exists():
            path.write_text(self.secret + "\n")
            path.chmod(0o600)
        return ["--cluster-secret-file", str(path)]

    @property
    def zk_args(self) -> list[str]:
        args = ["--zk", self.zk.address, "--zk-chroot", self.chroot]
        if self.zk_auth is None:
            return args
        path = self.tmp_path / "zk.auth"
        path.write_text(self.zk_auth)
        path.chmod(0o600)
        return [*args, "--zk-auth-file", str(path)]

    def start(self) -> LocalCluster:
        if not self.zk.running:
            self.zk.start()
        self.confmaster_port = free_port()
        self.confmaster = self._spawn(
            "confmaster",
            *self.zk_args,
            "--port",
            str(self.confmaster_port),
            *self.secret_args,
            *self.confmaster_args,
            stderr=self.confmaster_log,
        )
        wait_for_port(self.confmaster_port, self.confmaster)
        wait_until(lambda: self.api("GET", "/")["is_leader"], 20, "a confmaster leader")
        self.api("POST", "/clusters", {"name": self.name, "pgs": self.pgs})
        for pg in range(self.pgs):
            for i in range(1 + self.replicas):
                proc, port = start_pgserver(
                    self.tmp_path / f"pg{pg}-{i}", None, "--managed", *self.secret_args
                )
                member = Member(port, self.tmp_path / f"pg{pg}-{i}", proc)
                self.members[member.id] = member
                self.api(
                    "POST",
                    f"/clusters/{self.name}/pgservers",
                    {"pg": pg, "host": "127.0.0.1", "port": port},
                )
        for pg in range(self.pgs):
            wait_until(lambda pg=pg: self.in_sync(pg), 30, f"PG {pg} to replicate")
        self.gateway_port = free_port()
        self.gateway = self._spawn(
            "gateway",
            "--port",
            str(self.gateway_port),
            "--admin-port",
            "0",
            *self.zk_args,
            "--cluster",
            self.name,
            *self.secret_args,
        )
        wait_for_port(self.gateway_port, self.gateway)
        wait_until(lambda: self.client().set("ready", "1"), 10, "the gateway to serve")
        return self

    def _spawn(
        self, module: str, *args: str, stderr: Path | None = None
    ) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", module, *args, "--log-level", self.log_level]
        if stderr is None and self.log_files:
            stderr = self.tmp_path / f"{module}.log"
        if stderr is None:
            proc = subprocess.Popen(argv, cwd=REPO)
        else:
            with open(stderr, "ab") as sink:
                proc = subprocess.Popen(argv, cwd=REPO, stderr=sink)
        self.procs.append(proc)
        return proc

    def log_text(self, module: str) -> str:
        """What a process started with `log_files` has logged so far."""
        return (self.tmp_path / f"{module}.log").read_text()

    def stop(self) -> None:
        for member in self.members.values():
            if member.proc is not None:
                stop(member.proc)
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
            stop(proc)

    # ------------------------------------------------------------------ state

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        url = f"http://127.0.0.1:{self.confmaster_port}{path}"
        headers = {} if self.secret is None else {"Authorization": f"Bearer {self.secret}"}
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())

    def pg(self, pg: int) -> dict[str, Any]:
        status = self.api("GET", f"/clusters/{self.name}")
        record: dict[str, Any] = next(p for p in status["pgs"] if p["id"] == pg)
        return record

    def master(self, pg: int) -> Member:
        return self.members[self.pg(pg)["master"]]

    def info(self, member: Member) -> dict[str, Any]:
        client = redis.Redis(port=member.port, socket_timeout=2, password=self.secret)
        result: dict[str, Any] = client.info("all")
        return result

    def in_sync(self, pg: int) -> bool:
        """Every member up in its role at the record's epoch, the quorum at all slaves."""
        record = self.pg(pg)
        if record["master"] is None or len(record["members"]) != 1 + self.replicas:
            return False
        if record["quorum"] != self.replicas:
            return False
        for pgs_id in record["members"]:
            fields = self.info(self.members[pgs_id])
            role = "master" if pgs_id == record["master"] else "slave"
            if fields["role"] != role or fields["synced_epoch"] != record["epoch"]:
                return False
        return True

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(port=self.gateway_port, **{"socket_timeout": 5, **kwargs})

    # ------------------------------------------------------------------ faults

    def kill(self, member: Member, sig: signal.Signals = signal.SIGKILL) -> None:
        assert member.proc is not None
        member.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            member.proc.wait(10)
            member.proc = None

    def restart(self, member: Member) -> None:
        assert member.proc is None
        member.proc, _ = start_pgserver(
            member.data_dir, member.port, "--managed", *self.secret_args
        )


class WriteLoad(threading.Thread):
    """Unique values through the gateway; every acknowledgement is recorded."""

    def __init__(self, port: int, keys: int = 64) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.keys = [f"load:{i}" for i in range(keys)]
        self.acked: dict[str, str] = {}
        self.unsure: dict[str, list[str]] = {}  # values sent after the last acknowledged one
        self.successes: list[float] = []
        self.errors = 0
        self.halt = threading.Event()

    def run(self) -> None:
        client = redis.Redis(port=self.port, socket_timeout=5)
        n = 0
        while not self.halt.is_set():
            key = self.keys[n % len(self.keys)]
            value = f"{key}:{n}"
            n += 1
            self.unsure.setdefault(key, []).append(value)
            try:
                client.set(key, value)
            except redis.RedisError:
                self.errors += 1
                time.sleep(0.005)
                continue
            self.acked[key] = value
            self.unsure[key] = []
            self.successes.append(time.monotonic())

    def stop(self) -> None:
        self.halt.set()
        self.join(30)

    def first_success_after(self, moment: float, timeout_s: float) -> float:
        """Seconds from `moment` to the first write acknowledged after it."""

        def found() -> float | None:
            later = [t for t in self.successes[-1000:] if t > moment]
            return later[0] - moment if later else None

        value: float = wait_until(found, timeout_s, "a write to be acknowledged again")
        return value

    def verify(self, client: redis.Redis) -> list[str]:
        """Keys whose value is neither the last acknowledged one nor a later attempt."""
        problems = []
        for key in self.keys:
            raw = client.get(key)
            value = raw.decode() if isinstance(raw, bytes) else raw
            allowed = set(self.unsure.get(key, []))
            if key in self.acked:
                allowed.add(self.acked[key])
            else:
                allowed.add(None)  # type: ignore[arg-type]
            if value not in allowed:
                problems.append(f"{key}: has {value!r}, last acknowledged {self.acked.get(key)!r}")
        return problems


def reads_succeed(client: redis.Redis, keys: list[str]) -> bool:
    """True when every key can be read through the gateway. A gateway retries a backend that
    was down with backoff (up to --max-reconnect-backoff-ms, 2 s by default), so a master
    that just came back may still be refused for that long."""
    try:
        for key in keys:
            client.get(key)
    except redis.ResponseError as exc:
        if "unavailable" in str(exc):
            return False
        raise
    return True


def http_error_text(exc: urllib.error.HTTPError) -> str:
    body: dict[str, Any] = json.loads(exc.read() or b"{}")
    return str(body.get("error", ""))

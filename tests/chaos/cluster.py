"""The chaos cluster: ZooKeeper, 2 confmasters, 2 PGs x 2 pgservers, 2 gateways, all real
processes that can be killed, paused and restarted on their own port (and data directory) as
an operator would. Each process logs to its own file under the cluster's directory.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import redis
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException

from tessera.layout import live_gateways_path
from tests.chaos.load import RawClient, Unknown
from tests.cluster_fixtures import LocalCluster, Member, wait_until
from tests.procs import REPO, free_port, wait_for_port

Role = Literal["confmaster", "pgserver", "gateway"]


@dataclass
class Proc:
    """One service process and how to start it again the same way."""

    role: Role
    port: int
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    paused: bool = False
    admin_port: int = 0  # gateways: a fresh one at every start, as with --admin-port 0

    @property
    def name(self) -> str:
        return f"{self.role}:{self.port}"

    def start(self) -> None:
        assert self.popen is None or self.popen.poll() is not None, f"{self.name} runs"
        extra = []
        if self.role == "gateway":
            self.admin_port = free_port()
            extra = ["--admin-port", str(self.admin_port)]
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", self.role, *self.argv, *extra],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.paused = False
        wait_for_port(self.port, self.popen, timeout=60)

    def signal(self, sig: signal.Signals) -> None:
        assert self.popen is not None, f"{self.name} is not running"
        self.popen.send_signal(sig)
        if sig == signal.SIGKILL:
            self.popen.wait(10)
            self.popen = None
        elif sig == signal.SIGSTOP:
            self.paused = True
        elif sig == signal.SIGCONT:
            self.paused = False

    def stop(self) -> None:
        popen, self.popen = self.popen, None
        if popen is None or popen.poll() is not None:
            return
        popen.send_signal(signal.SIGCONT)
        popen.terminate()
        try:
            popen.wait(10)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class ChaosCluster(LocalCluster):
    """LocalCluster's API helpers (api, pg, in_sync, info) over processes the runner may
    kill, pause and restart."""

    pgs: int = 2
    replicas: int = 1
    confmaster_count: int = 2
    gateway_count: int = 2
    procs_by_name: dict[str, Proc] = field(default_factory=dict)
    _kazoo: KazooClient | None = None

    def start(self) -> ChaosCluster:
        if not self.zk.running:
            self.zk.start()
        for _ in range(self.confmaster_count):
            port = free_port()
            self._add(
                "confmaster",
                port,
                ["--zk", self.zk.address, "--zk-chroot", self.chroot, "--port", str(port)],
            )
        self.find_leader(60)
        self.api("POST", "/clusters", {"name": self.name, "pgs": self.pgs})
        for pg in range(self.pgs):
            for i in range(1 + self.replicas):
                port = free_port()
                data_dir = self.tmp_path / f"pg{pg}-{i}"
                self._add(
                    "pgserver",
                    port,
                    ["--port", str(port), "--data-dir", str(data_dir), "--managed"],
                )
                self.members[f"127.0.0.1:{port}"] = Member(port, data_dir)
                self.api(
                    "POST",
                    f"/clusters/{self.name}/pgservers",
                    {"pg": pg, "host": "127.0.0.1", "port": port},
                )
        for pg in range(self.pgs):
            wait_until(lambda pg=pg: self.in_sync(pg), 60, f"PG {pg} to replicate")
        for _ in range(self.gateway_count):
            port = free_port()
            self._add(
                "gateway",
                port,
                [
                    "--port",
                    str(port),
                    "--zk",
                    self.zk.address,
                    "--zk-chroot",
                    self.chroot,
                    "--cluster",
                    self.name,
                ],
            )
        for port in self.gateway_ports:
            wait_until(lambda port=port: self._serves(port), 30, f"gateway {port} to serve")
        self.gateway_port = self.gateway_ports[0]
        return self

    def _add(self, role: Role, port: int, argv: list[str]) -> Proc:
        proc = Proc(role, port, [*argv, "--log-level", self.log_level], self.log_path(role, port))
        self.procs_by_name[proc.name] = proc
        proc.start()
        return proc

    def log_path(self, role: str, port: int) -> Path:
        return self.tmp_path / f"{role}-{port}.log"

    def stop(self) -> None:
        if self._kazoo is not None:
            self._kazoo.stop()
            self._kazoo.close()
        for proc in self.procs_by_name.values():
            proc.stop()

    # ------------------------------------------------------------------ who is who

    def of_role(self, role: Role) -> list[Proc]:
        return [p for p in self.procs_by_name.values() if p.role == role]

    @property
    def gateway_ports(self) -> list[int]:
        return [p.port for p in self.of_role("gateway")]

    def pgserver(self, member_id: str) -> Proc:
        return self.procs_by_name[f"pgserver:{self.members[member_id].port}"]

    def find_leader(self, timeout_s: float = 30) -> int:
        """The API port of the confmaster leader; later `api` calls go to it."""

        def find() -> int | None:
            for proc in self.of_role("confmaster"):
                if not proc.alive or proc.paused:
                    continue
                try:
                    url = f"http://127.0.0.1:{proc.port}/"
                    with urllib.request.urlopen(url, timeout=2) as reply:
                        if json.loads(reply.read())["is_leader"]:
                            return proc.port
                except OSError:
                    continue
            return None

        port: int = wait_until(find, timeout_s, "a confmaster leader")
        self.confmaster_port = port
        return port

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Like LocalCluster.api, but asks the other confmaster when this one is gone."""
        try:
            return super().api(method, path, body)
        except urllib.error.HTTPError as exc:
            if exc.code != 421:  # "not the leader"
                raise
        except OSError:
            pass
        self.find_leader()
        return super().api(method, path, body)

    def _serves(self, port: int) -> bool:
        client = RawClient(port, 3)
        try:
            return bool(client.call("SET", f"chaos:health:{port}", "1") == b"OK")
        except Unknown:
            return False
        finally:
            client.close()

    # ------------------------------------------------------------------ health

    def unhealthy(self) -> list[str]:
        """What is not (yet) as it should be; empty when the cluster is healthy."""
        reasons = [f"{p.name} is not running" for p in self.procs_by_name.values() if not p.alive]
        reasons += [f"{p.name} is paused" for p in self.procs_by_name.values() if p.paused]
        if reasons:
            return reasons
        try:
            self.find_leader(5)
            status = self.api("GET", f"/clusters/{self.name}")
            running = [
                j["id"]
                for j in self.api("GET", f"/clusters/{self.name}/migrations")["jobs"]
                if j["phase"] not in ("done", "cancelled", "failed")
            ]
            if running:
                reasons.append(f"migration job(s) {running} still running")
            for pg in range(self.pgs):
                if not self.in_sync(pg):
                    reasons.append(f"PG {pg} not in sync: {self.pg(pg)}")
            reasons += self._registrations(status["live_gateways"])
        except (
            OSError,
            AssertionError,
            ValueError,
            KeyError,
            redis.RedisError,
            KazooException,
        ) as exc:
            reasons.append(f"{type(exc).__name__}: {exc}")
        for port in self.gateway_ports:
            try:
                if not self._serves(port):
                    reasons.append(f"gateway {port} does not serve writes")
            except OSError as exc:
                reasons.append(f"gateway {port}: {exc}")
        return reasons

    def _registrations(self, live: list[str]) -> list[str]:
        """Every gateway registered live in ZooKeeper, with the admin port it listens on
        (the one migrations BLOCK and REDIRECT through)."""
        if self._kazoo is None:
            self._kazoo = KazooClient(hosts=f"{self.zk.address}{self.chroot}", timeout=5)
            self._kazoo.start(timeout=10)
        reasons = []
        for proc in self.of_role("gateway"):
            ident = f"127.0.0.1:{proc.port}"
            if ident not in live:
                reasons.append(f"gateway {ident} not registered live: {live}")
                continue
            data, _stat = self._kazoo.get(f"{live_gateways_path(self.name)}/{ident}")
            registered = json.loads(data).get("admin_port")
            if registered != proc.admin_port:
                reasons.append(
                    f"gateway {ident} registered with admin port {registered}, "
                    f"listens on {proc.admin_port}"
                )
        return reasons

    def wait_healthy(self, timeout_s: float) -> float:
        """Seconds it took to be healthy; AssertionError with the reasons after timeout_s."""
        started = time.monotonic()
        reasons: list[str] = []
        while time.monotonic() - started < timeout_s:
            reasons = self.unhealthy()
            if not reasons:
                return time.monotonic() - started
            time.sleep(0.25)
        raise AssertionError(f"cluster not healthy after {timeout_s:.0f}s: {'; '.join(reasons)}")

    def owner_map(self) -> list[tuple[int, int, int]]:
        ranges = self.api("GET", f"/clusters/{self.name}/map")["ranges"]
        return [(int(a), int(b), int(pg)) for a, b, pg in ranges]

"""`tessera up`: a whole local cluster in one command (ZooKeeper, confmaster, pgservers, gateways).

Every process is a child of this one; Ctrl-C (or SIGTERM) stops them all. A second run on
the same data directory reuses the data: the cluster is created only if ZooKeeper does not
know it yet, and pgservers recover from their logs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

from tessera.cli import ArgumentParser, fail
from tessera.errors import ConfigError, TesseraError
from tessera.resp import encode_command
from tessera.security import new_secret, read_secret_file, write_secret_file
from tessera.zkserver import ZooKeeperServer


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"{what} exited with status {proc.returncode}; see its log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ConfigError(f"{what} did not start listening on port {port} within {timeout_s:.0f}s")


def _api(address: str, secret: str, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://{address}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {secret}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        payload = json.loads(exc.read() or b"{}")
        if exc.code == 404:
            return None
        raise ConfigError(f"confmaster: {payload.get('error', exc.code)}") from None


def _wait_leader(address: str, secret: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if _api(address, secret, "GET", "/").get("is_leader"):
                return
        except (OSError, urllib.error.URLError, ConfigError):
            pass
        time.sleep(0.1)
    raise ConfigError(f"the confmaster at {address} did not become leader within {timeout_s:.0f}s")


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _role(port: int, secret: str) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(
                encode_command([b"AUTH", secret.encode()])
                + encode_command([b"INFO", b"replication"])
            )
            data = b""
            while b"role:" not in data or not data.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return ""
    for line in data.split(b"\r\n"):
        if line.startswith(b"role:"):
            return line[5:].decode()
    return ""


class Cluster:
    """The processes of one local cluster."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data = Path(args.data_dir).resolve()
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.zk_server: ZooKeeperServer | None = None
        self.logs = self.data / "logs"
        self.secret_file = self.data / "cluster.secret"
        self.secret = ""

    def metrics_port(self, port: int) -> int | None:
        """Where the service on `port` serves /metrics (port + offset), None if off."""
        offset: int = self.args.metrics_offset
        return port + offset if offset else None

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        if self.args.log_json:
            argv = [*argv, "--log-json"]
        proc = subprocess.Popen(
            [sys.executable, "-m", *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs.append((name, proc))
        return proc

    def check_ports(self, ports: list[int]) -> None:
        taken = [p for p in ports if not _port_free(p)]
        if taken:
            raise ConfigError(
                f"port(s) {', '.join(map(str, taken))} already in use; stop what uses them or "
                "choose other ports (--port, --pgserver-port, --confmaster-port)"
            )

    def start(self) -> None:
        a = self.args
        self.data.mkdir(parents=True, exist_ok=True)
        pidfile = self.data / "tessera-up.pid"
        if pidfile.exists():
            try:
                old = int(pidfile.read_text())
                os.kill(old, 0)
                raise ConfigError(f"another `tessera up` (pid {old}) is using {self.data}")
            except (ValueError, ProcessLookupError):
                pass
        pidfile.write_text(str(os.getpid()))
        if not self.secret_file.exists():
            write_secret_file(self.secret_file, new_secret())
        self.secret = read_secret_file(self.secret_file, "cluster secret")
        secret_args = ["--cluster-secret-file", str(self.secret_file)]
        members = a.replicas + 1 if a.replicas > 0 else 1
        pg_ports = [a.pgserver_port + i for i in range(a.pgs * members)]
        gw_ports = [a.port + 2 * i for i in range(a.gateways)]
        ports = [*pg_ports, *gw_ports, *[p + 1 for p in gw_ports], a.confmaster_port]
        ports += [m for m in map(self.metrics_port, [*pg_ports, *gw_ports]) if m is not None]
        zk = a.zk
        if zk is None:
            ports.append(a.zk_port)
        self.check_ports(ports)
        if zk is None:
            self.zk_server = ZooKeeperServer(self.data / "zookeeper", a.zk_port)
            self.zk_server.start()
            zk = self.zk_server.address
        api = f"127.0.0.1:{a.confmaster_port}"
        cm = self._spawn(
            "confmaster",
            ["confmaster", "--zk", zk, "--port", str(a.confmaster_port), *secret_args],
        )
        _wait_port(a.confmaster_port, cm, "confmaster")
        _wait_leader(api, self.secret)
        if _api(api, self.secret, "GET", f"/clusters/{a.cluster}") is None:
            _api(api, self.secret, "POST", "/clusters", {"name": a.cluster, "pgs": a.pgs})
        status = _api(api, self.secret, "GET", f"/clusters/{a.cluster}")
        known = {s["id"] for s in status["pgservers"]}
        for index, port in enumerate(pg_ports):
            pg = index // members
            proc = self._spawn(
                f"pgserver-{port}",
                [
                    "pgserver",
                    "--port",
                    str(port),
                    "--data-dir",
                    str(self.data / f"pgserver-{port}"),
                    *secret_args,
                    *self._metrics_args(port),
                ],
            )
            _wait_port(port, proc, f"pgserver on port {port}")
            if f"127.0.0.1:{port}" not in known:
                _api(
                    api,
                    self.secret,
                    "POST",
                    f"/clusters/{a.cluster}/pgservers",
                    {"pg": pg, "host": "127.0.0.1", "port": port},
                )
        known_gw = {g["id"] for g in status["gateways"]}
        for port in gw_ports:
            proc = self._spawn(
                f"gateway-{port}",
                [
                    "gateway",
                    "--port",
                    str(port),
                    "--admin-port",
                    str(port + 1),
                    "--zk",
                    zk,
                    "--cluster",
                    a.cluster,
                    *secret_args,
                    *self._metrics_args(port),
                ],
            )
            _wait_port(port, proc, f"gateway on port {port}")
            if f"127.0.0.1:{port}" not in known_gw:
                _api(
                    api,
                    self.secret,
                    "POST",
                    f"/clusters/{a.cluster}/gateways",
                    {"host": "127.0.0.1", "port": port, "admin_port": port + 1},
                )
        deadline = time.monotonic() + 30
        for port in pg_ports:  # the confmaster hands out roles with its heartbeats
            while _role(port, self.secret) not in ("master", "slave"):
                if time.monotonic() > deadline:
                    raise ConfigError(
                        f"the pgserver on port {port} got no role from the confmaster"
                    )
                time.sleep(0.1)
        while not _ping(gw_ports[0]):
            if time.monotonic() > deadline:
                raise ConfigError(f"the gateway on port {gw_ports[0]} does not answer PING")
            time.sleep(0.1)
        self.print_banner(zk, api, pg_ports, gw_ports)

    def _metrics_args(self, port: int) -> list[str]:
        metrics = self.metrics_port(port)
        return [] if metrics is None else ["--metrics-port", str(metrics)]

    def _metrics_urls(self, api: str, ports: list[int]) -> str:
        urls = [f"http://{api}/metrics"]
        urls += [f"http://127.0.0.1:{m}/metrics" for m in map(self.metrics_port, ports) if m]
        return "\n                ".join(urls)

    def print_banner(self, zk: str, api: str, pg_ports: list[int], gw_ports: list[int]) -> None:
        a = self.args
        print(
            f"""
Tessera cluster {a.cluster!r} is up (data in {self.data}, logs in {self.logs})

  connect:      redis-cli -p {gw_ports[0]}
  gateways:     {", ".join(f"127.0.0.1:{p} (admin {p + 1})" for p in gw_ports)}
  pgservers:    {", ".join(f"127.0.0.1:{p}" for p in pg_ports)}
  confmaster:   http://{api}   (TESSERA_CONFMASTER={api})
  ZooKeeper:    {zk}
  secret:       {self.secret_file} (mode 0600): the cluster secret every internal port
                (pgservers, gateway admin ports, the confmaster API) requires
  metrics:      {self._metrics_urls(api, [*gw_ports, *pg_ports])}

  try:          export TESSERA_CLUSTER_SECRET=$(cat {self.secret_file})
                confmaster-cli --confmaster {api} status
                confmaster-cli --confmaster {api} map show
                redis-benchmark -p {gw_ports[0]} -t set,get -q

Ctrl-C stops everything.
""",
            flush=True,
        )

    def watch(self) -> None:
        """One-screen status refreshed every 2 s until interrupted."""
        api = f"127.0.0.1:{self.args.confmaster_port}"
        from confmaster.cli import CliError, call, show_status

        while True:
            for name, proc in self.procs:
                if proc.poll() is not None and name.startswith(("confmaster", "gateway")):
                    print(
                        f"{name} exited with status {proc.returncode}; see {self.logs}/{name}.log"
                    )
            if self.args.no_status:
                time.sleep(2)
                continue
            try:
                path = f"/clusters/{self.args.cluster}"
                text = show_status(call(api, "GET", path, secret=self.secret))
            except CliError as exc:
                text = f"(status unavailable: {exc})"
            if sys.stdout.isatty():
                print("\033[2J\033[H" + text, flush=True)
            time.sleep(2)

    def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        if self.zk_server is not None:
            self.zk_server.stop()
            self.zk_server = None
        (self.data / "tessera-up.pid").unlink(missing_ok=True)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="tessera", description="Tessera local cluster tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a local cluster and show its status")
    up.add_argument("--data-dir", default="data")
    up.add_argument("--cluster", default="default")
    up.add_argument("--pgs", type=int, default=2, help="partition groups (default 2)")
    up.add_argument(
        "--replicas",
        type=int,
        default=0,
        help="slaves per PG (replication arrives with a later release; 0 for now)",
    )
    up.add_argument("--gateways", type=int, default=1)
    up.add_argument("--port", type=int, default=6000, help="first gateway's client port")
    up.add_argument("--pgserver-port", type=int, default=7000)
    up.add_argument("--confmaster-port", type=int, default=1122)
    up.add_argument("--zk", help="use this ZooKeeper (HOST:PORT) instead of starting one")
    up.add_argument("--zk-port", type=int, default=2181)
    up.add_argument(
        "--metrics-offset",
        type=int,
        default=100,
        help="each gateway and pgserver serves /metrics on its port + this "
        "(default 100: 6100, 7100, ...; 0: off); the confmaster's is on its API port",
    )
    up.add_argument("--log-json", action="store_true", help="services log one JSON object per line")
    up.add_argument("--no-status", action="store_true", help="do not redraw the status screen")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    try:
        Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail("tessera", f"cannot use --data-dir {args.data_dir}: {exc.strerror}")
    cluster = Cluster(args)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        cluster.start()
        cluster.watch()
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    except TesseraError as exc:
        cluster.stop()
        fail("tessera", str(exc))
    cluster.stop()
    print("all Tessera processes stopped")


if __name__ == "__main__":
    main()

"""A private standalone ZooKeeper process, for tests and for `tessera up`.

We run `ZooKeeperServerMain` from the Debian `zookeeper` package directly rather than through
`zkServer.sh`: no pid files or logs under /var, no JMX, and SIGTERM to our own child stops it.
Readiness is the four-letter `ruok` answered with `imok` and `srvr` reporting a mode (over a
plain socket, no netcat).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tessera.errors import ConfigError, CoordinationError

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
INSTALL_HINT = "install the Debian zookeeper package: apt-get install -y zookeeper"
# ZooKeeper logs nothing without an SLF4J binding; slf4j-simple (libslf4j-java, a dependency
# of the zookeeper package) writes its log to stderr, which goes to data_dir/zookeeper.log.
SLF4J_SIMPLE_JAR = Path("/usr/share/java/slf4j-simple.jar")
MAIN_CLASS = "org.apache.zookeeper.server.ZooKeeperServerMain"
JVM_OPTIONS = (
    "-Xms64m",
    "-Xmx256m",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss.SSS",
)


def four_letter(host: str, port: int, word: str, timeout: float = 1.0) -> bytes | None:
    """Send a four-letter command and return the whole answer, or None if nobody answered."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(word.encode())
            sock.shutdown(socket.SHUT_WR)
            chunks: list[bytes] = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks)
    except OSError:
        return None


def ruok(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a ZooKeeper server on host:port is up and serving (it answers `imok`)."""
    return four_letter(host, port, "ruok", timeout) == b"imok"


def serving(host: str, port: int, timeout: float = 1.0) -> bool:
    """True once the server answers requests: `imok` only says the process is up (it comes
    while the database is still loading), `srvr` reports a mode only when it serves."""
    return ruok(host, port, timeout) and b"Mode: " in (four_letter(host, port, "srvr") or b"")


def _port_is_free(host: str, port: int) -> bool:
    # SO_REUSEADDR as ZooKeeper itself sets it, so sockets in TIME_WAIT from a previous run
    # (our own restart) do not count as "taken"; a live listener still does.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class ZooKeeperServer:
    """One standalone ZooKeeper child process with its config, data and log under `data_dir`.

    The data directory survives `stop()`/`restart()`, so sessions and znodes do too, as with a
    real server that is restarted.
    """

    def __init__(self, data_dir: Path, port: int = 2181, host: str = "127.0.0.1") -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.host = host
        self.conf_dir = self.data_dir / "conf"
        self.log_path = self.data_dir / "zookeeper.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """`host:port`, the form kazoo and ZkClient take."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The java process id while it runs."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    def _write_config(self) -> Path:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        cfg = self.conf_dir / "zoo.cfg"
        cfg.write_text(
            "tickTime=2000\n"
            f"dataDir={self.data_dir / 'data'}\n"
            f"clientPort={self.port}\n"
            f"clientPortAddress={self.host}\n"
            "maxClientCnxns=0\n"
            # Otherwise Jetty's admin server takes port 8080.
            "admin.enableServer=false\n"
            # 3.5+ only allows `srvr` by default; we need `ruok` for readiness.
            "4lw.commands.whitelist=ruok,srvr,mntr,stat\n"
        )
        return cfg

    def _command(self, cfg: Path) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise ConfigError(f"java is not installed; {INSTALL_HINT}")
        if not ZOOKEEPER_JAR.is_file():
            raise ConfigError(f"{ZOOKEEPER_JAR} is missing; {INSTALL_HINT}")
        jars = [ZOOKEEPER_JAR, *([SLF4J_SIMPLE_JAR] if SLF4J_SIMPLE_JAR.is_file() else [])]
        classpath = os.pathsep.join(str(p) for p in [self.conf_dir, *jars])
        return [java, *JVM_OPTIONS, "-cp", classpath, MAIN_CLASS, str(cfg)]

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def start(self, timeout_s: float = 30) -> None:
        """Start ZooKeeper and return once it serves; raise a TesseraError otherwise."""
        if self.running:
            return
        cfg = self._write_config()
        command = self._command(cfg)
        if not _port_is_free(self.host, self.port):
            raise ConfigError(f"cannot start ZooKeeper: {self.address} is already in use")
        with self.log_path.open("ab") as log:
            # Own session: a Ctrl-C meant for the parent must not kill ZooKeeper behind
            # its back; stop() decides when it ends.
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                tail = self._log_tail()
                if "Address already in use" in tail:
                    raise ConfigError(f"cannot start ZooKeeper: {self.address} is already in use")
                raise CoordinationError(
                    f"ZooKeeper exited with code {code} during start-up "
                    f"(log {self.log_path}):\n{tail}"
                )
            if serving(self.host, self.port, timeout=0.5):
                return
            if time.monotonic() > deadline:
                self.kill()
                raise CoordinationError(
                    f"ZooKeeper did not start serving on {self.address} within {timeout_s}s "
                    f"(log {self.log_path}):\n{self._log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout_s: float = 10) -> None:
        """Stop gracefully (SIGTERM), SIGKILL if it does not exit in `timeout_s`."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash would: for chaos tests."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        self._proc = None

    def restart(self, timeout_s: float = 30) -> None:
        """Stop and start again on the same port and data (sessions survive if quick enough)."""
        self.stop()
        self.start(timeout_s)

    def __enter__(self) -> ZooKeeperServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ZooKeeperServer({self.address}, pid={self.pid}, data_dir={self.data_dir})"

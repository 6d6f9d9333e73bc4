"""The bench harness: the engine on this machine, against a sink in its own process.

A `Rig` owns everything one scenario needs: the servers (embedded, or the
given `--bootstrap`/`--redis`), a fresh topic prefix, the sink process,
registered endpoints and N `hookstream worker` processes. Scenarios (in
`bench/scenarios.py`) publish, watch the sink, and read CPU and memory of the
worker processes from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import register, stop_worker
from hookstream import kafka_security
from hookstream.config import Settings
from hookstream.embedded import EmbeddedStack, die_with_parent, free_port
from hookstream.producers import EventPublisher
from hookstream.topics import ensure_topics

_runs = itertools.count()
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Servers:
    """Where Kafka and Redis are for this bench run."""

    bootstrap: str
    redis_url: str
    embedded: bool
    pids: dict[str, int] = field(default_factory=dict)  # embedded servers, by name

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds each embedded server has used so far."""
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}


def cluster_security(where: Servers) -> dict[str, Any]:
    """TLS/SASL settings from HOOKSTREAM_KAFKA_* for a cluster given by --bootstrap."""
    if where.embedded:
        return {}
    from_env = Settings.load(os.environ)
    return {name: getattr(from_env, name) for name in kafka_security.FIELDS}


@contextlib.contextmanager
def servers(bootstrap: str | None, redis_url: str | None) -> Any:
    """The given servers, or an embedded pair for the whole run."""
    if bootstrap and redis_url:
        yield Servers(bootstrap, redis_url, embedded=False)
        return
    with EmbeddedStack() as stack:
        configured = stack.settings(Settings())
        yield Servers(configured.bootstrap, configured.redis_url, embedded=True, pids=stack.pids)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set size (VmHWM), MiB."""
    return _status_mib(pid, "VmHWM:")


def rss_mib(pid: int) -> float:
    """The process's resident set size now (VmRSS), MiB."""
    return _status_mib(pid, "VmRSS:")


def _status_mib(pid: int, field_name: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Rig:
    """One scenario's running engine, sink and endpoints."""

    settings: Settings
    sink_url: str
    sink: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    endpoint_paths: list[str] = field(default_factory=list)

    async def sink_counts(self) -> dict[str, int]:
        """The sink's accepted, distinct, duplicates and failed counts (cheap to poll)."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.sink_url}/counts") as response,
        ):
            result: dict[str, int] = await response.json()
            return result

    async def sink_stats(self, since: float = 0.0) -> dict[str, Any]:
        """The sink's counts (see bench/sinkproc.py)."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.sink_url}/stats", params={"since": str(since)}) as response,
        ):
            result: dict[str, Any] = await response.json()
            return result

    def cpu_seconds(self) -> float:
        """CPU seconds used by every worker process so far."""
        return sum(cpu_seconds(w.pid) for w in self.workers)

    def sink_cpu_seconds(self) -> float:
        """CPU seconds the sink process has used so far."""
        return cpu_seconds(self.sink.pid)

    def peak_rss_mib(self) -> float:
        """The largest peak RSS among the worker processes."""
        return max(peak_rss_mib(w.pid) for w in self.workers)

    def rss_mib(self) -> float:
        """The largest current RSS among the worker processes."""
        return max(rss_mib(w.pid) for w in self.workers)

    def check_alive(self) -> None:
        """Fail the run if a worker died."""
        for worker in self.workers:
            if worker.poll() is not None:
                raise SystemExit(f"a worker exited with {worker.returncode}")


@contextlib.asynccontextmanager
async def rig(
    where: Servers,
    *,
    workers: int,
    endpoints: int,
    fail_paths: int = 0,
    slow_paths: int = 0,
    slow_s: float = 1.0,
    fail_ratio: float = 0.0,
    partitions: int = 12,
    log_level: str = "WARNING",
    ordering: str = "none",
    relay: bool = False,
    relay_stages: Path | None = None,
    **overrides: Any,
) -> AsyncIterator[Rig]:
    """Start a sink process and `workers` worker processes on a fresh topic prefix.

    Endpoint i listens on sink path /e{i} and subscribes to event type `bench.e{i}`;
    the last `fail_paths` answer 500, the `slow_paths` before them answer after `slow_s`;
    `fail_ratio` of all deliveries answer 500 at random. `relay`: the processes
    are bare relays (bench/relay.py) instead of workers, which write their stage
    times to `relay_stages` when they stop, if given. `overrides` are Settings
    fields, and may replace the broker-dependent fetch wait and session timeout.
    """
    settings = Settings(
        bootstrap=where.bootstrap,
        redis_url=where.redis_url,
        topic_prefix=f"bench{os.getpid()}-{next(_runs)}.",
        partitions=partitions,
        dev_mode=True,
        replication_factor=1,
        producer_idempotence=not where.embedded,
        log_level=log_level,
        **cluster_security(where),
        **{
            "fetch_max_wait_ms": 20 if where.embedded else 500,
            "session_timeout_ms": 6000 if where.embedded else 30_000,
            **overrides,
        },
    )
    await ensure_topics(settings)
    port = free_port()
    paths = [f"/e{i}" for i in range(endpoints)]
    failing = paths[len(paths) - fail_paths :] if fail_paths else []
    slow = (
        paths[len(paths) - fail_paths - slow_paths : len(paths) - fail_paths] if slow_paths else []
    )
    sink = subprocess.Popen(
        [
            sys.executable, "-m", "bench.sinkproc", "--port", str(port),
            "--fail-paths", ",".join(failing), "--slow-paths", ",".join(slow),
            "--slow-s", str(slow_s), "--fail-ratio", str(fail_ratio),
        ],
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent,  # a killed bench leaves nothing running
    )  # fmt: skip
    running = Rig(settings, f"http://127.0.0.1:{port}", sink, endpoint_paths=paths)
    try:
        await _wait_http(f"{running.sink_url}/stats")
        await register(
            settings,
            [
                {
                    "url": f"{running.sink_url}{path}",
                    "tenant": "bench",
                    "event_types": [f"bench.e{i}"],
                    "ordering": ordering,
                }
                for i, path in enumerate(paths)
            ],
        )
        env = {**os.environ, **settings.to_env()}
        command = ["bench.relay", "--sink", running.sink_url] if relay else ["hookstream", "worker"]
        if relay and relay_stages is not None:
            command += ["--stages", str(relay_stages)]
        for _ in range(workers):
            running.workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", *command],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=die_with_parent,
                )
            )
        await warm_up(running)
        yield running
    finally:
        for worker in running.workers:
            if worker.poll() is None:
                stop_worker(worker)
        sink.terminate()
        sink.wait(30)


async def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} never answered")
            await asyncio.sleep(0.1)


async def warm_up(running: Rig, timeout: float = 120) -> None:
    """Publish one event per endpoint until all arrive: the workers have joined their groups."""
    await publish(
        running.settings, len(running.endpoint_paths), pad=0, kinds=len(running.endpoint_paths)
    )
    deadline = time.monotonic() + timeout
    healthy = len(running.endpoint_paths)
    while (await running.sink_counts())["accepted"] < healthy - _unanswered(running):
        running.check_alive()
        if time.monotonic() > deadline:
            raise SystemExit("workers never started delivering")
        await asyncio.sleep(0.2)
    async with aiohttp.ClientSession() as session, session.post(f"{running.sink_url}/reset"):
        pass


def _unanswered(running: Rig) -> int:
    """Endpoints whose warm-up delivery will not be accepted (failing, or still slow)."""
    args = running.sink.args
    assert isinstance(args, list)
    fail = args[args.index("--fail-paths") + 1]
    slow = args[args.index("--slow-paths") + 1]
    return len([p for p in fail.split(",") if p]) + len([p for p in slow.split(",") if p])


def events(
    count: int, kinds: int, pad: int, start: int = 0, subjects: int = 0
) -> list[dict[str, Any]]:
    """Bench events spread round-robin over `kinds` event types (one endpoint each);
    with `subjects`, each endpoint's events round-robin over that many subjects."""
    filler = "x" * pad
    return [
        {
            "type": f"bench.e{n % kinds}",
            "tenant": "bench",
            "data": {"n": n, "pad": filler},
            **({"subject": f"s{(n // kinds) % subjects}"} if subjects else {}),
        }
        for n in range(start, start + count)
    ]


async def publish(
    settings: Settings,
    count: int,
    *,
    kinds: int,
    pad: int = 200,
    chunk: int = 2000,
    progress: Callable[[int], None] | None = None,
    subjects: int = 0,
) -> float:
    """Publish `count` events as fast as the broker takes them; events/s."""
    started = time.perf_counter()
    async with EventPublisher(settings) as publisher:
        for first in range(0, count, chunk):
            await publisher.publish_many(
                events(min(chunk, count - first), kinds, pad, first, subjects)
            )
            if progress is not None:
                progress(first + chunk)
    return count / (time.perf_counter() - started)


async def publish_at(
    settings: Settings, rate: float, seconds: float, *, kinds: int, pad: int = 200
) -> int:
    """Publish at `rate` events/s for `seconds` (10 ms batches); the count published."""
    sent = 0
    started = time.perf_counter()
    async with EventPublisher(settings) as publisher:
        while (elapsed := time.perf_counter() - started) < seconds:
            due = int(elapsed * rate) + 1
            if due > sent:
                await publisher.publish_many(events(due - sent, kinds, pad, sent))
                sent = due
            await asyncio.sleep(0.01)
        total = round(rate * seconds)  # the loop can stop a few events short
        if total > sent:
            await publisher.publish_many(events(total - sent, kinds, pad, sent))
            sent = total
    return sent


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = max(1, total)
        self.started = time.monotonic()

    def show(self, done: int, extra: str = "") -> None:
        """Redraw with `done` of total."""
        share = min(1.0, done / self.total)
        bar = "#" * int(share * 30)
        elapsed = time.monotonic() - self.started
        print(
            f"\r{self.label:<10} [{bar:<30}] {share:6.1%} {done:>9,}/{self.total:,} "
            f"{elapsed:6.1f}s {extra}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        """End the line."""
        print(file=sys.stderr, flush=True)

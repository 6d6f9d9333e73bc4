"""The bench scenarios: steady, latency, isolation, backlog, seed, soak.

Each returns a flat dict of figures; `bench/__main__.py` runs them, writes the
results and fails the run on any loss.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

from bench import backlog as backlog_bench
from bench import isolation as isolation_bench
from bench.common import p50_p99
from bench.harness import Progress, Rig, Servers, publish, publish_at, rig
from bench.profiler import flame_graph
from bench.stages import engine_stages
from hookstream.config import Settings
from hookstream.kafka import log_ends
from hookstream.topics import TopicNames

ENDPOINTS = 10
PAD = 200  # bytes of filler in each event's data: about 300-byte webhooks
SEED_PER_MINUTE = 11_000  # the seeds' 10,000 a minute, with 10% to spare (see seed())
SOAK_FAIL_RATIO = 0.1  # the soak's receiver fails 10% of requests at random
# The soak's retries: short, so the run ends soon after publishing stops, and
# eight of them, so a message failing all nine attempts (1 in 10⁹) does not
# happen in a run of hundreds of thousands.
SOAK_RETRY_SCHEDULE = "1,2,5,10,30,30,30,30"


async def _drain(
    running: Rig, expected: int, label: str, timeout: float
) -> list[tuple[float, int]]:
    """Wait until the sink accepted `expected`; returns (time, accepted) samples."""
    bar = Progress(label, expected)
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    previous = (time.monotonic(), 0)
    while True:
        stats = await running.sink_counts()
        now = time.monotonic()
        accepted = stats["accepted"]
        samples.append((time.time(), accepted))
        rate = (accepted - previous[1]) / max(1e-6, now - previous[0])
        previous = (now, accepted)
        bar.show(accepted, f"{rate:8,.0f}/s")
        if accepted >= expected:
            bar.close()
            return samples
        running.check_alive()
        if time.monotonic() > deadline:
            bar.close()
            raise SystemExit(f"{label}: only {accepted} of {expected} delivered in {timeout:.0f}s")
        await asyncio.sleep(0.25)


def _sustained(samples: list[tuple[float, int]], expected: int) -> float:
    """Deliveries/s from the first sample at 10% of the total or more to the first at
    90% or more (start-up and tail left out). Deliveries made before the first
    sample (while the backlog was published) are not in it."""
    t_low, n_low = next((t, n) for t, n in samples if n >= expected * 0.1)
    t_high, n_high = next((t, n) for t, n in samples if n >= expected * 0.9)
    return (n_high - n_low) / max(1e-6, t_high - t_low)


def _tail(samples: list[tuple[float, int]], expected: int) -> float:
    """Seconds from 99% delivered to the last: the stragglers' wait, which the
    median of the last quarter does not show."""
    late = next(t for t, n in samples if n >= expected * 0.99)
    return round(samples[-1][0] - late, 2)


def flatness(series: list[tuple[int, int]]) -> float | None:
    """Median deliveries/s of the last quarter of the run ÷ that of its middle half
    (1.0 is flat); None for a run under 8 s."""
    rates = [count for _, count in series]
    quarter = len(rates) // 4
    if quarter < 2:
        return None
    return round(median(rates[-quarter:]) / max(1.0, median(rates[quarter:-quarter])), 3)


def _series(stats: dict[str, Any]) -> list[tuple[int, int]]:
    return [(int(second), int(count)) for second, count in stats["per_second"]]


async def baseline(url: str, count: int, concurrency: int) -> dict[str, float]:
    """The bare aiohttp client against the same sink, in its own process: its
    deliveries/s and CPU ms per request."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.baseline", "--url", url, "--count", str(count),
        "--concurrency", str(concurrency), "--pad", str(PAD),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    if process.returncode:
        raise SystemExit("the baseline client failed")
    result: dict[str, float] = json.loads(out)
    return result


async def steady(
    where: Servers, *, workers: int, events: int, profile: Path | None = None
) -> dict[str, Any]:
    """Maximum sustained throughput: a backlog of `events` drained by the workers
    (`profile`: a flame graph of the first worker while it drains)."""
    async with rig(where, workers=workers, endpoints=ENDPOINTS) as running:
        # The workers route and deliver while the backlog is published: its CPU counts.
        cpu_before = running.cpu_seconds()
        servers_before = where.cpu_seconds()
        sink_before = running.sink_cpu_seconds()
        bar = Progress("publish", events)
        publish_rate = await publish(
            running.settings, events, kinds=ENDPOINTS, pad=PAD, progress=bar.show
        )
        bar.close()
        with flame_graph(running.workers[0].pid, profile):
            samples = await _drain(running, events, "steady", timeout=900)
        cpu = running.cpu_seconds() - cpu_before
        servers_cpu = {k: v - servers_before[k] for k, v in where.cpu_seconds().items()}
        sink_cpu = running.sink_cpu_seconds() - sink_before
        stats = await running.sink_stats()
        parked = await _tier_records(running.settings)
        sustained = _sustained(samples, events)
        concurrency = running.settings.http_connections_per_host * workers
        count = min(events, 30_000)
        sink_before = running.sink_cpu_seconds()
        base = await baseline(f"{running.sink_url}/baseline", count, concurrency)
        base_sink_cpu = running.sink_cpu_seconds() - sink_before
        rate = base["deliveries_per_s"]
        bare_cpu_ms = base["cpu_ms_per_request"]
        per_delivery = {
            f"{name}_cpu_ms_per_delivery": round(used / events * 1000, 3)
            for name, used in servers_cpu.items()
        }
        return {
            "scenario": "steady",
            "workers": workers,
            "events": events,
            "publish_events_per_s": round(publish_rate, 1),
            "delivered_while_publishing": samples[0][1],
            "deliveries_per_s": round(sustained, 1),
            "baseline_deliveries_per_s": rate,
            "engine_vs_baseline": round(sustained / rate, 3),
            "cpu_ms_per_delivery": round(cpu / events * 1000, 3),
            **per_delivery,
            "sink_cpu_ms_per_delivery": round(sink_cpu / events * 1000, 3),
            "baseline_cpu_ms_per_request": round(base["cpu_ms_per_request"], 3),
            "baseline_sink_cpu_ms_per_request": round(base_sink_cpu / count * 1000, 3),
            "cpu_vs_baseline": round(cpu / events * 1000 / max(1e-9, bare_cpu_ms), 2),
            "flatness": flatness(_series(stats)),
            "tail_s": _tail(samples, events),
            "peak_rss_mib": round(running.peak_rss_mib(), 1),
            "duplicates": stats["duplicates"],
            "lost": events - stats["distinct"],
            # No endpoint fails here: every retry-tier record is a delivery the gate parked.
            "parked": parked,
            **({"profile": str(profile)} if profile else {}),
            "series": _series(stats),
        }


async def _tier_records(settings: Settings) -> int:
    total = 0
    for topic in TopicNames(settings).retry_tiers.values():
        ends = await log_ends(settings, topic)
        total += sum((ends or {}).values())
    return total


async def latency(
    where: Servers, *, workers: int, rate: float, seconds: float, floor: bool = True
) -> dict[str, Any]:
    """Publish → delivery latency at a steady `rate` (half the measured maximum) and
    one event at a time; with `floor`, the bare relay's (bench/relay.py) too, in the
    same run, and the engine's p50 as a multiple of the relay's."""
    result = await _latency_at(where, workers=workers, rate=rate, seconds=seconds)
    single = await _latency_at(where, workers=workers, rate=SINGLE_RATE, seconds=SINGLE_S)
    result |= {
        "single_p50_ms": single["latency_p50_ms"],
        "single_p99_ms": single["latency_p99_ms"],
        "lost": result["lost"] + single["lost"],
        "duplicates": result["duplicates"] + single["duplicates"],
        "single_stages_ms": single["stages_ms"],
        **{f"{name}_p50_ms": cuts["p50"] for name, cuts in result["stages_ms"].items()},
    }
    if floor:
        relay = await _latency_at(where, workers=workers, rate=rate, seconds=seconds, relay=True)
        relay_single = await _latency_at(
            where, workers=workers, rate=SINGLE_RATE, seconds=SINGLE_S, relay=True
        )
        result |= {
            "relay_p50_ms": relay["latency_p50_ms"],
            "relay_p99_ms": relay["latency_p99_ms"],
            "relay_single_p50_ms": relay_single["latency_p50_ms"],
            "p50_vs_relay": _ratio(result["latency_p50_ms"], relay["latency_p50_ms"]),
            "single_vs_relay": _ratio(single["latency_p50_ms"], relay_single["latency_p50_ms"]),
            "relay_stages_ms": relay["stages_ms"],
            "relay_single_stages_ms": relay_single["stages_ms"],
            **{f"relay_{name}_p50_ms": cuts["p50"] for name, cuts in relay["stages_ms"].items()},
        }
    return result


SINGLE_RATE = 5.0  # events/s: one at a time, each delivered long before the next
SINGLE_S = 20.0


def _ratio(engine: float | None, relay: float | None) -> float | None:
    return None if engine is None or not relay else round(engine / relay, 2)


async def _latency_at(
    where: Servers, *, workers: int, rate: float, seconds: float, relay: bool = False
) -> dict[str, Any]:
    """One latency run at `rate`, of the engine or (`relay`) of the bare relay, with
    its stage times: the relay's own (bench/relay.py `Stages`), the engine's read
    back from its topics (bench/stages.py)."""
    with tempfile.TemporaryDirectory(prefix="relay-stages-") as stages_dir:
        async with rig(
            where,
            workers=workers,
            endpoints=ENDPOINTS,
            relay=relay,
            relay_stages=Path(stages_dir) if relay else None,
        ) as running:
            started = time.time()
            sent = await publish_at(running.settings, rate, seconds, kinds=ENDPOINTS, pad=PAD)
            await _drain(running, sent, "relay" if relay else "latency", timeout=300)
            # Leave the first 10% out: the first fetches after an idle spell.
            since = started + seconds * 0.1
            stats = await running.sink_stats(since=since)
        # The relays have stopped, and written their stage times; the engine's
        # are read back from its topics.
        if relay:
            stages = _stage_quantiles(Path(stages_dir), since)
        else:
            stages = await engine_stages(running.settings, since)
    return {
        "scenario": "latency",
        "workers": workers,
        "rate_per_s": round(rate, 1),
        "seconds": seconds,
        "events": sent,
        "latency_p50_ms": stats["latency_ms"]["p50"],
        "latency_p95_ms": stats["latency_ms"]["p95"],
        "latency_p99_ms": stats["latency_ms"]["p99"],
        "duplicates": stats["duplicates"],
        "lost": sent - stats["distinct"],
        "span_s": round(stats["last_at"] - stats["first_at"], 2),
        "series": _series(stats),
        "stages_ms": stages,
    }


def _stage_quantiles(directory: Path, since: float) -> dict[str, dict[str, float | None]]:
    """p50 and p99 of each relay stage over every relay process, from `since` on."""
    samples: dict[str, list[float]] = {}
    for path in sorted(directory.glob("relay-*.json")):
        for name, timed in json.loads(path.read_text()).items():
            samples.setdefault(name, []).extend(ms for at, ms in timed if at >= since)
    return {name: p50_p99(values) for name, values in samples.items()}


async def seed(where: Servers, *, workers: int, seconds: float = 60.0) -> dict[str, Any]:
    """The seeds' demand: 10,000 requests a minute held for a minute, nothing lost.

    Offered at 11,000 a minute: deliveries are counted from the first to the
    last, and that span moves by the latency jitter at both ends (±0.3 s of
    60 s is ±50 a minute), so offering exactly 10,000 could not tell.
    """
    result = await _latency_at(where, workers=workers, rate=SEED_PER_MINUTE / 60, seconds=seconds)
    held = round(result["events"] / max(result["span_s"], 1e-6) * 60)
    if held < 10_000 or result["lost"]:
        raise SystemExit(f"seed: held {held:,} a minute with {result['lost']} lost")
    return {**result, "scenario": "seed", "held_per_minute": held}


async def isolation(where: Servers, *, events_per_endpoint: int, rounds: int) -> dict[str, Any]:
    """Healthy endpoints' throughput with 10% slow + 10% failing neighbours vs all healthy
    (phases alternate for `rounds` rounds; the ratio is of the medians)."""
    del where  # bench/isolation.py runs its own embedded pair per run
    result = await isolation_bench.run(events_per_endpoint, rounds=rounds)
    return {"scenario": "isolation", **result}


async def backlog(where: Servers, *, events: int) -> dict[str, Any]:
    """Worker memory with `events` retries pending (bench/backlog.py)."""
    del where
    result = await backlog_bench.run(events)
    return {"scenario": "backlog", **result}


async def soak(where: Servers, *, workers: int, rate: float, minutes: float) -> dict[str, Any]:
    """`minutes` at `rate` events/s against a receiver failing 10% at random:
    nothing lost, and worker RSS sampled every 10 s to show it stays flat."""
    seconds = minutes * 60
    async with rig(
        where,
        workers=workers,
        endpoints=ENDPOINTS,
        fail_ratio=SOAK_FAIL_RATIO,
        retry_schedule_s=SOAK_RETRY_SCHEDULE,
    ) as running:
        rss: list[tuple[float, float]] = []
        publishing = asyncio.create_task(
            publish_at(running.settings, rate, seconds, kinds=ENDPOINTS, pad=PAD)
        )
        bar = Progress("soak", round(rate * seconds))
        started = time.monotonic()
        while not publishing.done():
            running.check_alive()
            rss.append((time.monotonic() - started, running.rss_mib()))
            stats = await running.sink_counts()
            bar.show(stats["distinct"], f"RSS {rss[-1][1]:6.1f} MiB")
            await asyncio.wait({publishing}, timeout=10)
        bar.close()
        sent = publishing.result()
        await _drain(running, sent, "soak drain", timeout=600)
        stats = await running.sink_stats()
        third = max(1, len(rss) // 3)
        first, last = (sum(v for _, v in part) / len(part) for part in (rss[:third], rss[-third:]))
        return {
            "scenario": "soak",
            "workers": workers,
            "rate_per_s": round(rate, 1),
            "seconds": seconds,
            "events": sent,
            "failed_requests": stats["failed"],
            "rss_first_third_mib": round(first, 1),
            "rss_last_third_mib": round(last, 1),
            "rss_samples": [round(v, 1) for _, v in rss],
            "peak_rss_mib": round(running.peak_rss_mib(), 1),
            "duplicates": stats["duplicates"],
            "lost": sent - stats["distinct"],
            "series": _series(stats),
        }

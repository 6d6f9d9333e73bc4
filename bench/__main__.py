"""`hookstream bench` / `python -m bench`: run scenarios, write JSON, markdown and a plot.

    .venv/bin/hookstream bench --scenario steady
    .venv/bin/hookstream bench --scenario all --workers 2

Results go to bench/results/<UTC time>-<scenario>.{json,md,png}. The run
fails (exit 1) when any event was lost.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import orjson

from bench import dlq, ordered, profiler, replay, scenarios
from bench.harness import servers
from bench.report import markdown, plot

SCENARIOS = (
    "steady", "latency", "isolation", "backlog", "seed", "soak", "dlq", "replay", "ordered",
)  # fmt: skip
# `all` leaves out the half-hour soak, the million-letter DLQ and the 100k replay.
ALL = ("steady", "latency", "isolation", "backlog", "seed")
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the numbers came from."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the wanted scenarios; one that fails is reported as its error and the
    others still run, so a long run keeps what it measured."""
    wanted = ALL if args.scenario == "all" else (args.scenario,)
    results: dict[str, Any] = {}

    async def measure(name: str, scenario: Awaitable[dict[str, Any]]) -> None:
        try:
            results[name] = await scenario
        except (Exception, SystemExit) as exc:  # reported; fails the run
            results[name] = {"scenario": name, "error": str(exc) or type(exc).__name__}
            print(f"{name}: failed: {results[name]['error']}", file=sys.stderr)

    with servers(args.bootstrap, args.redis) as where:
        if "steady" in wanted or "latency" in wanted:
            await measure(
                "steady",
                scenarios.steady(
                    where,
                    workers=args.workers,
                    events=args.events,
                    profile=args.out / f"{args.stem}-worker.svg" if args.profile else None,
                ),
            )
        if "latency" in wanted:
            half = args.rate or results["steady"].get("deliveries_per_s", 0) / 2
            if half:
                await measure(
                    "latency",
                    scenarios.latency(where, workers=args.workers, rate=half, seconds=args.seconds),
                )
            else:
                results["latency"] = {"scenario": "latency", "error": "no steady rate to halve"}
        if "seed" in wanted:
            await measure("seed", scenarios.seed(where, workers=args.workers))
        if "isolation" in wanted:
            await measure(
                "isolation",
                scenarios.isolation(
                    where, events_per_endpoint=args.isolation_events, rounds=args.isolation_rounds
                ),
            )
        if "backlog" in wanted:
            await measure("backlog", scenarios.backlog(where, events=args.backlog_events))
        if "dlq" in wanted:
            await measure(
                "dlq",
                dlq.run(where, letters=args.dlq_letters),
            )
        if "replay" in wanted:
            await measure(
                "replay",
                replay.run(
                    where,
                    workers=args.workers,
                    events=args.replay_events,
                    live_rate=args.replay_live_rate,
                    seconds=args.replay_seconds,
                ),
            )
        if "ordered" in wanted:
            await measure(
                "ordered",
                ordered.run(
                    where,
                    workers=args.workers,
                    events=args.ordered_events,
                    rounds=args.ordered_rounds,
                ),
            )
        if "soak" in wanted:
            await measure(
                "soak",
                scenarios.soak(
                    where, workers=args.workers, rate=args.soak_rate, minutes=args.soak_minutes
                ),
            )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hookstream bench", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=(*SCENARIOS, "all"), default="steady")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--events", type=int, default=200_000, help="steady: backlog size (decision 039)"
    )
    parser.add_argument(
        "--ordered-events", type=int, default=30_000, help="ordered: backlog size per run"
    )
    parser.add_argument(
        "--ordered-rounds", type=int, default=2, help="ordered: A B rounds, alternating"
    )
    parser.add_argument("--rate", type=float, help="latency: events/s (default half of steady)")
    parser.add_argument("--seconds", type=float, default=30.0, help="latency: how long")
    parser.add_argument("--isolation-events", type=int, default=1000)
    parser.add_argument(
        "--isolation-rounds", type=int, default=3, help="single phases vary by ±25%%: medians"
    )
    parser.add_argument("--backlog-events", type=int, default=100_000)
    parser.add_argument(
        "--dlq-letters", type=int, default=1_000_000, help="dlq: letters in the index"
    )
    parser.add_argument("--replay-events", type=int, default=100_000)
    parser.add_argument(
        "--replay-live-rate", type=float, default=300.0, help="replay: live events/s beside it"
    )
    parser.add_argument("--replay-seconds", type=float, default=40.0, help="replay: live phase")
    parser.add_argument("--soak-minutes", type=float, default=30.0)
    parser.add_argument(
        "--soak-rate",
        type=float,
        default=50.0,
        help="soak: events/s (the embedded broker slows as it stores more: docs/reliability.md)",
    )
    parser.add_argument("--bootstrap", help="use this Kafka instead of the embedded broker")
    parser.add_argument("--redis", help="use this Redis instead of the embedded Valkey")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--profile", action="store_true", help="steady: a py-spy flame graph of a worker"
    )
    args = parser.parse_args(argv)
    if bool(args.bootstrap) != bool(args.redis):
        parser.error("give both --bootstrap and --redis, or neither")
    if args.workers < 1 or args.events < 100:
        parser.error("--workers must be at least 1 and --events at least 100")
    if args.dlq_letters < 10_000:
        parser.error("--dlq-letters must be at least 10000")
    if args.soak_minutes <= 0 or args.soak_rate <= 0:
        parser.error("--soak-minutes and --soak-rate must be greater than 0")

    import uvloop

    started = time.time()
    args.stem = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(started))}-{args.scenario}"
    if args.profile:
        profiler.py_spy()  # missing: one line now, not after the run
    results = uvloop.run(run(args))
    report = {
        "command": "hookstream bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": machine(),
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / args.stem
    stem.with_suffix(".json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    table = markdown(report)
    stem.with_suffix(".md").write_text(table)
    plotted = plot(results, stem.with_suffix(".png"))
    print(table)
    print(f"results: {stem}.json, .md" + (", .png" if plotted else ""))
    lost = sum(int(r.get("lost", 0)) for r in results.values())
    failed = [name for name, r in results.items() if "error" in r]
    if lost or failed:
        print(f"FAILED: {lost} events lost; scenarios failed: {failed or 'none'}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()

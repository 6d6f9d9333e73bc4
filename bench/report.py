"""Bench results as a markdown table and a PNG plot of throughput and latency over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Figures in the table, in this order, with their labels.
FIGURES = (
    ("deliveries_per_s", "deliveries/s"),
    ("baseline_deliveries_per_s", "bare client/s"),
    ("engine_vs_baseline", "engine ÷ bare"),
    ("rate_per_s", "offered events/s"),
    ("held_per_minute", "held per minute"),
    ("span_s", "first → last s"),
    ("latency_p50_ms", "p50 ms"),
    ("latency_p95_ms", "p95 ms"),
    ("latency_p99_ms", "p99 ms"),
    ("relay_p50_ms", "bare relay p50 ms"),
    ("relay_p99_ms", "bare relay p99 ms"),
    ("p50_vs_relay", "p50 ÷ relay's"),
    ("routed_p50_ms", "engine: routed p50 ms"),
    ("to_courier_p50_ms", "engine: to courier p50 ms"),
    ("attempt_p50_ms", "engine: attempt p50 ms"),
    ("relay_event_hop_p50_ms", "relay: event hop p50 ms"),
    ("relay_acks_p50_ms", "relay: acks p50 ms"),
    ("relay_delivery_hop_p50_ms", "relay: delivery hop p50 ms"),
    ("relay_post_p50_ms", "relay: POST p50 ms"),
    ("single_p50_ms", "one at a time p50 ms"),
    ("single_p99_ms", "one at a time p99 ms"),
    ("relay_single_p50_ms", "bare relay one at a time p50 ms"),
    ("single_vs_relay", "one at a time ÷ relay's"),
    ("cpu_ms_per_delivery", "worker CPU ms"),
    ("broker_cpu_ms_per_delivery", "broker CPU ms"),
    ("valkey_cpu_ms_per_delivery", "Valkey CPU ms"),
    ("baseline_cpu_ms_per_request", "bare client CPU ms"),
    ("cpu_vs_baseline", "worker ÷ bare CPU"),
    ("flatness", "last quarter ÷ middle half"),
    ("tail_s", "last 1% s"),
    ("parked", "parked"),
    ("peak_rss_mib", "peak RSS MiB"),
    ("failed_requests", "500s answered"),
    ("rss_first_third_mib", "RSS first third MiB"),
    ("rss_last_third_mib", "RSS last third MiB"),
    ("isolation_ratio", "isolation ratio"),
    ("rss_before_mib", "RSS idle MiB"),
    ("rss_after_mib", "RSS after MiB"),
    ("rss_fresh_worker_mib", "RSS fresh worker MiB"),
    ("live_alone_per_s", "live alone/s"),
    ("live_beside_replay_per_s", "live beside replay/s"),
    ("replay_per_s", "replay/s"),
    ("none_deliveries_per_s", "unordered/s"),
    ("subject_deliveries_per_s", "ordered/s"),
    ("ordered_vs_unordered", "ordered ÷ unordered"),
    ("letters", "dead letters"),
    ("page_first_p99_ms", "first page p99 ms"),
    ("page_endpoint_p99_ms", "1% filter page p99 ms"),
    ("redrive_first_chunk_s", "redrive start s"),
    ("redis_bytes_per_letter", "Redis B/letter"),
    ("duplicates", "duplicates"),
    ("lost", "lost"),
    ("error", "error"),
)


def markdown(report: dict[str, Any]) -> str:
    """One row per scenario, one column per figure any scenario has."""
    results: dict[str, dict[str, Any]] = report["results"]
    columns = [(key, label) for key, label in FIGURES if any(key in r for r in results.values())]
    lines = [
        f"`{report['command']}` at {report['started_at']} on "
        f"{report['machine']['cpus']} × {report['machine']['cpu_model'] or 'CPU'}",
        "",
        "| scenario | " + " | ".join(label for _, label in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, result in results.items():
        cells = [_cell(result.get(key)) for key, _ in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, float):
        return f"{value:,.3f}" if value < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def plot(results: dict[str, Any], path: Path) -> bool:
    """Deliveries per second over time for every scenario with a series; False if none."""
    with_series = {name: r["series"] for name, r in results.items() if r.get("series")}
    if not with_series:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), constrained_layout=True)
    for name, series in with_series.items():
        start = series[0][0]
        top.plot([s - start for s, _ in series], [n for _, n in series], label=name)
    top.set_title("Deliveries per second at the sink")
    top.set_xlabel("seconds")
    top.set_ylabel("deliveries/s")
    top.legend()
    names = [n for n in ("latency", "seed", "steady") if n in results]
    quantiles = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
    shown = [n for n in names if results[n].get("latency_p50_ms") is not None]
    for offset, quantile in enumerate(quantiles):
        bottom.bar(
            [i * 4 + offset for i in range(len(shown))],
            [results[n][quantile] for n in shown],
            label=quantile.removeprefix("latency_").removesuffix("_ms"),
        )
    bottom.set_xticks([i * 4 + 1 for i in range(len(shown))], shown)
    bottom.set_title("Publish → delivery latency (ms)")
    bottom.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True

"""The worker's plain delivery counts expose what prometheus_client's own
Counter and Histogram would, sample for sample (no servers)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from hookstream.consumers.metrics import (
    ATTEMPT_BUCKETS,
    LATENCY_BUCKETS,
    OUTCOMES,
    ROLLUP_STEP_S,
    ROUTER_BUCKETS,
    ROUTER_STAGES,
    WorkerMetrics,
)
from hookstream.engine.outcome import Verdict

NOW = 1_800_000_003.5
# On a bound, between bounds, below the first, above the last, and zero.
DURATIONS_MS = (0.0, 5.0, 5.0001, 7.0, 10.0, 250.0, 999.0, 30_000.0, 45_000.0, 0.001)
LATENCIES_S = (0.0, 0.02, 0.3, 4.0, 80_000.0, 100_000.0)  # clear of bounds: ms-rounded
# Router batches (waited, barrier, route, acks): on a bound, between, above the last;
# a wait below zero (a producer's clock ahead of ours) counts as zero.
ROUTER_BATCHES_S = ((0.05, 0.001, 0.0004, 0.02), (-0.2, 0.007, 0.0, 9.0), (0.3, 0.0, 0.1, 0.025))


def _samples(
    registry: CollectorRegistry, prefix: str
) -> dict[tuple[str, tuple[object, ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name.startswith(prefix) and not s.name.endswith("_created")
    }


def _observed() -> tuple[CollectorRegistry, WorkerMetrics]:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, clock=lambda: NOW)
    for ms in DURATIONS_MS:
        metrics.attempted(Verdict.RETRY, ms, 0)
    for latency in LATENCIES_S:
        metrics.attempted(Verdict.DELIVERED, 12.0, int((NOW - latency) * 1000))
    metrics.attempted(Verdict.DEAD, 3.0, 1)
    metrics.attempted(Verdict.DELIVERED, 4.0, 0)  # no occurred-at: no latency
    for _ in range(3):
        metrics.parked()
    metrics.dropped()
    metrics.attempt_batch_lost()
    for stages in ROUTER_BATCHES_S:
        metrics.routed_batch(*stages)
    return registry, metrics


def test_histograms_and_outcomes_match_prometheus_clients_own() -> None:
    registry, _ = _observed()
    reference = CollectorRegistry()
    outcomes = Counter("hookstream_deliveries", "x", ["outcome"], registry=reference)
    for outcome in OUTCOMES:
        outcomes.labels(outcome)
    durations = Histogram(
        "hookstream_attempt_duration_seconds", "x", buckets=ATTEMPT_BUCKETS, registry=reference
    )
    latencies = Histogram(
        "hookstream_delivery_latency_seconds", "x", buckets=LATENCY_BUCKETS, registry=reference
    )
    for ms in (*DURATIONS_MS, *[12.0] * len(LATENCIES_S), 3.0, 4.0):
        durations.observe(ms / 1000)
    for latency in LATENCIES_S:
        # as the worker computes it, from an occurred-at in whole milliseconds
        latencies.observe(max(0.0, NOW - int((NOW - latency) * 1000) / 1000))
    outcomes.labels("retry").inc(len(DURATIONS_MS))
    outcomes.labels("delivered").inc(len(LATENCIES_S) + 1)
    outcomes.labels("dead").inc()
    outcomes.labels("parked").inc(3)
    outcomes.labels("dropped").inc()
    Counter("hookstream_attempt_batches_lost", "x", registry=reference).inc()
    router = Histogram(
        "hookstream_router_batch_seconds",
        "x",
        ["stage"],
        buckets=ROUTER_BUCKETS,
        registry=reference,
    )
    for stages in ROUTER_BATCHES_S:
        for stage, seconds in zip(ROUTER_STAGES, stages, strict=True):
            router.labels(stage).observe(max(0.0, seconds))

    prefixes = ("hookstream_deliveries", "hookstream_attempt", "hookstream_delivery_latency")
    for prefix in (*prefixes, "hookstream_router"):
        ours, theirs = _samples(registry, prefix), _samples(reference, prefix)
        assert ours.keys() == theirs.keys(), prefix
        for key, value in theirs.items():
            assert abs(ours[key] - value) < 1e-6, key
    assert _samples(registry, "hookstream_delivery_latency_seconds_count") == {
        ("hookstream_delivery_latency_seconds_count", ()): len(LATENCIES_S)
    }


def test_the_dashboard_rollup_counts_each_latency_in_its_bucket() -> None:
    _, metrics = _observed()
    step = metrics.pending[int(NOW) // ROLLUP_STEP_S * ROLLUP_STEP_S]
    assert step["delivered"] == len(LATENCIES_S) + 1
    assert step["failed"] == len(DURATIONS_MS) + 1
    lat = {k: v for k, v in step.items() if k.startswith("lat:")}
    # 0 in the first bucket (≤ 0.01), 0.02 in the second (≤ 0.025), 0.3 in ≤ 0.5,
    # 4 in ≤ 5, 80,000 in ≤ 86,400, and more than a day past every bound.
    assert lat == {
        "lat:0": 1,
        "lat:1": 1,
        f"lat:{LATENCY_BUCKETS.index(0.5)}": 1,
        f"lat:{LATENCY_BUCKETS.index(5.0)}": 1,
        f"lat:{LATENCY_BUCKETS.index(86400.0)}": 1,
        f"lat:{len(LATENCY_BUCKETS)}": 1,
    }


def test_attempt_batches_lost_are_counted_from_zero() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    assert registry.get_sample_value("hookstream_attempt_batches_lost_total") == 0
    metrics.attempt_batch_lost()
    metrics.attempt_batch_lost()
    assert registry.get_sample_value("hookstream_attempt_batches_lost_total") == 2

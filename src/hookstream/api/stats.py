"""GET /v1/stats: what the dashboard draws, from the soft state workers keep in Redis.

Throughput, success ratio and latency percentiles per 10-second step (the
workers' rollup, consumers/metrics.py), endpoints by health state with the
worst first (the health index, consumers/health.py), and the dead-letter and
pending-retry counts (consumers/lag.py). All of it is soft: after a Redis
flush the series restart empty, and no webhook is affected.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from hookstream.api.problems import json_response
from hookstream.api.routes import Operations, Param
from hookstream.api.schemas import OBJECT
from hookstream.api.state import REDIS, REGISTRY, SETTINGS
from hookstream.consumers.metrics import LATENCY_BUCKETS, ROLLUP_STEP_S
from hookstream.engine.clock import rfc3339
from hookstream.errors import FieldProblem, InvalidInput
from hookstream.redis_keys import RedisKeys

routes = Operations("operations")

MAX_MINUTES = 120
WORST = 20
MAX_INDEXED = 10_000


@routes.get(
    "/v1/stats",
    scope="admin",
    # Checked by the handler (422), so declared as text here.
    query=(Param("minutes", {"type": "string"}, f"1-{MAX_MINUTES}, default 15"),),
    ok=(200, OBJECT),
)
async def stats(request: web.Request) -> web.Response:
    """Delivery series for the last `minutes` (1-120, default 15), health and DLQ counts."""
    raw = request.query.get("minutes", "15")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_MINUTES:
        raise InvalidInput([FieldProblem("minutes", f"must be a whole number 1-{MAX_MINUTES}")])
    settings = request.app[SETTINGS]
    keys = RedisKeys(settings)
    redis = request.app[REDIS]
    end = int(time.time()) // ROLLUP_STEP_S * ROLLUP_STEP_S
    starts = list(range(end - int(raw) * 60 + ROLLUP_STEP_S, end + 1, ROLLUP_STEP_S))
    async with redis.pipeline(transaction=False) as pipe:
        for start in starts:
            pipe.hgetall(keys.rollup(start))
        pipe.zrange(keys.health_index, 0, MAX_INDEXED - 1, withscores=True)
        pipe.hgetall(keys.gauges)
        pipe.zcard(keys.dlq_set("open"))
        replies = await pipe.execute()
    steps, ranked, gauges, dlq_open = replies[: len(starts)], replies[-3], replies[-2], replies[-1]

    series = [_step(start, _ints(fields)) for start, fields in zip(starts, steps, strict=True)]
    totals = _ints({})
    for fields in steps:
        for name, count in _ints(fields).items():
            totals[name] = totals.get(name, 0) + count

    registry = request.app[REGISTRY]
    await registry.sync()
    known = {ep.id: ep for ep in registry.index.all()}
    observed = [(member.decode(), score) for member, score in ranked if member.decode() in known]
    counts = {"healthy": 0, "degraded": 0, "failing": 0, "disabled": 0}
    for endpoint_id, score in observed:
        counts[_state(score, known[endpoint_id].disabled)] += 1
    seen = {endpoint_id for endpoint_id, _ in observed}
    for endpoint_id, endpoint in known.items():
        if endpoint_id not in seen:
            counts["disabled" if endpoint.disabled else "healthy"] += 1
    worst_ids = [endpoint_id for endpoint_id, _ in observed[:WORST]]
    snapshots = await redis.mget([keys.health(i) for i in worst_ids]) if worst_ids else []
    worst = []
    for endpoint_id, snapshot in zip(worst_ids, snapshots, strict=True):
        endpoint = known[endpoint_id]
        snap: dict[str, Any] = orjson.loads(snapshot) if snapshot else {}
        worst.append(
            {
                "endpoint_id": endpoint_id,
                "url": endpoint.url,
                "tenant": endpoint.tenant,
                "disabled": endpoint.disabled,
                "state": "disabled" if endpoint.disabled else snap.get("state", "healthy"),
                "score": snap.get("score", 1.0),
                "circuit": snap.get("circuit", {}).get("state", "closed"),
                "success_ratio": snap.get("window", {}).get("success_ratio"),
            }
        )
    dlq = gauges.get(b"dlq")
    pending = gauges.get(b"retry_pending")
    return json_response(
        {
            "step_seconds": ROLLUP_STEP_S,
            "series": series,
            "totals": _step(starts[0], totals) | {"t": None},
            "endpoints": {"total": len(known), "by_state": counts, "worst": worst},
            "dlq_messages": None if dlq is None else int(float(dlq)),
            "dlq_open": int(dlq_open),  # letters not yet redriven, from the DLQ index
            "retry_pending": None if pending is None else int(float(pending)),
        }
    )


def _ints(fields: dict[bytes, bytes]) -> dict[str, int]:
    return {name.decode(): int(value) for name, value in fields.items()}


def _state(rank: float, disabled: bool) -> str:
    if disabled or rank < 0:
        return "disabled"
    if rank < 0.5:
        return "failing"
    return "degraded" if rank < 0.9 else "healthy"


def _step(start: int, counts: dict[str, int]) -> dict[str, Any]:
    delivered = counts.get("delivered", 0)
    failed = counts.get("failed", 0)
    attempts = delivered + failed
    latency = [counts.get(f"lat:{i}", 0) for i in range(len(LATENCY_BUCKETS) + 1)]
    return {
        "t": rfc3339(start),
        "delivered": delivered,
        "failed": failed,
        "per_second": round(delivered / ROLLUP_STEP_S, 2),
        "success_ratio": None if not attempts else round(delivered / attempts, 4),
        "latency_p50_ms": percentile_ms(latency, 0.5),
        "latency_p99_ms": percentile_ms(latency, 0.99),
    }


def percentile_ms(counts: list[int], q: float) -> float | None:
    """The upper bound (ms) of the latency bucket holding quantile `q`; None without data."""
    total = sum(counts)
    if not total:
        return None
    seen = 0
    for i, count in enumerate(counts):
        seen += count
        if seen >= q * total:
            bound = LATENCY_BUCKETS[i] if i < len(LATENCY_BUCKETS) else LATENCY_BUCKETS[-1] * 2
            return bound * 1000
    return None

"""Signatures, checked by the official Standard Webhooks library at the receiver.

Every delivery, retries included, verifies; each retry is signed afresh (new
timestamp, new signature, same webhook-id); the bytes signed are the bytes
sent, even with non-BMP characters and NUL in the payload; and the library
refuses a replay with an old timestamp, a tampered body and a wrong secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import standardwebhooks.webhooks as swh
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.engine.signing import generate_secret
from hookstream.producers import EventPublisher
from hookstream.topics import ensure_topics
from tests.conftest import NO_CIRCUIT, EndpointFactory, Serve, eventually

pytestmark = pytest.mark.integration

FAILURES = 2  # the receiver answers 500 to the first two attempts of each message
DATA = {"emoji": "😀 𝄞", "nul": "\u0000", "rtl": "\u202e", "big": "x" * 2000}


@dataclass
class Arrival:
    """One request as the receiver saw it."""

    name: str  # which endpoint's path it came to
    headers: dict[str, str]
    body: bytes
    verified: bool


async def test_every_attempt_verifies_with_the_official_library_and_retries_are_signed_afresh(
    settings: Settings,
    endpoint_factory: EndpointFactory,
    serve: Serve,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Retries more than a second apart, so each retry's timestamp is new.
    scaled = settings.replace(
        retry_schedule_s="1.2,1.2", retry_jitter=0.0, retry_floor_s=0.5, **NO_CIRCUIT
    )
    await ensure_topics(scaled)
    arrivals: list[Arrival] = []
    secrets: dict[str, str] = {}

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        try:
            Webhook(secrets[request.match_info["name"]]).verify(body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        lowered = {k.lower(): v for k, v in headers.items()}
        arrivals.append(Arrival(request.match_info["name"], lowered, body, verified))
        seen = sum(a.headers["webhook-id"] == headers["webhook-id"] for a in arrivals)
        return web.Response(status=500 if seen <= FAILURES else 204)

    app = web.Application()
    app.router.add_post("/{name}", receive)
    base = await serve(app)
    endpoints = []
    for name in ("a", "b"):
        endpoint = await endpoint_factory(f"{base}/{name}", "acme", ["order.*"])
        secrets[name] = endpoint.secret
        endpoints.append(endpoint)

    worker = Worker(scaled)
    await worker.start()
    try:
        async with EventPublisher(scaled) as publisher:
            ids = await publisher.publish_many(
                {"type": "order.placed", "tenant": "acme", "data": {**DATA, "i": i}}
                for i in range(5)
            )
        wanted = len(ids) * len(endpoints) * (FAILURES + 1)
        await eventually(
            lambda: len(arrivals) >= wanted,
            timeout=60,
            message=lambda: f"{len(arrivals)} of {wanted} attempts arrived",
        )
    finally:
        await worker.stop()

    assert all(a.verified for a in arrivals), "a delivery failed the official verifier"
    by_id: dict[str, list[Arrival]] = {}
    for a in arrivals:
        by_id.setdefault(a.headers["webhook-id"], []).append(a)
    assert len(by_id) == len(ids) * len(endpoints)
    for attempts in by_id.values():
        assert len(attempts) == FAILURES + 1
        stamps = [int(a.headers["webhook-timestamp"]) for a in attempts]
        assert stamps == sorted(stamps), stamps
        assert len(set(stamps)) == len(stamps), f"a retry kept an old timestamp: {stamps}"
        signatures = {a.headers["webhook-signature"] for a in attempts}
        assert len(signatures) == len(attempts), "a retry reused an old signature"
        # The same message every time: same body bytes, same event.
        assert len({a.body for a in attempts}) == 1
        payload: dict[str, Any] = orjson.loads(attempts[0].body)
        assert {k: payload["data"][k] for k in DATA} == DATA

    # What an attacker could try with a captured delivery.
    sample = arrivals[-1]
    secret = secrets[sample.name]
    Webhook(secret).verify(sample.body, sample.headers)  # genuine: accepted
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(sample.body.replace(b"x", b"y", 1), sample.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(sample.body, sample.headers)
    # The exact captured request presented after the library's tolerance.
    monkeypatch.setattr(swh, "datetime", _SixMinutesLater)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(sample.body, sample.headers)


class _SixMinutesLater(datetime):
    """The library's clock, moved 6 minutes on (its tolerance is 5)."""

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return datetime.now(tz=tz or UTC) + timedelta(minutes=6)

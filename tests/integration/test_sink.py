"""The sink verifies signatures like a receiver should."""

from __future__ import annotations

import time

import aiohttp
import pytest

from hookstream.engine.signing import SigningKey, generate_secret, signature_header
from tests.conftest import SinkFactory

pytestmark = pytest.mark.integration


def _signed(secret: str, body: bytes, ts: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(ts),
        "webhook-signature": signature_header([SigningKey.of(secret)], "msg_1", ts, body),
        "hookstream-event-id": "evt_1",
        "content-type": "application/json",
    }


async def test_sink_accepts_good_and_rejects_bad_signatures(sink_factory: SinkFactory) -> None:
    secret = generate_secret()
    sink = await sink_factory(secrets=[secret])
    body = b'{"type":"a.b","timestamp":"x","data":{}}'
    async with aiohttp.ClientSession() as http:
        good = await http.post(sink.url, data=body, headers=_signed(secret, body))
        tampered = await http.post(sink.url, data=b'{"x":1}', headers=_signed(secret, body))
        wrong = await http.post(sink.url, data=body, headers=_signed(generate_secret(), body))
        stale = await http.post(sink.url, data=body, headers=_signed(secret, body, ts=1000))
        unsigned = await http.post(sink.url, data=body)
        stats = await (await http.get(sink.url.rsplit("/", 1)[0] + "/stats")).json()
    assert good.status == 204
    assert [r.status for r in (tampered, wrong, stale, unsigned)] == [401] * 4
    assert stats == {"accepted": 1, "rejected": 4, "failed": 0, "by_path": {"/hook": 1}}
    assert sink.event_ids() == {"evt_1"}


async def test_sink_without_secrets_accepts_anything(sink_factory: SinkFactory) -> None:
    sink = await sink_factory()
    async with aiohttp.ClientSession() as http:
        response = await http.post(sink.url, data=b"{}")
    assert response.status == 204
    assert sink.recorder.accepted == 1
    assert not sink.recorder.received[0].verified

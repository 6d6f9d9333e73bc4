"""What an endpoint's options do to real deliveries: secret rotation (two
signatures, either verifies), payload filters, channels and custom headers;
and the filter dry-run over real events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hookstream.consumers.worker import Worker
from hookstream.engine.signing import generate_secret
from tests.conftest import AUTH, Serve, eventually

pytestmark = pytest.mark.integration


@dataclass
class Arrival:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def data(self) -> dict[str, Any]:
        payload: dict[str, Any] = orjson.loads(self.body)
        return dict(payload["data"])


async def _receiver(serve: Serve) -> tuple[str, list[Arrival]]:
    arrivals: list[Arrival] = []

    async def receive(request: web.Request) -> web.Response:
        arrivals.append(Arrival(request.path, dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{name}", receive)
    return await serve(app), arrivals


async def _create(client: TestClient[Any, Any], **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/endpoints", json={"tenant": "acme", **body}, headers=AUTH)
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    return created


async def _publish(client: TestClient[Any, Any], events: list[dict[str, Any]]) -> None:
    batch = [{"tenant": "acme", "type": "order.placed", **e} for e in events]
    response = await client.post("/v1/events/batch", json={"events": batch}, headers=AUTH)
    assert response.status == 202, await response.text()


async def test_after_rotation_deliveries_carry_both_signatures(
    client: TestClient[Any, Any], worker: Worker, serve: Serve
) -> None:
    base, arrivals = await _receiver(serve)
    endpoint = await _create(client, url=f"{base}/rot", event_types=["order.*"])
    old = endpoint["secret"]
    await _publish(client, [{"data": {"n": 1}}])
    await eventually(lambda: len(arrivals) == 1, timeout=30)
    assert len(arrivals[0].headers["webhook-signature"].split()) == 1

    rotate = f"/v1/endpoints/{endpoint['id']}/secret/rotate"
    new = (await (await client.post(rotate, headers=AUTH)).json())["secret"]
    await _publish(client, [{"data": {"n": 2}}, {"data": {"n": 3}}])
    await eventually(lambda: len(arrivals) == 3, timeout=30)
    for arrival in arrivals[1:]:
        assert len(arrival.headers["webhook-signature"].split()) == 2
        Webhook(new).verify(arrival.body, arrival.headers)  # a receiver already switched
        Webhook(old).verify(arrival.body, arrival.headers)  # one not yet switched
        with pytest.raises(WebhookVerificationError):
            Webhook(generate_secret()).verify(arrival.body, arrival.headers)
    # The pre-rotation delivery verifies only with the old secret.
    Webhook(old).verify(arrivals[0].body, arrivals[0].headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(arrivals[0].body, arrivals[0].headers)


async def test_filters_channels_and_custom_headers_shape_deliveries(
    client: TestClient[Any, Any], worker: Worker, serve: Serve
) -> None:
    base, arrivals = await _receiver(serve)
    await _create(
        client,
        url=f"{base}/big",
        event_types=["order.*"],
        filter={"data.amount": {"$gte": 100}, "data.tags": {"$nin": ["test"]}},
        headers={"X-Team": "billing"},
    )
    await _create(client, url=f"{base}/eu", event_types=["order.*"], channels=["eu"])
    await _create(client, url=f"{base}/all", event_types=["order.*"])
    events: list[dict[str, Any]] = [
        {"data": {"amount": 50, "tags": []}, "channels": ["eu"]},
        {"data": {"amount": 150, "tags": ["vip"]}},
        {"data": {"amount": 500, "tags": ["vip", "test"]}, "channels": ["us"]},
        {"data": {"amount": 100}, "channels": ["us", "eu"]},
    ]
    await _publish(client, events)
    await eventually(lambda: len(arrivals) == 8, timeout=30, message=lambda: str(len(arrivals)))
    by_path: dict[str, list[int]] = {}
    for arrival in arrivals:
        by_path.setdefault(arrival.path, []).append(arrival.data["amount"])
    assert sorted(by_path["/big"]) == [100, 150]
    assert sorted(by_path["/eu"]) == [50, 100]
    assert sorted(by_path["/all"]) == [50, 100, 150, 500]
    for arrival in arrivals:
        assert (arrival.headers.get("X-Team") == "billing") is (arrival.path == "/big")


async def test_filter_dry_run_over_500_real_events(client: TestClient[Any, Any]) -> None:
    events: list[dict[str, Any]] = [
        {
            "type": "order.placed" if i % 3 else "order.refunded",
            "data": {
                "amount": i,
                "currency": ["EUR", "USD", "GBP"][i % 3],
                "tags": ["vip"] if i % 7 == 0 else [],
                "customer": {"email": f"user{i}@{'corp' if i % 5 == 0 else 'mail'}.example"},
            },
        }
        for i in range(500)
    ]
    for start in range(0, 500, 250):
        batch = [{"tenant": "acme", **e} for e in events[start : start + 250]]
        response = await client.post("/v1/events/batch", json={"events": batch}, headers=AUTH)
        assert response.status == 202
    other = {"tenant": "beta", "type": "order.placed", "data": {"amount": 10**6}}
    assert (await client.post("/v1/events", json=other, headers=AUTH)).status == 202

    query = {
        "$or": [
            {"data.amount": {"$gte": 450}, "data.currency": {"$in": ["EUR", "GBP"]}},
            {"data.tags": "vip", "data.customer.email": {"$regex": "@CORP\\.", "$options": "i"}},
        ]
    }

    def expected(e: dict[str, Any]) -> bool:
        d = e["data"]
        first = d["amount"] >= 450 and d["currency"] in ("EUR", "GBP")
        second = "vip" in d["tags"] and "@corp." in d["customer"]["email"]
        return bool(first or second)

    wanted = sorted(e["data"]["amount"] for e in events if expected(e))
    assert 0 < len(wanted) < 100
    response = await client.post(
        "/v1/filters/test", json={"filter": query, "last": 501, "tenant": "acme"}, headers=AUTH
    )
    # last is at most 1,000; 501 reads every acme event and the beta one, which is not counted.
    result = await response.json()
    assert response.status == 200, result
    assert result["examined"] == 500
    assert sorted(m["data"]["amount"] for m in result["data"]) == wanted
    assert result["matched"] == len(wanted)

    typed = await client.post(
        "/v1/filters/test",
        json={"filter": {"data.amount": {"$lt": 30}}, "event_type": "order.refunded", "last": 501},
        headers=AUTH,
    )
    refunded = sorted(m["data"]["amount"] for m in (await typed.json())["data"])
    assert refunded == [i for i in range(30) if i % 3 == 0]
    bad = await client.post(
        "/v1/filters/test", json={"filter": {"data.a": {"$regex": "(unclosed"}}}, headers=AUTH
    )
    assert bad.status == 422
    assert (await bad.json(content_type=None))["errors"][0]["field"] == "filter.data.a.$regex"

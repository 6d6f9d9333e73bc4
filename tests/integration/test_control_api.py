"""The control API's resources: tenants, endpoints (PATCH, secrets), event types,
ingest (batch, idempotency, schemas), pagination, deprecation and the spec."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from hookstream.config import Settings
from hookstream.topics import TopicNames
from tests.conftest import AUTH, read_topic

pytestmark = pytest.mark.integration

ENDPOINT = {"url": "http://127.0.0.1:9/hook", "tenant": "acme", "event_types": ["invoice.*"]}


async def _json(response: Any, status: int) -> Any:
    assert response.status == status, await response.text()
    return await response.json(content_type=None)


async def test_tenants_create_list_get_delete(client: TestClient[Any, Any]) -> None:
    created = await _json(
        await client.post(
            "/v1/tenants",
            json={"id": "acme", "name": "Acme Inc", "metadata": {"plan": "pro"}},
            headers=AUTH,
        ),
        201,
    )
    assert created["name"] == "Acme Inc"
    assert created["created_at"].endswith("Z")
    taken = await client.post("/v1/tenants", json={"id": "acme"}, headers=AUTH)
    assert (await _json(taken, 409))["title"] == "Conflict"
    assert (await _json(await client.get("/v1/tenants/acme", headers=AUTH), 200)) == created
    # An endpoint of an unknown tenant creates the tenant too.
    await _json(
        await client.post("/v1/endpoints", json={**ENDPOINT, "tenant": "beta"}, headers=AUTH), 201
    )
    listed = await _json(await client.get("/v1/tenants", headers=AUTH), 200)
    assert [t["id"] for t in listed["data"]] == ["acme", "beta"]
    # A tenant with endpoints is not deleted; an empty one is.
    await _json(await client.delete("/v1/tenants/beta", headers=AUTH), 409)
    assert (await client.delete("/v1/tenants/acme", headers=AUTH)).status == 204
    await _json(await client.get("/v1/tenants/acme", headers=AUTH), 404)
    bad = await _json(await client.post("/v1/tenants", json={"id": "a b"}, headers=AUTH), 422)
    assert bad["errors"][0]["field"] == "id"


async def test_patch_changes_only_the_fields_given(client: TestClient[Any, Any]) -> None:
    created = await _json(
        await client.post(
            "/v1/endpoints",
            json={**ENDPOINT, "description": "billing", "rate_limit": 5, "metadata": {"a": "1"}},
            headers=AUTH,
        ),
        201,
    )
    path = f"/v1/endpoints/{created['id']}"
    patched = await _json(
        await client.patch(
            path,
            json={
                "event_types": ["order.*"],
                "channels": ["eu"],
                "filter": {"data.amount": {"$gte": 100}},
                "headers": {"X-Team": "billing"},
                "rate_limit": None,
                "disabled": True,
            },
            headers=AUTH,
        ),
        200,
    )
    assert patched["event_types"] == ["order.*"]
    assert patched["channels"] == ["eu"]
    assert patched["filter"] == {"data.amount": {"$gte": 100}}
    assert patched["headers"] == {"X-Team": "billing"}
    assert patched["rate_limit"] is None
    assert patched["disabled"] is True
    assert patched["description"] == "billing"  # untouched
    assert patched["metadata"] == {"a": "1"}
    assert patched["updated_at"] >= created["updated_at"]
    assert "secret" not in patched
    assert await _json(await client.get(path, headers=AUTH), 200) == patched

    bad = await _json(
        await client.patch(
            path,
            json={
                "tenant": "other",
                "filter": {"data.x": {"$where": "1"}},
                "headers": {"X-Evil": "a\r\nInjected: 1", "Transfer-Encoding": "chunked"},
            },
            headers=AUTH,
        ),
        422,
    )
    fields = {e["field"] for e in bad["errors"]}
    assert fields == {
        "tenant",
        "filter.data.x.$where",
        "headers.X-Evil",
        "headers.Transfer-Encoding",
    }
    assert await _json(await client.get(path, headers=AUTH), 200) == patched  # nothing half-written


async def test_secret_get_and_rotate(client: TestClient[Any, Any]) -> None:
    created = await _json(await client.post("/v1/endpoints", json=ENDPOINT, headers=AUTH), 201)
    path = f"/v1/endpoints/{created['id']}/secret"
    assert await _json(await client.get(path, headers=AUTH), 200) == {
        "secret": created["secret"],
        "previous_expire_at": [],
    }
    rotated = await _json(await client.post(f"{path}/rotate", headers=AUTH), 200)
    assert rotated["secret"] != created["secret"]
    assert rotated["secret"].startswith("whsec_")
    assert len(rotated["previous_expire_at"]) == 1
    chosen = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
    again = await _json(
        await client.post(f"{path}/rotate", json={"secret": chosen}, headers=AUTH), 200
    )
    assert again["secret"] == chosen
    assert len(again["previous_expire_at"]) == 2
    reused = await client.post(f"{path}/rotate", json={"secret": chosen}, headers=AUTH)
    assert (await _json(reused, 422))["errors"][0]["field"] == "secret"
    listed = await _json(await client.get("/v1/endpoints", headers=AUTH), 200)
    assert "whsec_" not in str(listed)


async def test_pages_neither_repeat_nor_skip_under_concurrent_inserts(
    client: TestClient[Any, Any],
) -> None:
    async def create(tenant: str = "acme") -> str:
        body = await _json(
            await client.post("/v1/endpoints", json={**ENDPOINT, "tenant": tenant}, headers=AUTH),
            201,
        )
        return str(body["id"])

    before = set(await asyncio.gather(*(create() for _ in range(12))))
    seen: list[str] = []
    link: str | None = "/v1/endpoints?tenant=acme&limit=5"
    pages = 0
    while link:
        page = await _json(await client.get(link, headers=AUTH), 200)
        seen.extend(ep["id"] for ep in page["data"])
        link = page["next"]
        pages += 1
        if pages == 1:
            await asyncio.gather(*(create() for _ in range(4)))  # inserted mid-listing
    assert len(seen) == len(set(seen)), "a page repeated an endpoint"
    assert before <= set(seen), "a page skipped an endpoint that existed throughout"
    assert pages >= 3
    for query in ("limit=0", "limit=251", "limit=x", "colour=red"):
        await _json(await client.get(f"/v1/endpoints?{query}", headers=AUTH), 400)


async def test_event_type_schema_is_enforced_at_ingest(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    schema = {
        "type": "object",
        "properties": {"amount": {"type": "integer", "minimum": 0}},
        "required": ["amount"],
    }
    created = await _json(
        await client.post(
            "/v1/event-types",
            json={"name": "invoice.paid", "description": "An invoice was paid", "schema": schema},
            headers=AUTH,
        ),
        201,
    )
    assert created["schema"] == schema
    listed = await _json(await client.get("/v1/event-types", headers=AUTH), 200)
    assert [t["name"] for t in listed["data"]] == ["invoice.paid"]
    await _json(await client.get("/v1/event-types/invoice.paid", headers=AUTH), 200)
    bad_schema = await client.post(
        "/v1/event-types", json={"name": "x.y", "schema": {"type": "wat"}}, headers=AUTH
    )
    assert (await _json(bad_schema, 422))["errors"][0]["field"] == "schema"

    event = {"type": "invoice.paid", "tenant": "acme"}
    refused = await client.post("/v1/events", json={**event, "data": {"amount": -5}}, headers=AUTH)
    assert (await _json(refused, 422))["errors"] == [
        {"field": "data.amount", "message": "-5 is less than the minimum of 0"}
    ]
    missing = await client.post("/v1/events", json={**event, "data": {}}, headers=AUTH)
    assert (await _json(missing, 422))["errors"][0]["field"] == "data"
    ok = await client.post("/v1/events", json={**event, "data": {"amount": 5}}, headers=AUTH)
    accepted = await _json(ok, 202)
    records = await read_topic(settings, TopicNames(settings).events, expect=1)
    assert [r.key for r in records] == [accepted["id"].encode()]


async def test_batch_ingest_is_all_or_nothing_and_idempotent(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    events = [
        {"id": f"evt-{i}", "type": "order.created", "tenant": "acme", "data": {"i": i}}
        for i in range(300)
    ]
    bad = [*events[:10], {"type": "order.created", "tenant": "acme", "data": "nope"}]
    refused = await _json(
        await client.post("/v1/events/batch", json={"events": bad}, headers=AUTH), 422
    )
    assert refused["errors"][0]["field"] == "events[10].data"
    first = await _json(
        await client.post("/v1/events/batch", json={"events": events}, headers=AUTH), 202
    )
    assert [d["duplicate"] for d in first["data"]] == [False] * 300
    # The same ids again, plus a new one and a repeat inside the batch.
    extra = {"id": "evt-new", "type": "order.created", "tenant": "acme", "data": {}}
    again = await _json(
        await client.post(
            "/v1/events/batch", json={"events": [*events[:50], extra, extra]}, headers=AUTH
        ),
        202,
    )
    assert [d["duplicate"] for d in again["data"]] == [True] * 50 + [False, True]
    single = await _json(await client.post("/v1/events", json=events[7], headers=AUTH), 202)
    assert single == {"id": "evt-7", "duplicate": True}
    # Same id under another tenant is another event.
    other = await _json(
        await client.post("/v1/events", json={**events[7], "tenant": "beta"}, headers=AUTH), 202
    )
    assert other["duplicate"] is False
    # Ids hookstream generates cannot repeat: they are published without a claim.
    anonymous = {"type": "order.created", "tenant": "acme", "data": {}}
    assert (await client.post("/v1/events", json=anonymous, headers=AUTH)).status == 202
    redis = Redis.from_url(settings.redis_url)
    try:
        claims = [key async for key in redis.scan_iter(f"{settings.topic_prefix}idem:*")]
    finally:
        await redis.aclose()
    assert len(claims) == 302  # 300 + evt-new + beta's evt-7
    records = await read_topic(settings, TopicNames(settings).events, expect=303)
    assert len(records) == 303
    too_many = [{"type": "a.b", "tenant": "acme", "data": {}}] * 1001
    await _json(await client.post("/v1/events/batch", json={"events": too_many}, headers=AUTH), 422)


async def test_deprecated_route_says_so_and_spec_is_served(client: TestClient[Any, Any]) -> None:
    created = await _json(await client.post("/v1/endpoints", json=ENDPOINT, headers=AUTH), 201)
    enabled = await client.post(f"/v1/endpoints/{created['id']}/enable", headers=AUTH)
    assert enabled.status == 200
    assert enabled.headers["Deprecation"] == "@1795392000"
    assert enabled.headers["Sunset"] == "Sun, 23 May 2027 00:00:00 GMT"
    current = await client.get(f"/v1/endpoints/{created['id']}", headers=AUTH)
    assert "Deprecation" not in current.headers

    spec = await _json(await client.get("/v1/openapi.json"), 200)
    assert spec["openapi"] == "3.1.0"
    enable = spec["paths"]["/v1/endpoints/{endpoint_id}/enable"]["post"]
    assert enable["deprecated"] is True
    create = spec["paths"]["/v1/endpoints"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["required"] == ["url"]
    assert "Scope: `endpoints:write`" in create["description"]
    docs = await client.get("/docs")
    assert docs.status == 200
    assert "/v1/openapi.json" in await docs.text()

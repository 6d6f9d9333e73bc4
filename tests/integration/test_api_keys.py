"""API keys: shown once, stored hashed in Kafka, scopes, tenant binding, revocation,
and per-key rate tiers with RateLimit headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hookstream.api import create_app
from hookstream.config import Settings
from hookstream.topics import TopicNames
from tests.conftest import AUTH, eventually, read_topic

pytestmark = pytest.mark.integration


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    tiered = settings.replace(api_rate_tiers="tiny=5:3,standard=10000")
    async with TestClient(TestServer(create_app(tiered))) as test_client:
        yield test_client


async def _key(client: TestClient[Any, Any], **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/api-keys", json={"name": "k", **body}, headers=AUTH)
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    return created


async def _endpoint(client: TestClient[Any, Any], tenant: str) -> str:
    body = {"url": "http://127.0.0.1:9/hook", "tenant": tenant}
    response = await client.post("/v1/endpoints", json=body, headers=AUTH)
    assert response.status == 201
    return str((await response.json())["id"])


async def test_a_key_is_shown_once_and_stored_hashed(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    created = await _key(client, scopes=["endpoints:read"])
    key = created["key"]
    assert key.startswith(created["id"] + "_")
    assert created["hint"] == "…" + key[-4:]
    listed = await (await client.get("/v1/api-keys", headers=AUTH)).json()
    assert [k["id"] for k in listed["data"]] == [created["id"]]
    assert key not in str(listed)
    assert "digest" not in listed["data"][0]
    records = await read_topic(settings, TopicNames(settings).config, expect=1)
    stored = b"".join(r.value or b"" for r in records)
    assert created["id"].encode() in stored
    assert key.encode() not in stored
    assert key[len(created["id"]) + 1 :].encode() not in stored
    assert (await client.get("/v1/endpoints", headers=bearer(key))).status == 200


async def test_missing_invalid_and_revoked_keys_are_401(client: TestClient[Any, Any]) -> None:
    created = await _key(client, scopes=["admin"])
    key = created["key"]
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    for headers in ({}, bearer("hsk_000000000000_nope"), bearer(forged), bearer("x")):
        response = await client.get("/v1/endpoints", headers=headers)
        assert response.status == 401
        assert response.content_type == "application/problem+json"
    assert (await client.get("/v1/endpoints", headers=bearer(key))).status == 200
    assert (await client.delete(f"/v1/api-keys/{created['id']}", headers=AUTH)).status == 204
    assert (await client.get("/v1/endpoints", headers=bearer(key))).status == 401
    assert (await client.delete(f"/v1/api-keys/{created['id']}", headers=AUTH)).status == 404


async def test_a_missing_scope_is_403(client: TestClient[Any, Any]) -> None:
    reader = (await _key(client, scopes=["endpoints:read"]))["key"]
    publisher = (await _key(client, scopes=["events:publish"]))["key"]
    endpoint_id = await _endpoint(client, "acme")
    assert (await client.get(f"/v1/endpoints/{endpoint_id}", headers=bearer(reader))).status == 200
    for method, path in (
        ("POST", "/v1/endpoints"),
        ("DELETE", f"/v1/endpoints/{endpoint_id}"),
        ("GET", f"/v1/endpoints/{endpoint_id}/secret"),
        ("POST", "/v1/events"),
        ("GET", "/v1/dlq"),
        ("POST", "/v1/api-keys"),
        ("GET", "/v1/stats"),
    ):
        response = await client.request(method, path, json={}, headers=bearer(reader))
        assert response.status == 403, (method, path)
        assert "scope" in (await response.json(content_type=None))["detail"]
    event = {"type": "a.b", "tenant": "acme", "data": {}}
    assert (await client.post("/v1/events", json=event, headers=bearer(publisher))).status == 202
    assert (await client.get("/v1/endpoints", headers=bearer(publisher))).status == 403
    # Scope escalation: a non-admin key cannot mint keys, not even weaker ones.
    mint = {"name": "x", "scopes": ["endpoints:read"]}
    assert (await client.post("/v1/api-keys", json=mint, headers=bearer(reader))).status == 403


async def test_a_tenant_key_sees_only_its_tenant(client: TestClient[Any, Any]) -> None:
    own = await _endpoint(client, "acme")
    theirs = await _endpoint(client, "beta")
    scopes = ["endpoints:read", "endpoints:write", "events:publish", "dlq:manage"]
    key = (await _key(client, scopes=scopes, tenant="acme"))["key"]
    headers = bearer(key)
    listed = await (await client.get("/v1/endpoints", headers=headers)).json()
    assert [e["id"] for e in listed["data"]] == [own]
    other = await (await client.get("/v1/endpoints?tenant=beta", headers=headers)).json()
    assert other["data"] == []
    for method, path in (
        ("GET", f"/v1/endpoints/{theirs}"),
        ("PATCH", f"/v1/endpoints/{theirs}"),
        ("DELETE", f"/v1/endpoints/{theirs}"),
        ("GET", f"/v1/endpoints/{theirs}/secret"),
        ("POST", f"/v1/endpoints/{theirs}/secret/rotate"),
        ("GET", f"/v1/endpoints/{theirs}/health"),
        ("GET", f"/v1/endpoints/{theirs}/attempts"),
        ("GET", "/v1/tenants/beta"),
    ):
        response = await client.request(method, path, json={}, headers=headers)
        assert response.status == 404, (method, path)
        assert "whsec_" not in await response.text()
    assert (await client.get(f"/v1/endpoints/{own}/secret", headers=headers)).status == 200
    # Creating or publishing for another tenant is refused; the own tenant is the default.
    beta = {"url": "http://127.0.0.1:9/x", "tenant": "beta"}
    assert (await client.post("/v1/endpoints", json=beta, headers=headers)).status == 403
    implied = await client.post("/v1/endpoints", json={"url": beta["url"]}, headers=headers)
    assert (await implied.json())["tenant"] == "acme"
    event = {"type": "a.b", "data": {}}
    assert (
        await client.post("/v1/events", json={**event, "tenant": "beta"}, headers=headers)
    ).status == 403
    assert (await client.post("/v1/events", json=event, headers=headers)).status == 202
    # A bound key cannot act across tenants (admin cannot be bound: test_tenant_isolation.py).
    assert (await client.get("/v1/api-keys", headers=headers)).status == 403
    assert (await client.post("/v1/tenants", json={"id": "gamma"}, headers=headers)).status == 403
    tenants = await (await client.get("/v1/tenants", headers=headers)).json()
    assert [t["id"] for t in tenants["data"]] == ["acme"]


async def test_rate_tiers_limit_each_key_with_headers(client: TestClient[Any, Any]) -> None:
    key = (await _key(client, scopes=["endpoints:read"], tier="tiny"))["key"]
    other = (await _key(client, scopes=["endpoints:read"], tier="tiny"))["key"]
    statuses = []
    for _ in range(5):
        response = await client.get("/v1/tenants", headers=bearer(key))
        statuses.append(response.status)
        assert response.headers["RateLimit-Limit"] == "5"
        assert response.headers["RateLimit-Policy"] == "5;w=3600;burst=3"
    assert statuses == [200, 200, 200, 429, 429]
    assert int(response.headers["Retry-After"]) > 600  # 1 request per 720 s refills
    assert response.headers["RateLimit-Remaining"] == "0"
    problem = await response.json(content_type=None)
    assert problem["status"] == 429
    assert "tiny" in problem["detail"]
    # Another key of the same tier has its own bucket; the admin key is not limited.
    assert (await client.get("/v1/tenants", headers=bearer(other))).status == 200
    admin = await client.get("/v1/tenants", headers=AUTH)
    assert admin.status == 200
    assert "RateLimit-Limit" not in admin.headers
    unknown_tier = await client.post(
        "/v1/api-keys", json={"name": "k", "scopes": ["admin"], "tier": "gold"}, headers=AUTH
    )
    assert unknown_tier.status == 422


async def test_a_key_created_through_another_api_process_works_at_once(
    settings: Settings, client: TestClient[Any, Any]
) -> None:
    async with TestClient(TestServer(create_app(settings))) as second:
        key = (await _key(client, scopes=["endpoints:read"]))["key"]
        response = await second.get("/v1/endpoints", headers=bearer(key))
        assert response.status == 200
        key_id = key[:16]
        assert (await client.delete(f"/v1/api-keys/{key_id}", headers=AUTH)).status == 204

        async def refused() -> bool:
            return (await second.get("/v1/endpoints", headers=bearer(key))).status == 401

        await eventually(refused, timeout=10)


async def test_a_tenant_key_sees_only_its_tenants_redrive_tasks(
    client: TestClient[Any, Any],
) -> None:
    key = bearer((await _key(client, scopes=["dlq:manage"], tenant="acme"))["key"])
    own = await (await client.post("/v1/dlq/redrive", json={}, headers=key)).json()
    everyone = await (await client.post("/v1/dlq/redrive", json={}, headers=AUTH)).json()
    assert (await client.get(own["status"], headers=key)).status == 200
    assert (await client.get(everyone["status"], headers=key)).status == 404
    assert (await client.get(own["status"], headers=AUTH)).status == 200
    foreign = {"tenant": "beta"}
    assert (await client.post("/v1/dlq/redrive", json=foreign, headers=key)).status == 404

"""Tenant isolation over every operation of the API, read from the served OpenAPI document.

Scenario: tenant alpha has an endpoint (URL, secret), a published event, a
dead letter and a redrive task. A caller holding a key bound to tenant beta,
with every scope a tenant can hold, calls each operation the spec lists,
aimed at alpha's objects. Nothing of alpha comes back: no id, URL, secret,
event, tenant name or count, and no 5xx. The same holds for an admin key bound
to beta that was stored before binding admin to a tenant was refused. A new
route is covered the day it is declared: the test fails until it knows how to
aim that route at alpha.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from hookstream.api.state import CATALOG
from hookstream.config import Settings
from hookstream.engine.apikeys import SCOPES, ApiKey, new_api_key
from hookstream.engine.delivery import DeliveryTask, webhook_body
from hookstream.engine.event import validate_event
from hookstream.kafka import producer_options
from hookstream.topics import TopicNames
from tests.conftest import AUTH, eventually

pytestmark = pytest.mark.integration

ALPHA = "tenant-alpha"
BETA = "tenant-beta"
ALPHA_URL = "http://alpha-receiver.test:9/hook"
ALPHA_DATA_MARK = "alpha-private-datum"
TENANT_SCOPES = [s for s in SCOPES if s != "admin"]


async def _alpha(client: TestClient[Any, Any], settings: Settings) -> dict[str, str]:
    """Alpha's objects, made as the admin; returns every value that must not leak."""
    created = await client.post(
        "/v1/endpoints",
        json={"url": ALPHA_URL, "tenant": ALPHA, "event_types": ["*"]},
        headers=AUTH,
    )
    assert created.status == 201
    endpoint = await created.json()
    event = validate_event(
        {"id": "evt_alpha_1", "type": "order.paid", "tenant": ALPHA, "data": {"m": ALPHA_DATA_MARK}}
    )
    published = await client.post("/v1/events", json=orjson.loads(event.to_json()), headers=AUTH)
    assert published.status == 202
    task = DeliveryTask.for_event(event, endpoint["id"], webhook_body(event))
    producer = AIOKafkaProducer(**producer_options(settings, client_id="test"))
    await producer.start()
    try:
        headers = [*task.headers(), ("reason", b"http 500")]
        await producer.send_and_wait(
            TopicNames(settings).dlq, task.body, key=endpoint["id"].encode(), headers=headers
        )
    finally:
        await producer.stop()
    redrive = await client.post("/v1/dlq/redrive", json={"tenant": ALPHA}, headers=AUTH)
    assert redrive.status == 202
    created_type = await client.post("/v1/event-types", json={"name": "order.paid"}, headers=AUTH)
    assert created_type.status == 201
    key = await client.post(
        "/v1/api-keys",
        json={"name": "alpha", "scopes": TENANT_SCOPES, "tenant": ALPHA},
        headers=AUTH,
    )
    assert key.status == 201
    # A source whose records all belong to alpha (admin-only, like every source).
    topic = f"{settings.topic_prefix}alpha-orders"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    source = await client.post(
        "/v1/sources",
        json={
            "id": "alpha-orders",
            "topic": topic,
            "format": "json",
            "map": {"tenant": f"={ALPHA}"},
        },
        headers=AUTH,
    )
    assert source.status == 201, await source.text()
    return {
        "endpoint_id": endpoint["id"],
        "secret": endpoint["secret"],
        "url_host": "alpha-receiver",
        "tenant": ALPHA,
        "event_id": event.id,
        "data": ALPHA_DATA_MARK,
        "message_id": task.message_id,
        "task_id": (await redrive.json())["task_id"],
        "key_id": (await key.json())["id"],
        "source_id": "alpha-orders",
    }


def _aim(path: str, target: dict[str, str]) -> str:
    """The operation's path with each parameter naming one of `target`'s objects."""
    values = {
        "{endpoint_id}": target["endpoint_id"],
        "{tenant_id}": target["tenant"],
        "{message_id}": target["message_id"],
        "{task_id}": target["task_id"],
        "{key_id}": target["key_id"],
        "{source_id}": target["source_id"],
        "{name}": "order.paid",
    }
    for name, value in values.items():
        path = path.replace(name, value)
    assert "{" not in path, f"the isolation test does not know how to aim {path} at alpha"
    return path


# Ids of the same shape that name nothing: an answer about alpha's real objects
# must be the answer about these (existence is not revealed either).
GHOST = {
    "endpoint_id": "ep_000000000000000000000000",
    "tenant": "tenant-ghost",
    "message_id": "msg_00000000000000000000000000000000",
    "task_id": "task_000000000000000000000000",
    "key_id": "hsk_000000000000",
    "source_id": "ghost-orders",
}


# Bodies that try to reach alpha where an operation takes one.
BODIES: dict[tuple[str, str], Any] = {
    ("post", "/v1/endpoints"): {"url": "http://x.test/h", "tenant": ALPHA, "event_types": ["*"]},
    ("post", "/v1/events"): {"type": "order.paid", "tenant": ALPHA, "data": {}},
    ("post", "/v1/events/batch"): {"events": [{"type": "a.b", "tenant": ALPHA, "data": {}}]},
    ("post", "/v1/dlq/redrive"): {"tenant": ALPHA},
    ("post", "/v1/filters/test"): {"tenant": ALPHA, "filter": {"tenant": ALPHA}},
    ("post", "/v1/tenants"): {"id": "tenant-gamma"},
    ("post", "/v1/api-keys"): {"name": "x", "scopes": ["endpoints:read"], "tenant": ALPHA},
    ("post", "/v1/event-types"): {"name": "order.refunded"},
    ("post", "/v1/sources"): {"id": "beta-orders", "topic": "alpha-orders", "format": "json"},
    ("patch", "/v1/endpoints/{endpoint_id}"): {"url": "http://beta.test/h"},
    ("post", "/v1/endpoints/{endpoint_id}/replay"): {"since": "2000-01-01T00:00:00Z"},
}
# Event types are one catalog shared by every tenant (docs/api.md), not alpha's data.
SHARED = {"/v1/event-types", "/v1/event-types/{name}"}


async def _legacy_admin_key(client: TestClient[Any, Any]) -> str:
    """An admin key bound to beta, stored as keys were before that was refused."""
    stored, token = new_api_key("legacy", ["endpoints:read"], BETA, "standard")
    legacy = ApiKey(**{**{f: getattr(stored, f) for f in stored.__slots__}, "scopes": ("admin",)})
    await client.app[CATALOG].put_api_key(legacy)
    return token


@pytest.mark.parametrize("caller", ["tenant-scopes", "legacy-admin"])
async def test_no_operation_reveals_another_tenant(
    client: TestClient[Any, Any], settings: Settings, caller: str
) -> None:
    alpha = await _alpha(client, settings)
    await eventually(  # the redrive task has started and is alpha's
        lambda: _status(client, f"/v1/tasks/{alpha['task_id']}", AUTH), timeout=30
    )
    if caller == "tenant-scopes":
        made = await client.post(
            "/v1/api-keys",
            json={"name": "beta", "scopes": TENANT_SCOPES, "tenant": BETA},
            headers=AUTH,
        )
        assert made.status == 201
        token = (await made.json())["key"]
    else:
        token = await _legacy_admin_key(client)
    beta = {"Authorization": f"Bearer {token}"}
    spec = await (await client.get("/v1/openapi.json")).json()
    called = []
    for template, methods in spec["paths"].items():
        for method in methods:
            if method not in ("get", "post", "patch", "delete"):
                continue
            body = BODIES.get((method, template))
            payload = body if body is not None else {}
            ghost = await client.request(
                method.upper(), _aim(template, {**alpha, **GHOST}), json=payload, headers=beta
            )
            path = _aim(template, alpha)
            response = await client.request(method.upper(), path, json=payload, headers=beta)
            text = await response.text()
            where = f"{method.upper()} {template} -> {response.status}: {text[:300]}"
            assert response.status < 500, where
            assert response.status == ghost.status, f"{where}; for a ghost id {ghost.status}"
            sent = path + orjson.dumps(payload).decode()
            for name, value in alpha.items():
                if value in sent or (template in SHARED and name == "event_id"):
                    continue  # what the caller sent may be echoed back
                assert value not in text, f"{where} reveals alpha's {name}"
            if response.status < 300 and template not in SHARED:
                listed = orjson.loads(text) if text else None
                if isinstance(listed, dict) and isinstance(listed.get("data"), list):
                    assert all(item.get("tenant") in (None, BETA) for item in listed["data"]), where
            called.append((method, template))
    assert len(called) == sum(
        1
        for methods in spec["paths"].values()
        for m in methods
        if m in ("get", "post", "patch", "delete")
    )
    assert len(called) >= 30
    # Alpha's objects are still there and unchanged for the admin.
    endpoint = await (
        await client.get(f"/v1/endpoints/{alpha['endpoint_id']}", headers=AUTH)
    ).json()
    assert endpoint["url"] == ALPHA_URL
    assert endpoint["disabled"] is False


async def _status(client: TestClient[Any, Any], path: str, headers: dict[str, str]) -> bool:
    return (await client.get(path, headers=headers)).status == 200


async def test_admin_cannot_be_bound_to_a_tenant(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/v1/api-keys", json={"name": "x", "scopes": ["admin"], "tenant": BETA}, headers=AUTH
    )
    assert response.status == 422
    body = await response.json(content_type=None)
    assert body["errors"][0]["field"] == "scopes"
    listed = await (await client.get("/v1/api-keys", headers=AUTH)).json()
    assert listed["data"] == []


async def test_a_legacy_tenant_bound_admin_key_cannot_see_stats(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    await _alpha(client, settings)
    beta = {"Authorization": f"Bearer {await _legacy_admin_key(client)}"}
    response = await client.get("/v1/stats", headers=beta)
    assert response.status == 403
    assert ALPHA not in await response.text()
    assert (await client.get("/v1/stats", headers=AUTH)).status == 200

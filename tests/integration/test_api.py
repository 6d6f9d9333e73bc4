"""The control API on a real socket, backed by the embedded broker."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from hookstream.api import create_app
from hookstream.api.state import REGISTRY
from hookstream.config import Settings
from hookstream.errors import ConfigError
from hookstream.topics import TopicNames
from tests.conftest import AUTH, EndpointFactory, read_to_end, slow_down

pytestmark = pytest.mark.integration

ENDPOINT = {"url": "http://127.0.0.1:9/hook", "tenant": "acme", "event_types": ["invoice.*"]}


async def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json(content_type=None)
    assert body["status"] == status
    assert body["title"]
    return body


async def _events_in_topic(settings: Settings) -> list[Any]:
    """Every record in the events topic, read to its end offsets."""
    return await read_to_end(settings, TopicNames(settings).events)


async def test_create_get_list_delete_endpoint(client: TestClient[Any, Any]) -> None:
    created = await client.post("/v1/endpoints", json=ENDPOINT, headers=AUTH)
    assert created.status == 201
    body = await created.json()
    assert body["id"].startswith("ep_")
    assert body["secret"].startswith("whsec_")
    assert body["event_types"] == ["invoice.*"]

    fetched = await client.get(f"/v1/endpoints/{body['id']}", headers=AUTH)
    assert fetched.status == 200
    shown = await fetched.json()
    assert shown["url"] == ENDPOINT["url"]
    assert "secret" not in shown

    listed = await (await client.get("/v1/endpoints?tenant=acme", headers=AUTH)).json()
    assert [e["id"] for e in listed["data"]] == [body["id"]]
    assert all("secret" not in e for e in listed["data"])
    other = await (await client.get("/v1/endpoints?tenant=globex", headers=AUTH)).json()
    assert other["data"] == []

    deleted = await client.delete(f"/v1/endpoints/{body['id']}", headers=AUTH)
    assert deleted.status == 204
    await _problem(await client.get(f"/v1/endpoints/{body['id']}", headers=AUTH), 404)
    await _problem(await client.delete(f"/v1/endpoints/{body['id']}", headers=AUTH), 404)


async def test_requests_without_a_valid_key_get_401(client: TestClient[Any, Any]) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong-key-wrong-key"},
        {"Authorization": "Basic x"},
    ):
        response = await client.get("/v1/endpoints", headers=headers)
        await _problem(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer"
    await _problem(await client.post("/v1/events", json={}), 401)


async def test_healthz_needs_no_key(client: TestClient[Any, Any]) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_invalid_endpoint_is_422_naming_each_field(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/v1/endpoints",
        json={"url": "ftp://x", "tenant": "a b", "event_types": ["ok.*", "bad..glob"], "x": 1},
        headers=AUTH,
    )
    body = await _problem(response, 422)
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"url", "tenant", "event_types[1]", "x"}


async def test_an_endpoint_with_10000_event_types_is_422(client: TestClient[Any, Any]) -> None:
    many = [f"order.kind{i}" for i in range(10_000)]
    response = await client.post(
        "/v1/endpoints", json={**ENDPOINT, "event_types": many}, headers=AUTH
    )
    body = await _problem(response, 422)
    assert body["errors"] == [{"field": "event_types", "message": "at most 100 patterns"}]
    listed = await client.get("/v1/endpoints", headers=AUTH)
    assert (await listed.json())["data"] == []


async def test_bad_bodies_are_400_or_413(client: TestClient[Any, Any], settings: Settings) -> None:
    not_json = await client.post(
        "/v1/endpoints", data=b"{nope", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert "not valid JSON" in (await _problem(not_json, 400))["detail"]
    wrong_type = await client.post(
        "/v1/endpoints", data=b"url=x", headers={**AUTH, "Content-Type": "text/plain"}
    )
    await _problem(wrong_type, 400)
    huge = b'{"data": "' + b"x" * settings.api_max_body_bytes + b'"}'
    too_big = await client.post(
        "/v1/events", data=io.BytesIO(huge), headers={**AUTH, "Content-Type": "application/json"}
    )
    await _problem(too_big, 413)


async def test_unknown_routes_and_methods_are_problems(client: TestClient[Any, Any]) -> None:
    await _problem(await client.get("/v1/nothing", headers=AUTH), 404)
    response = await client.put("/v1/endpoints", json={}, headers=AUTH)
    await _problem(response, 405)
    assert "POST" in response.headers["Allow"]


async def test_publish_event_writes_it_to_the_events_topic(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    response = await client.post(
        "/v1/events",
        json={"type": "invoice.paid", "tenant": "acme", "subject": "inv-1", "data": {"a": 1}},
        headers=AUTH,
    )
    assert response.status == 202
    event_id = (await response.json())["id"]
    records = await _events_in_topic(settings)  # 202: written and acknowledged
    assert len(records) == 1
    assert records[0].key == b"inv-1"
    stored = orjson.loads(records[0].value)
    assert stored["id"] == event_id
    assert stored["data"] == {"a": 1}


async def test_invalid_event_is_422_and_nothing_is_written(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    body = await _problem(
        await client.post("/v1/events", json={"tenant": "acme", "data": {}}, headers=AUTH), 422
    )
    assert body["errors"] == [{"field": "type", "message": "is required and must be a string"}]
    assert await _events_in_topic(settings) == []


async def test_an_event_over_the_size_limit_is_422_and_nothing_is_written(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    # Under the API's 1 MiB body limit, over the 512 KiB event limit.
    event = {"type": "a.b", "tenant": "acme", "data": {"pad": "x" * 600_000}}
    body = await _problem(await client.post("/v1/events", json=event, headers=AUTH), 422)
    (error,) = body["errors"]
    assert error["field"] == "$"
    assert error["message"].endswith(f"bytes, over {settings.max_event_bytes}")
    assert await _events_in_topic(settings) == []


def test_the_api_refuses_to_start_without_an_admin_key(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="HOOKSTREAM_ADMIN_KEY"):
        create_app(settings.replace(admin_key=""))


async def test_real_mode_refuses_loopback_endpoints(settings: Settings) -> None:
    async with TestClient(TestServer(create_app(settings.replace(dev_mode=False)))) as client:
        response = await client.post("/v1/endpoints", json=ENDPOINT, headers=AUTH)
        body = await _problem(response, 422)
        assert {e["field"] for e in body["errors"]} == {"url"}


async def test_an_endpoint_written_by_another_process_is_found_at_once(
    client: TestClient[Any, Any], endpoint_factory: EndpointFactory
) -> None:
    """Read-your-writes across API processes (the fixture's registry is "another process").

    The API's registry tail is slowed to one poll every 3 s, so only the
    catch-up on a miss (and before a list) can find the new endpoint in time.
    """
    app = client.app
    assert app is not None
    await slow_down(app[REGISTRY], 3.0)
    endpoint = await endpoint_factory("http://127.0.0.1:9/hook", "acme", ["*"])
    fetched = await client.get(f"/v1/endpoints/{endpoint.id}", headers=AUTH)
    assert fetched.status == 200
    other = await endpoint_factory("http://127.0.0.1:9/hook", "acme", ["*"])
    listed = await (await client.get("/v1/endpoints?tenant=acme", headers=AUTH)).json()
    assert {endpoint.id, other.id} <= {e["id"] for e in listed["data"]}

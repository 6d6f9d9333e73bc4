"""Bad input and bad actors at the control API (fault items 8, 9 and 10).

Bad producer input gets a clear 4xx and writes nothing; duplicate event ids
are dropped; endpoint input that could inject headers or hang the router is
refused or bounded; keys that are missing, wrong, revoked, foreign or too weak
get 401/403/404; secrets and keys never reach logs or list responses.
"""

from __future__ import annotations

import hmac
import io
import logging
import time
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.logs import NOISY, quiet_libraries
from hookstream.topics import TopicNames
from tests.conftest import ADMIN_KEY, AUTH, Serve, eventually, read_topic

pytestmark = pytest.mark.integration

JSON = {**AUTH, "Content-Type": "application/json"}


async def _status(response: Any) -> int:
    if response.status >= 400:
        assert response.content_type == "application/problem+json"
    return int(response.status)


async def test_bad_producer_input_is_refused_and_nothing_is_half_written(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    good = {"id": "evt-good", "type": "order.placed", "tenant": "acme", "data": {"n": 1}}
    huge = orjson.dumps({**good, "id": "evt-huge", "data": {"x": "y" * 2_000_000}})
    refused = [
        (await client.post("/v1/events", data=b'{"type": ', headers=JSON), 400),
        (await client.post("/v1/events", json={"tenant": "acme", "data": {}}, headers=AUTH), 422),
        (await client.post("/v1/events", data=io.BytesIO(huge), headers=JSON), 413),
        (await client.post("/v1/events", json={**good, "data": []}, headers=AUTH), 422),
        (await client.post("/v1/events", json={**good, "type": 5}, headers=AUTH), 422),
        (await client.post("/v1/events", json={**good, "occurred_at": "soon"}, headers=AUTH), 422),
        (await client.post("/v1/events", json={**good, "id": "a\u0000b"}, headers=AUTH), 422),
        (await client.post("/v1/events", json=[good], headers=AUTH), 422),
        # A batch with one bad event publishes none of them.
        (
            await client.post(
                "/v1/events/batch",
                json={"events": [{**good, "id": "evt-b1"}, {**good, "tenant": "a b"}]},
                headers=AUTH,
            ),
            422,
        ),
    ]
    for response, expected in refused:
        assert await _status(response) == expected, await response.text()
    # Unicode edge cases are data, accepted as sent.
    odd = {**good, "id": "evt-odd", "data": {"s": "😀 𝄞 \u0000 \u202e \ud7ff"}}
    assert (await client.post("/v1/events", json=odd, headers=AUTH)).status == 202
    first = await (await client.post("/v1/events", json=good, headers=AUTH)).json()
    again = await (await client.post("/v1/events", json=good, headers=AUTH)).json()
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    records = await read_topic(settings, TopicNames(settings).events, expect=2)
    assert sorted(r.key for r in records) == [b"evt-good", b"evt-odd"]
    stored = next(orjson.loads(r.value) for r in records if r.key == b"evt-odd")
    assert stored["data"] == odd["data"]


async def test_endpoint_input_that_could_inject_or_hang_is_refused(
    client: TestClient[Any, Any],
) -> None:
    base = {"url": "https://hooks.example.com/in", "tenant": "acme"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"headers": {"X-A": "v\r\nX-Injected: 1"}}, "headers.X-A"),
        ({"headers": {"X-A": "v\u0000"}}, "headers.X-A"),
        ({"headers": {"X-A": "v" * 5000}}, "headers.X-A"),
        ({"headers": {"Transfer-Encoding": "chunked"}}, "headers.Transfer-Encoding"),
        ({"headers": {"webhook-signature": "v1,forged"}}, "headers.webhook-signature"),
        ({"filter": {"data.s": {"$regex": "(a)\\1"}}}, "filter.data.s.$regex"),
        ({"filter": {"data.s": {"$regex": "((a{100}){100}){100}"}}}, "filter.data.s.$regex"),
        ({"filter": {"data.s": {"$where": "sleep(1)"}}}, "filter.data.s.$where"),
        ({"url": "https://user:pw@hooks.example.com/"}, "url"),
        ({"url": "gopher://hooks.example.com/"}, "url"),
        ({"event_types": [f"t.e{i}" for i in range(10_000)]}, "event_types"),
    ]
    for change, field in cases:
        response = await client.post("/v1/endpoints", json={**base, **change}, headers=AUTH)
        assert await _status(response) == 422, change
        problem = await response.json(content_type=None)
        assert field in {e["field"] for e in problem["errors"]}, (change, problem)
        assert all(e["message"] for e in problem["errors"])
    listed = await (await client.get("/v1/endpoints", headers=AUTH)).json()
    assert listed["data"] == []


async def test_a_catastrophic_regex_filter_cannot_stall_routing(
    client: TestClient[Any, Any], worker: Worker, serve: Serve
) -> None:
    arrivals: list[bytes] = []

    async def receive(request: web.Request) -> web.Response:
        arrivals.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    url = f"{await serve(app)}/hook"
    body = {"url": url, "tenant": "acme", "filter": {"data.s": {"$regex": "^(a+)+$"}}}
    assert (await client.post("/v1/endpoints", json=body, headers=AUTH)).status == 201
    hostile = "a" * 200_000 + "!"  # years of backtracking for a backtracking engine
    events = [
        {"type": "t.x", "tenant": "acme", "data": {"s": hostile}},
        {"type": "t.x", "tenant": "acme", "data": {"s": "aaaa"}},
    ]
    started = time.monotonic()
    response = await client.post("/v1/events/batch", json={"events": events}, headers=AUTH)
    assert response.status == 202
    await eventually(lambda: len(arrivals) == 1, timeout=30)
    assert orjson.loads(arrivals[0])["data"] == {"s": "aaaa"}
    assert time.monotonic() - started < 30


async def test_keys_missing_wrong_revoked_foreign_or_weak_are_refused(
    client: TestClient[Any, Any],
) -> None:
    endpoint = {"url": "https://hooks.example.com/in", "tenant": "beta"}
    theirs = (await (await client.post("/v1/endpoints", json=endpoint, headers=AUTH)).json())["id"]
    made = await client.post(
        "/v1/api-keys",
        json={"name": "acme ci", "scopes": ["endpoints:read"], "tenant": "acme"},
        headers=AUTH,
    )
    created = await made.json()
    key = {"Authorization": f"Bearer {created['key']}"}
    assert await _status(await client.get("/v1/endpoints")) == 401
    assert (
        await _status(await client.get("/v1/endpoints", headers={"Authorization": "Bearer x"}))
        == 401
    )
    assert await _status(await client.get(f"/v1/endpoints/{theirs}", headers=key)) == 404
    assert await _status(await client.post("/v1/endpoints", json=endpoint, headers=key)) == 403
    escalate = {"name": "mine", "scopes": ["admin"]}
    assert await _status(await client.post("/v1/api-keys", json=escalate, headers=key)) == 403
    assert (await client.delete(f"/v1/api-keys/{created['id']}", headers=AUTH)).status == 204
    assert await _status(await client.get("/v1/endpoints", headers=key)) == 401


async def test_keys_are_compared_in_constant_time(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await (
        await client.post(
            "/v1/api-keys", json={"name": "k", "scopes": ["endpoints:read"]}, headers=AUTH
        )
    ).json()
    compared: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return bool(real(a, b))

    monkeypatch.setattr(hmac, "compare_digest", spy)
    wrong = created["key"][:-2] + "zz"
    response = await client.get("/v1/endpoints", headers={"Authorization": f"Bearer {wrong}"})
    assert response.status == 401
    # The admin key and the stored key were both checked, digest against digest:
    # equal lengths, so neither the time nor an early exit says anything.
    assert len(compared) == 2, "a key was compared with a plain =="
    assert all(len(a) == len(b) for a, b in compared)


async def test_secrets_and_keys_never_reach_logs_or_lists(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # At DEBUG, as `hookstream ... --log-level DEBUG` configures it (logs.configure).
    caplog.set_level(logging.DEBUG)
    before = {name: logging.getLogger(name).level for name in NOISY}
    quiet_libraries(logging.DEBUG)
    try:
        await _exercise_secrets(client, caplog)
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)


async def _exercise_secrets(client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture) -> None:
    endpoint = await (
        await client.post(
            "/v1/endpoints",
            json={"url": "https://hooks.example.com/in", "tenant": "acme"},
            headers=AUTH,
        )
    ).json()
    rotate = f"/v1/endpoints/{endpoint['id']}/secret/rotate"
    new = (await (await client.post(rotate, headers=AUTH)).json())["secret"]
    key = (
        await (
            await client.post("/v1/api-keys", json={"name": "k", "scopes": ["admin"]}, headers=AUTH)
        ).json()
    )["key"]
    await client.get("/v1/endpoints", headers={"Authorization": f"Bearer {key}x"})  # a 401
    lists = [
        await (await client.get(path, headers=AUTH)).text()
        for path in ("/v1/endpoints", f"/v1/endpoints/{endpoint['id']}", "/v1/api-keys")
    ]
    for secret in (endpoint["secret"], new, key, ADMIN_KEY):
        assert secret not in caplog.text
        assert all(secret not in body for body in lists)

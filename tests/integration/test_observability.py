"""What SREs see: /metrics agreeing with the sink, probes, /v1/stats, logs, the dashboard page."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import async_playwright, expect

from hookstream.api import create_app
from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.embedded import free_port
from hookstream.logs import configure
from hookstream.producers import EventPublisher
from tests.conftest import ADMIN_KEY, AUTH, EndpointFactory, SinkFactory, eventually

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = os.environ.get("HOOKSTREAM_CHROMIUM", "/usr/bin/chromium")
HAVE_CHROMIUM = Path(CHROMIUM).exists()


async def _publish(settings: Settings, events: list[dict[str, Any]]) -> list[str]:
    async with EventPublisher(settings) as publisher:
        return await publisher.publish_many(events)


async def _scrape(url: str) -> dict[str, float]:
    """Samples of a Prometheus text page: 'name{labels}' → value."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        text = await response.text()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def test_metrics_agree_with_what_the_sink_counted(
    fast: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    port = free_port()
    cfg = fast.replace(worker_metrics_port=port)
    # Every third delivery fails its first attempt.
    sink = await sink_factory(script=lambda n: (500, {}) if n == 1 else (204, {}))
    flaky = await sink_factory(script=lambda n: (500, {}) if n == 1 else (204, {}))
    steady = await sink_factory()
    await endpoint_factory(sink.url, "acme", ["a.*"])
    await endpoint_factory(flaky.url, "acme", ["b.*"])
    await endpoint_factory(steady.url, "acme", ["c.*"])
    worker = Worker(cfg)
    await worker.start()
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        events = [
            {"type": f"{kind}.x", "tenant": "acme", "data": {"n": n}}
            for n in range(100)
            for kind in ("a", "b", "c")
        ]
        await _publish(cfg, events)
        # During the run: never more counted than the sinks saw.
        during = await _scrape(url)
        delivered_key = 'hookstream_deliveries_total{outcome="delivered"}'
        retry_key = 'hookstream_deliveries_total{outcome="retry"}'

        def accepted() -> int:
            return sum(s.recorder.accepted for s in (sink, flaky, steady))

        def failed() -> int:
            return sum(s.recorder.failed for s in (sink, flaky, steady))

        assert during[delivered_key] <= accepted()
        await eventually(lambda: accepted() == 300, timeout=60)
        after: dict[str, float] = {}

        async def settled() -> bool:
            after.update(await _scrape(url))
            return after[delivered_key] == accepted() and after[retry_key] == failed()

        deadline = time.monotonic() + 10
        while not await settled():
            assert time.monotonic() < deadline, (after, accepted(), failed())
            await asyncio.sleep(0.1)
        assert after[delivered_key] == 300
        assert after[retry_key] == 200  # first attempts at the two failing sinks
        assert after["hookstream_events_total"] == 300
        # Each router batch timed once per stage: at least one batch, at most one per event.
        batches = after['hookstream_router_batch_seconds_count{stage="waited"}']
        assert 1 <= batches <= 300
        for stage in ("barrier", "route", "acks"):
            assert after[f'hookstream_router_batch_seconds_count{{stage="{stage}"}}'] == batches
        assert after['hookstream_router_batch_seconds_sum{stage="waited"}'] > 0
        assert after["hookstream_attempt_duration_seconds_count"] == 500
        assert after["hookstream_delivery_latency_seconds_count"] == 300
        assert after['hookstream_deliveries_total{outcome="dead"}'] == 0
        assert (
            after['hookstream_endpoints{state="healthy"}']
            + after['hookstream_endpoints{state="degraded"}']
            + after['hookstream_endpoints{state="failing"}']
            == 3
        )

        # Lag and pending retries come from the broker every few seconds.
        lag: dict[str, float] = {}

        async def lag_reported() -> bool:
            lag.update(await _scrape(url))
            return any(k.startswith("hookstream_consumer_lag{") for k in lag)

        deadline = time.monotonic() + 20
        while not await lag_reported():
            assert time.monotonic() < deadline, "no lag gauges"
            await asyncio.sleep(0.2)
        assert "hookstream_dlq_messages" in lag
        assert any(k.startswith("hookstream_retry_pending{") for k in lag)

        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                body = await response.json()
                assert response.status == 200, body
                assert body["checks"] == {"stages": True, "broker": True, "redis": True}
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
    finally:
        await worker.stop()


async def test_api_metrics_label_requests_by_route_template(
    client: TestClient[Any, Any], endpoint_factory: EndpointFactory, sink_factory: SinkFactory
) -> None:
    sink = await sink_factory()
    endpoint = await endpoint_factory(sink.url, "acme", ["*"])
    for _ in range(3):
        assert (await client.get(f"/v1/endpoints/{endpoint.id}", headers=AUTH)).status == 200
    assert (await client.get("/v1/endpoints/ep_missing", headers=AUTH)).status == 404
    assert (await client.get("/no/such/route", headers=AUTH)).status == 404
    response = await client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    route = "/v1/endpoints/{endpoint_id}"
    assert f'hookstream_http_requests_total{{route="{route}",status="200"}} 3.0' in text
    assert f'hookstream_http_requests_total{{route="{route}",status="404"}} 1.0' in text
    assert 'hookstream_http_requests_total{route="unmatched",status="404"} 1.0' in text
    assert endpoint.id not in text  # raw paths never become labels
    assert f'hookstream_http_request_duration_seconds_count{{route="{route}"}} 4.0' in text


async def test_readyz_reports_what_is_missing(fast: Settings, stack: Any) -> None:
    async with TestClient(TestServer(create_app(fast))) as client:
        ready = await client.get("/readyz")
        assert ready.status == 200
        assert (await ready.json())["checks"] == {"redis": True, "broker": True, "config": True}
        assert (await client.get("/healthz")).status == 200
    no_redis = fast.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with TestClient(TestServer(create_app(no_redis))) as client:
        response = await client.get("/readyz")
        assert response.status == 503
        body = await response.json()
        assert body["checks"] == {"redis": False, "broker": True, "config": True}
        assert (await client.get("/healthz")).status == 200  # alive, not ready


async def test_stats_show_throughput_health_and_dead_letters(
    fast: Settings,
    client: TestClient[Any, Any],
    sink_factory: SinkFactory,
    endpoint_factory: EndpointFactory,
) -> None:
    good = await sink_factory()
    bad = await sink_factory(script=lambda n: (500, {}))
    await endpoint_factory(good.url, "acme", ["good.*"])
    sick = await endpoint_factory(bad.url, "acme", ["bad.*"], max_attempts=1)
    worker = Worker(fast)
    await worker.start()
    try:
        await _publish(
            fast,
            [{"type": "good.x", "tenant": "acme", "data": {}} for _ in range(20)]
            + [{"type": "bad.x", "tenant": "acme", "data": {}} for _ in range(3)],
        )
        await eventually(lambda: good.recorder.accepted == 20 and bad.recorder.failed == 3)
        body: dict[str, Any] = {}

        async def complete() -> bool:
            response = await client.get("/v1/stats?minutes=5", headers=AUTH)
            assert response.status == 200
            body.update(await response.json())
            worst = body["endpoints"]["worst"]
            return (
                body["totals"]["delivered"] == 20
                and body["totals"]["failed"] == 3
                and bool(worst)
                and worst[0]["endpoint_id"] == sick.id
                and body["dlq_messages"] == 3
                and body["dlq_open"] == 3
            )

        deadline = time.monotonic() + 30
        while not await complete():
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.2)
    finally:
        await worker.stop()
    assert body["endpoints"]["by_state"]["failing"] == 1
    assert body["endpoints"]["by_state"]["healthy"] == 1
    assert body["totals"]["success_ratio"] == pytest.approx(20 / 23, abs=1e-3)
    assert body["totals"]["latency_p50_ms"] is not None
    assert len(body["series"]) == 30  # 5 minutes of 10-second steps
    bad_query = await client.get("/v1/stats?minutes=0", headers=AUTH)
    assert bad_query.status == 422
    assert bad_query.content_type == "application/problem+json"
    assert (await client.get("/v1/stats")).status == 401


async def test_delivery_logs_are_json_with_ids_and_never_the_secret(
    fast: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    # The logging a `hookstream worker` sets up, at its most verbose, into a buffer.
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    noisy = {name: logging.getLogger(name).level for name in ("aiokafka",)}
    configure("DEBUG")
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    sink = await sink_factory(script=lambda n: (500, {}) if n == 1 else (204, {}))
    endpoint = await endpoint_factory(sink.url, "acme", ["*"], max_attempts=2)
    dead_sink = await sink_factory(script=lambda n: (500, {}))
    doomed = await endpoint_factory(dead_sink.url, "beta", ["*"], max_attempts=1)
    worker = Worker(fast)
    try:
        await worker.start()
        await _publish(
            fast,
            [
                {"type": "order.paid", "tenant": "acme", "data": {}},
                {"type": "order.paid", "tenant": "beta", "data": {}},
            ],
        )
        await eventually(lambda: sink.recorder.accepted == 1 and dead_sink.recorder.failed == 1)
        await eventually(lambda: '"delivery dead-lettered"' in stream.getvalue(), timeout=10)
    finally:
        await worker.stop()
        root.handlers[:], level = saved
        root.setLevel(level)
        for name, noisy_level in noisy.items():
            logging.getLogger(name).setLevel(noisy_level)
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    delivery_lines = [line for line in lines if line["msg"].startswith("delivery ")]
    outcomes = {line["msg"] for line in delivery_lines}
    assert {
        "delivery retry",
        "delivery delivered",
        "delivery dead",
        "delivery dead-lettered",
    } <= outcomes
    for line in delivery_lines:
        assert line["webhook_id"].startswith("msg_"), line
        assert line["endpoint_id"] in {endpoint.id, doomed.id}, line
        assert line["tenant"] in {"acme", "beta"}, line
        assert line["level"] in {"debug", "info", "warning"}
    text = stream.getvalue()
    for secret in (endpoint.secret, doomed.secret):
        assert secret not in text
        assert secret.removeprefix("whsec_") not in text


async def test_dashboard_renders_live_data_and_redrives_a_dead_letter(
    fast: Settings, sink_factory: SinkFactory, endpoint_factory: EndpointFactory
) -> None:
    healthy = await sink_factory()
    flaky = await sink_factory(script=lambda n: (500, {}) if n == 1 else (204, {}))
    gone = await sink_factory(script=lambda n: (410, {}))
    await endpoint_factory(healthy.url, "acme", ["order.*"])
    once = await endpoint_factory(flaky.url, "acme", ["invoice.*"], max_attempts=1)
    removed = await endpoint_factory(gone.url, "acme", ["user.*"])
    worker = Worker(fast)
    await worker.start()
    try:
        async with TestClient(TestServer(create_app(fast))) as client:
            await _publish(
                fast,
                [{"type": "order.paid", "tenant": "acme", "data": {"n": n}} for n in range(30)]
                + [
                    {"type": "invoice.sent", "tenant": "acme", "data": {}},
                    {"type": "user.created", "tenant": "acme", "data": {}},
                ],
            )
            await eventually(lambda: healthy.recorder.accepted == 30 and flaky.recorder.failed == 1)

            async def dead_letters() -> list[dict[str, Any]]:
                response = await client.get(f"/v1/dlq?endpoint_id={once.id}", headers=AUTH)
                data: list[dict[str, Any]] = (await response.json())["data"]
                return data

            deadline = time.monotonic() + 30
            while not (letters := await dead_letters()):
                assert time.monotonic() < deadline, "no dead letter"
                await asyncio.sleep(0.2)
            message_id = letters[0]["message_id"]

            async with async_playwright() as pw:
                browser = await _chromium(pw)
                try:
                    page = await browser.new_page(viewport={"width": 1280, "height": 900})
                    await page.goto(str(client.make_url("/dashboard")))
                    await page.fill("#key", ADMIN_KEY)
                    await page.click("#connect")
                    redrive = page.locator(f'button[data-message="{message_id}"]')
                    await redrive.wait_for(timeout=30_000)
                    enable = page.locator(f'button[data-endpoint="{removed.id}"]')
                    await enable.wait_for(timeout=30_000)
                    # Live data: the delivered series and the endpoint counts are drawn.
                    await page.locator("#chart-rate polyline").wait_for(
                        state="attached", timeout=30_000
                    )
                    assert re.fullmatch(r"\d+", (await page.text_content("#dlq")) or "")
                    assert "error" not in ((await page.text_content("#status")) or "")
                    ARTIFACTS.mkdir(exist_ok=True)
                    await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
                    await redrive.click()
                    # The action's outcome has its own line: the 2 s refresh must not hide it.
                    await expect(page.locator("#action")).to_have_text(
                        f"redriven {message_id}", timeout=10_000
                    )
                    await enable.click()
                    await expect(page.locator("#action")).to_have_text(
                        f"enabled {removed.id}", timeout=10_000
                    )
                finally:
                    await browser.close()
            # The redrive reached the receiver: same webhook-id, accepted this time.
            await eventually(lambda: flaky.recorder.accepted == 1, timeout=30)
            assert flaky.recorder.received[-1].webhook_id == message_id

            def enabled() -> bool:
                current = worker.registry.get(removed.id)
                return current is not None and not current.disabled

            await eventually(enabled, timeout=10)
    finally:
        await worker.stop()


async def _chromium(pw: Any) -> Any:
    """Debian's Chromium, headless, with none of its own background traffic."""
    if not HAVE_CHROMIUM:
        pytest.fail(
            f"no Chromium at {CHROMIUM}: apt-get install chromium (or set HOOKSTREAM_CHROMIUM)"
        )
    return await pw.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    )


async def test_the_api_docs_render_with_the_network_cut(settings: Settings) -> None:
    """Scenario: an air-gapped install opens /docs. Every request that leaves loopback is
    cut; Swagger UI still renders the spec, from files the API serves itself."""
    async with TestClient(TestServer(create_app(settings))) as client:
        base = str(client.make_url("")).rstrip("/")
        cut: list[str] = []
        served: list[str] = []

        async def only_loopback(route: Any) -> None:
            url = route.request.url
            if url.startswith(base + "/"):
                served.append(url.removeprefix(base))
                await route.continue_()
            else:
                cut.append(url)
                await route.abort()

        async with async_playwright() as pw:
            browser = await _chromium(pw)
            try:
                page = await browser.new_page()
                await page.route("**/*", only_loopback)
                await page.goto(f"{base}/docs")
                title = page.locator(".swagger-ui .info .title")
                await expect(title).to_contain_text("hookstream control API", timeout=30_000)
                # The operations are listed, so the 3.1 document was read, not just the shell.
                await page.locator(".opblock-summary-path").first.wait_for(timeout=30_000)
                assert await page.locator(".opblock").count() >= 30
            finally:
                await browser.close()
    assert cut == []
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(served)
    assert "/v1/openapi.json" in served
    async with TestClient(TestServer(create_app(settings))) as client:
        # Only the two named files: no traversal, nothing else of the package.
        assert (await client.get("/docs/assets/..%2F..%2Fapi%2Fapp.py")).status == 404
        assert (await client.get("/docs/assets/index.html")).status == 404

"""Scenario: a new user runs `hookstream dev` and follows the README walk-through.

The command brings up broker, Valkey, worker and API; an endpoint created over
HTTP receives a published event, signed with the secret the API returned; an
event type written over HTTP is enforced at once (the API writes through the
worker's views); Ctrl-C stops everything, the embedded servers included.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hookstream.embedded import free_port, port_open
from tests.conftest import ADMIN_KEY, AUTH, SinkFactory, eventually

pytestmark = pytest.mark.integration


async def test_dev_runs_the_walk_through_and_stops_cleanly(
    sink_factory: SinkFactory, tmp_path: Path
) -> None:
    port = free_port()
    out = tmp_path / "dev.out"
    env = {**os.environ, "HOOKSTREAM_ADMIN_KEY": ADMIN_KEY, "HOOKSTREAM_LOG_LEVEL": "WARNING"}
    with out.open("wb") as log:
        dev = subprocess.Popen(
            [sys.executable, "-m", "hookstream", "dev", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    api = f"http://127.0.0.1:{port}"
    auth = AUTH
    try:
        await eventually(lambda: "Ctrl-C stops everything" in out.read_text(), timeout=90)
        banner = out.read_text()
        assert ADMIN_KEY in banner
        kafka_port = int(re.search(r"Kafka\s+127\.0\.0\.1:(\d+)", banner).group(1))  # type: ignore[union-attr]

        secrets: list[str] = []
        sink = await sink_factory(secrets=secrets)
        async with aiohttp.ClientSession(headers=auth) as http:
            created = await http.post(
                f"{api}/v1/endpoints",
                json={"url": sink.url, "tenant": "acme", "event_types": ["invoice.*"]},
            )
            assert created.status == 201
            secrets.append((await created.json())["secret"])
            # The API writes through the worker's own views in dev: an event type
            # written over HTTP is enforced at once.
            schema = {"type": "object", "properties": {"amount": {"type": "integer"}}}
            typed = await http.post(
                f"{api}/v1/event-types", json={"name": "invoice.paid", "schema": schema}
            )
            assert typed.status == 201, await typed.text()
            refused = await http.post(
                f"{api}/v1/events",
                json={"type": "invoice.paid", "tenant": "acme", "data": {"amount": "x"}},
            )
            assert refused.status == 422, await refused.text()
            published = await http.post(
                f"{api}/v1/events",
                json={"type": "invoice.paid", "tenant": "acme", "data": {"amount": 42}},
            )
            assert published.status == 202
            event_id = (await published.json())["id"]
        await eventually(lambda: event_id in sink.event_ids(), timeout=60)
        delivered = sink.recorder.received[0]
        assert delivered.verified
        assert delivered.payload()["data"] == {"amount": 42}

        # An SRE pointing Prometheus at the dev API sees the worker's deliveries too.
        assert "/metrics" in banner
        async with aiohttp.ClientSession() as http:
            exposition = await (await http.get(f"{api}/metrics")).text()
        families = list(text_string_to_metric_families(exposition))
        names = [family.name for family in families]
        assert len(names) == len(set(names)), "a metric exposed twice"
        delivered_total = sum(
            sample.value
            for family in families
            if family.name == "hookstream_deliveries"
            for sample in family.samples
            if sample.name == "hookstream_deliveries_total"
        )
        assert delivered_total >= 1
        assert "hookstream_http_requests" in names  # the API's own metrics stay

        dev.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(asyncio.to_thread(dev.wait), 60)
        assert code == 0, out.read_text()[-3000:]
        assert not port_open(kafka_port), "the embedded broker outlived hookstream dev"
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()

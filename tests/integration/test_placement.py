"""Endpoint placement on the real broker: ids the API hands out spread endpoints over
the partitions of `deliveries`, and their delivery records land there (decision 031)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.engine.placement import spread_order
from hookstream.kafka import key_partition
from hookstream.topics import TopicNames
from hookstream.views.registry import EndpointRegistry
from tests.conftest import AUTH, SinkFactory, eventually, read_to_end

pytestmark = pytest.mark.integration


async def _create(client: TestClient[Any, Any], url: str, tenant: str = "acme") -> str:
    response = await client.post(
        "/v1/endpoints", json={"url": url, "tenant": tenant, "event_types": ["*"]}, headers=AUTH
    )
    assert response.status == 201, await response.text()
    endpoint_id: str = (await response.json())["id"]
    return endpoint_id


async def test_created_endpoints_fill_the_partitions_evenly_and_refill_a_gap(
    fast: Settings, client: TestClient[Any, Any]
) -> None:
    n = fast.partitions
    ids = [await _create(client, "http://127.0.0.1:9/x", tenant=f"t{i % 3}") for i in range(2 * n)]
    placed = [key_partition(i, n) for i in ids]
    assert placed[:n] == list(spread_order(n))  # one per partition, spread from the first
    assert Counter(placed) == {p: 2 for p in range(n)}

    # A deleted endpoint's partition is the emptiest: the next endpoint goes there.
    gone = ids[5]
    assert (await client.delete(f"/v1/endpoints/{gone}", headers=AUTH)).status == 204
    refill = await _create(client, "http://127.0.0.1:9/x")
    assert key_partition(refill, n) == key_partition(gone, n)

    # An update is not a new endpoint: counts stay, the next one opens the third round.
    patched = await client.patch(
        f"/v1/endpoints/{ids[0]}", json={"description": "renamed"}, headers=AUTH
    )
    assert patched.status == 200
    third = await _create(client, "http://127.0.0.1:9/x")
    assert key_partition(third, n) == spread_order(n)[0]

    # Another process's view counts the same endpoints from the topic.
    other = EndpointRegistry(fast, writable=True)
    await other.start()
    try:
        assert key_partition(other.new_endpoint_id(), n) == spread_order(n)[1]
    finally:
        await other.stop()


async def test_delivery_records_land_in_the_partition_their_endpoint_was_placed_in(
    fast: Settings, client: TestClient[Any, Any], sink_factory: SinkFactory, worker: Worker
) -> None:
    sink = await sink_factory()
    n = fast.partitions
    ids = [await _create(client, sink.url) for _ in range(n)]
    accepted = await client.post(
        "/v1/events", json={"type": "order.paid", "tenant": "acme", "data": {}}, headers=AUTH
    )
    assert accepted.status == 202
    await eventually(
        lambda: len(sink.recorder.received) >= n, message="not every endpoint got its webhook"
    )
    records = await read_to_end(fast, TopicNames(fast).deliveries)
    assert sorted((r.key or b"").decode() for r in records) == sorted(ids)
    assert {(r.key or b"").decode(): r.partition for r in records} == {
        i: key_partition(i, n) for i in ids
    }
    assert sorted(r.partition for r in records) == list(range(n))

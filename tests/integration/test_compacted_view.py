"""A config view's barrier against a broker that holds its tail's fetches.

A broker answers the requests of one connection in order, and holds a fetch on
an idle topic for `fetch_max_wait_ms` (real Kafka on a quiet config topic, the
embedded broker always). A barrier's log-end request sent on the tail's own
connection waited behind that held fetch: up to the whole wait per barrier, on
every batch the router routes.
"""

from __future__ import annotations

import time

import pytest

from hookstream.config import Settings
from hookstream.views.catalog import Catalog
from hookstream.views.registry import EndpointRegistry
from tests.conftest import EndpointFactory

pytestmark = pytest.mark.integration

HELD_MS = 4000  # each tail fetch is held this long on the idle topic
SYNCS = 5


@pytest.mark.parametrize("view", [EndpointRegistry, Catalog])
async def test_a_barrier_does_not_wait_behind_the_tails_held_fetch(
    settings: Settings, view: type[EndpointRegistry] | type[Catalog]
) -> None:
    reader = view(settings.replace(fetch_max_wait_ms=HELD_MS))
    await reader.start()
    try:
        started = time.monotonic()
        for _ in range(SYNCS):
            await reader.sync()  # each one a log-end round trip of its own
        elapsed = time.monotonic() - started
        # Behind the held fetches, five syncs take close to 5 × 4 s.
        assert elapsed < HELD_MS / 1000, f"{SYNCS} syncs took {elapsed:.2f} s"
    finally:
        await reader.stop()


async def test_a_barrier_still_shows_a_write_made_elsewhere_while_the_tail_is_held(
    settings: Settings, endpoint_factory: EndpointFactory
) -> None:
    """The fast barrier is still a barrier: an endpoint written by another process
    before it is in the view after it, though the tail's fetch was held."""
    reader = EndpointRegistry(settings.replace(fetch_max_wait_ms=HELD_MS))
    await reader.start()
    try:
        for n in range(3):
            endpoint = await endpoint_factory("http://127.0.0.1:9/hook", f"tenant{n}", ["*"])
            await reader.barrier(time.time())
            assert reader.get(endpoint.id) is not None
    finally:
        await reader.stop()

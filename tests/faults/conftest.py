"""Fixtures of the fault suite: a stack of its own for tests that take a server away.

The session's stack is shared by every other test, so a test that stops or
restarts the broker or Valkey gets its own pair on fresh loopback ports.

`HOOKSTREAM_LONG_FAULTS=1` runs the long variants (a 60 s Valkey outage
instead of 15 s); CI runs the bounded ones.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hookstream.config import Settings
from hookstream.embedded import EmbeddedStack
from hookstream.engine.destinations import DEV_EGRESS
from hookstream.engine.endpoint import Endpoint, new_endpoint
from hookstream.topics import ensure_topics
from hookstream.views.registry import EndpointRegistry
from tests.conftest import settings_for

LONG = os.environ.get("HOOKSTREAM_LONG_FAULTS", "") not in ("", "0")


def start_worker(settings: Settings, log: Path, **overrides: str) -> subprocess.Popen[bytes]:
    """`hookstream worker` in its own process, configured through HOOKSTREAM_* variables."""
    env = {**os.environ, **settings.to_env(), **overrides}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hookstream", "worker"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """The process's exit code, waiting without blocking the loop."""
    return await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout)


@pytest.fixture
def own_stack() -> Iterator[EmbeddedStack]:
    """A broker and Valkey for this test alone."""
    with EmbeddedStack() as running:
        yield running


@pytest.fixture
async def own_settings(own_stack: EmbeddedStack) -> Settings:
    """Settings for `own_stack`, as the `settings` fixture makes them, topics created."""
    configured = settings_for(own_stack)
    await ensure_topics(configured)
    return configured


async def register(settings: Settings, url: str, count: int, **fields: object) -> list[Endpoint]:
    """Register `count` endpoints for tenant acme, `order.*`, delivering to `url`."""
    registry = EndpointRegistry(settings, writable=True)
    await registry.start()
    try:
        endpoints = []
        for _ in range(count):
            endpoint = new_endpoint(
                {"url": url, "tenant": "acme", "event_types": ["order.*"], **fields},
                policy=DEV_EGRESS,
            )
            await registry.put(endpoint)
            endpoints.append(endpoint)
        return endpoints
    finally:
        await registry.stop()

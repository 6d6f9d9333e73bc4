"""What a replay asks for (engine/replay.py), and its pace (api/replay_tasks.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from hookstream.api.replay_tasks import Pace
from hookstream.engine.replay import ReplaySpec, replay_spec
from hookstream.errors import InvalidInput

DAY = "2026-01-02T00:00:00Z"
DAY_MS = 1_767_312_000_000


def fields(raw: dict[str, Any], prefix: str = "") -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        replay_spec("ep_1", raw, prefix=prefix)
    return [p.field for p in caught.value.problems]


def test_a_window_and_globs() -> None:
    raw = {"since": DAY, "until": "2026-01-02T02:00:00+01:00", "event_types": ["a.*", "b", "a.*"]}
    assert replay_spec("ep_1", raw) == ReplaySpec("ep_1", DAY_MS, DAY_MS + 3_600_000, ("a.*", "b"))
    assert replay_spec("ep_1", {"since": DAY}) == ReplaySpec("ep_1", DAY_MS)
    later = replay_spec("ep_1", {"since": DAY, "until": "2026-01-02T00:00:01Z"})
    assert later.until_ms == DAY_MS + 1000


@pytest.mark.parametrize(
    ("raw", "bad"),
    [
        ({}, ["since"]),
        ({"since": None}, ["since"]),
        ({"since": "yesterday"}, ["since"]),
        ({"since": 1767312000}, ["since"]),
        ({"since": "2026-01-02T00:00:00"}, ["since"]),
        ({"since": DAY, "until": DAY}, ["until"]),
        ({"since": DAY, "until": "2026-01-01T23:59:59Z"}, ["until"]),
        ({"since": DAY, "until": "later"}, ["until"]),
        ({"since": DAY, "event_types": "a.*"}, ["event_types"]),
        ({"since": DAY, "event_types": [1]}, ["event_types"]),
        ({"since": DAY, "event_types": ["ok", "a..b", "-x"]}, ["event_types[1]", "event_types[2]"]),
        ({"since": DAY, "event_types": ["a"] * 101}, ["event_types"]),
    ],
)
def test_bad_requests_name_their_fields(raw: dict[str, Any], bad: list[str]) -> None:
    assert fields(raw) == bad


def test_at_registration_the_fields_carry_the_prefix() -> None:
    assert fields({"replay_since": "soon"}, prefix="replay_") == ["replay_since"]
    spec = replay_spec("", {"replay_since": DAY}, prefix="replay_")
    assert spec.since_ms == DAY_MS


def test_a_spec_survives_its_task_fields() -> None:
    spec = ReplaySpec("ep_1", DAY_MS, DAY_MS + 5, ("a.*", "b"))
    stored = {k: str(v) for k, v in spec.fields().items()}
    assert ReplaySpec.from_fields(stored) == spec
    open_ended = ReplaySpec("ep_1", DAY_MS)
    assert ReplaySpec.from_fields({k: str(v) for k, v in open_ended.fields().items()}) == open_ended


async def test_pace_keeps_to_its_rate() -> None:
    pace = Pace(200.0)
    started = time.monotonic()
    for _ in range(100):
        await pace.step()
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 2.0  # 100 steps at 200/s: half a second, never faster
    unlimited = Pace(float("inf"))
    started = time.monotonic()
    for _ in range(10_000):
        await unlimited.step()
    assert time.monotonic() - started < 1.0

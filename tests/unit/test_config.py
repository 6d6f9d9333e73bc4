"""Settings: env names derived from fields, bad values reported one line each."""

from __future__ import annotations

import pytest

from hookstream.config import Settings
from hookstream.engine.gate import GateSettings
from hookstream.errors import ConfigError


def test_defaults_are_production_safe() -> None:
    s = Settings.load({})
    assert s.dev_mode is False
    assert s.producer_idempotence is True
    assert s.replication_factor == 3
    assert s.http_timeout_s == 15.0


def test_environment_variables_are_read_and_typed() -> None:
    s = Settings.load(
        {
            "HOOKSTREAM_BOOTSTRAP": "k1:9092,k2:9092",
            "HOOKSTREAM_IN_FLIGHT": "2_000",
            "HOOKSTREAM_DEV_MODE": "yes",
            "HOOKSTREAM_HTTP_TIMEOUT_S": "2.5",
            "UNRELATED": "x",
        }
    )
    assert (s.bootstrap, s.in_flight, s.dev_mode, s.http_timeout_s) == (
        "k1:9092,k2:9092",
        2000,
        True,
        2.5,
    )
    assert s.is_explicit("in_flight")
    assert not s.is_explicit("partitions")


def test_overrides_beat_the_environment() -> None:
    s = Settings.load({"HOOKSTREAM_API_PORT": "9000"}, api_port=9100)
    assert s.api_port == 9100


def test_every_bad_value_is_reported_one_line_each() -> None:
    with pytest.raises(ConfigError) as exc:
        Settings.load(
            {
                "HOOKSTREAM_IN_FLIGHT": "many",
                "HOOKSTREAM_DEV_MODE": "perhaps",
                "HOOKSTREAM_HTTP_TIMEOUT_S": "soon",
            }
        )
    assert len(exc.value.problems) == 3
    assert any("HOOKSTREAM_IN_FLIGHT='many'" in p for p in exc.value.problems)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"partitions": 0}, "HOOKSTREAM_PARTITIONS"),
        ({"api_port": 70000}, "HOOKSTREAM_API_PORT"),
        ({"bootstrap": "nohostport"}, "HOOKSTREAM_BOOTSTRAP"),
        ({"redis_url": "http://x"}, "HOOKSTREAM_REDIS_URL"),
        ({"topic_prefix": "a/b"}, "HOOKSTREAM_TOPIC_PREFIX"),
        ({"session_timeout_ms": 100}, "HOOKSTREAM_SESSION_TIMEOUT_MS"),
        ({"admin_key": "short"}, "HOOKSTREAM_ADMIN_KEY"),
        ({"log_level": "LOUD"}, "HOOKSTREAM_LOG_LEVEL"),
    ],
)
def test_values_that_cannot_work_are_refused(changes: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        Settings.load({}, **changes)


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown settings: nope"):
        Settings.load({}, nope=1)


def test_heartbeat_is_a_third_of_the_session_capped() -> None:
    assert Settings.load({}, session_timeout_ms=6000).heartbeat_interval_ms == 2000
    assert Settings.load({}).heartbeat_interval_ms == 3000


def test_the_engine_defaults_are_the_settings_defaults() -> None:
    # One source of truth: a gate built without a Settings object behaves like a
    # default deployment (the request timeout once differed, 10 s against 15 s).
    assert Settings.load({}).gate_settings == GateSettings()

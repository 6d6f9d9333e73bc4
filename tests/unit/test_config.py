"""Settings: env names derived from fields, bad values reported one line each."""

from __future__ import annotations

import pytest

from hookstream.config import Settings
from hookstream.engine.gate import GateSettings
from hookstream.errors import ConfigError
from hookstream.kafka import admin_options, consumer_options, producer_options


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


def test_the_attempt_log_lingers_longer_than_the_delivery_records() -> None:
    s = Settings.load({})
    assert (s.producer_linger_ms, s.attempt_linger_ms) == (5, 25)
    assert Settings.load({"HOOKSTREAM_ATTEMPT_LINGER_MS": "0"}).attempt_linger_ms == 0


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
        ({"fetch_max_wait_ms": 0}, "HOOKSTREAM_FETCH_MAX_WAIT_MS"),
        ({"idle_fetch_max_wait_ms": 0}, "HOOKSTREAM_IDLE_FETCH_MAX_WAIT_MS"),
        ({"idle_fetch_max_wait_ms": -20}, "HOOKSTREAM_IDLE_FETCH_MAX_WAIT_MS"),
        ({"producer_linger_ms": -1}, "HOOKSTREAM_PRODUCER_LINGER_MS"),
        ({"attempt_linger_ms": -1}, "HOOKSTREAM_ATTEMPT_LINGER_MS"),
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


SASL = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-256",
    "kafka_sasl_username": "u",
    "kafka_sasl_password": "p",
}


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"kafka_security_protocol": "TLS"}, "HOOKSTREAM_KAFKA_SECURITY_PROTOCOL must be one of"),
        ({**SASL, "kafka_sasl_mechanism": ""}, "HOOKSTREAM_KAFKA_SASL_MECHANISM must be one of"),
        ({**SASL, "kafka_sasl_mechanism": "GSSAPI"}, "HOOKSTREAM_KAFKA_SASL_MECHANISM"),
        ({**SASL, "kafka_sasl_username": ""}, "HOOKSTREAM_KAFKA_SASL_USERNAME is required"),
        ({**SASL, "kafka_sasl_password": ""}, "HOOKSTREAM_KAFKA_SASL_PASSWORD is required"),
        ({"kafka_sasl_username": "u"}, "HOOKSTREAM_KAFKA_SASL_* are set but"),
        ({"kafka_ssl_cafile": "/etc/hostname"}, "HOOKSTREAM_KAFKA_SSL_* are set but"),
        ({**SASL, "kafka_ssl_cafile": "/nonexistent/ca.pem"}, "/nonexistent/ca.pem: no such file"),
        ({**SASL, "kafka_ssl_certfile": "/etc/hostname"}, "go together"),
        ({**SASL, "kafka_ssl_cafile": "/etc/hostname"}, "do not make a TLS context"),
    ],
)
def test_kafka_security_that_cannot_work_is_refused(
    changes: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        Settings(**changes).validate()  # type: ignore[arg-type]
    assert any(needle in line for line in exc.value.problems), exc.value.problems


def test_readers_off_the_delivery_path_take_their_own_fetch_wait() -> None:
    s = Settings.load(
        {"HOOKSTREAM_FETCH_MAX_WAIT_MS": "20", "HOOKSTREAM_IDLE_FETCH_MAX_WAIT_MS": "750"}
    )
    assert consumer_options(s, client_id="router")["fetch_max_wait_ms"] == 20
    assert consumer_options(s, client_id="health", background=True)["fetch_max_wait_ms"] == 750
    # Kafka's own default for both; the embedded stack shortens only the delivery path's.
    assert Settings().fetch_max_wait_ms == Settings().idle_fetch_max_wait_ms == 500


def test_kafka_security_becomes_the_clients_options() -> None:
    assert "security_protocol" not in producer_options(Settings(), client_id="x")
    secured = Settings(**SASL)  # type: ignore[arg-type]
    for options in (
        producer_options(secured, client_id="x"),
        consumer_options(secured, client_id="x"),
        admin_options(secured, client_id="x"),
    ):
        assert options["security_protocol"] == "SASL_SSL"
        assert options["sasl_mechanism"] == "SCRAM-SHA-256"
        assert options["sasl_plain_username"] == "u"
        assert options["ssl_context"].verify_mode.name == "CERT_REQUIRED"
        assert options["ssl_context"].check_hostname
    plain = Settings(**{**SASL, "kafka_security_protocol": "SASL_PLAINTEXT"})  # type: ignore[arg-type]
    assert "ssl_context" not in producer_options(plain, client_id="x")

"""Secured clusters: a worker, the API's writes and the topics command over TLS and SASL.

An embedded broker per test advertises a loopback proxy (tests/kafka_proxy.py)
that adds what the cluster demands: TLS with a CA made here, SASL PLAIN or
SCRAM, or both. Every Kafka client hookstream makes goes through it; a client
that does not speak the cluster's security gets nothing.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.embedded import EmbeddedStack, broker_binary, free_port
from hookstream.errors import ConfigError
from hookstream.kafka import producer_options
from hookstream.producers import EventPublisher
from hookstream.topics import ensure_topics
from hookstream.views.registry import EndpointRegistry
from tests.certificates import certificates
from tests.conftest import SinkFactory, endpoints_in, eventually, settings_for
from tests.kafka_proxy import KafkaProxy

pytestmark = pytest.mark.integration

USERS = {"hookstream": "s3cret-pass-word"}


Secured = Callable[..., Any]


@pytest.fixture
async def secured(stack: EmbeddedStack, tmp_path: Path) -> AsyncIterator[Secured]:
    """Start a broker behind a proxy with the given TLS/SASL; returns (settings, proxy)."""
    brokers: list[subprocess.Popen[bytes]] = []
    proxies: list[KafkaProxy] = []
    logs: list[Any] = []
    files = certificates(tmp_path)

    async def start(*, tls: bool, sasl: bool, **security: str) -> tuple[Settings, KafkaProxy]:
        broker_port, proxy_port = free_port(), free_port()
        log = (tmp_path / f"broker-{broker_port}.log").open("wb")
        logs.append(log)
        brokers.append(
            subprocess.Popen(
                [
                    broker_binary(),
                    "broker",
                    "--listener-url",
                    f"tcp://127.0.0.1:{broker_port}",
                    "--advertised-listener-url",
                    f"tcp://127.0.0.1:{proxy_port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        context = None
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(files["cert"], files["key"])
        proxy = KafkaProxy(proxy_port, broker_port, tls=context, users=USERS if sasl else {})
        await proxy.start()
        proxies.append(proxy)
        await _until_listening(broker_port)
        fields: dict[str, Any] = {"bootstrap": f"127.0.0.1:{proxy_port}", **security}
        if tls:
            fields["kafka_ssl_cafile"] = str(files["ca"])
        settings = settings_for(stack).replace(**fields)
        await ensure_topics(settings)
        return settings, proxy

    yield start
    for proxy in proxies:
        await proxy.stop()
    for broker in brokers:
        broker.kill()
        broker.wait()
    for log in logs:
        log.close()


async def _until_listening(port: int) -> None:
    async def up() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True

    await eventually(up, timeout=30, message=f"no broker on {port}")


MODES = {
    "ssl": {"tls": True, "sasl": False, "kafka_security_protocol": "SSL"},
    "sasl-plain": {
        "tls": False,
        "sasl": True,
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "kafka_sasl_mechanism": "PLAIN",
    },
    "sasl-ssl-scram-256": {
        "tls": True,
        "sasl": True,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-256",
    },
    "sasl-ssl-scram-512": {
        "tls": True,
        "sasl": True,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
    },
}


@pytest.mark.parametrize("mode", list(MODES))
async def test_a_worker_delivers_through_a_secured_cluster(
    secured: Secured,
    sink_factory: SinkFactory,
    mode: str,
) -> None:
    options = dict(MODES[mode])
    sasl = bool(options["sasl"])
    if sasl:
        options |= {"kafka_sasl_username": "hookstream", "kafka_sasl_password": USERS["hookstream"]}
    settings, proxy = await secured(**options)
    # The registry, publisher and worker below all reach the broker through the proxy.
    registry = EndpointRegistry(settings, writable=True)
    await registry.start()
    worker = Worker(settings)
    try:
        secrets: list[str] = []
        sink = await sink_factory(secrets=secrets)
        endpoint = await endpoints_in(registry)(sink.url, "acme", ["order.*"])
        secrets.append(endpoint.secret)
        await worker.start()
        async with EventPublisher(settings) as publisher:
            ids = await publisher.publish_many(
                {"type": "order.placed", "tenant": "acme", "data": {"i": i}} for i in range(20)
            )
        await eventually(lambda: set(ids) <= sink.event_ids(), timeout=90)
        assert all(r.verified for r in sink.recorder.received)
    finally:
        await worker.stop()
        await registry.stop()
    if sasl:
        assert proxy.authenticated > 0
        assert proxy.refused == 0


async def _connects(**options: Any) -> bool:
    producer = AIOKafkaProducer(request_timeout_ms=3000, **options)
    try:
        async with asyncio.timeout(15):
            await producer.start()
        return True
    except (KafkaError, OSError, TimeoutError, ssl.SSLError):
        return False
    finally:
        await producer.stop()


async def test_a_client_without_the_clusters_security_gets_nothing(secured: Secured) -> None:
    good = {"kafka_sasl_username": "hookstream", "kafka_sasl_password": USERS["hookstream"]}
    settings, proxy = await secured(**MODES["sasl-ssl-scram-256"], **good)
    assert await _connects(**producer_options(settings, client_id="ok"))
    wrong = settings.replace(kafka_sasl_password="not-the-password")
    assert not await _connects(**producer_options(wrong, client_id="wrong"))
    assert proxy.refused >= 1
    plain = settings.replace(
        kafka_security_protocol="PLAINTEXT",
        kafka_sasl_mechanism="",
        kafka_sasl_username="",
        kafka_sasl_password="",
        kafka_ssl_cafile="",
    )
    assert not await _connects(**producer_options(plain, client_id="plain"))
    # TLS without our CA: the system's CAs do not know the test CA, so the broker is
    # not trusted and nothing is sent.
    untrusted = settings.replace(kafka_ssl_cafile="")
    assert not await _connects(**producer_options(untrusted, client_id="untrusted"))

    sasl_only, sasl_proxy = await secured(**MODES["sasl-plain"], **good)
    assert not await _connects(bootstrap_servers=sasl_only.bootstrap)  # no login at all
    assert sasl_proxy.refused >= 1


def test_the_password_never_shows_in_settings_or_their_errors(tmp_path: Path) -> None:
    password = "do-not-print-me-123"
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="u",
        kafka_sasl_password=password,
    )
    assert password not in repr(settings)
    with pytest.raises(ConfigError) as exc:
        Settings.load(
            {
                "HOOKSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "HOOKSTREAM_KAFKA_SASL_MECHANISM": "MD5",
                "HOOKSTREAM_KAFKA_SASL_PASSWORD": password,
                "HOOKSTREAM_KAFKA_SSL_CAFILE": str(tmp_path / "missing.pem"),
            }
        )
    assert password not in str(exc.value)
    assert "\n".join(exc.value.problems).count("HOOKSTREAM_KAFKA") == 3

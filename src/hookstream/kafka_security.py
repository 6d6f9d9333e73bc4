"""TLS and SASL for every Kafka client hookstream makes: the settings' rules and
the aiokafka keyword arguments they become.

Managed clusters (Confluent Cloud, MSK, Aiven) require SASL_SSL or SSL with
client certificates; the embedded broker speaks PLAINTEXT. A bad combination
fails at start with one line per problem; the password is never printed.
"""

from __future__ import annotations

import os
import ssl
from typing import Any, Protocol

FIELDS = (
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_cafile",
    "kafka_ssl_certfile",
    "kafka_ssl_keyfile",
)
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaSecurity(Protocol):
    """The settings fields this module reads."""

    @property
    def kafka_security_protocol(self) -> str: ...

    @property
    def kafka_sasl_mechanism(self) -> str: ...

    @property
    def kafka_sasl_username(self) -> str: ...

    @property
    def kafka_sasl_password(self) -> str: ...

    @property
    def kafka_ssl_cafile(self) -> str: ...

    @property
    def kafka_ssl_certfile(self) -> str: ...

    @property
    def kafka_ssl_keyfile(self) -> str: ...


def security_problems(s: KafkaSecurity) -> list[str]:
    """One line per security setting that cannot work; empty when all is well."""
    problems: list[str] = []
    protocol = s.kafka_security_protocol
    if protocol not in PROTOCOLS:
        return [f"HOOKSTREAM_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}"]
    sasl = protocol.startswith("SASL_")
    if sasl:
        if s.kafka_sasl_mechanism not in MECHANISMS:
            problems.append(
                f"HOOKSTREAM_KAFKA_SASL_MECHANISM must be one of {', '.join(MECHANISMS)}"
                f" with {protocol}"
            )
        if not s.kafka_sasl_username:
            problems.append(f"HOOKSTREAM_KAFKA_SASL_USERNAME is required with {protocol}")
        if not s.kafka_sasl_password:
            problems.append(f"HOOKSTREAM_KAFKA_SASL_PASSWORD is required with {protocol}")
    elif s.kafka_sasl_mechanism or s.kafka_sasl_username or s.kafka_sasl_password:
        problems.append(
            "HOOKSTREAM_KAFKA_SASL_* are set but HOOKSTREAM_KAFKA_SECURITY_PROTOCOL is"
            f" {protocol}: use SASL_SSL (or SASL_PLAINTEXT)"
        )
    files = {
        "HOOKSTREAM_KAFKA_SSL_CAFILE": s.kafka_ssl_cafile,
        "HOOKSTREAM_KAFKA_SSL_CERTFILE": s.kafka_ssl_certfile,
        "HOOKSTREAM_KAFKA_SSL_KEYFILE": s.kafka_ssl_keyfile,
    }
    tls = protocol in ("SSL", "SASL_SSL")
    if not tls and any(files.values()):
        problems.append(
            f"HOOKSTREAM_KAFKA_SSL_* are set but HOOKSTREAM_KAFKA_SECURITY_PROTOCOL is {protocol}"
        )
    for name, path in files.items():
        if path and not os.path.isfile(path):
            problems.append(f"{name}={path}: no such file")
        elif path and not os.access(path, os.R_OK):
            problems.append(f"{name}={path}: not readable")
    if bool(s.kafka_ssl_certfile) != bool(s.kafka_ssl_keyfile):
        problems.append(
            "HOOKSTREAM_KAFKA_SSL_CERTFILE and HOOKSTREAM_KAFKA_SSL_KEYFILE go together"
            " (a client certificate and its key)"
        )
    if tls and not problems:
        try:
            _ssl_context(s)
        except (ssl.SSLError, OSError, ValueError) as exc:
            problems.append(f"HOOKSTREAM_KAFKA_SSL_*: the files do not make a TLS context: {exc}")
    return problems


def security_options(s: KafkaSecurity) -> dict[str, Any]:
    """aiokafka keyword arguments for TLS and SASL (none for PLAINTEXT)."""
    protocol = s.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(s)
    if protocol.startswith("SASL_"):
        options["sasl_mechanism"] = s.kafka_sasl_mechanism
        options["sasl_plain_username"] = s.kafka_sasl_username
        options["sasl_plain_password"] = s.kafka_sasl_password
    return options


def _ssl_context(s: KafkaSecurity) -> ssl.SSLContext:
    """Verifies the broker (the CA file, else the system's CAs) and its host name."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=s.kafka_ssl_cafile or None)
    if s.kafka_ssl_certfile:
        # An encrypted key fails here rather than prompting for a passphrase on a tty.
        context.load_cert_chain(s.kafka_ssl_certfile, s.kafka_ssl_keyfile, password=lambda: "")
    return context

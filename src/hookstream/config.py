"""Every hookstream setting: typed, defaulted, commented, validated at start.

Each field reads from the environment variable ``HOOKSTREAM_<FIELD_NAME>``
(upper case), so ``in_flight`` is ``HOOKSTREAM_IN_FLIGHT``. Defaults are safe in
production; only dev mode loosens safety (loopback destinations, plain http).
A bad value fails at start with one line per problem, never at first use.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from hookstream.engine.apikeys import Tier, parse_tiers
from hookstream.engine.circuit import CircuitSettings
from hookstream.engine.destinations import EgressPolicy, parse_networks
from hookstream.engine.gate import GateSettings
from hookstream.engine.retry import RetryPolicy, parse_schedule
from hookstream.env_values import parse_value
from hookstream.errors import ConfigError
from hookstream.kafka_security import security_problems

ENV_PREFIX = "HOOKSTREAM_"
_TOPIC_PREFIX_RE = re.compile(r"^[a-zA-Z0-9._-]{0,100}$")


@dataclass(frozen=True, slots=True)
class Settings:
    """The one settings object every hookstream process is built from."""

    # --- Where the servers are -------------------------------------------
    # Kafka bootstrap servers, comma separated host:port.
    bootstrap: str = "127.0.0.1:9092"
    # Redis holds soft state only (caches, indexes, rate-limit buckets).
    redis_url: str = "redis://127.0.0.1:6379/0"

    # --- Topics ----------------------------------------------------------
    # Prepended to every topic and consumer-group name, so several deployments
    # (or test runs) can share one cluster.
    topic_prefix: str = "hookstream."
    # Partitions of events, deliveries and each retry tier: keep >= worker processes.
    partitions: int = 12
    # 3 keeps a webhook through the loss of a broker; the embedded broker needs 1.
    replication_factor: int = 3
    # Days a dead letter is kept, in `dlq` and in the Redis index (docs/reliability.md).
    dlq_retention_days: float = 30.0
    # Days `events` keeps what was published: how far back a replay reaches (docs/api.md).
    events_retention_days: float = 7.0
    # Events/s a replay sends at most (its endpoint's `rate_limit` when lower).
    replay_rate_per_s: float = 500.0

    # --- Kafka clients ---------------------------------------------------
    # Idempotent producers stop retries from writing a record twice. The embedded
    # broker rejects them, so `hookstream dev` and the tests turn this off.
    producer_idempotence: bool = True
    # How long a producer waits to fill a batch. Small: latency matters more.
    producer_linger_ms: int = 5
    # How long the attempt log holds its records to fill a produce request. It is
    # off the delivery path, and its fewer requests leave the producer's connection
    # to the delivery records sooner (decision 047).
    attempt_linger_ms: int = 25
    # Longest time a fetch waits for data. Real Kafka answers as soon as data
    # arrives; the embedded broker always waits this long (decision 006).
    fetch_max_wait_ms: int = 500
    # The same once a consumer found nothing to read for a second, and always for
    # the readers off the delivery path (health, lag, indexes): decision 037.
    idle_fetch_max_wait_ms: int = 500
    # A consumer that misses heartbeats this long is dropped from its group and
    # its partitions move. Shorter moves work sooner after a crash.
    session_timeout_ms: int = 30_000
    # TLS and SASL for every Kafka client (kafka_security.py, docs/connect-kafka.md):
    # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; SASL is PLAIN, SCRAM-SHA-256 or
    # SCRAM-SHA-512. The CA file verifies the brokers (default: the system's CAs);
    # the cert and key files are a client certificate.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""

    # --- Router ------------------------------------------------------------
    # Events fetched and routed as one batch; the batch's offsets are committed once
    # every delivery record it produced is acknowledged (decision 017).
    router_batch_records: int = 2000
    # Largest event, as written to `events`, in bytes: publishing a bigger one
    # is refused, and the router dead-letters one written some other way (014).
    max_event_bytes: int = 512 * 1024
    # Longest a worker's clean stop (finish in-flight, commit, close) may take
    # after SIGTERM; past it the process exits without one (decision 015).
    shutdown_timeout_s: float = 25.0

    # --- Dispatcher --------------------------------------------------------
    # Deliveries in flight per worker process (the window across all partitions).
    in_flight: int = 1000
    # Records fetched per poll of the deliveries topic.
    fetch_max_records: int = 500
    # How often finished offsets are committed. Lower means fewer re-deliveries
    # after a crash, at the cost of more commit requests.
    commit_interval_ms: int = 1000
    # Total time for one HTTP attempt: connect, send, and read the response head.
    http_timeout_s: float = 15.0
    # Keep-alive connections kept open per destination host.
    http_connections_per_host: int = 64
    # Bytes of a response body kept as the attempt's excerpt; the rest is not read.
    response_excerpt_bytes: int = 4096

    # --- Retries -----------------------------------------------------------
    # Seconds before attempts 2, 3, ... (8 attempts over about a day); each
    # distinct delay is a retry-tier topic.
    retry_schedule_s: str = "5,300,1800,7200,18000,36000,36000"
    # Each delay is stretched or shrunk at random by up to this fraction.
    retry_jitter: float = 0.2
    # Least wait after a 429 or a timeout: the receiver is struggling.
    retry_floor_s: float = 60.0
    # Wait between attempts for endpoints whose retry_policy is "linear".
    retry_linear_interval_s: float = 300.0

    # --- Endpoint health (decision 009) -------------------------------------
    # A delivery that would wait longer than this for its endpoint's rate or
    # concurrency slot is parked in a retry tier instead of holding the window.
    endpoint_hold_max_s: float = 1.0
    # Adaptive concurrency per endpoint: where the cap starts, and its ceiling
    # (an endpoint's own `max_concurrency` may lower the ceiling).
    endpoint_initial_concurrency: int = 16
    endpoint_max_concurrency: int = 64
    # Health is scored over this sliding window of attempts.
    health_window_s: float = 300.0
    # The circuit opens after this many failures in a row, or when this share of
    # at least `circuit_min_volume` attempts within `circuit_window_s` failed.
    circuit_consecutive_failures: int = 5
    circuit_failure_ratio: float = 0.5
    circuit_min_volume: int = 20
    circuit_window_s: float = 60.0
    # Open this long before the first probe; doubles after each failed probe.
    circuit_open_s: float = 5.0
    circuit_open_max_s: float = 300.0
    # An endpoint with no successful attempt for this long is disabled (5 days).
    auto_disable_after_s: float = 432_000.0
    # How often changed health snapshots go to Redis and the health topic.
    health_publish_interval_s: float = 1.0
    # Endpoints that get their own metric series (the worst first); the rest
    # are counted only in the per-state totals.
    metrics_endpoint_series: int = 50
    # The worker serves /metrics on this port; 0 turns it off.
    worker_metrics_port: int = 0

    # --- Control API -------------------------------------------------------
    # Bind address of the API, and of the worker's /metrics, /healthz and /readyz.
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    # Bearer key with every permission. Required by `hookstream api`.
    admin_key: str = field(default="", repr=False)
    # Largest request body the API accepts, in bytes (bigger answers 413).
    api_max_body_bytes: int = 1024 * 1024
    # Requests per hour of each API key tier, `name=limit[:burst]`, comma
    # separated; burst defaults to a tenth of the limit (decision 016).
    api_rate_tiers: str = "free=100,basic=1000,standard=10000,premium=100000"
    # The tier of a new key that names none.
    api_default_tier: str = "standard"
    # An event id seen again within this many seconds is a duplicate: not published.
    idempotency_window_s: int = 86_400
    # After a secret rotation the previous secret keeps signing (a second
    # signature) this long, so receivers can switch without dropping a webhook.
    secret_overlap_s: float = 86_400.0

    # --- Safety -------------------------------------------------------------
    # Dev mode allows loopback/private destinations and plain http. Never in production.
    dev_mode: bool = False
    # Allow plain-http endpoint URLs outside dev mode (https only by default).
    allow_http: bool = False
    # Private ranges deliveries may reach anyway, comma-separated CIDRs
    # (for receivers inside your network): `10.20.0.0/16,fd00:1::/64`.
    egress_allow_cidrs: str = ""
    log_level: str = "INFO"

    # Not a setting: the names of fields given by the caller rather than defaults.
    _explicit: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Build settings from `environ` (HOOKSTREAM_* variables), then `overrides`.

        Raises ConfigError listing every bad value, one line each.
        """
        values: dict[str, Any] = {}
        problems: list[str] = []
        for f in _setting_fields():
            env_name = ENV_PREFIX + f.name.upper()
            if environ is not None and env_name in environ:
                try:
                    values[f.name] = parse_value(f.type, environ[env_name])
                except ValueError as exc:
                    problems.append(f"{env_name}={environ[env_name]!r}: {exc}")
        unknown = set(overrides) - {f.name for f in _setting_fields()}
        if unknown:
            problems.append(f"unknown settings: {', '.join(sorted(unknown))}")
        values.update({k: v for k, v in overrides.items() if v is not None and k not in unknown})
        settings = cls(**values, _explicit=frozenset(values))
        problems.extend(settings.problems())
        if problems:
            raise ConfigError(problems)
        return settings

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` applied, validated."""
        updated = dataclasses.replace(self, **changes, _explicit=self._explicit | set(changes))
        updated.validate()
        return updated

    def is_explicit(self, name: str) -> bool:
        """True when the setting came from the environment or the caller, not the default."""
        return name in self._explicit

    def validate(self) -> None:
        """Raise ConfigError naming every value that cannot work."""
        problems = self.problems()
        if problems:
            raise ConfigError(problems)

    def problems(self) -> list[str]:
        """One line per value that cannot work; empty when all is well."""
        problems: list[str] = []

        def positive(name: str) -> None:
            if getattr(self, name) <= 0:
                problems.append(f"{_env(name)} must be greater than 0, got {getattr(self, name)}")

        for name in (
            "partitions",
            "replication_factor",
            "dlq_retention_days",
            "events_retention_days",
            "replay_rate_per_s",
            "router_batch_records",
            "in_flight",
            "fetch_max_records",
            "fetch_max_wait_ms",
            "idle_fetch_max_wait_ms",
            "commit_interval_ms",
            "http_timeout_s",
            "http_connections_per_host",
            "response_excerpt_bytes",
            "api_max_body_bytes",
            "max_event_bytes",
            "shutdown_timeout_s",
            "endpoint_hold_max_s",
            "endpoint_initial_concurrency",
            "endpoint_max_concurrency",
            "health_window_s",
            "circuit_consecutive_failures",
            "circuit_min_volume",
            "circuit_window_s",
            "circuit_open_s",
            "circuit_open_max_s",
            "auto_disable_after_s",
            "health_publish_interval_s",
            "idempotency_window_s",
            "secret_overlap_s",
        ):
            positive(name)
        for name in ("producer_linger_ms", "attempt_linger_ms"):
            if getattr(self, name) < 0:
                problems.append(f"{_env(name)} must be 0 or more")
        if self.session_timeout_ms < 3000:
            problems.append(f"{_env('session_timeout_ms')} must be at least 3000")
        if not 0 < self.api_port < 65536:
            problems.append(f"{_env('api_port')} must be a TCP port (1-65535)")
        if not _TOPIC_PREFIX_RE.match(self.topic_prefix):
            problems.append(f"{_env('topic_prefix')} may hold only letters, digits, '.', '_', '-'")
        if not self.bootstrap.strip() or any(
            ":" not in s for s in self.bootstrap.split(",") if s.strip()
        ):
            problems.append(f"{_env('bootstrap')} must be host:port[,host:port...]")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            problems.append(f"{_env('redis_url')} must start with redis://, rediss:// or unix://")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            problems.append(f"{_env('log_level')} must be DEBUG, INFO, WARNING or ERROR")
        try:
            parse_schedule(self.retry_schedule_s)
        except ValueError as exc:
            problems.append(f"{_env('retry_schedule_s')}: {exc}")
        if not 0 <= self.retry_jitter < 1:
            problems.append(f"{_env('retry_jitter')} must be from 0 up to (not including) 1")
        if self.retry_floor_s <= 0:
            problems.append(f"{_env('retry_floor_s')} must be greater than 0")
        if self.retry_linear_interval_s <= 0:
            problems.append(f"{_env('retry_linear_interval_s')} must be greater than 0")
        if not 0 < self.circuit_failure_ratio <= 1:
            problems.append(f"{_env('circuit_failure_ratio')} must be above 0 and at most 1")
        if self.endpoint_initial_concurrency > self.endpoint_max_concurrency:
            problems.append(
                f"{_env('endpoint_initial_concurrency')} must not exceed "
                f"{_env('endpoint_max_concurrency')}"
            )
        if self.metrics_endpoint_series < 0:
            problems.append(f"{_env('metrics_endpoint_series')} must be 0 or more")
        if not 0 <= self.worker_metrics_port < 65536:
            problems.append(f"{_env('worker_metrics_port')} must be a TCP port or 0")
        try:
            parse_networks(self.egress_allow_cidrs)
        except ValueError as exc:
            problems.append(f"{_env('egress_allow_cidrs')}: {exc}")
        try:
            tiers = parse_tiers(self.api_rate_tiers)
        except ValueError as exc:
            problems.append(f"{_env('api_rate_tiers')}: {exc}")
        else:
            if self.api_default_tier not in tiers:
                problems.append(f"{_env('api_default_tier')} must be one of {', '.join(tiers)}")
        if self.admin_key and len(self.admin_key) < 16:
            problems.append(f"{_env('admin_key')} must be at least 16 characters")
        problems.extend(security_problems(self))
        return problems

    def to_env(self) -> dict[str, str]:
        """These settings as HOOKSTREAM_* variables, to start another process with them."""
        env: dict[str, str] = {}
        for f in _setting_fields():
            value = getattr(self, f.name)
            env[_env(f.name)] = str(value).lower() if isinstance(value, bool) else str(value)
        return env

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry schedule as the engine's policy."""
        return RetryPolicy(
            delays=parse_schedule(self.retry_schedule_s),
            jitter=self.retry_jitter,
            floor_s=self.retry_floor_s,
            linear_interval_s=self.retry_linear_interval_s,
        )

    @property
    def egress(self) -> EgressPolicy:
        """Where deliveries may go (dev mode: anywhere)."""
        return EgressPolicy(
            allow_private=self.dev_mode,
            allow_http=self.allow_http,
            allowed_networks=parse_networks(self.egress_allow_cidrs),
        )

    @property
    def rate_tiers(self) -> dict[str, Tier]:
        """The API key tiers by name."""
        return parse_tiers(self.api_rate_tiers)

    @property
    def gate_settings(self) -> GateSettings:
        """The endpoint-gate knobs as the engine's settings."""
        return GateSettings(
            hold_max_s=self.endpoint_hold_max_s,
            initial_concurrency=self.endpoint_initial_concurrency,
            max_concurrency=self.endpoint_max_concurrency,
            window_s=self.health_window_s,
            auto_disable_after_s=self.auto_disable_after_s,
            request_timeout_s=self.http_timeout_s,
            circuit=CircuitSettings(
                consecutive=self.circuit_consecutive_failures,
                failure_ratio=self.circuit_failure_ratio,
                min_volume=self.circuit_min_volume,
                window_s=self.circuit_window_s,
                open_s=self.circuit_open_s,
                max_open_s=self.circuit_open_max_s,
            ),
        )

    @property
    def heartbeat_interval_ms(self) -> int:
        """A third of the session timeout, capped at 3 s (Kafka's guidance)."""
        return min(3000, self.session_timeout_ms // 3)


def _setting_fields() -> list[dataclasses.Field[Any]]:
    return [f for f in fields(Settings) if not f.name.startswith("_")]


def _env(name: str) -> str:
    return ENV_PREFIX + name.upper()

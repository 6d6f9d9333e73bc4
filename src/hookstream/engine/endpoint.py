"""Endpoints: where a tenant wants its events delivered, and how an input becomes one."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from hookstream.engine.clock import Clock, rfc3339, system_clock
from hookstream.engine.destinations import check_url
from hookstream.engine.event import ID_RE
from hookstream.engine.matching import validate_glob
from hookstream.engine.retry import MAX_ATTEMPTS_LIMIT, RETRY_POLICY_KINDS
from hookstream.engine.signing import generate_secret
from hookstream.errors import FieldProblem, InvalidInput

MAX_EVENT_TYPES = 100
MAX_DESCRIPTION = 1000
MAX_RATE_LIMIT = 10_000.0  # requests/s
MAX_CONCURRENCY = 1000
CREATE_FIELDS = frozenset(
    {
        "url",
        "tenant",
        "event_types",
        "description",
        "retry_policy",
        "max_attempts",
        "rate_limit",
        "max_concurrency",
        "operational",
    }
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A registered destination. Lives in the compacted `endpoints` topic, keyed by id."""

    id: str
    tenant: str
    url: str
    event_types: tuple[str, ...]
    secret: str
    description: str = ""
    disabled: bool = False
    disabled_reason: str = ""  # why, when hookstream disabled it
    created_at: str = ""
    updated_at: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    retry_policy: str = "exponential"  # exponential | linear | none
    max_attempts: int | None = None  # None: as many as the deployment's schedule
    rate_limit: float | None = None  # requests per second; None: unlimited
    max_concurrency: int | None = None  # ceiling of the adaptive cap; None: deployment's
    # Operational endpoints receive the tenant's hookstream events (endpoint.disabled,
    # message.attempt.exhausted) and nothing else.
    operational: bool = False

    def to_record(self) -> bytes:
        """The `endpoints` topic record value (secret included: the topic is internal)."""
        return orjson.dumps(self.to_dict(include_secret=True))

    def to_dict(self, *, include_secret: bool = False) -> dict[str, Any]:
        """The endpoint as the API shows it; the secret only when asked for."""
        body: dict[str, Any] = {
            "id": self.id,
            "tenant": self.tenant,
            "url": self.url,
            "event_types": list(self.event_types),
            "description": self.description,
            "disabled": self.disabled,
            "disabled_reason": self.disabled_reason,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "metadata": self.metadata,
            "retry_policy": self.retry_policy,
            "max_attempts": self.max_attempts,
            "rate_limit": self.rate_limit,
            "max_concurrency": self.max_concurrency,
            "operational": self.operational,
        }
        if include_secret:
            body["secret"] = self.secret
        return body

    @classmethod
    def from_record(cls, value: bytes) -> Endpoint:
        """Rebuild an endpoint from its `endpoints` record value."""
        raw = orjson.loads(value)
        return cls(
            id=raw["id"],
            tenant=raw["tenant"],
            url=raw["url"],
            event_types=tuple(raw["event_types"]),
            secret=raw["secret"],
            description=raw.get("description", ""),
            disabled=raw.get("disabled", False),
            disabled_reason=raw.get("disabled_reason", ""),
            created_at=raw.get("created_at", ""),
            updated_at=raw.get("updated_at", ""),
            metadata=raw.get("metadata", {}),
            retry_policy=raw.get("retry_policy", "exponential"),
            max_attempts=raw.get("max_attempts"),
            rate_limit=raw.get("rate_limit"),
            max_concurrency=raw.get("max_concurrency"),
            operational=raw.get("operational", False),
        )

    def with_changes(self, clock: Clock = system_clock, **changes: Any) -> Endpoint:
        """A copy with `changes` and a fresh `updated_at`."""
        return replace(self, **changes, updated_at=rfc3339(clock()))


def new_endpoint_id() -> str:
    """A unique endpoint id: ep_ + 24 random hex digits."""
    return f"ep_{secrets.token_hex(12)}"


def new_endpoint(raw: Any, *, allow_private: bool, clock: Clock = system_clock) -> Endpoint:
    """Validate an endpoint creation body and build the Endpoint with a fresh id and secret.

    Raises InvalidInput naming every bad field.
    """
    if not isinstance(raw, dict):
        raise InvalidInput([FieldProblem("$", "the body must be a JSON object")])
    problems = [FieldProblem(name, "unknown field") for name in sorted(set(raw) - CREATE_FIELDS)]

    url = raw.get("url")
    if not isinstance(url, str):
        problems.append(FieldProblem("url", "is required and must be a string"))
    else:
        try:
            url = check_url(url, allow_private=allow_private)
        except InvalidInput as exc:
            problems.extend(exc.problems)

    tenant = raw.get("tenant")
    if not isinstance(tenant, str) or not ID_RE.match(tenant):
        problems.append(FieldProblem("tenant", "is required: 1-128 characters of [a-zA-Z0-9_.:-]"))

    event_types = raw.get("event_types", ["*"])
    if (
        not isinstance(event_types, list)
        or not event_types
        or not all(isinstance(t, str) for t in event_types)
    ):
        problems.append(FieldProblem("event_types", "must be a non-empty list of strings"))
    elif len(event_types) > MAX_EVENT_TYPES:
        problems.append(FieldProblem("event_types", f"at most {MAX_EVENT_TYPES} patterns"))
    else:
        for i, pattern in enumerate(event_types):
            message = validate_glob(pattern)
            if message:
                problems.append(FieldProblem(f"event_types[{i}]", message))

    description = raw.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        problems.append(
            FieldProblem("description", f"must be a string of at most {MAX_DESCRIPTION} characters")
        )

    retry_policy = raw.get("retry_policy", "exponential")
    if retry_policy not in RETRY_POLICY_KINDS:
        problems.append(
            FieldProblem("retry_policy", f"must be one of {', '.join(RETRY_POLICY_KINDS)}")
        )
    max_attempts = raw.get("max_attempts")
    if max_attempts is not None and (
        not isinstance(max_attempts, int)
        or isinstance(max_attempts, bool)
        or not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT
    ):
        problems.append(
            FieldProblem("max_attempts", f"must be a whole number 1-{MAX_ATTEMPTS_LIMIT}")
        )

    rate_limit = raw.get("rate_limit")
    if rate_limit is not None and (
        not isinstance(rate_limit, int | float)
        or isinstance(rate_limit, bool)
        or not 0 < rate_limit <= MAX_RATE_LIMIT
    ):
        problems.append(
            FieldProblem(
                "rate_limit", f"must be requests per second, above 0 up to {MAX_RATE_LIMIT:g}"
            )
        )
    max_concurrency = raw.get("max_concurrency")
    if max_concurrency is not None and (
        not isinstance(max_concurrency, int)
        or isinstance(max_concurrency, bool)
        or not 1 <= max_concurrency <= MAX_CONCURRENCY
    ):
        problems.append(
            FieldProblem("max_concurrency", f"must be a whole number 1-{MAX_CONCURRENCY}")
        )
    operational = raw.get("operational", False)
    if not isinstance(operational, bool):
        problems.append(FieldProblem("operational", "must be true or false"))

    if problems:
        raise InvalidInput(problems)
    now = rfc3339(clock())
    return Endpoint(
        id=new_endpoint_id(),
        tenant=tenant,  # type: ignore[arg-type]
        url=url,  # type: ignore[arg-type]
        event_types=tuple(dict.fromkeys(event_types)),
        secret=generate_secret(),
        description=description,
        created_at=now,
        updated_at=now,
        retry_policy=retry_policy,
        max_attempts=max_attempts,
        rate_limit=None if rate_limit is None else float(rate_limit),
        max_concurrency=max_concurrency,
        operational=operational,
    )

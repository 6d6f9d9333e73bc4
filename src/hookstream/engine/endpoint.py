"""Endpoints: where a tenant wants its events delivered, and how an input becomes one."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from hookstream.engine.catalog import metadata_problems
from hookstream.engine.clock import Clock, rfc3339, system_clock
from hookstream.engine.custom_headers import header_problems
from hookstream.engine.destinations import EgressPolicy, check_url
from hookstream.engine.filters import compile_filter
from hookstream.engine.names import ID_RE, ID_RULE, MAX_CHANNELS, are_channels, glob_problem
from hookstream.engine.retry import MAX_ATTEMPTS_LIMIT, RETRY_POLICY_KINDS
from hookstream.engine.signing import generate_secret
from hookstream.errors import FieldProblem, InvalidInput

MAX_EVENT_TYPES = 100
MAX_DESCRIPTION = 1000
MAX_RATE_LIMIT = 10_000.0  # requests/s
MAX_CONCURRENCY = 1000
# Fields a PATCH may change (`url`... `operational`); `tenant` only on create.
MUTABLE_FIELDS = frozenset(
    {
        "url",
        "event_types",
        "channels",
        "filter",
        "headers",
        "description",
        "retry_policy",
        "max_attempts",
        "rate_limit",
        "max_concurrency",
        "disabled",
        "metadata",
        "operational",
        "ordering",
    }
)
CREATE_FIELDS = MUTABLE_FIELDS | {"tenant"}
# What a PATCH's null resets a field to.
CLEARED: dict[str, Any] = {
    "description": "",
    "channels": (),
    "filter": None,
    "headers": {},
    "metadata": {},
    "max_attempts": None,
    "rate_limit": None,
    "max_concurrency": None,
    "event_types": ("*",),
    "retry_policy": "exponential",
    "ordering": "none",
}
# "subject": one message in flight per subject, in publish order (engine/ordering.py).
ORDERINGS = ("none", "subject")


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
    channels: tuple[str, ...] = ()  # when set, only events on one of these channels
    filter: dict[str, Any] | None = None  # payload filter (engine/filters.py)
    headers: dict[str, str] = field(default_factory=dict)  # added to every delivery
    # Secrets replaced by a rotation that still sign until (epoch s) their expiry.
    previous_secrets: tuple[tuple[str, float], ...] = ()
    ordering: str = "none"  # "subject": each subject's messages one at a time, in order

    @property
    def ordered(self) -> bool:
        """True when each subject's messages go one at a time, in publish order."""
        return self.ordering == "subject"

    def signing_secrets(self, now: float) -> tuple[str, ...]:
        """The secrets that sign a delivery at `now`: the current one first."""
        if not self.previous_secrets:
            return (self.secret,)
        return (self.secret, *(old for old, until in self.previous_secrets if until > now))

    def rotated(self, secret: str, overlap_s: float, clock: Clock = system_clock) -> Endpoint:
        """A copy signing with `secret`, the current secret still signing for `overlap_s`."""
        now = clock()
        kept = tuple((old, until) for old, until in self.previous_secrets if until > now)
        return self.with_changes(
            clock, secret=secret, previous_secrets=((self.secret, now + overlap_s), *kept)
        )

    def to_record(self) -> bytes:
        """The `endpoints` topic record value (secrets included: the topic is internal)."""
        body = self.to_dict(include_secret=True)
        body["previous_secrets"] = [list(pair) for pair in self.previous_secrets]
        return orjson.dumps(body)

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
            "channels": list(self.channels),
            "filter": self.filter,
            "headers": self.headers,
            "ordering": self.ordering,
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
            channels=tuple(raw.get("channels", ())),
            filter=raw.get("filter"),
            headers=raw.get("headers", {}),
            ordering=raw.get("ordering", "none"),
            previous_secrets=tuple(
                (old, float(until)) for old, until in raw.get("previous_secrets", ())
            ),
        )

    def with_changes(self, clock: Clock = system_clock, **changes: Any) -> Endpoint:
        """A copy with `changes` and a fresh `updated_at`."""
        return replace(self, **changes, updated_at=rfc3339(clock()))


def new_endpoint_id() -> str:
    """A unique endpoint id: ep_ + 24 random hex digits."""
    return f"ep_{secrets.token_hex(12)}"


def new_endpoint(raw: Any, policy: EgressPolicy, *, clock: Clock = system_clock) -> Endpoint:
    """Validate an endpoint creation body and build the Endpoint with a fresh id and secret.

    Raises InvalidInput naming every bad field.
    """
    if not isinstance(raw, dict):
        raise InvalidInput([FieldProblem("$", "the body must be a JSON object")])
    problems = [FieldProblem(name, "unknown field") for name in sorted(set(raw) - CREATE_FIELDS)]
    tenant = raw.get("tenant")
    if not isinstance(tenant, str) or not ID_RE.match(tenant):
        problems.append(FieldProblem("tenant", "is required: 1-128 characters of [a-zA-Z0-9_.:-]"))
    if "url" not in raw:
        problems.append(FieldProblem("url", "is required and must be a string"))
    values = _checked({k: v for k, v in raw.items() if k in MUTABLE_FIELDS}, policy, problems)
    if problems:
        raise InvalidInput(problems)
    now = rfc3339(clock())
    return Endpoint(
        id=new_endpoint_id(),
        tenant=tenant,  # type: ignore[arg-type]
        secret=generate_secret(),
        created_at=now,
        updated_at=now,
        **{"event_types": ("*",), **values},
    )


def patch_endpoint(
    endpoint: Endpoint, raw: Any, policy: EgressPolicy, *, clock: Clock = system_clock
) -> Endpoint:
    """Apply a PATCH body (only the fields given; null resets one); InvalidInput if bad."""
    if not isinstance(raw, dict):
        raise InvalidInput([FieldProblem("$", "the body must be a JSON object")])
    problems = [
        FieldProblem(name, "cannot be changed" if name == "tenant" else "unknown field")
        for name in sorted(set(raw) - MUTABLE_FIELDS)
    ]
    given = {k: v for k, v in raw.items() if k in MUTABLE_FIELDS}
    cleared = {k: CLEARED[k] for k, v in given.items() if v is None and k in CLEARED}
    for name in [k for k, v in given.items() if v is None and k not in CLEARED]:
        problems.append(FieldProblem(name, "cannot be null"))
    values = _checked({k: v for k, v in given.items() if v is not None}, policy, problems)
    if problems:
        raise InvalidInput(problems)
    changes = {**cleared, **values}
    if changes.get("disabled") is False:
        changes["disabled_reason"] = ""
    return endpoint.with_changes(clock, **changes)


def _checked(raw: dict[str, Any], policy: EgressPolicy, problems: list[FieldProblem]) -> Any:
    """Each given mutable field checked and normalised; problems appended for bad ones."""
    values: dict[str, Any] = {}
    for name, value in raw.items():
        before = len(problems)
        normalised = _CHECKS[name](value, policy, problems)
        if len(problems) == before:
            values[name] = normalised
    return values


def _url(value: Any, policy: EgressPolicy, problems: list[FieldProblem]) -> Any:
    if not isinstance(value, str):
        problems.append(FieldProblem("url", "is required and must be a string"))
        return None
    try:
        return check_url(value, policy)
    except InvalidInput as exc:
        problems.extend(exc.problems)
        return None


def _event_types(value: Any, _: EgressPolicy, problems: list[FieldProblem]) -> Any:
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        problems.append(FieldProblem("event_types", "must be a non-empty list of strings"))
    elif len(value) > MAX_EVENT_TYPES:
        problems.append(FieldProblem("event_types", f"at most {MAX_EVENT_TYPES} patterns"))
    else:
        for i, pattern in enumerate(value):
            message = glob_problem(pattern)
            if message:
                problems.append(FieldProblem(f"event_types[{i}]", message))
        return tuple(dict.fromkeys(value))
    return None


def _channels(value: Any, _: EgressPolicy, problems: list[FieldProblem]) -> Any:
    if not are_channels(value):
        problems.append(FieldProblem("channels", f"at most {MAX_CHANNELS} of {ID_RULE}"))
    return tuple(dict.fromkeys(value)) if isinstance(value, list) else None


def _filter(value: Any, _: EgressPolicy, problems: list[FieldProblem]) -> Any:
    try:
        compile_filter(value)
    except InvalidInput as exc:
        problems.extend(exc.problems)
    return value


def _headers(value: Any, _: EgressPolicy, problems: list[FieldProblem]) -> Any:
    problems.extend(header_problems(value))
    return value


def _metadata(value: Any, _: EgressPolicy, problems: list[FieldProblem]) -> Any:
    problems.extend(metadata_problems(value))
    return value


def _description(value: Any, _: EgressPolicy, problems: list[FieldProblem]) -> Any:
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        problems.append(
            FieldProblem("description", f"must be a string of at most {MAX_DESCRIPTION} characters")
        )
    return value


def _retry_policy(value: Any, _: EgressPolicy, problems: list[FieldProblem]) -> Any:
    if value not in RETRY_POLICY_KINDS:
        problems.append(
            FieldProblem("retry_policy", f"must be one of {', '.join(RETRY_POLICY_KINDS)}")
        )
    return value


def _ordering(value: Any, _: EgressPolicy, problems: list[FieldProblem]) -> Any:
    if value not in ORDERINGS:
        problems.append(FieldProblem("ordering", f"must be one of {', '.join(ORDERINGS)}"))
    return value


def _whole(name: str, low: int, high: int) -> Any:
    def check(value: Any, _: EgressPolicy, problems: list[FieldProblem]) -> Any:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            problems.append(FieldProblem(name, f"must be a whole number {low}-{high}"))
        return value

    return check


def _rate_limit(value: Any, _: EgressPolicy, problems: list[FieldProblem]) -> Any:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not 0 < value <= MAX_RATE_LIMIT
    ):
        problems.append(
            FieldProblem(
                "rate_limit", f"must be requests per second, above 0 up to {MAX_RATE_LIMIT:g}"
            )
        )
        return None
    return float(value)


def _flag(name: str) -> Any:
    def check(value: Any, _: EgressPolicy, problems: list[FieldProblem]) -> Any:
        if not isinstance(value, bool):
            problems.append(FieldProblem(name, "must be true or false"))
        return value

    return check


_CHECKS: dict[str, Any] = {
    "url": _url,
    "event_types": _event_types,
    "channels": _channels,
    "filter": _filter,
    "headers": _headers,
    "metadata": _metadata,
    "description": _description,
    "retry_policy": _retry_policy,
    "max_attempts": _whole("max_attempts", 1, MAX_ATTEMPTS_LIMIT),
    "rate_limit": _rate_limit,
    "max_concurrency": _whole("max_concurrency", 1, MAX_CONCURRENCY),
    "disabled": _flag("disabled"),
    "operational": _flag("operational"),
    "ordering": _ordering,
}

"""API keys: scopes, tenant binding, rate tiers, and how a key is stored.

A key is shown once, when created: `hsk_<12 hex id>_<43 chars of secret>`.
Only its SHA-256 is kept (with the id, to find it, and the last four
characters, to recognise it). The secret is 256 random bits, so a fast hash is
enough: nobody can guess their way back, and checking costs microseconds per
request (a slow password hash would cost milliseconds on every call).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from hookstream.engine.clock import Clock, rfc3339, system_clock
from hookstream.errors import FieldProblem, InvalidInput

KEY_PREFIX = "hsk_"
SCOPES = ("endpoints:read", "endpoints:write", "events:publish", "dlq:manage", "admin")
ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Tier:
    """A rate tier: requests per hour, and how many may come at once."""

    name: str
    per_hour: int
    burst: int


def parse_tiers(raw: str) -> dict[str, Tier]:
    """`free=100,basic=1000:200` → tiers; burst defaults to a tenth of the limit."""
    tiers: dict[str, Tier] = {}
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        name, eq, spec = part.partition("=")
        limit, _, burst = spec.partition(":")
        try:
            per_hour = int(limit)
            allowance = int(burst) if burst else max(1, math.ceil(per_hour / 10))
        except ValueError:
            raise ValueError(f"{part!r} is not name=requests_per_hour[:burst]") from None
        if not eq or not name.strip() or per_hour <= 0 or allowance <= 0:
            raise ValueError(f"{part!r} is not name=requests_per_hour[:burst]")
        tiers[name.strip()] = Tier(name.strip(), per_hour, allowance)
    if not tiers:
        raise ValueError("name at least one tier")
    return tiers


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key (never the key itself)."""

    id: str
    name: str
    digest: str  # sha256 hex of the whole key
    hint: str  # its last four characters
    scopes: tuple[str, ...]
    tenant: str | None
    tier: str
    created_at: str

    def allows(self, scope: str) -> bool:
        """True when the key holds `scope` (admin holds every scope)."""
        return ADMIN in self.scopes or scope in self.scopes

    def matches(self, token: str) -> bool:
        """Constant-time check that `token` is this key."""
        return hmac.compare_digest(_digest(token), self.digest)

    def to_dict(self) -> dict[str, Any]:
        """The key as the API lists it: id, hint and grants, never the digest."""
        return {
            "id": self.id,
            "name": self.name,
            "hint": f"…{self.hint}",
            "scopes": list(self.scopes),
            "tenant": self.tenant,
            "tier": self.tier,
            "created_at": self.created_at,
        }

    def to_record(self) -> bytes:
        """The config-topic record value."""
        return orjson.dumps({**self.to_dict(), "hint": self.hint, "digest": self.digest})

    @classmethod
    def from_record(cls, value: bytes) -> ApiKey:
        """Rebuild from a config-topic record value."""
        raw = orjson.loads(value)
        return cls(
            id=raw["id"],
            name=raw["name"],
            digest=raw["digest"],
            hint=raw["hint"],
            scopes=tuple(raw["scopes"]),
            tenant=raw.get("tenant"),
            tier=raw["tier"],
            created_at=raw["created_at"],
        )


def new_api_key(
    name: str,
    scopes: list[str],
    tenant: str | None,
    tier: str,
    clock: Clock = system_clock,
) -> tuple[ApiKey, str]:
    """A fresh key: the stored record and the key to show once.

    InvalidInput for `admin` bound to a tenant: admin spans tenants (keys,
    tenants, event types, stats), so a tenant-bound admin key is a
    contradiction that would leak.
    """
    if ADMIN in scopes and tenant is not None:
        problem = "admin cannot be bound to a tenant; grant the tenant's scopes instead"
        raise InvalidInput([FieldProblem("scopes", problem)])
    key_id = KEY_PREFIX + secrets.token_hex(6)
    token = f"{key_id}_{secrets.token_urlsafe(32)}"
    stored = ApiKey(
        id=key_id,
        name=name,
        digest=_digest(token),
        hint=token[-4:],
        scopes=tuple(dict.fromkeys(scopes)),
        tenant=tenant,
        tier=tier,
        created_at=rfc3339(clock()),
    )
    return stored, token


def key_id_of(token: str) -> str | None:
    """The id part of a presented key, or None when it is not shaped like one."""
    size = len(KEY_PREFIX) + 12
    if not token.startswith(KEY_PREFIX) or len(token) <= size + 1 or token[size] != "_":
        return None
    return token[:size]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()

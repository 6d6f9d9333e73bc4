"""Which endpoints want an event: tenant first, then event-type globs, then
channels and payload filters.

A glob is dot-separated words where `*` stands for any run of characters,
dots included: `invoice.*` matches `invoice.paid` and `invoice.paid.late`,
`*` matches everything, and a glob without `*` matches exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from hookstream.engine.filters import Predicate, compile_filter

if TYPE_CHECKING:
    from hookstream.engine.endpoint import Endpoint
    from hookstream.engine.event import Event

# Bounds the match cache when a tenant publishes very many distinct event types.
MAX_CACHED_TYPES_PER_TENANT = 10_000


def compile_globs(patterns: Iterable[str]) -> re.Pattern[str]:
    """One regex matching any of `patterns` (validated globs), anchored at both ends."""
    parts = [re.escape(p).replace(r"\*", ".*") for p in patterns]
    return re.compile("^(?:" + "|".join(parts) + ")$")


class EndpointIndex:
    """Endpoints grouped by tenant, answering `match(tenant, type)` from a cache.

    The cache is dropped for a tenant whenever one of its endpoints changes, so
    routing cost is one dict lookup per event in steady state.
    """

    def __init__(self) -> None:
        self._by_id: dict[str, Endpoint] = {}
        self._by_tenant: dict[str, dict[str, tuple[Endpoint, re.Pattern[str]]]] = {}
        self._filters: dict[str, Predicate] = {}  # endpoint id → compiled payload filter
        # (operational, tenant) → event type → matching endpoints
        self._cache: dict[tuple[bool, str], dict[str, tuple[Endpoint, ...]]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, endpoint_id: str) -> Endpoint | None:
        """The endpoint with this id, or None."""
        return self._by_id.get(endpoint_id)

    def all(self, tenant: str | None = None) -> list[Endpoint]:
        """Every endpoint, or those of `tenant`, in id order."""
        if tenant is None:
            items = list(self._by_id.values())
        else:
            items = [ep for ep, _ in self._by_tenant.get(tenant, {}).values()]
        return sorted(items, key=lambda ep: ep.id)

    def put(self, endpoint: Endpoint) -> None:
        """Add or replace an endpoint."""
        self.remove(endpoint.id)
        self._by_id[endpoint.id] = endpoint
        self._by_tenant.setdefault(endpoint.tenant, {})[endpoint.id] = (
            endpoint,
            compile_globs(endpoint.event_types),
        )
        if endpoint.filter is not None:
            self._filters[endpoint.id] = compile_filter(endpoint.filter)
        self._forget(endpoint.tenant)

    def remove(self, endpoint_id: str) -> None:
        """Drop an endpoint if present."""
        old = self._by_id.pop(endpoint_id, None)
        self._filters.pop(endpoint_id, None)
        if old is not None:
            self._by_tenant[old.tenant].pop(endpoint_id, None)
            if not self._by_tenant[old.tenant]:
                del self._by_tenant[old.tenant]
            self._forget(old.tenant)

    def match(
        self, tenant: str, event_type: str, *, operational: bool = False
    ) -> tuple[Endpoint, ...]:
        """The enabled endpoints of `tenant` whose globs match `event_type`.

        Domain events go to ordinary endpoints; hookstream's own operational
        events (`operational=True`) go only to the tenant's operational ones.
        """
        per_type = self._cache.get((operational, tenant))
        if per_type is None:
            per_type = self._cache[(operational, tenant)] = {}
        hit = per_type.get(event_type)
        if hit is None:
            if len(per_type) >= MAX_CACHED_TYPES_PER_TENANT:
                per_type.clear()
            hit = tuple(
                ep
                for ep, regex in self._by_tenant.get(tenant, {}).values()
                if not ep.disabled and ep.operational is operational and regex.match(event_type)
            )
            per_type[event_type] = hit
        return hit

    def route(self, event: Event, *, operational: bool = False) -> tuple[Endpoint, ...]:
        """The endpoints that get `event`: `match`, then channels and payload filters."""
        candidates = self.match(event.tenant, event.type, operational=operational)
        if not any(ep.channels or ep.filter is not None for ep in candidates):
            return candidates
        document: dict[str, Any] | None = None
        chosen = []
        for ep in candidates:
            if ep.channels and not any(c in ep.channels for c in event.channels):
                continue
            predicate = self._filters.get(ep.id)
            if predicate is not None:
                document = document or event.filter_document()
                if not predicate(document):
                    continue
            chosen.append(ep)
        return tuple(chosen)

    def _forget(self, tenant: str) -> None:
        self._cache.pop((False, tenant), None)
        self._cache.pop((True, tenant), None)

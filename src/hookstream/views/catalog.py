"""The catalog: tenants, event types and API keys, every API process's view of
the compacted `config` topic (keys `tenant:<id>`, `event-type:<name>`,
`api-key:<id>`). Config lives in Kafka like endpoints: one source of truth,
replicated, and read whole at start.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from hookstream.config import Settings
from hookstream.engine.apikeys import ApiKey
from hookstream.engine.catalog import EventType, Tenant
from hookstream.engine.clock import Clock, system_clock
from hookstream.topics import TopicNames
from hookstream.views.compacted import CompactedView

log = logging.getLogger(__name__)

TENANT = "tenant:"
EVENT_TYPE = "event-type:"
API_KEY = "api-key:"


class Catalog(CompactedView):
    """Tenants, event types and API keys by id; writes go through Kafka."""

    def __init__(self, settings: Settings, *, writable: bool = False, clock: Clock = system_clock):
        super().__init__(
            settings, TopicNames(settings).config, "catalog", writable=writable, clock=clock
        )
        self.tenants: dict[str, Tenant] = {}
        self.event_types: dict[str, EventType] = {}
        self.api_keys: dict[str, ApiKey] = {}

    async def put_tenant(self, tenant: Tenant) -> None:
        """Write a tenant; returns once this view shows it."""
        await self.write(TENANT + tenant.id, orjson.dumps(tenant.to_dict()))

    async def delete_tenant(self, tenant_id: str) -> None:
        """Remove a tenant."""
        await self.write(TENANT + tenant_id, None)

    async def put_event_type(self, event_type: EventType) -> None:
        """Write an event type."""
        await self.write(EVENT_TYPE + event_type.name, orjson.dumps(event_type.to_dict()))

    async def put_api_key(self, key: ApiKey) -> None:
        """Write an API key's stored form."""
        await self.write(API_KEY + key.id, key.to_record())

    async def revoke_api_key(self, key_id: str) -> None:
        """Remove a key: from the next request on, it answers 401 everywhere."""
        await self.write(API_KEY + key_id, None)

    def apply(self, key: str, value: bytes | None, offset: int) -> None:
        """Apply one config record."""
        kind, _, ident = key.partition(":")
        tables: dict[str, dict[str, Any]] = {
            "tenant": self.tenants,
            "event-type": self.event_types,
            "api-key": self.api_keys,
        }
        table = tables.get(kind)
        if table is None or not ident:
            log.error("skipping config record of unknown kind", extra={"offset": offset})
            return
        if value is None:
            table.pop(ident, None)
            return
        try:
            if kind == "api-key":
                table[ident] = ApiKey.from_record(value)
            elif kind == "tenant":
                table[ident] = Tenant.from_dict(orjson.loads(value))
            else:
                table[ident] = EventType.from_dict(orjson.loads(value))
        except (ValueError, KeyError, TypeError):
            log.error("skipping undecodable config record", extra={"offset": offset})

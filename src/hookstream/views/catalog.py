"""The catalog: tenants, event types, API keys and sources, every process's view
of the compacted `config` topic (keys `tenant:<id>`, `event-type:<name>`,
`api-key:<id>`, `source:<id>`). Config lives in Kafka like endpoints: one source of truth,
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
from hookstream.engine.source import Source
from hookstream.topics import TopicNames
from hookstream.views.compacted import CompactedView

log = logging.getLogger(__name__)

TENANT = "tenant:"
EVENT_TYPE = "event-type:"
API_KEY = "api-key:"
SOURCE = "source:"


class Catalog(CompactedView):
    """Tenants, event types, API keys and sources by id; writes go through Kafka."""

    def __init__(self, settings: Settings, *, writable: bool = False, clock: Clock = system_clock):
        super().__init__(
            settings, TopicNames(settings).config, "catalog", writable=writable, clock=clock
        )
        self.tenants: dict[str, Tenant] = {}
        self.event_types: dict[str, EventType] = {}
        self.api_keys: dict[str, ApiKey] = {}
        self.sources: dict[str, Source] = {}
        self.sources_version = 0  # counts source writes applied: the router re-reads on change

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

    async def put_source(self, source: Source) -> None:
        """Write a source: every worker's router starts consuming its topic."""
        await self.write(SOURCE + source.id, orjson.dumps(source.to_dict()))

    async def delete_source(self, source_id: str) -> None:
        """Remove a source: routers stop consuming its topic."""
        await self.write(SOURCE + source_id, None)

    def apply(self, key: str, value: bytes | None, offset: int) -> None:
        """Apply one config record."""
        kind, _, ident = key.partition(":")
        tables: dict[str, dict[str, Any]] = {
            "tenant": self.tenants,
            "event-type": self.event_types,
            "api-key": self.api_keys,
            "source": self.sources,
        }
        table = tables.get(kind)
        if table is None or not ident:
            log.error("skipping config record of unknown kind", extra={"offset": offset})
            return
        if kind == "source":
            self.sources_version += 1
        if value is None:
            table.pop(ident, None)
            return
        try:
            if kind == "api-key":
                table[ident] = ApiKey.from_record(value)
            elif kind == "tenant":
                table[ident] = Tenant.from_dict(orjson.loads(value))
            elif kind == "source":
                table[ident] = Source.from_dict(orjson.loads(value))
            else:
                table[ident] = EventType.from_dict(orjson.loads(value))
        except (ValueError, KeyError, TypeError):
            log.error("skipping undecodable config record", extra={"offset": offset})

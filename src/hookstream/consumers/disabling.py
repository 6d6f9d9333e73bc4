"""Disabling an endpoint: a registry write, a log line, and an operational event.

The courier disables an endpoint when `settle` says so (a 410, or no success
for the auto-disable period). Concurrent failures of one endpoint all ask;
the first one disables it, once.
"""

from __future__ import annotations

import logging

from hookstream.consumers.ops_events import OpsEvents
from hookstream.views.registry import EndpointRegistry

log = logging.getLogger(__name__)


class EndpointDisabler:
    """Disables endpoints through a writable registry and tells their tenants."""

    def __init__(self, registry: EndpointRegistry, ops: OpsEvents) -> None:
        self._registry = registry
        self._ops = ops
        self._disabling: set[str] = set()

    async def disable(self, endpoint_id: str, why: str) -> None:
        """Disable an endpoint (once) and tell its tenant through an operational event."""
        endpoint = self._registry.get(endpoint_id)
        if endpoint is None or endpoint.disabled or endpoint_id in self._disabling:
            return
        self._disabling.add(endpoint_id)
        try:
            disabled = endpoint.with_changes(disabled=True, disabled_reason=why)
            await self._registry.put(disabled)
            log.warning(
                f"endpoint disabled: {why}",
                extra={"endpoint_id": endpoint_id, "tenant": endpoint.tenant},
            )
            await self._ops.endpoint_disabled(disabled, why)
        finally:
            self._disabling.discard(endpoint_id)

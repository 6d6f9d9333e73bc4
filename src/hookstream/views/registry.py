"""The endpoint registry: every process's in-memory view of the `endpoints` topic.

The reading, read-your-writes and `barrier` machinery is `CompactedView`'s
(views/compacted.py); this class only applies records to the index.
"""

from __future__ import annotations

import logging
from collections import Counter

from hookstream.config import Settings
from hookstream.engine.clock import Clock, system_clock
from hookstream.engine.endpoint import Endpoint
from hookstream.engine.matching import EndpointIndex
from hookstream.engine.placement import id_in, least_used
from hookstream.errors import InvalidInput, RegistryUnavailable
from hookstream.kafka import key_partition
from hookstream.topics import TopicNames
from hookstream.views.compacted import CompactedView

log = logging.getLogger(__name__)

__all__ = ["EndpointRegistry", "RegistryUnavailable"]


class EndpointRegistry(CompactedView):
    """Materialized endpoints: `index` answers reads; `put`/`delete` write through Kafka."""

    def __init__(self, settings: Settings, *, writable: bool = False, clock: Clock = system_clock):
        super().__init__(
            settings, TopicNames(settings).endpoints, "registry", writable=writable, clock=clock
        )
        self.index = EndpointIndex()
        self._partitions = settings.partitions
        # Endpoints per partition of `deliveries`, counting ids handed out by
        # `new_endpoint_id` before their record is read back (engine/placement.py).
        self._placed: Counter[int] = Counter()
        self._promised: set[str] = set()

    async def start(self) -> None:
        """Read the whole topic, then keep tailing it in the background."""
        await super().start()
        log.info("endpoint registry loaded", extra={"endpoints": len(self.index)})

    def get(self, endpoint_id: str) -> Endpoint | None:
        """The endpoint with this id as this process last saw it."""
        return self.index.get(endpoint_id)

    def new_endpoint_id(self) -> str:
        """A fresh endpoint id whose deliveries go to the partition of `deliveries`
        holding the fewest endpoints (decision 031)."""
        partition = least_used(self._placed, self._partitions)
        endpoint_id = id_in(partition, self._partitions, key_partition)
        self._promised.add(endpoint_id)
        self._placed[partition] += 1
        return endpoint_id

    async def put(self, endpoint: Endpoint) -> None:
        """Write an endpoint and wait until this view shows it."""
        await self.write(endpoint.id, endpoint.to_record())

    async def delete(self, endpoint_id: str) -> None:
        """Write a tombstone and wait until this view no longer shows the endpoint."""
        await self.write(endpoint_id, None)

    def apply(self, key: str, value: bytes | None, offset: int) -> None:
        """Apply one record of the endpoints topic to the index."""
        known = self.index.get(key) is not None
        if value is None:
            self.index.remove(key)
            if known:
                self._placed[key_partition(key, self._partitions)] -= 1
            return
        try:
            self.index.put(Endpoint.from_record(value))
        except (ValueError, KeyError, TypeError, InvalidInput):
            log.error("skipping undecodable endpoint record", extra={"offset": offset})
            return
        if not known and key not in self._promised:
            self._placed[key_partition(key, self._partitions)] += 1
        self._promised.discard(key)

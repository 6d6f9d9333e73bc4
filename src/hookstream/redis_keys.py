"""Every Redis key hookstream uses, in one place (beside `topics.py`).

Redis holds soft state only (DESIGN.md, principle 1): flushing it resets
indexes, dashboards and buckets, never a delivery. All keys of a deployment
start with its `topic_prefix`, so deployments can share one Redis.
"""

from __future__ import annotations

from hookstream.config import Settings


class RedisKeys:
    """Key names for one deployment (the prefix applied)."""

    def __init__(self, settings: Settings) -> None:
        self.prefix = settings.topic_prefix

    def health(self, endpoint_id: str) -> str:
        """String: an endpoint's latest health snapshot (JSON)."""
        return f"{self.prefix}health:{endpoint_id}"

    @property
    def health_index(self) -> str:
        """Sorted set of every observed endpoint, by health rank, worst first."""
        return f"{self.prefix}health-index"

    def rollup(self, bucket_start: int) -> str:
        """Hash: one 10-second step of delivery counts, summed over workers."""
        return f"{self.prefix}stats:{bucket_start}"

    @property
    def gauges(self) -> str:
        """Hash: the latest cluster-wide gauges (dlq, retry_pending, at)."""
        return f"{self.prefix}gauges"

    def endpoint_attempts(self, endpoint_id: str) -> str:
        """Sorted set: an endpoint's recent attempts."""
        return f"{self.prefix}attempts:endpoint:{endpoint_id}"

    def message_attempts(self, message_id: str) -> str:
        """Sorted set: one message's attempts."""
        return f"{self.prefix}attempts:message:{message_id}"

    def routed(self, message_id: str) -> str:
        """Hash: a routed message's identity (endpoint, event, type)."""
        return f"{self.prefix}messages:{message_id}"

    def rate_bucket(self, key_id: str) -> str:
        """Hash: an API key's rate-limit bucket."""
        return f"{self.prefix}ratelimit:{key_id}"

    def idempotency(self, tenant: str, event_id: str) -> str:
        """String: the ingest claim on (tenant, event id)."""
        return f"{self.prefix}idem:{tenant}:{event_id}"

    def dlq_letter(self, letter_id: str) -> str:
        """Hash: one dead letter as the DLQ index holds it (views/dlq_index.py)."""
        return f"{self.prefix}dlq:letter:{letter_id}"

    def dlq_set(self, state: str, field: str = "", value: str = "") -> str:
        """Sorted set: the letters in `state` (open, redriven), or those of one
        filter `field` (tenant, endpoint, type) `value`. The index's scripts build
        the same names."""
        return f"{self.prefix}dlq:{state}" + (f":{field}:{value}" if field else "")

    def dlq_built(self, topic: str, partition: int) -> str:
        """String: set while the DLQ index holds `topic`'s `partition` from its start."""
        return f"{self.prefix}dlq:built:{topic}:{partition}"

    @property
    def dlq_messages(self) -> str:
        """Hash: message id -> its newest dead letter's id."""
        return f"{self.prefix}dlq:messages"

    def task(self, task_id: str) -> str:
        """Hash: a background task's progress (redrive, replay)."""
        return f"{self.prefix}tasks:{task_id}"

    def task_owner(self, task_id: str) -> str:
        """String with a short TTL: the API process running a replay, while it runs."""
        return f"{self.prefix}tasks:{task_id}:owner"

    @property
    def replays(self) -> str:
        """Set: replay tasks not finished yet (any process may adopt one whose owner is gone)."""
        return f"{self.prefix}tasks:replays"

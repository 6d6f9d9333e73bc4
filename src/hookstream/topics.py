"""The topics hookstream uses, their shapes, and creating them.

Every delivery-side topic has the same partition count and is keyed by endpoint
id, so one consumer group with the range assignor gives one worker every record
of an endpoint (DESIGN.md, "one owner per endpoint").
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from hookstream.config import Settings
from hookstream.engine.retry import tier_name
from hookstream.kafka import admin_options

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic to create: its full name, partitions and configs."""

    name: str
    partitions: int
    configs: dict[str, str]


class TopicNames:
    """Full topic and group names for one deployment (the prefix applied)."""

    def __init__(self, settings: Settings) -> None:
        p = settings.topic_prefix
        self.events = f"{p}events"
        self.deliveries = f"{p}deliveries"
        self.endpoints = f"{p}endpoints"
        self.config = f"{p}config"  # tenants, event types, API keys
        self.attempts = f"{p}attempts"
        self.dlq = f"{p}dlq"
        self.dlq_state = f"{p}dlq-state"  # redrives, keyed by letter id
        self.ordering = f"{p}ordering"  # blocked chains of ordered endpoints
        self.health = f"{p}health"
        self.ops = f"{p}ops"
        self.router_group = f"{p}router"
        self.dispatcher_group = f"{p}dispatcher"
        self.retry_tiers = {
            delay: f"{p}retry.{tier_name(delay)}" for delay in settings.retry_policy.tiers()
        }

    def own(self) -> frozenset[str]:
        """Every topic hookstream writes: none of them can be a source."""
        fixed = (self.events, self.deliveries, self.endpoints, self.config, self.attempts)
        tail = (self.dlq, self.dlq_state, self.ordering, self.health, self.ops)
        return frozenset((*fixed, *tail, *self.retry_tiers.values()))


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic of a deployment with its partitions and configs."""
    names = TopicNames(settings)
    n = settings.partitions
    compact = {"cleanup.policy": "compact"}
    week = {"retention.ms": str(7 * 24 * 3600 * 1000)}
    return [
        TopicSpec(
            names.events, n, {"retention.ms": str(int(settings.events_retention_days * DAY_MS))}
        ),
        TopicSpec(names.deliveries, n, week),
        # Retry tiers: co-partitioned with deliveries (same count, same key).
        *(TopicSpec(topic, n, week) for topic in names.retry_tiers.values()),
        TopicSpec(names.attempts, n, week),
        TopicSpec(names.dlq, n, {"retention.ms": str(int(settings.dlq_retention_days * DAY_MS))}),
        # Ordered endpoints' blocked chains, keyed by endpoint and subject, in the
        # partition of `deliveries` that owns the endpoint (consumers/sequencer.py).
        TopicSpec(names.ordering, n, compact),
        # What was redriven, latest per letter: small, read by the DLQ index.
        TopicSpec(names.dlq_state, 1, compact),
        # Config is small and read whole by every process: one partition keeps
        # read-your-writes a single offset comparison.
        TopicSpec(names.endpoints, 1, compact),
        TopicSpec(names.config, 1, compact),
        # Latest health per endpoint: small, read whole by every worker.
        TopicSpec(names.health, 1, compact),
        # hookstream's own operational events, routed to operational endpoints.
        TopicSpec(names.ops, n, week),
    ]


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(**admin_options(settings, client_id="topics"))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [s for s in topic_specs(settings) if s.name not in existing]
        if not wanted:
            return []
        with contextlib.suppress(TopicAlreadyExistsError):  # another process was first
            await admin.create_topics(
                [
                    NewTopic(
                        s.name,
                        s.partitions,
                        settings.replication_factor,
                        topic_configs=s.configs,
                    )
                    for s in wanted
                ]
            )
        return [s.name for s in wanted]
    finally:
        await admin.close()

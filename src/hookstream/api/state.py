"""Typed application state shared by the route modules."""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractResolver
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from hookstream.api.redrive import RedriveTasks
from hookstream.api.replay_tasks import ReplayTasks
from hookstream.config import Settings
from hookstream.egress import HttpSender
from hookstream.producers import EventPublisher
from hookstream.views.catalog import Catalog
from hookstream.views.registry import EndpointRegistry

SETTINGS = web.AppKey("settings", Settings)
REGISTRY = web.AppKey("registry", EndpointRegistry)
PUBLISHER = web.AppKey("publisher", EventPublisher)
REDIS = web.AppKey("redis", Redis)
PRODUCER = web.AppKey("producer", AIOKafkaProducer)
TASKS = web.AppKey("tasks", RedriveTasks)
REPLAYS = web.AppKey("replays", ReplayTasks)
METRICS = web.AppKey("metrics", CollectorRegistry)
# Registries of other stages in this process that /metrics serves too (dev: the worker's).
SHARED_METRICS = web.AppKey("shared_metrics", tuple)
CATALOG = web.AppKey("catalog", Catalog)
SENDER = web.AppKey("sender", HttpSender)  # test sends (POST /v1/endpoints/{id}/test)
RESOLVER = web.AppKey("resolver", AbstractResolver)  # DNS for the SSRF check at registration

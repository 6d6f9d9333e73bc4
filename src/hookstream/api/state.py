"""Typed application state shared by the route modules."""

from __future__ import annotations

from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from hookstream.api.redrive import RedriveTasks
from hookstream.config import Settings
from hookstream.consumers.registry import EndpointRegistry
from hookstream.producers import EventPublisher

SETTINGS = web.AppKey("settings", Settings)
REGISTRY = web.AppKey("registry", EndpointRegistry)
PUBLISHER = web.AppKey("publisher", EventPublisher)
REDIS = web.AppKey("redis", Redis)
PRODUCER = web.AppKey("producer", AIOKafkaProducer)
TASKS = web.AppKey("tasks", RedriveTasks)
METRICS = web.AppKey("metrics", CollectorRegistry)

"""`hookstream dev`: the whole engine on one machine with one command.

Starts the embedded broker and Valkey, creates the topics, runs a worker and
the API in this process, and prints what to try next. Dev mode allows loopback
and private destinations (with a warning); nothing else is loosened.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable

from hookstream.api import create_app
from hookstream.api.serving import serve_api
from hookstream.config import Settings
from hookstream.consumers.worker import Worker
from hookstream.embedded import EmbeddedStack
from hookstream.listening import refuse_taken_port
from hookstream.topics import ensure_topics

log = logging.getLogger(__name__)


async def run_dev(settings: Settings, *, stop: Callable[[], Awaitable[None]]) -> None:
    """Run the dev stack until `stop()` returns, then shut everything down.

    ConfigError, before anything starts, when the API's port is taken; whatever
    fails later, every started piece (worker, broker, Valkey) is stopped.
    """
    refuse_taken_port(settings.api_host, settings.api_port)
    with EmbeddedStack() as stack:
        settings = stack.settings(settings).replace(
            dev_mode=True,
            admin_key=settings.admin_key or f"hs_dev_{secrets.token_hex(16)}",
            partitions=settings.partitions if settings.is_explicit("partitions") else 4,
        )
        await ensure_topics(settings)
        worker = Worker(settings, writable_catalog=True)
        try:
            await worker.start()
            # One view of each config topic in the process: every view tails its
            # topic, and on the embedded broker every tail polls (decision 037).
            app = create_app(
                settings,
                registry=worker.registry,
                catalog=worker.catalog,
                shared_metrics=(worker.metrics_registry,),
            )
            runner = await serve_api(app, settings.api_host, settings.api_port)
            print(_banner(settings), flush=True)
            try:
                await stop()
            finally:
                print("stopping...", flush=True)
                await runner.cleanup()
        finally:
            await worker.stop()


def _banner(settings: Settings) -> str:
    api = f"http://{settings.api_host}:{settings.api_port}"
    key = settings.admin_key
    auth = f"-H 'Authorization: Bearer {key}' -H 'Content-Type: application/json'"
    return f"""
hookstream dev is running
  API        {api}
  dashboard  {api}/dashboard (paste the admin key)
  API docs   {api}/docs
  metrics    {api}/metrics (the API's and the worker's, for Prometheus)
  admin key  {key}
  Kafka      {settings.bootstrap} (embedded, memory only)
  Redis      {settings.redis_url} (embedded Valkey)

Try it, from another terminal:
  .venv/bin/hookstream sink --port 9000 --no-verify
  curl -s {auth} \\
    -d '{{"url": "http://127.0.0.1:9000/hook", "tenant": "acme", "event_types": ["invoice.*"]}}' \\
    {api}/v1/endpoints
  curl -s {auth} \\
    -d '{{"type": "invoice.paid", "tenant": "acme", "data": {{"amount": 42}}}}' \\
    {api}/v1/events

Ctrl-C stops everything.
"""

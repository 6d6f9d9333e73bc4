"""The faust App the router runs in, with the one knob faust does not expose.

faust's aiokafka driver hard-codes `fetch_max_wait_ms=1500` for its consumer.
Real Kafka answers a fetch as soon as data arrives, so that only bounds idle
polling there; the embedded broker holds every fetch for the full wait, which
put 1.5 s into every event's publish-to-delivery latency (decision 006). This
module subclasses faust's transport to apply our `fetch_max_wait_ms` setting.
"""

from __future__ import annotations

from typing import Any, ClassVar

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


def router_app(app_id: str, *, fetch_max_wait_ms: int, **settings: Any) -> faust.App:
    """A faust App whose consumer waits at most `fetch_max_wait_ms` per fetch."""

    class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class _Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> _ConsumerThread:
            return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class _Transport(faust_aiokafka.Transport):
        Consumer: ClassVar[type] = _Consumer

    class _App(faust.App):
        def _new_transport(self) -> Any:
            return _Transport(self.conf.broker_consumer, self)

    return _App(app_id, **settings)

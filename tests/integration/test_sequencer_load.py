"""Loading ordered chains at an assignment, on the real broker: a read the broker
does not answer in time is made again before the dispatcher gives up."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from hookstream import kafka
from hookstream.config import Settings
from hookstream.consumers import sequencer as sequencer_module
from hookstream.consumers.retry_tiers import RetryTiers
from hookstream.consumers.sequencer import LOAD_ATTEMPTS, Sequencer
from hookstream.engine.ordering import ChainState
from hookstream.kafka import producer_options
from hookstream.topics import TopicNames

pytestmark = pytest.mark.integration

BLOCKED = ChainState(resolved=3, placed=5, due_at_ms=1_700_000_000_000)


async def _sequencer_with_a_blocked_chain(
    settings: Settings,
) -> tuple[Sequencer, AIOKafkaProducer]:
    names = TopicNames(settings)
    producer = AIOKafkaProducer(**producer_options(settings, client_id="test"))
    await producer.start()
    await producer.send_and_wait(
        names.ordering, key=b"ep_1\x00order-7", value=BLOCKED.to_record(), partition=1
    )
    return Sequencer(settings, producer, RetryTiers(names.retry_tiers, producer)), producer


def _slow_broker(times: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The first `times` log-end reads time out, as a stalled broker's would; the
    rest go to the broker. Returns the count of reads made."""
    real = kafka.log_ends
    calls: list[int] = []

    async def log_ends(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= times:
            raise TimeoutError
        return await real(*args, **kwargs)

    monkeypatch.setattr(sequencer_module, "log_ends", log_ends)
    return calls


async def test_a_read_that_times_out_is_made_again_and_the_chain_loads(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sequencer, producer = await _sequencer_with_a_blocked_chain(settings)
    calls = _slow_broker(LOAD_ATTEMPTS - 1, monkeypatch)
    try:
        with caplog.at_level(logging.WARNING, logger=sequencer_module.__name__):
            await sequencer.load({0, 1})
    finally:
        await producer.stop()
    assert len(calls) == LOAD_ATTEMPTS
    chain = sequencer._chains[(1, "ep_1", "order-7")]
    assert chain.state == BLOCKED
    again = [r for r in caplog.records if "reading them again" in r.getMessage()]
    assert len(again) == LOAD_ATTEMPTS - 1


async def test_a_broker_that_never_answers_still_stops_the_load(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sequencer, producer = await _sequencer_with_a_blocked_chain(settings)
    calls = _slow_broker(LOAD_ATTEMPTS, monkeypatch)
    try:
        with pytest.raises(TimeoutError):
            await sequencer.load({1})
    finally:
        await producer.stop()
    assert len(calls) == LOAD_ATTEMPTS
    assert sequencer._chains == {}

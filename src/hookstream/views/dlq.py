"""Redriving dead letters: back to `deliveries` as attempt 1, remembered on `dlq-state`.

A redrive claims letters in the index first (`DeadLetterIndex.claim`), so two
redrives of one filter send each letter once; it then sends them back as the
same messages (same webhook-ids), and once the broker has those it records
each redrive on the compacted `dlq-state` topic, where a rebuilt index finds
it. A send that fails puts its letters back to open. A cancel (a shutdown)
waits for the claim in hand to be sent, so no claimed letter is left unsent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace

import orjson
from aiokafka import AIOKafkaProducer

from hookstream.producers.routed import RoutedNotices
from hookstream.topics import TopicNames
from hookstream.views.dlq_index import DeadLetterIndex, IndexedLetter


async def redrive_ids(
    producer: AIOKafkaProducer,
    names: TopicNames,
    index: DeadLetterIndex,
    ids: Sequence[str],
    *,
    task_id: str,
    force: bool = False,
) -> int:
    """Claim letters `ids`, send them back and record it; return how many this call sent.

    Finishes even when the caller is cancelled, and then raises the cancel.
    """
    job = asyncio.ensure_future(claim_and_redrive(producer, names, index, ids, task_id, force))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        await asyncio.wait({job})
        raise


async def claim_and_redrive(
    producer: AIOKafkaProducer,
    names: TopicNames,
    index: DeadLetterIndex,
    ids: Sequence[str],
    task_id: str,
    force: bool = False,
) -> int:
    """Claim letters `ids`, send them back and record it; return how many were sent.
    Cancelled midway, it may leave claims unsent: callers shield it (`redrive_ids`)."""
    at = time.time()
    letters = await index.letters(await index.claim(ids, at, task_id, force=force))
    await redrive(producer, names, index, letters, at=at, task_id=task_id)
    return len(letters)


async def redrive(
    producer: AIOKafkaProducer,
    names: TopicNames,
    index: DeadLetterIndex,
    letters: Sequence[IndexedLetter],
    *,
    at: float,
    task_id: str,
) -> None:
    """Send claimed `letters` back for delivery and record their redrive (both acknowledged)."""
    if not letters:
        return
    try:
        sent = []
        notices = RoutedNotices(producer, names.attempts)
        for letter in letters:
            task = replace(
                letter.task.unchained(), attempt=1, due_at_ms=0, history=b"[]", reserved=False
            )
            notices.add(task)
            sent.append(
                await producer.send(
                    names.deliveries,
                    value=task.body,
                    key=task.endpoint_id.encode(),
                    headers=task.headers(),
                )
            )
        sent.extend(await notices.send(at))
        await asyncio.gather(*sent)
    except BaseException:
        await asyncio.shield(index.release([letter.id for letter in letters]))
        raise
    state = orjson.dumps({"redriven_at": at, "task_id": task_id})
    marks = [
        await producer.send(names.dlq_state, key=letter.id.encode(), value=state)
        for letter in letters
    ]
    await asyncio.gather(*marks)

"""Kafka client options built from settings, so every producer and consumer agrees."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.structs import ConsumerRecord

from hookstream import __version__
from hookstream.config import Settings
from hookstream.kafka_security import security_options

log = logging.getLogger(__name__)


def key_partition(key: str, partitions: int) -> int:
    """The partition our producers put a record keyed `key` in, of `partitions`."""
    return _positive_hash(key.encode()) % partitions


def _positive_hash(key: bytes) -> int:
    """murmur2 made non-negative, as the Java client and aiokafka place keys."""
    hashed: int = murmur2(key)
    return hashed & 0x7FFFFFFF


class KeyedPartitioner:
    """aiokafka's default partitioner (murmur2, as the Java client), with each key's
    hash remembered: the hot path's keys are endpoint ids, few and repeated, and
    aiokafka's murmur2 is pure Python (decision 025)."""

    def __init__(self, max_keys: int = 65_536) -> None:
        self._max_keys = max_keys  # forgotten all at once past this: event ids never repeat
        self._hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return DefaultPartitioner()(key, all_partitions, available)  # type: ignore[no-any-return]
        found = self._hashes.get(key)
        if found is None:
            if len(self._hashes) >= self._max_keys:
                self._hashes.clear()
            found = self._hashes[key] = _positive_hash(key)
        return all_partitions[found % len(all_partitions)]


# A partition's batch grows to this while its last one is in flight. At aiokafka's
# 16 KiB the attempt log's batches filled, and each send waited for the batch
# ahead to drain: 3.4% of a steady worker's CPU (decision 040).
PRODUCER_BATCH_BYTES = 256 * 1024


def producer_options(settings: Settings, *, client_id: str) -> dict[str, Any]:
    """aiokafka producer keyword arguments: acks=all, linger, batch size, idempotence
    by setting."""
    return {
        "bootstrap_servers": settings.bootstrap,
        "client_id": f"hookstream-{__version__}-{client_id}",
        "partitioner": KeyedPartitioner(),
        "acks": "all",
        "linger_ms": settings.producer_linger_ms,
        "max_batch_size": PRODUCER_BATCH_BYTES,
        "enable_idempotence": settings.producer_idempotence,
        "max_request_size": 4 * 1024 * 1024,
        **security_options(settings),
    }


def consumer_options(
    settings: Settings, *, client_id: str, background: bool = False
) -> dict[str, Any]:
    """aiokafka consumer keyword arguments shared by every hookstream consumer
    (`background`: a reader off the delivery path, at the idle fetch wait)."""
    return {
        "bootstrap_servers": settings.bootstrap,
        "client_id": f"hookstream-{__version__}-{client_id}",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "fetch_max_wait_ms": (
            settings.idle_fetch_max_wait_ms if background else settings.fetch_max_wait_ms
        ),
        **security_options(settings),
    }


class FetchWait:
    """A consumer's fetch wait: `fetch_max_wait_ms` while it reads, and
    `idle_fetch_max_wait_ms` once a `getmany` came back empty.

    A broker that holds every fetch for its whole wait (the embedded one,
    decision 006) is asked 1,000 / wait times a second by each consumer, reading
    or not. Kafka answers as soon as data arrives, so there the wait costs an
    idle consumer nothing and a busy one no latency. The first record after an
    idle spell waits for the longer fetch in flight, at most its wait, and the
    consumer asks at the short wait again from then on (decision 037).
    """

    def __init__(self, consumer: AIOKafkaConsumer, settings: Settings) -> None:
        self._consumer = consumer
        self._reading_ms = settings.fetch_max_wait_ms
        self._idle_ms = settings.idle_fetch_max_wait_ms

    def saw(self, batch: Mapping[TopicPartition, Sequence[Any]], *, holding: bool = False) -> None:
        """After each `getmany`: `holding`, records are held for a time (they will be
        fetched again then), so the consumer is not idle even with nothing fetched."""
        fetcher = getattr(self._consumer, "_fetcher", None)  # aiokafka's, once started
        if fetcher is not None:
            idle = not holding and not any(batch.values())
            fetcher._fetch_max_wait_ms = self._idle_ms if idle else self._reading_ms

    @property
    def ms(self) -> int:
        """The wait the consumer's next fetch asks for."""
        fetcher = getattr(self._consumer, "_fetcher", None)
        return int(fetcher._fetch_max_wait_ms) if fetcher is not None else self._reading_ms


def admin_options(settings: Settings, *, client_id: str) -> dict[str, Any]:
    """aiokafka admin-client keyword arguments."""
    return {
        "bootstrap_servers": settings.bootstrap,
        "client_id": f"hookstream-{__version__}-{client_id}",
        **security_options(settings),
    }


async def start_whole(client: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    """Start an aiokafka client; a cancel waits for the start to finish, then goes on.

    aiokafka's bootstrap opens a connection it closes only when the bootstrap
    completes: cut short by a cancel, that connection is left open and the
    client's stop() does not know of it. Clients started for one request or
    one background task (DLQ scans, filter dry runs) can be cancelled at any
    moment, so they start through here and stop in a `finally`.
    """
    starting = asyncio.ensure_future(client.start())
    try:
        await asyncio.shield(starting)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await starting
        raise


async def rewind_past_end(consumer: AIOKafkaConsumer, stage: str) -> list[TopicPartition]:
    """Seek to the start every assigned partition whose position is past its log end.

    A broker that comes back empty (the embedded one keeps nothing; a topic
    deleted and recreated on Kafka) leaves a running consumer's position past
    the new log end. Kafka answers such a fetch with OffsetOutOfRange and
    aiokafka resets, but a broker that answers with no records instead leaves
    the consumer waiting for offsets that will never be written. The end is the
    high watermark of the latest fetch response (exact on every broker, where
    ListOffsets is not: decision 008), so a consumer that has read its
    partition never looks past the end. Each rewind is one ERROR line.
    """
    rewound = []
    for tp in consumer.assignment():
        end = consumer.highwater(tp)
        if end is None:
            continue
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # arrives as the inner call completes, and a stopped loop would run on.
            async with asyncio.timeout(5):
                position = await consumer.position(tp)
        except (KafkaError, TimeoutError):
            continue
        if position > end:
            log.error(
                "consumer position past the log end: the broker lost this partition's"
                " records (restarted empty, or the topic was recreated); reading it again"
                " from its start",
                extra={
                    "stage": stage,
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "position": position,
                    "log_end": end,
                },
            )
            await consumer.seek_to_beginning(tp)
            rewound.append(tp)
    return rewound


FINGERPRINT_EVERY_S = 5.0  # a partition's fingerprints are at least this far apart
FINGERPRINTS_KEPT = 4  # so the oldest predates anything seen in the last 15 s
VERIFY_TIMEOUT_S = 5.0
LOSS_SUSPECT_S = 120.0  # how long after a lost log the group's commits for it are not trusted


class _Losses:
    """Process-wide: how many lost logs any stage has found. Each one makes every
    guard verify the logs it reads, since a broker that lost one lost them all."""

    count = 0


class LogEndGuard:
    """What a consumer loop calls to notice that the broker lost the log it reads.

    `check` every turn, because the first fetch after the broker returned empty
    is where a position past the new log end shows (`rewind_past_end`); it costs
    no broker round trip. A consumer whose partition was refilled past its old
    position before that fetch cannot see the loss from offsets, so the guard
    also keeps a few fingerprints (offset, timestamp) of records it read (`saw`).
    When any stage of the process finds a lost log, every guard fetches its
    oldest fingerprint again from the broker: a record that is missing or
    differs means the log was replaced, and that partition is read from its
    start too (delivered again, same webhook-id, rather than skipped).

    A consumer in a group also tells the guard what it committed and what it
    was assigned: the group's commit for a partition lost lately may predate
    the loss (the embedded broker accepts a commit from before it restarted),
    so such a partition resumes from this consumer's own commit since the
    rewind, or from its start.
    """

    def __init__(
        self, stage: str, settings: Settings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stage = stage
        self._settings = settings
        self._clock = clock
        self._losses_seen = _Losses.count
        self._prints: dict[TopicPartition, deque[tuple[int, int, float]]] = {}
        # Partitions found lost: when, and the offset committed since (None: none yet).
        self._lost: dict[TopicPartition, tuple[float, int | None]] = {}

    def saw(self, batch: Mapping[TopicPartition, Sequence[ConsumerRecord[Any, Any]]]) -> None:
        """Note the records of a fetched batch (one fingerprint per partition at most)."""
        now = self._clock()
        for tp, records in batch.items():
            if not records:
                continue
            kept = self._prints.get(tp)
            if kept is None:
                kept = self._prints[tp] = deque(maxlen=FINGERPRINTS_KEPT)
            elif now - kept[-1][2] < FINGERPRINT_EVERY_S:
                continue
            kept.append((records[-1].offset, records[-1].timestamp, now))

    async def check(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """The partitions rewound now (usually none)."""
        rewound = await rewind_past_end(consumer, self._stage)
        if rewound:
            _Losses.count += 1
        if self._losses_seen != _Losses.count:
            others = consumer.assignment() - set(rewound)
            replaced = await self._replaced(others)
            if replaced is not None:  # None: not verified now, again next turn
                self._losses_seen = _Losses.count
                for tp in replaced:
                    log.error(
                        "the broker replaced this partition's log (a record read before is"
                        " gone or differs); reading it again from its start",
                        extra={"stage": self._stage, "topic": tp.topic, "partition": tp.partition},
                    )
                    await consumer.seek_to_beginning(tp)
                rewound += replaced
        for tp in rewound:
            self._prints.pop(tp, None)
            self._lost[tp] = (self._clock(), None)
        return rewound

    def committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Note offsets the consumer committed."""
        for tp, offset in offsets.items():
            if tp in self._lost:
                self._lost[tp] = (self._lost[tp][0], offset)

    async def assigned(self, consumer: AIOKafkaConsumer, tps: set[TopicPartition]) -> None:
        """From a rebalance listener: place partitions lost lately where we left them."""
        now = self._clock()
        for tp in tps:
            lost = self._lost.get(tp)
            if lost is None:
                continue
            if now - lost[0] > LOSS_SUSPECT_S:
                del self._lost[tp]
                continue
            since = lost[1]
            if since is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, since)
            log.warning(
                "partition assigned after its log was lost: resuming where this consumer"
                " left it, not from the group's commit",
                extra={"stage": self._stage, "topic": tp.topic, "offset": since},
            )

    async def _replaced(self, tps: set[TopicPartition]) -> list[TopicPartition] | None:
        """Of `tps`, those whose oldest fingerprint is gone or differs on the broker now."""
        oldest = {tp: self._prints[tp][0] for tp in tps if self._prints.get(tp)}
        if not oldest:
            return []
        options = consumer_options(self._settings, client_id=f"{self._stage}-verify")
        # A fingerprint past the new log end must read as gone: reset to the end, where
        # the high watermark shows it, not to the start (a different record there).
        options |= {"auto_offset_reset": "latest", "fetch_max_wait_ms": 500}
        side = AIOKafkaConsumer(**options, group_id=None)
        try:
            async with asyncio.timeout(VERIFY_TIMEOUT_S):
                await start_whole(side)
                side.assign(list(oldest))
                for tp, (offset, _, _) in oldest.items():
                    side.seek(tp, offset)
                found: dict[TopicPartition, ConsumerRecord[Any, Any] | None] = {}
                while len(found) < len(oldest):
                    batch = await side.getmany(*oldest, timeout_ms=200, max_records=1)
                    for tp, records in batch.items():
                        found.setdefault(tp, records[0])
                    for tp, (offset, _, _) in oldest.items():
                        end = side.highwater(tp)
                        if tp not in found and end is not None and end <= offset:
                            found[tp] = None  # the log ends before it: gone
        except (KafkaError, TimeoutError, OSError):
            return None
        finally:
            await stop_client(side)
        replaced = []
        for tp, (offset, timestamp, _) in oldest.items():
            record = found[tp]
            # A later offset is a compacted or expired record: nothing to compare.
            if record is None or (record.offset == offset and record.timestamp != timestamp):
                replaced.append(tp)
        return replaced


async def stop_client(client: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    """Stop an aiokafka client. With the broker gone, a consumer's stop re-raises the
    cancel of its own fetch retry (a task aiokafka cancels inside `stop()`): that cancel
    is aiokafka's, and is swallowed; a cancel of the caller is not."""
    try:
        await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.debug("aiokafka re-raised its own cancel while stopping; stopped")


def past_end(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> bool:
    """True for an offset above the partition's log end, which is never committed: the
    broker lost the log (came back empty), and committing it would make the next owner
    skip the new records at lower offsets. The loop's LogEndGuard rewinds the partition
    (decision 019)."""
    end = consumer.highwater(tp)
    return end is not None and offset > end


async def log_ends(
    settings: Settings, topic: str, *, timeout_s: float = 10.0
) -> dict[int, int] | None:
    """Each partition's log end, exact on every broker; None when `topic` does not exist.

    The end is the larger of ListOffsets and the high watermark of a fetch from
    just below it (decision 008: the embedded broker's ListOffsets can stop at
    the last batch's base offset).
    """
    consumer = AIOKafkaConsumer(
        **{**consumer_options(settings, client_id="log-ends"), "fetch_max_wait_ms": 10}
    )
    try:
        async with asyncio.timeout(timeout_s):
            await start_whole(consumer)
            if topic not in await consumer.topics():
                return None
            tps = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            listed = await consumer.end_offsets(tps)
            ends = {tp.partition: listed[tp] for tp in tps}
            nonempty = [tp for tp in tps if listed[tp] > 0]
            if nonempty:
                consumer.assign(nonempty)
                for tp in nonempty:
                    consumer.seek(tp, listed[tp] - 1)
                while any(consumer.highwater(tp) is None for tp in nonempty):
                    await consumer.getmany(*nonempty, timeout_ms=100, max_records=1)
                for tp in nonempty:
                    ends[tp.partition] = max(listed[tp], consumer.highwater(tp) or 0)
            return ends
    finally:
        await stop_client(consumer)

"""The sequencer: ordered endpoints' chains, one message in flight per subject.

The courier asks it before each attempt for an ordered endpoint's message
(`admit`) and tells it the outcome (`settle`); engine/ordering.py decides.

* A message whose predecessor is in this process waits in memory, holding its
  window slot; its offset is not finished, so a crash reads it again.
* A message behind a deferred head, or past `MAX_WAITING`, is *held*: written
  to a retry tier with its place in the chain, due just after the head's next
  attempt, and the chain's state is written to the compacted `ordering`
  topic, keyed by endpoint and subject, in the partition of `deliveries` that
  owns the endpoint. Both are acknowledged before the offset is finished.
* When a blocked chain's head resolves, the new watermark is written before
  its successor may go; when nothing of the chain is left, a tombstone.

On assignment the dispatcher loads the `ordering` partitions it now owns
before it reads their deliveries; on revocation it forgets them, and with them
every message of theirs still waiting in memory. Those have no outcome, so
their offsets are not committed, and whoever owns the partition now (maybe
this process again) reads them again. Nothing of the old assignment still in
flight may touch the new one's chains: a chain, a waiting message and the
message in flight are each known by identity, not only by key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from hookstream.config import Settings
from hookstream.consumers.retry_tiers import RetryTiers
from hookstream.engine.delivery import DeliveryTask
from hookstream.engine.ordering import Admission, Chain, ChainState
from hookstream.kafka import consumer_options, log_ends, start_whole, stop_client
from hookstream.producers.durable import until_written
from hookstream.topics import TopicNames

log = logging.getLogger(__name__)

LOAD_ATTEMPTS = 3  # reads of the ordering topic at an assignment before the dispatcher stops
WAIT_S = 3.0  # a message waiting for a predecessor in a tier is held after this
_Key = tuple[int, str, str]  # (partition, endpoint id, subject)


class Sequencer:
    """Keeps each ordered subject's messages one at a time, in order, across crashes."""

    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        tiers: RetryTiers,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._topic = TopicNames(settings).ordering
        self._producer = producer
        self._tiers = tiers
        self._clock = clock
        self._chains: dict[_Key, Chain] = {}
        # Each message waiting in memory, with the chain it waits in.
        self._wakers: dict[tuple[_Key, int], tuple[Chain, asyncio.Future[Admission]]] = {}
        self._turns: dict[_Key, tuple[Chain, DeliveryTask]] = {}  # each chain's message in flight
        self._locks: dict[int, asyncio.Lock] = {}
        # Messages waiting for a predecessor that is in a tier hold window slots that
        # fetching it may need: a quarter of the window at most, then they are held.
        self._blind = 0
        self._max_blind = max(1, settings.in_flight // 4)
        self.held = 0
        self.given_up = 0
        self.revoked = 0  # messages waiting in memory when their partition was revoked

    # -- assignment ----------------------------------------------------------

    async def load(self, partitions: set[int]) -> None:
        """Read the blocked chains of `partitions` from the `ordering` topic.

        A read the broker does not answer in time (a busy broker during a
        rebalance) is made again, up to LOAD_ATTEMPTS in all; only then does it
        raise, and the dispatcher stops rather than deliver without the chains."""
        if not partitions:
            return
        for attempt in range(1, LOAD_ATTEMPTS + 1):
            try:
                states, wanted = await self._read_chains(partitions)
                break
            except (TimeoutError, KafkaError) as exc:
                if attempt == LOAD_ATTEMPTS:
                    raise
                log.warning(
                    "ordered chains not read; reading them again",
                    extra={"attempt": attempt, "error": type(exc).__name__},
                )
        loaded = 0
        for key, state in states.items():
            if state is not None and key[1]:
                self._chains[key] = Chain.loaded(state)
                loaded += 1
        if loaded:
            log.info("ordered chains loaded", extra={"blocked": loaded, "partitions": len(wanted)})

    async def _read_chains(
        self, partitions: set[int]
    ) -> tuple[dict[_Key, ChainState | None], dict[int, int]]:
        """The latest state per chain of `partitions`, and the log ends read up to."""
        ends = await log_ends(self._settings, self._topic)
        wanted = {p: ends[p] for p in partitions if ends and ends.get(p, 0) > 0}
        states: dict[_Key, ChainState | None] = {}
        if wanted:
            consumer = AIOKafkaConsumer(
                **consumer_options(self._settings, client_id="ordering-load")
            )
            try:
                await start_whole(consumer)
                tps = [TopicPartition(self._topic, p) for p in wanted]
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                left = set(tps)
                while left:
                    batch = await consumer.getmany(*left, timeout_ms=500)
                    for tp, records in batch.items():
                        for record in records:
                            states[_key_of(tp.partition, record.key)] = _state_of(record.value)
                    for tp in list(left):
                        if await consumer.position(tp) >= wanted[tp.partition]:
                            left.discard(tp)
            finally:
                await stop_client(consumer)
        return states, wanted

    def forget(self, partitions: set[int]) -> None:
        """Partitions were revoked: their chains go, and every message of them waiting
        in memory returns unfinished (REVOKED), to be read again by the new owner."""
        for key in [k for k in self._chains if k[0] in partitions]:
            del self._chains[key]
        for key in [k for k in self._turns if k[0] in partitions]:
            del self._turns[key]
        self.revoked += self._end_waiting(lambda key: key[0] in partitions, Admission.REVOKED)

    # -- before an attempt -------------------------------------------------

    async def admit(
        self, partition: int, offset: int | None, task: DeliveryTask
    ) -> tuple[DeliveryTask | None, Admission]:
        """Where `task` (read at `offset` of `deliveries`, or None from a tier) stands:
        the task in its chain to attempt now, or None when it was held or is a copy."""
        if task.order_seq is None and offset is None:
            return task, Admission.LATE  # in a tier since before ordering was on
        key = (partition, task.endpoint_id, task.subject)
        chain = self._chains.get(key)
        if chain is None:
            chain = self._chains[key] = Chain()
        if task.order_seq is None:
            assert offset is not None
            placed = chain.place(offset)
            if placed is None:
                self._forget_if_settled(key, chain)
                return None, Admission.DUPLICATE
            task = task.in_chain(*placed)
        assert task.order_seq is not None
        seq, prev = task.order_seq, task.order_prev
        admission = chain.admit(seq, prev, self._now_ms())
        if admission is Admission.WAIT:
            # Behind a message in flight, it will be woken; otherwise the chain
            # waits for a message in a tier, which may not come while it waits.
            blind = chain.active is None
            if blind and self._blind >= self._max_blind:
                admission = Admission.HOLD
            else:
                admission = await self._wait(key, chain, seq, prev, blind=blind)
            if admission in (Admission.GO, Admission.HOLD) and self._chains.get(key) is not chain:
                # Its chain was dropped while it waited, and not by a revocation that
                # ended the wait: placed in a tier, it comes back to the chain there is now.
                admission = Admission.HOLD
        if admission in (Admission.GO, Admission.GIVE_UP):
            chain.begin(seq)
            self._turns[key] = (chain, task)
            if admission is Admission.GIVE_UP:
                self.given_up += 1
                log.warning(
                    "ordered chain gave up on overdue predecessors",
                    extra={**task.log_fields(), "subject": task.subject},
                )
            return task, admission
        if admission is Admission.HOLD:
            await self._hold(key, chain, task)
            return None, admission
        if admission in (Admission.DUPLICATE, Admission.REVOKED):
            return None, admission
        return task, admission  # LATE: attempted outside the chain

    async def _wait(
        self, key: _Key, chain: Chain, seq: int, prev: int | None, *, blind: bool
    ) -> Admission:
        """Wait in memory until it may go (GO) or must be held (HOLD). A predecessor
        in this process wakes it when it settles; one in a tier may not come while
        this waits (`blind`), so that wait is bounded."""
        waker: asyncio.Future[Admission] = asyncio.get_running_loop().create_future()
        chain.waiting[seq] = prev
        self._wakers[(key, seq)] = (chain, waker)
        if blind:
            self._blind += 1
        try:
            if blind:
                async with asyncio.timeout(WAIT_S):
                    return await waker
            return await waker
        except TimeoutError:
            if waker.done() and not waker.cancelled():
                # Woken in the loop iteration its time ran out (uvloop runs timers
                # before callbacks): the wake stands, since the chain has taken it.
                return waker.result()
            # Held now; so is everything waiting behind it, which it would have woken.
            self._spill(key, chain, after=seq)
            return Admission.HOLD
        finally:
            if blind:
                self._blind -= 1
            if self._waker(key, chain, seq) is waker:
                del self._wakers[(key, seq)]
            chain.waiting.pop(seq, None)

    def _waker(self, key: _Key, chain: Chain, seq: int) -> asyncio.Future[Admission] | None:
        """The wait of message `seq` in `chain`, if it is waiting there (not in a chain
        of the same key from another assignment)."""
        found = self._wakers.get((key, seq))
        return found[1] if found is not None and found[0] is chain else None

    def _spill(self, key: _Key, chain: Chain, *, after: int = -1) -> None:
        """Tell the chain's messages waiting in memory after `after` to be held."""
        for seq in list(chain.waiting):
            waker = self._waker(key, chain, seq)
            if seq > after and waker is not None and not waker.done():
                waker.set_result(Admission.HOLD)

    def _end_waiting(self, ending: Callable[[_Key], bool], admission: Admission) -> int:
        """End the wait of every message in memory whose chain's key is `ending`, with
        `admission`; returns how many."""
        ended = 0
        for waiting in [w for w in self._wakers if ending(w[0])]:
            _, waker = self._wakers.pop(waiting)
            if not waker.done():
                waker.set_result(admission)
                ended += 1
        return ended

    async def _hold(self, key: _Key, chain: Chain, task: DeliveryTask) -> None:
        assert task.order_seq is not None
        now_ms = self._now_ms()
        due_at_ms = chain.hold_due_ms(now_ms)
        chain.holding.add(task.order_seq)
        try:
            await self._tiers.hold(task, (due_at_ms - now_ms) / 1000)
        finally:
            chain.holding.discard(task.order_seq)
        self.held += 1
        if self._chains.get(key) is not chain:
            return  # revoked meanwhile: the chain's new owner keeps its state
        chain.held(task.order_seq, due_at_ms)
        await self._write(key, chain)

    # -- after an attempt --------------------------------------------------

    async def settle(self, partition: int, task: DeliveryTask, *, due_at_ms: int | None) -> None:
        """`task` (as `admit` gave it) was resolved (`due_at_ms` None: delivered or dead)
        or deferred to a retry tier until `due_at_ms`; its outcome is written."""
        if task.order_seq is None:
            return
        key = (partition, task.endpoint_id, task.subject)
        turn = self._turns.get(key)
        if turn is None or turn[1] is not task:
            return  # attempted outside the chain (LATE), or the partition was revoked
        del self._turns[key]
        chain = turn[0]
        if due_at_ms is None:
            chain.resolve(task.order_seq)
            if chain.blocked:
                await self._write(key, chain)  # before its successor may go
            self._wake(key, chain)
        else:
            chain.defer(task.order_seq, due_at_ms)
            await self._write(key, chain)
            self._spill(key, chain)  # hold everything behind it
        self._forget_if_settled(key, chain)

    def abandon(self, partition: int, task: DeliveryTask) -> None:
        """The endpoint is no longer ordered: forget the chain in memory (its state
        on the topic is given up on when ordering comes back; engine/ordering.py),
        and let its messages waiting in memory go as they are (LATE)."""
        key = (partition, task.endpoint_id, task.subject)
        self._chains.pop(key, None)
        self._turns.pop(key, None)
        self._end_waiting(lambda waiting: waiting == key, Admission.LATE)

    def _wake(self, key: _Key, chain: Chain) -> None:
        seq = chain.next_ready()
        if seq is None:
            return
        waker = self._waker(key, chain, seq)
        if waker is not None and not waker.done():
            chain.waiting.pop(seq, None)
            chain.active = seq  # taken now, so no other message slips in before it runs
            waker.set_result(Admission.GO)

    def _forget_if_settled(self, key: _Key, chain: Chain) -> None:
        if chain.settled and not chain.blocked and self._chains.get(key) is chain:
            del self._chains[key]

    # -- the topic ---------------------------------------------------------

    async def _write(self, key: _Key, chain: Chain) -> None:
        """The chain's state as it is now, or a tombstone once it is settled; writes of
        one partition are sent in order, so the last one on the topic is the newest."""
        partition, endpoint_id, subject = key
        lock = self._locks.setdefault(partition, asyncio.Lock())

        async def write() -> None:
            async with lock:
                settled = chain.settled
                value = None if settled else chain.record()
                sent = await self._producer.send(
                    self._topic,
                    key=f"{endpoint_id}\x00{subject}".encode(),
                    value=value,
                    partition=partition,
                )
            await sent
            if settled and chain.settled:
                chain.blocked = False

        await until_written(write, self._topic)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _key_of(partition: int, raw: bytes | None) -> _Key:
    endpoint_id, _, subject = (raw or b"").decode(errors="replace").partition("\x00")
    return partition, endpoint_id, subject


def _state_of(value: bytes | None) -> ChainState | None:
    if value is None:
        return None
    try:
        return ChainState.from_record(value)
    except ValueError:
        log.error("unreadable ordering record skipped")
        return None

"""The dead-letter index in Redis: list, page and claim letters without scanning the topic.

Soft state (DESIGN.md, principle 1). The worker's `DeadLetterIndexer` builds it
from the `dlq` topic and the compacted `dlq-state` topic, which records each
redrive (when, by which task). To rebuild it, reset the `<prefix>dlq-index`
group's offsets to the earliest and restart a worker.

Keys (p = topic prefix; letter ids in `engine/letters.py`):
  p dlq:letter:<id>   hash: `h:<name>` per record header, `body`, and once
                      redriven `redriven_at` (epoch s) and `task_id`
  p dlq:<state>       sorted set of letter ids, all scores 0 (ZRANGEBYLEX pages
                      them in time order); state is `open` or `redriven`
  p dlq:<state>:tenant:<t>, :endpoint:<id>, :type:<type>   the same per filter field
  p dlq:messages      hash: message id -> its newest letter id

A letter is in exactly one state's sets. The scripts run on one Redis node
(they name keys the script builds), as the rest of hookstream's Redis use does.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from hookstream.engine.clock import rfc3339
from hookstream.engine.delivery import DeliveryTask
from hookstream.engine.letters import DeadLetterFilter, dead_at_ms, redrive_outcome
from hookstream.errors import InvalidInput
from hookstream.redis_keys import RedisKeys
from hookstream.views.dlq_scripts import ADD, CLAIM, FILTER, MARK, PRUNE, RELEASE

OPEN, REDRIVEN = "open", "redriven"
FIELDS = {"tenant": "tenant", "endpoint_id": "endpoint", "event_type": "type"}
# One request looks at candidates for no longer than this (after its first chunk),
# so a rare filter on a big index answers a short page with a `next` cursor
# instead of scanning it all.
SCAN_BUDGET_S = 0.05
CHUNK = 1_000  # the most candidate ids fetched at once; the first fetch is 2 pages' worth


@dataclass(frozen=True, slots=True)
class IndexedLetter:
    """A letter as the index holds it: enough to show it and to redrive it."""

    id: str
    task: DeliveryTask
    reason: str
    redriven_at: float | None
    redrive_task: str | None
    order_broken: bool = False  # an ordered subject moved on past it

    @classmethod
    def from_hash(cls, letter: str, raw: dict[bytes, bytes]) -> IndexedLetter | None:
        """Rebuild from the letter's hash; None when it is gone or not a delivery."""
        if b"body" not in raw:
            return None
        headers = [(k[2:].decode(), v) for k, v in raw.items() if k.startswith(b"h:")]
        try:
            task = DeliveryTask.from_record(headers, raw[b"body"])
        except InvalidInput:
            return None
        at = raw.get(b"redriven_at")
        return cls(
            id=letter,
            task=task,
            reason=dict(headers).get("reason", b"").decode(errors="replace"),
            redriven_at=None if at is None else float(at),
            redrive_task=None if at is None else raw.get(b"task_id", b"").decode(),
            order_broken=dict(headers).get("order_broken") == b"1",
        )

    def to_dict(self, outcome: str | None = None) -> dict[str, Any]:
        """The API's view of a dead letter; `outcome` of its redrive, if redriven."""
        try:
            payload: Any = orjson.loads(self.task.body)
        except orjson.JSONDecodeError:
            payload = None
        view: dict[str, Any] = {
            "id": self.id,
            "message_id": self.task.message_id,
            "event_id": self.task.event_id,
            "endpoint_id": self.task.endpoint_id,
            "tenant": self.task.tenant,
            "event_type": self.task.event_type,
            "reason": self.reason,
            "dead_at_ms": dead_at_ms(self.id),
            "attempts": orjson.loads(self.task.history),
            "payload": payload,
            "redriven_at": None,
            "redrive": None,
            "order_broken": self.order_broken,
        }
        if self.redriven_at is not None:
            view["redriven_at"] = rfc3339(self.redriven_at)
            view["redrive"] = {"task_id": self.redrive_task, "outcome": outcome}
        return view


@dataclass(frozen=True, slots=True)
class Scan:
    """One page of ids, and the cursor to continue after (None: nothing more)."""

    ids: list[str]
    after: str | None


class DeadLetterIndex:
    """Reads and writes the index; the indexer, the API and redrive tasks share it."""

    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._p = keys.prefix
        self._keys = keys
        self._add = redis.register_script(ADD)
        self._mark = redis.register_script(MARK)
        self._claim = redis.register_script(CLAIM)
        self._release = redis.register_script(RELEASE)
        self._prune = redis.register_script(PRUNE)
        self._filter = redis.register_script(FILTER)

    # -- writes (the indexer) -------------------------------------------------

    async def add(self, letters: Sequence[tuple[str, list[tuple[str, bytes]], bytes]]) -> int:
        """Index letters `(id, headers, body)`; return how many were new (re-adding is a no-op)."""
        added = 0
        args: list[Any] = [self._p]
        size = 0
        for letter, headers, body in letters:
            fields: list[Any] = ["body", body]
            for name, value in headers:
                fields += [f"h:{name}", value]
            args += [letter, len(fields) // 2, *fields]
            size += len(body) + sum(len(v) for _, v in headers)
            if size > 4 * 1024 * 1024:  # keep one script call's arguments small
                added += int(await self._add(args=args))
                args, size = [self._p], 0
        if len(args) > 1:
            added += int(await self._add(args=args))
        return added

    async def mark(self, redrives: Sequence[tuple[str, float, str, int]]) -> None:
        """Record redrives `(id, redriven_at, task_id, ttl_ms)` (from `dlq-state`)."""
        if redrives:
            args: list[Any] = [self._p]
            for letter, at, task_id, ttl_ms in redrives:
                args += [letter, repr(at), task_id, max(1, ttl_ms)]
            await self._mark(args=args)

    async def prune(self, cutoff_ms: int, limit: int = 1000) -> int:
        """Forget up to `limit` letters per state dead before `cutoff_ms`; return how many."""
        return int(await self._prune(args=[self._p, f"{max(0, cutoff_ms):013d}", limit]))

    # -- claims (redrive) -----------------------------------------------------

    async def claim(
        self, ids: Sequence[str], at: float, task_id: str, *, force: bool = False
    ) -> list[str]:
        """Mark letters redriven by `task_id`; return those this caller claimed.

        An open letter is claimed once, so two redrives of one filter send it
        once. `force` also claims letters already redriven (an explicit redrive).
        """
        if not ids:
            return []
        claimed = await self._claim(args=[self._p, repr(at), task_id, int(force), *ids])
        return [c.decode() for c in claimed]

    async def release(self, ids: Sequence[str]) -> None:
        """Undo claims whose send failed: the letters are open again."""
        if ids:
            await self._release(args=[self._p, *ids])

    # -- reads ----------------------------------------------------------------

    async def newest_for_message(self, message_id: str) -> str | None:
        """The id of the message's newest letter, or None."""
        found = await self._redis.hget(self._keys.dlq_messages, message_id)
        return None if found is None else _text(found)

    async def count(self, state: str = OPEN) -> int:
        """How many letters are in `state`."""
        return int(await self._redis.zcard(self._keys.dlq_set(state)))

    async def scan(
        self,
        where: DeadLetterFilter,
        *,
        states: Sequence[str] = (OPEN,),
        after: str | None = None,
        limit: int = 50,
        newest: bool = False,
    ) -> Scan:
        """Up to `limit` ids matching `where`, in time order (`newest` first if asked),
        after the cursor `after`.

        Walks the smallest of the sets the filter names, in growing chunks, and
        checks the other fields on each candidate in Redis. Past `SCAN_BUDGET_S`
        it returns what it found (maybe none) with a cursor to go on from.
        """
        conditions = where.fields()
        sets = await self._smallest(conditions, states)
        low, high = where.lex_range(after, newest=newest)
        found: list[str] = []
        chunk = min(CHUNK, max(2 * limit, 100))
        started = time.monotonic()
        while True:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in sets:
                    if newest:
                        pipe.zrevrangebylex(key, high, low, 0, chunk)
                    else:
                        pipe.zrangebylex(key, low, high, 0, chunk)
                chunks = [[m.decode() for m in got] for got in await pipe.execute()]
            ids = list(heapq.merge(*chunks, reverse=newest))[:chunk]
            if not ids:
                return Scan(found, None)
            matched = await self._matching(ids, conditions)
            for letter in ids:
                if letter in matched:
                    found.append(letter)
                    if len(found) == limit:
                        return Scan(found, letter)
            if all(len(got) < chunk for got in chunks):
                return Scan(found, None)
            if newest:
                high = f"({ids[-1]}"
            else:
                low = f"({ids[-1]}"
            if time.monotonic() - started >= SCAN_BUDGET_S:
                return Scan(found, ids[-1])
            chunk = min(CHUNK, chunk * 4)

    async def letters(self, ids: Sequence[str]) -> list[IndexedLetter]:
        """The letters with these ids, in order; ones gone since are left out."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for letter in ids:
                pipe.hgetall(self._keys.dlq_letter(letter))
            raws = await pipe.execute()
        found = (IndexedLetter.from_hash(i, raw) for i, raw in zip(ids, raws, strict=True))
        return [letter for letter in found if letter is not None]

    async def outcomes(self, letters: Sequence[IndexedLetter]) -> dict[str, str]:
        """The redrive outcome of each redriven letter, by id (engine/letters.py)."""
        redriven = [letter for letter in letters if letter.redriven_at is not None]
        if not redriven:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for letter in redriven:
                assert letter.redriven_at is not None
                pipe.zrangebyscore(
                    self._keys.message_attempts(letter.task.message_id),
                    int(letter.redriven_at * 1_000_000),
                    "+inf",
                )
                pipe.hget(self._keys.dlq_messages, letter.task.message_id)
            answers = await pipe.execute()
        outcomes = {}
        for n, letter in enumerate(redriven):
            attempts = [orjson.loads(a) for a in answers[2 * n]]
            newest = answers[2 * n + 1]
            assert letter.redriven_at is not None
            outcomes[letter.id] = redrive_outcome(
                letter.redriven_at, attempts, None if newest is None else _text(newest), letter.id
            )
        return outcomes

    async def _smallest(self, conditions: dict[str, str], states: Sequence[str]) -> list[str]:
        if not conditions:
            return [self._keys.dlq_set(state) for state in states]
        options = [
            [self._keys.dlq_set(state, FIELDS[name], value) for state in states]
            for name, value in conditions.items()
        ]
        async with self._redis.pipeline(transaction=False) as pipe:
            for keys in options:
                for key in keys:
                    pipe.zcard(key)
            sizes = await pipe.execute()
        per = len(states)
        totals = [sum(sizes[i * per : (i + 1) * per]) for i in range(len(options))]
        return options[totals.index(min(totals))]

    async def _matching(self, ids: list[str], conditions: dict[str, str]) -> set[str]:
        if len(conditions) <= 1:
            return set(ids)  # the set walked already is the one condition
        pairs = [x for name, value in conditions.items() for x in (f"h:{name}", value)]
        matched = await self._filter(args=[self._p, len(conditions), *pairs, *ids])
        return {_text(m) for m in matched}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

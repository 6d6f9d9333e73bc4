"""The DLQ index on a real Valkey: paging, filters, claims, rebuild order, pruning.

Letters are added the way the indexer adds them (`DeadLetterIndex.add`), so
these tests reach sizes a topic round trip would make slow; the path from the
`dlq` topic is in test_dlq_api.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from hookstream.config import Settings
from hookstream.engine.delivery import DeliveryTask, message_id_for
from hookstream.engine.letters import DeadLetterFilter, letter_id
from hookstream.redis_keys import RedisKeys
from hookstream.views import dlq_index
from hookstream.views.dlq_index import OPEN, REDRIVEN, DeadLetterIndex

pytestmark = pytest.mark.integration

T0 = 1_764_000_000_000


@pytest.fixture
async def index(settings: Settings) -> AsyncIterator[DeadLetterIndex]:
    redis = Redis.from_url(settings.redis_url)
    yield DeadLetterIndex(redis, RedisKeys(settings))
    await redis.aclose()


def letter(
    n: int, *, tenant: str = "acme", endpoint: str = "ep_a", kind: str = "order.paid"
) -> Any:
    """The nth letter: dead at T0 + n ms, on partition n % 4."""
    task = DeliveryTask(
        message_id=message_id_for(f"evt_{n}", endpoint),
        event_id=f"evt_{n}",
        endpoint_id=endpoint,
        tenant=tenant,
        event_type=kind,
        body=b'{"type":"%s","data":{"n":%d}}' % (kind.encode(), n),
        attempt=5,
        history=b'[{"attempt":5,"status":503}]',
    )
    headers = [*task.headers(), ("reason", b"attempts exhausted (5)")]
    return letter_id(T0 + n, n % 4, n), headers, task.body


async def walk(
    index: DeadLetterIndex,
    where: DeadLetterFilter,
    *,
    limit: int,
    states: tuple[str, ...] = (OPEN,),
) -> tuple[list[str], int]:
    """Every id by following cursors; and how many pages it took."""
    seen: list[str] = []
    after, pages = None, 0
    while True:
        scan = await index.scan(where, states=states, after=after, limit=limit)
        seen.extend(scan.ids)
        pages += 1
        if scan.after is None:
            return seen, pages
        after = scan.after


async def test_pages_every_letter_once_in_time_order(index: DeadLetterIndex) -> None:
    letters = [letter(n) for n in range(2500)]  # more than two of the scan's chunks
    assert await index.add(letters[::-1]) == 2500  # the order they arrive in does not matter
    assert await index.add(letters[:10]) == 0  # indexing again changes nothing
    seen, pages = await walk(index, DeadLetterFilter(), limit=250)
    assert seen == [i for i, _, _ in letters]
    assert pages in (10, 11)
    assert await index.count() == 2500
    found = await index.letters(seen[:3])
    assert [f.task.event_id for f in found] == ["evt_0", "evt_1", "evt_2"]
    view = found[1].to_dict()
    assert view["id"] == seen[1]
    assert view["dead_at_ms"] == T0 + 1
    assert view["reason"] == "attempts exhausted (5)"
    assert view["attempts"] == [{"attempt": 5, "status": 503}]
    assert view["payload"] == {"type": "order.paid", "data": {"n": 1}}
    assert view["redriven_at"] is None
    assert view["redrive"] is None


async def test_filters_alone_and_together(index: DeadLetterIndex) -> None:
    tenants, endpoints, kinds = ["acme", "globex"], ["ep_a", "ep_b", "ep_c"], ["a.x", "b.y"]
    letters = {}
    for n in range(1200):
        t, e, k = tenants[n % 2], endpoints[n % 3], kinds[(n // 7) % 2]
        letters[letter(n, tenant=t, endpoint=e, kind=k)[0]] = (n, t, e, k)
        await index.add([letter(n, tenant=t, endpoint=e, kind=k)])

    async def ids(**given: Any) -> list[str]:
        seen, _ = await walk(index, DeadLetterFilter(**given), limit=100)
        return seen

    def expect(test: Any) -> list[str]:
        return sorted(i for i, row in letters.items() if test(*row))

    assert await ids(tenant="globex") == expect(lambda n, t, e, k: t == "globex")
    assert await ids(endpoint_id="ep_b") == expect(lambda n, t, e, k: e == "ep_b")
    assert await ids(event_type="b.y") == expect(lambda n, t, e, k: k == "b.y")
    assert await ids(tenant="acme", endpoint_id="ep_c", event_type="a.x") == expect(
        lambda n, t, e, k: t == "acme" and e == "ep_c" and k == "a.x"
    )
    window = {"since_ms": T0 + 100, "until_ms": T0 + 300}
    assert await ids(endpoint_id="ep_a", **window) == expect(
        lambda n, t, e, k: e == "ep_a" and 100 <= n < 300
    )
    assert await ids(tenant="initech") == []
    assert await ids(tenant="acme", endpoint_id="ep_nope") == []


async def test_a_rare_filter_on_a_big_index_answers_in_bounded_steps(
    index: DeadLetterIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dlq_index, "SCAN_BUDGET_S", 0.0)  # one chunk per request
    common = [letter(n, endpoint="ep_a") for n in range(6000)]
    await index.add(common)
    rare = [letter(6000 + n, endpoint="ep_a", tenant="globex") for n in range(3)]
    await index.add(rare)
    # ep_a holds all 6,003 and globex 3: globex's set is walked, not ep_a's.
    seen, pages = await walk(index, DeadLetterFilter(tenant="globex", endpoint_id="ep_a"), limit=50)
    assert seen == [i for i, _, _ in rare]
    assert pages == 1
    # Both conditions common, their match rare: a page stops at the budget with a
    # cursor (maybe empty), and following cursors finds the match.
    await index.add([letter(7000 + n, endpoint="ep_b", kind="b.y") for n in range(4000)])
    rare_pair = [letter(12_000 + n, endpoint="ep_a", kind="b.y") for n in range(2)]
    await index.add(rare_pair)
    where = DeadLetterFilter(endpoint_id="ep_a", event_type="b.y")
    first = await index.scan(where, limit=50)
    assert first.ids == []
    assert first.after is not None
    seen, pages = await walk(index, where, limit=50)
    assert seen == [i for i, _, _ in rare_pair]
    assert pages >= 2


async def test_a_claim_is_won_once_and_moves_the_letter(index: DeadLetterIndex) -> None:
    letters = [letter(n) for n in range(300)]
    await index.add(letters)
    ids = [i for i, _, _ in letters]
    wins = await asyncio.gather(*(index.claim(ids, 1000.0 + k, f"task_{k}") for k in range(5)))
    claimed = [i for won in wins for i in won]
    assert sorted(claimed) == ids  # each letter claimed by exactly one of five
    assert await index.count(OPEN) == 0
    assert await index.count(REDRIVEN) == 300
    assert (await walk(index, DeadLetterFilter(), limit=100))[0] == []
    both, _ = await walk(
        index, DeadLetterFilter(endpoint_id="ep_a"), limit=70, states=(OPEN, REDRIVEN)
    )
    assert both == ids
    assert await index.claim(ids[:5], 2000.0, "task_again") == []
    assert await index.claim(ids[:5], 2000.0, "task_forced", force=True) == ids[:5]
    (first,) = await index.letters(ids[:1])
    assert first.redriven_at == 2000.0
    assert first.redrive_task == "task_forced"
    await index.release(ids[:2])
    assert (await walk(index, DeadLetterFilter(tenant="acme"), limit=10))[0] == ids[:2]
    assert await index.count(REDRIVEN) == 298


async def test_a_redrive_read_before_its_letter_still_applies(index: DeadLetterIndex) -> None:
    """While the index is rebuilt, `dlq-state` may be read before `dlq`."""
    early, late = letter(1), letter(2)
    await index.mark([(early[0], 500.0, "task_x", 60_000)])
    await index.add([early, late])
    assert (await walk(index, DeadLetterFilter(), limit=10))[0] == [late[0]]
    (found,) = await index.letters([early[0]])
    assert found.redriven_at == 500.0
    assert found.redrive_task == "task_x"
    # Marked again (a compacted topic read from the start): still one letter, redriven.
    await index.mark([(early[0], 600.0, "task_y", 60_000)])
    assert await index.count(REDRIVEN) == 1
    assert await index.count(OPEN) == 1


async def test_the_newest_letter_of_a_message_is_found(index: DeadLetterIndex) -> None:
    first = letter(5)
    again = (letter_id(T0 + 50_000, 1, 77), first[1], first[2])  # it died again later
    await index.add([again, first])
    message_id = message_id_for("evt_5", "ep_a")
    assert await index.newest_for_message(message_id) == again[0]
    assert await index.newest_for_message("msg_nope") is None


async def test_pruning_forgets_old_letters_everywhere(
    index: DeadLetterIndex, settings: Settings
) -> None:
    letters = [letter(n, endpoint=f"ep_{n % 5}") for n in range(2500)]
    await index.add(letters)
    await index.claim([i for i, _, _ in letters[:100]], 1.0, "task_old")
    removed = 0
    while (step := await index.prune(T0 + 2000)) > 0:
        removed += step
    assert removed == 2000
    assert await index.count(OPEN) + await index.count(REDRIVEN) == 500
    seen, _ = await walk(index, DeadLetterFilter(endpoint_id="ep_3"), limit=100)
    assert seen == [i for i, _, _ in letters[2000:] if int(i.split(".")[2]) % 5 == 3]
    assert await index.newest_for_message(message_id_for("evt_1", "ep_1")) is None
    redis = Redis.from_url(settings.redis_url)
    try:
        left = [k async for k in redis.scan_iter(match=f"{settings.topic_prefix}dlq:letter:*")]
    finally:
        await redis.aclose()
    assert len(left) == 500


async def test_newest_first_pages_the_same_letters_backwards(index: DeadLetterIndex) -> None:
    letters = [letter(n, endpoint=f"ep_{n % 3}") for n in range(2300)]
    await index.add(letters)
    ids = [i for i, _, _ in letters]
    await index.claim(ids[::7], 1.0, "task_x")

    async def backwards(where: DeadLetterFilter, states: tuple[str, ...]) -> list[str]:
        seen: list[str] = []
        after = None
        while True:
            scan = await index.scan(where, states=states, after=after, limit=90, newest=True)
            seen.extend(scan.ids)
            if scan.after is None:
                return seen
            after = scan.after

    for where in (
        DeadLetterFilter(),
        DeadLetterFilter(endpoint_id="ep_1"),
        DeadLetterFilter(endpoint_id="ep_2", since_ms=T0 + 400, until_ms=T0 + 1900),
    ):
        for states in ((OPEN,), (OPEN, REDRIVEN)):
            forwards, _ = await walk(index, where, limit=90, states=states)
            assert await backwards(where, states) == forwards[::-1]
            assert forwards

"""Ordered chains: which message of a subject may go (engine/ordering.py)."""

from __future__ import annotations

import random

import pytest

from hookstream.engine.delivery import DeliveryTask
from hookstream.engine.ordering import (
    GIVE_UP_MS,
    MAX_WAITING,
    SOON_MS,
    Admission,
    Chain,
    ChainState,
)

NOW = 1_800_000_000_000


def test_the_first_message_of_a_new_subject_goes_and_the_next_waits_behind_it() -> None:
    chain = Chain()
    first = chain.place(10)
    assert first == (10, None)
    assert chain.admit(*first, NOW) is Admission.GO
    chain.begin(10)
    second = chain.place(14)
    assert second == (14, 10)
    assert chain.admit(*second, NOW) is Admission.WAIT
    chain.waiting[14] = 10
    assert chain.next_ready() is None  # 10 is still in flight
    chain.resolve(10)
    assert chain.next_ready() == 14


def test_a_message_read_again_from_deliveries_is_not_placed_twice() -> None:
    chain = Chain()
    assert chain.place(5) == (5, None)
    assert chain.place(5) is None
    assert chain.place(3) is None
    assert chain.place(6) == (6, 5)


def test_a_deferred_head_blocks_its_subject_and_later_messages_are_held() -> None:
    chain = Chain()
    chain.begin(chain.place(1)[0])  # type: ignore[index]
    chain.defer(1, NOW + 60_000)
    assert chain.blocked
    assert chain.state.placed == 1
    later = chain.place(2)
    assert later == (2, 1)
    assert chain.admit(*later, NOW) is Admission.HOLD  # due in a minute: not in memory
    assert chain.hold_due_ms(NOW) == NOW + 60_000 + 100
    chain.held(2, NOW + 60_100)
    assert chain.state.placed == 2
    assert not chain.settled


def test_a_held_message_waits_in_memory_when_its_head_is_due_soon() -> None:
    chain = Chain.loaded(ChainState(resolved=0, placed=3, due_at_ms=NOW + SOON_MS // 2))
    assert chain.admit(2, 1, NOW) is Admission.WAIT
    assert chain.admit(1, 0, NOW) is Admission.GO  # its predecessor is resolved


def test_the_head_coming_back_from_a_tier_goes_and_its_successors_follow_in_order() -> None:
    chain = Chain.loaded(ChainState(resolved=-1, placed=30, due_at_ms=NOW))
    # Held messages come back in any order; only the one behind the resolved goes.
    for seq, prev in ((20, 10), (30, 20)):
        assert chain.admit(seq, prev, NOW) is Admission.WAIT
        chain.waiting[seq] = prev
    assert chain.admit(10, None, NOW) is Admission.GO
    chain.begin(10)
    order = [10]
    while chain.active is not None:
        chain.resolve(chain.active)
        nxt = chain.next_ready()
        if nxt is None:
            break
        chain.begin(nxt)
        order.append(nxt)
    assert order == [10, 20, 30]
    assert chain.settled


def test_resolved_and_copies_are_told_apart() -> None:
    chain = Chain.loaded(ChainState(resolved=8, placed=9, due_at_ms=NOW))
    assert chain.admit(8, 3, NOW) is Admission.LATE  # passed already: sent outside the chain
    assert chain.admit(9, 8, NOW) is Admission.GO
    chain.begin(9)
    assert chain.admit(9, 8, NOW) is Admission.DUPLICATE  # the same message, in flight
    assert chain.place(9) is None  # read again from deliveries: already placed


def test_a_loaded_chain_places_new_messages_behind_everything_it_knows() -> None:
    chain = Chain.loaded(ChainState(resolved=12, placed=7, due_at_ms=NOW))
    assert chain.place(12) is None
    assert chain.place(13) == (13, 12)


def test_an_unresolved_predecessor_not_here_is_waited_for_then_given_up_on() -> None:
    # After a crash it may be read again from deliveries at any moment: never
    # assume it was resolved.
    chain = Chain.loaded(ChainState(resolved=1, placed=5, due_at_ms=NOW + 60_000))
    assert chain.admit(9, 7, NOW) is Admission.HOLD
    assert chain.admit(9, 7, NOW + 60_000) is Admission.WAIT
    assert chain.admit(9, 7, NOW + 60_000 + GIVE_UP_MS + 1) is Admission.GIVE_UP


def test_holding_a_message_again_does_not_put_off_giving_up() -> None:
    chain = Chain.loaded(ChainState(resolved=1, placed=5, due_at_ms=NOW))
    for later in range(1, 20):
        chain.held(5, NOW + later * 60_000)  # held again: not a new placement
    assert chain.state.due_at_ms == NOW
    chain.held(6, NOW + 1000)
    assert chain.state.due_at_ms == NOW + 1000


def test_the_topic_is_never_told_a_message_still_in_memory_is_placed() -> None:
    chain = Chain()
    head = chain.place(10)
    assert head is not None
    chain.begin(10)
    waiting = chain.place(20)
    assert waiting is not None
    chain.waiting[20] = 10
    chain.defer(10, NOW + 5000)  # the head is in a tier now
    chain.held(30, NOW + 5100)  # a later one was held before 20 was
    assert chain.state.placed == 30
    # 20 is read again after a crash: placed up to its predecessor, the head.
    assert ChainState.from_record(chain.record()).placed == 10
    chain.held(20, NOW + 5100)
    assert ChainState.from_record(chain.record()).placed == 30


def _crashed_with_20_in_memory() -> bytes:
    """Head 10 in a tier, 20 waiting in memory behind it, 30 held: the record written.
    Other subjects' messages are at the offsets between."""
    chain = Chain()
    chain.place(10)
    chain.begin(10)
    placed = chain.place(20)
    assert placed == (20, 10)
    chain.waiting[20] = 10
    assert chain.place(30) == (30, 20)
    chain.defer(10, NOW + 5000)
    chain.held(30, NOW + 5100)
    return chain.record()


def test_a_message_read_again_after_a_crash_waits_for_its_own_predecessor() -> None:
    chain = Chain.loaded(ChainState.from_record(_crashed_with_20_in_memory()))
    again = chain.place(20)
    assert again == (20, 10)  # behind the head, not behind offset 19 of another subject
    assert chain.admit(*again, NOW + 4000) is Admission.WAIT  # the head is due soon
    chain.waiting[20] = 10
    assert chain.admit(10, None, NOW + 5000) is Admission.GO  # the head, back from its tier
    chain.begin(10)
    chain.resolve(10)
    assert chain.next_ready() == 20
    assert chain.place(30) == (30, 20)  # read again as well, before its copy in the tier
    chain.waiting[30] = 20
    assert chain.admit(30, 20, NOW + 5000) is Admission.DUPLICATE  # the copy, when it comes


def test_a_held_message_back_before_an_earlier_one_is_read_again_drops_neither() -> None:
    """After the crash, 30's copy comes back from its tier before 20 and 30 are read
    again from `deliveries`: 20 still joins (it is in no tier), 30 is not placed twice,
    and a new message joins behind 30."""
    chain = Chain.loaded(ChainState.from_record(_crashed_with_20_in_memory()))
    assert chain.admit(30, 20, NOW + 4000) is Admission.WAIT  # the head is due soon
    chain.waiting[30] = 20
    assert chain.place(20) == (20, 10)
    assert chain.place(30) is None
    assert chain.place(40) == (40, 30)


def test_too_many_waiting_messages_are_held() -> None:
    chain = Chain()
    chain.begin(chain.place(0)[0])  # type: ignore[index]
    for offset in range(1, MAX_WAITING + 1):
        placed = chain.place(offset)
        assert placed is not None
        assert chain.admit(*placed, NOW) is Admission.WAIT
        chain.waiting[placed[0]] = placed[1]
    overflow = chain.place(MAX_WAITING + 1)
    assert overflow is not None
    assert chain.admit(*overflow, NOW) is Admission.HOLD


def test_a_chain_gives_up_on_predecessors_long_overdue() -> None:
    chain = Chain.loaded(ChainState(resolved=1, placed=5, due_at_ms=NOW))
    assert chain.admit(6, 5, NOW + GIVE_UP_MS // 2) is Admission.WAIT
    assert chain.admit(6, 5, NOW + GIVE_UP_MS + 1) is Admission.GIVE_UP
    chain.begin(6)
    chain.resolve(6)
    # The one given up on, should it come back, is still sent: nothing is lost.
    assert chain.admit(5, 4, NOW + GIVE_UP_MS + 2) is Admission.LATE


def test_chain_state_round_trips_and_rejects_what_is_not_one() -> None:
    state = ChainState(resolved=3, placed=9, due_at_ms=NOW)
    assert ChainState.from_record(state.to_record()) == state
    for bad in (b"", b"{}", b"[1,2]", b'["a",1,2]', b"not json"):
        with pytest.raises(ValueError, match="not an ordering record"):
            ChainState.from_record(bad)


def test_a_delivery_task_carries_its_subject_and_place_through_headers() -> None:
    task = DeliveryTask(
        message_id="msg_1",
        event_id="e1",
        endpoint_id="ep_1",
        tenant="acme",
        event_type="order.placed",
        body=b"{}",
        subject="order-7",
    )
    again = DeliveryTask.from_record(task.headers(), task.body)
    assert again.subject == "order-7"
    assert again.order_seq is None
    chained = task.in_chain(41, None)
    assert DeliveryTask.from_record(chained.headers(), task.body).order_seq == 41
    assert DeliveryTask.from_record(chained.headers(), task.body).order_prev is None
    behind = DeliveryTask.from_record(task.in_chain(42, 41).headers(), task.body)
    assert (behind.order_seq, behind.order_prev) == (42, 41)
    assert behind.unchained().order_seq is None


def test_any_interleaving_keeps_each_subject_in_order_and_resolves_everything() -> None:
    """A model run of what the sequencer does: messages read in order, attempts
    that fail and go to a tier, held messages coming back in any order, waits
    that time out. Each subject resolves every message once, in order."""
    for seed in range(20):
        rng = random.Random(seed)
        chains: dict[str, Chain] = {}
        arrivals = [(offset, f"s{rng.randrange(4)}") for offset in range(200)]
        ours = {s: [o for o, t in arrivals if t == s] for _, s in arrivals}
        tier: list[tuple[str, int, int | None]] = []
        writes: list[tuple[str, int, int | None]] = []  # holds being written to a tier
        resolved: dict[str, list[int]] = {s: [] for s in ours}
        now = NOW

        while (
            arrivals
            or tier
            or writes
            or any(c.active is not None or c.waiting for c in chains.values())
        ):
            now += rng.randrange(1, 100)  # well inside GIVE_UP_MS over the run
            step = rng.randrange(5)
            if step == 4:  # a hold's tier write is acknowledged
                if writes:
                    written = writes.pop(rng.randrange(len(writes)))
                    chains[written[0]].holding.discard(written[1])
                    chains[written[0]].held(written[1], now + 500)
                    tier.append(written)
                continue
            if step == 0 and arrivals:
                offset, subject = arrivals.pop(0)
                placed = chains.setdefault(subject, Chain()).place(offset)
                assert placed is not None
                _enter(chains, writes, now, subject, *placed)
            elif step == 1 and tier:
                _enter(chains, writes, now, *tier.pop(rng.randrange(len(tier))))
            elif step == 2:
                busy = [s for s, c in chains.items() if c.active is not None]
                if not busy:
                    continue
                subject = rng.choice(busy)
                chain = chains[subject]
                seq = chain.active
                assert seq is not None
                if rng.random() < 0.3:  # failed: to a tier, and everything behind it held
                    chain.defer(seq, now + rng.randrange(0, 3 * SOON_MS))
                    tier.append((subject, seq, prev_of(chain, seq, ours[subject])))
                    for waiting, prev in list(chain.waiting.items()):
                        del chain.waiting[waiting]
                        _hold(chain, writes, subject, waiting, prev)
                else:
                    chain.resolve(seq)
                    resolved[subject].append(seq)
                    nxt = chain.next_ready()
                    if nxt is not None:
                        chain.begin(nxt)
            else:  # a wait for a predecessor in a tier timed out
                waiters = [(s, q) for s, c in chains.items() for q in c.waiting]
                if not waiters:
                    continue
                subject, seq = rng.choice(waiters)
                prev = chains[subject].waiting.pop(seq)
                _hold(chains[subject], writes, subject, seq, prev)
        for subject, chain in chains.items():
            assert resolved[subject] == ours[subject], f"seed {seed}"
            assert chain.settled


def _enter(
    chains: dict[str, Chain],
    writes: list[tuple[str, int, int | None]],
    now: int,
    subject: str,
    seq: int,
    prev: int | None,
) -> None:
    """A message read from deliveries or back from a tier, as the sequencer takes it."""
    chain = chains[subject]
    admission = chain.admit(seq, prev, now)
    assert admission in (Admission.GO, Admission.WAIT, Admission.HOLD), admission
    if admission is Admission.GO:
        chain.begin(seq)
    elif admission is Admission.WAIT:
        chain.waiting[seq] = prev
    else:
        _hold(chain, writes, subject, seq, prev)


def _hold(
    chain: Chain,
    writes: list[tuple[str, int, int | None]],
    subject: str,
    seq: int,
    prev: int | None,
) -> None:
    """A hold begins: its tier write is in progress until the model completes it."""
    chain.holding.add(seq)
    writes.append((subject, seq, prev))


def prev_of(chain: Chain, seq: int, ours: list[int]) -> int | None:
    """The predecessor a message was placed behind (its previous message, if any)."""
    i = ours.index(seq)
    return ours[i - 1] if i else None

"""Endpoint gates: admit, hold in memory, or park; bookkeeping of outcomes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hookstream.engine.circuit import CircuitSettings
from hookstream.engine.gate import EndpointGate, GateSettings
from hookstream.engine.outcome import AttemptResult

OK = AttemptResult(status=200, duration_ms=100.0)
FAIL = AttemptResult(status=500, duration_ms=5.0)


def gate(**fields: object) -> EndpointGate:
    settings = GateSettings(
        hold_max_s=1.0,
        initial_concurrency=2,
        max_concurrency=4,
        circuit=CircuitSettings(consecutive=2, open_s=10.0),
        auto_disable_after_s=100.0,
    )
    return EndpointGate("ep_1", settings, **fields)  # type: ignore[arg-type]


def run(g: EndpointGate, result: AttemptResult, now: float) -> None:
    assert g.admit(now).park_s is None
    g.started(now)
    g.finished(result, now)


def test_an_open_circuit_parks_until_it_may_probe() -> None:
    g = gate()
    run(g, FAIL, 0.0)
    run(g, FAIL, 0.0)
    admission = g.admit(1.0)
    assert admission.park_s == pytest.approx(9.0)
    assert admission.reason == "circuit open"
    assert not admission.reserved


def test_the_probe_is_flagged_and_its_success_closes_the_circuit() -> None:
    g = gate()
    run(g, FAIL, 0.0)
    run(g, FAIL, 0.0)
    probe = g.admit(10.0)
    assert probe.probe
    assert probe.park_s is None
    assert g.admit(10.0).park_s is not None  # others wait for the probe
    g.started(10.0)
    g.finished(OK, 10.1, probe=probe.probe)
    assert g.admit(10.2).park_s is None


def test_outcomes_of_sends_started_before_the_circuit_opened_do_not_move_it() -> None:
    g = gate()
    burst = [g.admit(0.0) for _ in range(16)]
    assert not any(a.probe for a in burst)
    for _ in burst:
        g.started(0.0)
    for admission in burst:  # all fail, after the circuit opened on the first few
        g.finished(FAIL, 0.5, probe=admission.probe)
    assert g.circuit.open_until - (g.circuit.opened_at or 0.0) == pytest.approx(
        g.settings.circuit.open_s
    )
    probe = g.admit(0.5 + g.settings.circuit.open_s)
    assert probe.probe
    g.started(6.0)
    g.finished(OK, 6.1, probe=True)
    assert g.admit(6.2).park_s is None


def test_rate_limited_deliveries_wait_in_memory_then_park_with_their_slot() -> None:
    g = gate(rate_limit=10.0)
    waits = [g.admit(0.0) for _ in range(12)]
    assert [a.wait_s for a in waits[:3]] == pytest.approx([0.0, 0.1, 0.2])
    assert all(a.reserved for a in waits)
    parked = [a for a in waits if a.park_s is not None]
    assert parked
    assert parked[0].reason in {"rate limit", "concurrency limit"}


def test_a_reserved_delivery_is_not_charged_again() -> None:
    g = gate(rate_limit=1.0)
    g.admit(0.0)
    assert g.admit(0.0, reserved=True).wait_s == 0.0


def test_a_saturated_slow_endpoint_parks_beyond_the_hold() -> None:
    g = gate()
    for _ in range(10):
        run(g, AttemptResult(status=200, duration_ms=1000.0), 0.0)
    admitted = []
    while (a := g.admit(1.0)).park_s is None:
        admitted.append(a)
    # cap 2 (4 at most), 1 s per answer: about cap + cap × hold seconds fit.
    assert 2 <= len(admitted) <= 8
    assert a.reason == "concurrency limit"


def test_overload_answers_shrink_the_cap() -> None:
    g = gate()
    g.concurrency.limit = 4.0
    run(g, AttemptResult(status=429, duration_ms=5.0, retry_after="1"), 0.0)
    assert g.concurrency.cap == 2


def test_429_does_not_trip_the_circuit() -> None:
    g = gate()
    for t in range(5):
        run(g, AttemptResult(status=429, duration_ms=5.0), float(t) * 2)
    assert g.admit(20.0).park_s is None


def test_auto_disable_after_the_period_without_success() -> None:
    g = gate()
    run(g, FAIL, 0.0)
    assert not g.should_disable(99.0)
    assert g.should_disable(100.0)
    g.reset()
    assert not g.should_disable(1000.0)


def test_a_success_restarts_the_disable_clock() -> None:
    g = gate(failing_since=0.0)
    run(g, OK, 50.0)
    assert not g.should_disable(500.0)


def test_snapshot_shows_state_circuit_and_limits() -> None:
    g = gate(rate_limit=5.0)
    run(g, FAIL, 0.0)
    run(g, FAIL, 0.0)
    snap = g.snapshot(1.0)
    assert snap["state"] == "failing"
    assert snap["circuit"]["state"] == "open"
    assert snap["concurrency"]["limit"] == 2
    assert snap["rate_limit"] == 5.0
    assert snap["failing_since"] == "1970-01-01T00:00:00.000Z"
    assert snap["window"]["failures"] == 2


def test_an_endpoint_that_has_not_answered_yet_is_not_assumed_fast() -> None:
    g = gate()
    for _ in range(2):  # the cap: both start at 0 and hang
        assert g.admit(0.0).park_s is None
        g.started(0.0)
    # At 0.1 s the default latency guess (100 ms) lets a queue of 20 in...
    early = gate()
    for _ in range(2):
        early.admit(0.0)
        early.started(0.0)
    admitted_early = 0
    while early.admit(0.1).park_s is None:
        admitted_early += 1
    assert admitted_early == 20
    # ...but 2 s after the oldest request started without an answer, a request
    # takes at least 2 s: only what the cap starts within the 1 s hold waits.
    admitted = 0
    while (a := g.admit(2.0)).park_s is None:
        admitted += 1
    assert admitted == 1
    assert a.reason == "concurrency limit"
    assert a.park_s == pytest.approx(2 * 2.0 / 2)


def test_an_answer_retires_the_oldest_start() -> None:
    g = gate()
    for t in (0.0, 5.0):
        g.admit(t)
        g.started(t)
    g.finished(OK, 5.1)  # whichever answered, the age bound moves to the newer start
    while g.in_flight < g.concurrency.cap:
        g.admit(6.0)
        g.started(6.0)
    # At 7.0 the bound is 2 s (from 5.0), not 7 s (from 0.0): a queue of cap ÷ 2
    # fits in the 1 s hold, where a 7 s bound would let none wait.
    admitted = 0
    while g.admit(7.0).park_s is None:
        admitted += 1
    assert admitted == g.concurrency.cap // 2 >= 1


def test_deliveries_late_for_their_slots_are_spaced_not_bunched() -> None:
    g = gate(rate_limit=10.0)
    # Ten slots reserved 0.1 s apart (burst 1)...
    waits = [g.admit(0.0).wait_s for _ in range(10)]
    assert waits == pytest.approx([0.1 * i for i in range(10)])
    # ...but the first five reach their start together at 0.5 s (a stalled loop,
    # a tier that woke late): they start 0.1 s apart, not at once.
    paces = [g.pace(0.5) for _ in range(5)]
    assert paces == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    # Without a rate limit nothing waits.
    assert gate().pace(0.5) == 0.0


def test_the_in_flight_age_bound_stops_at_the_request_timeout() -> None:
    g = EndpointGate("ep_1", replace(gate().settings, request_timeout_s=10.0))
    for _ in range(2):
        g.admit(0.0)
        g.started(0.0)
    # No attempt outlives the 10 s timeout, so an hour-old start (a count that
    # never settled) estimates 10 s, not an hour: queue ahead 1 × 10 s ÷ cap 2.
    assert g.admit(3600.0).park_s == pytest.approx(5.0)


def test_a_new_endpoints_burst_is_admitted_not_parked_on_a_guess() -> None:
    # No answer yet, nothing in flight for long: 300 deliveries at once (cap 2)
    # are admitted. The old 100 ms guess estimated a 15 s queue and parked 280.
    g = gate()
    admitted = [g.admit(0.0) for _ in range(300)]
    assert [a for a in admitted if a.park_s is not None] == []
    assert g.waiting == 300


def test_an_evicted_delivery_is_parked_until_its_expected_turn() -> None:
    g = gate()
    for _ in range(2):
        g.admit(0.0)
        g.started(0.0)
    for _ in range(5):
        assert g.admit(0.0).park_s is None
    # 1 s later none of the five got a slot: the two in flight are a second old,
    # so a turn is at least 1 s per request; the first evicted waits (4 + 1) × 1 ÷ 2.
    park_s = g.evicted(1.0)
    assert park_s == pytest.approx(2.5)
    assert (g.waiting, g.parked) == (4, 1)
    # Never sooner than the hold, however short the queue.
    quiet = gate()
    quiet.admit(0.0)
    assert quiet.evicted(0.0) == 1.0


def test_an_evicted_probe_gives_the_probe_back() -> None:
    g = gate()
    run(g, FAIL, 0.0)
    run(g, FAIL, 0.0)  # the circuit opens for 10 s
    probe = g.admit(10.0)
    assert probe.probe
    g.evicted(11.0, probe=True)
    assert g.admit(11.0).probe  # another delivery may probe now


def test_a_delivery_admitted_before_the_circuit_opened_is_parked_not_sent() -> None:
    g = gate()
    waiting = [g.admit(0.0) for _ in range(4)]
    assert all(a.park_s is None for a in waiting)
    for _ in range(2):  # the first two are sent and fail: the circuit opens for 10 s
        g.started(0.0)
        assert g.recheck(0.0) is None
        g.finished(FAIL, 0.5)
    g.started(0.6)  # the third takes its slot...
    assert g.recheck(0.6) == pytest.approx(9.9)  # ...and is held back until the probe
    assert (g.in_flight, g.parked) == (0, 1)
    probe = g.admit(10.5)
    g.started(10.5)
    assert g.recheck(10.5, probe=probe.probe) is None  # the probe goes out


def test_a_waiter_is_overdue_only_when_the_endpoint_says_its_turn_is_far() -> None:
    g = gate()  # cap 2, hold 1 s
    for _ in range(10):
        run(g, AttemptResult(status=200, duration_ms=100.0), 0.0)  # 100 ms per answer
    for _ in range(2):
        g.admit(0.0)
        g.started(0.0)
    # 0.2 s later: the head of the queue is 0.05 s away, the 30th 1.5 s away.
    assert not g.overdue(0.05, position=0)
    assert not g.overdue(0.05, position=18)  # 19 × 0.1 ÷ 2 = 0.95 s
    assert g.overdue(0.05, position=29)
    # The same queue behind requests already 3 s old: every turn is far.
    assert g.overdue(3.0, position=0)


def test_the_workers_own_delay_is_not_blamed_on_the_endpoint() -> None:
    # Answers measured at 300 ms, of which the worker's loop ran 280 ms late:
    # the endpoint itself answers in about 20 ms.
    busy, alone = gate(), gate()
    for g in (busy, alone):
        for _ in range(10):
            run(g, AttemptResult(status=200, duration_ms=300.0), 0.0)
    admitted = {"busy": 0, "alone": 0}
    for name, g, delay_s in (("busy", busy, 0.28), ("alone", alone, 0.0)):
        while g.admit(1.0, delay_s=delay_s).park_s is None and admitted[name] < 500:
            admitted[name] += 1
    # cap 2, hold 1 s: 300 ms a turn fits about 2 + 2 ÷ 0.3 ≈ 8; 20 ms about 100.
    assert admitted["alone"] <= 10
    assert 80 <= admitted["busy"] <= 110
    # The same holds where a waiter is asked again after the hold.
    for g in (busy, alone):
        g.started(1.0)
        g.started(1.0)
    assert alone.overdue(1.3, position=20)
    assert not busy.overdue(1.3, position=20, delay_s=0.28)


def test_an_endpoint_slower_than_the_workers_delay_is_still_parked() -> None:
    g = gate()
    for _ in range(10):
        run(g, AttemptResult(status=200, duration_ms=1300.0), 0.0)  # 1 s of its own
    admitted = 0
    while g.admit(1.0, delay_s=0.3).park_s is None:
        admitted += 1
    assert 2 <= admitted <= 8
    # A delay larger than every answer leaves the cold floor, not zero or less.
    fast = gate()
    for _ in range(10):
        run(fast, AttemptResult(status=200, duration_ms=10.0), 0.0)
    fast.started(1.0)
    fast.started(1.0)
    assert fast.overdue(1.0, position=500, delay_s=5.0)  # 500 × 5 ms ÷ 2 > 1 s


def _saturated(start_s: float = 2.0) -> EndpointGate:
    """Cap 2, both slots taken at 0.0 and unanswered at `start_s`: a start every
    start_s ÷ 2 seconds, and one delivery waiting in memory (the 1 s hold)."""
    g = gate()
    for _ in range(2):
        g.admit(0.0)
        g.started(0.0)
    assert g.admit(start_s).park_s is None
    return g


def test_a_backlog_parked_for_slots_comes_back_spread_one_start_apart() -> None:
    g = _saturated()
    # Each one parked is due a start (1 s) after the one before: the backlog comes
    # back at the pace the endpoint can take it, each delivery once.
    parks = [g.admit(2.0) for _ in range(6)]
    assert {a.reason for a in parks} == {"concurrency limit"}
    assert [a.park_s for a in parks] == pytest.approx([2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    # An evicted delivery joins the end of the same line.
    assert g.evicted(2.0) == pytest.approx(8.0)
    # Later, behind the line's end (8 + 1 s from 2.0), not at its own short wait.
    assert g.admit(4.0).park_s == pytest.approx(7.0)
    assert g.parked == 8


def test_a_line_that_has_passed_holds_nothing_back() -> None:
    g = _saturated()
    assert g.admit(2.0).park_s == pytest.approx(2.0)  # the line ends at 5.0
    # At 100 s the line is long gone: a park waits its own expected turn only. The
    # oldest start is capped at the 15 s request timeout: 7.5 s per start, and 2
    # starts ahead of it (2 in flight + 1 waiting + itself - cap 2).
    assert g.admit(100.0).park_s == pytest.approx(15.0)


def test_rate_limit_parks_keep_their_reserved_slots_and_stay_out_of_the_line() -> None:
    g = gate(rate_limit=1.0)
    # One slot per second, reserved at admission: the fifth is 4 s out, so parked
    # there, in its reserved slot, and the slot line is untouched.
    waits = [g.admit(0.0) for _ in range(5)]
    assert [a.park_s for a in waits[2:]] == pytest.approx([2.0, 3.0, 4.0])
    assert {a.reason for a in waits[2:]} == {"rate limit"}
    assert all(a.reserved for a in waits)
    assert g._parked_until == 0.0


def _one_old_request_and_ten_admitted() -> EndpointGate:
    """Cap 2, 100 ms answers: one request out since 0.0, ten admitted, none started."""
    g = gate()
    for _ in range(10):
        run(g, OK, 0.0)
    g.admit(0.0)
    g.started(0.0)
    for _ in range(10):
        assert g.admit(0.0).park_s is None
    return g


def test_an_old_request_is_blamed_only_while_the_endpoint_holds_every_slot() -> None:
    # 100 ms answers, cap 2. One request out since 0.0, the other slot free and
    # 10 deliveries admitted but not started yet: at 2.0 they wait for the
    # worker to start them, not for the endpoint. Ahead of the next one: 10
    # starts at 100 ms ÷ 2, 0.5 s, so it waits in memory. Were the 2 s old
    # request blamed, it would be 10 s, and parked.
    g = _one_old_request_and_ten_admitted()
    assert g.admit(2.0).park_s is None
    assert not g.overdue(2.0, position=8)
    # Once both slots are out, the oldest one's age decides again.
    g.started(2.0)
    assert g.admit(2.0).park_s == pytest.approx(11.0)  # 11 ahead, 2 s ÷ 2 each
    assert g.overdue(2.0, position=1)  # 2 ahead: 2 s


def test_a_slot_taken_for_a_waiter_that_has_not_run_does_not_blame_the_endpoint() -> None:
    # As above, but the free slot was taken in a waiter's name (handed on as a
    # request ended) and the waiter has not run yet: its request is not out, so
    # the endpoint still holds only one slot, and the old request is not blamed.
    g = _one_old_request_and_ten_admitted()
    g.taken()  # the second slot, for the first waiter
    assert (g.in_flight, g.waiting, g.can_start()) == (2, 9, False)
    assert g.admit(2.0).park_s is None
    assert not g.overdue(2.0, position=8)
    g.going(2.0)  # it runs: both requests are out
    assert g.admit(2.0).park_s == pytest.approx(11.0)  # 11 ahead, 2 s ÷ 2 each


def test_a_slot_handed_back_is_free_and_its_delivery_waits_again() -> None:
    g = gate()
    g.admit(0.0)
    g.admit(0.0)
    g.started(0.0)
    g.taken()  # in the second delivery's name
    g.handed_back()  # it was cancelled before it ran
    assert (g.in_flight, g.waiting, g.can_start()) == (1, 1, True)
    g.abandoned(started=False)
    assert (g.in_flight, g.waiting) == (1, 0)
    g.finished(OK, 0.1)
    assert (g.in_flight, len(g._starts)) == (0, 0)

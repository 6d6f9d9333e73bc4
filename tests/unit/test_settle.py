"""The settle seam: every row of the dispatcher's decision table, as data.

Each case is an attempt's result, the attempt number, and how long the
endpoint has been failing; the expected settlement is verdict, reason, wait,
disable and exhausted. The courier only acts on what this returns.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from hookstream.engine.delivery import DeliveryTask
from hookstream.engine.gate import EndpointGate, GateSettings
from hookstream.engine.outcome import AttemptResult, Verdict
from hookstream.engine.retry import RetryPolicy
from hookstream.engine.settle import Settlement, duration, settle

NOW = 1_000_000.0
POLICY = RetryPolicy(delays=(10.0, 100.0), jitter=0.0, floor_s=60.0)  # 3 attempts
AUTO_DISABLE_S = 3600.0


def _task(attempt: int) -> DeliveryTask:
    return DeliveryTask(
        message_id="msg_1",
        event_id="evt_1",
        endpoint_id="ep_1",
        tenant="acme",
        event_type="order.placed",
        body=b"{}",
        attempt=attempt,
    )


def _gate(failing_for_s: float | None) -> EndpointGate:
    gate = EndpointGate("ep_1", GateSettings(auto_disable_after_s=AUTO_DISABLE_S))
    gate.failing_since = None if failing_for_s is None else NOW - failing_for_s
    return gate


def _result(status: int | None, **fields: object) -> AttemptResult:
    return AttemptResult(status=status, duration_ms=5.0, **fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Case:
    result: AttemptResult
    expected: Settlement
    attempt: int = 1
    failing_for_s: float | None = None


RETRY, DEAD, DELIVERED = Verdict.RETRY, Verdict.DEAD, Verdict.DELIVERED
TIMEOUT = _result(None, error_class="timeout")
REFUSED = _result(None, error_class="destination_forbidden", retriable_error=False)
CASES = {
    "2xx is delivered": Case(_result(204), Settlement(DELIVERED, "http 204")),
    "2xx after a long failure is delivered, not disabled": Case(
        _result(200), Settlement(DELIVERED, "http 200"), failing_for_s=10 * AUTO_DISABLE_S
    ),
    "5xx retries on the schedule": Case(_result(500), Settlement(RETRY, "http 500", wait_s=10.0)),
    "the second retry takes the second delay": Case(
        _result(502), Settlement(RETRY, "http 502", wait_s=100.0), attempt=2
    ),
    "4xx other than 410 retries": Case(_result(404), Settlement(RETRY, "http 404", wait_s=10.0)),
    "429 waits at least the floor": Case(_result(429), Settlement(RETRY, "http 429", wait_s=60.0)),
    "a timeout waits at least the floor": Case(TIMEOUT, Settlement(RETRY, "timeout", wait_s=60.0)),
    "503 Retry-After is honoured up to twice the delay": Case(
        _result(503, retry_after="15"), Settlement(RETRY, "http 503", wait_s=15.0)
    ),
    "503 Retry-After past twice the delay is cut": Case(
        _result(503, retry_after="3600"), Settlement(RETRY, "http 503", wait_s=20.0)
    ),
    "the last attempt's failure is exhausted": Case(
        _result(500),
        Settlement(DEAD, "attempts exhausted (3); last: http 500", exhausted=True),
        attempt=3,
    ),
    "410 is dead and disables the endpoint": Case(
        _result(410),
        Settlement(DEAD, "http 410: endpoint gone", disable="it answered 410 Gone"),
    ),
    "410 on the last attempt disables, not exhausted": Case(
        _result(410),
        Settlement(DEAD, "http 410: endpoint gone", disable="it answered 410 Gone"),
        attempt=3,
    ),
    "an abort request is dead, endpoint kept": Case(
        _result(400, abort_requested=True),
        Settlement(DEAD, "receiver asked to abort the message"),
    ),
    "a final error class is dead at once": Case(REFUSED, Settlement(DEAD, "destination_forbidden")),
    "failing past the auto-disable period disables and kills": Case(
        _result(500),
        Settlement(
            DEAD,
            "endpoint disabled: no successful attempt for 1h",
            disable="no successful attempt for 1h",
        ),
        failing_for_s=AUTO_DISABLE_S,
    ),
    "the auto-disable wins over a 410's reason": Case(
        _result(410),
        Settlement(
            DEAD,
            "endpoint disabled: no successful attempt for 1h",
            disable="no successful attempt for 1h",
        ),
        failing_for_s=AUTO_DISABLE_S + 1,
    ),
    "failing just short of the period still retries": Case(
        _result(500), Settlement(RETRY, "http 500", wait_s=10.0), failing_for_s=AUTO_DISABLE_S - 1
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_settle(case: Case) -> None:
    settled = settle(
        _task(case.attempt),
        case.result,
        POLICY,
        _gate(case.failing_for_s),
        NOW,
        random.Random(7),
    )
    assert settled == case.expected


def test_jitter_spreads_the_wait_within_its_band() -> None:
    policy = RetryPolicy(delays=(10.0,), jitter=0.2)
    rng = random.Random(1)
    waits = [
        settle(_task(1), _result(500), policy, _gate(None), NOW, rng).wait_s for _ in range(200)
    ]
    assert all(w is not None and 8.0 <= w <= 12.0 for w in waits)
    assert len(set(waits)) > 100  # not one fixed value


def test_an_endpoint_without_retries_dies_on_its_first_failure() -> None:
    none = POLICY.for_endpoint("none", None)
    settled = settle(_task(1), _result(500), none, _gate(None), NOW, random.Random(1))
    assert settled == Settlement(DEAD, "attempts exhausted (1); last: http 500", exhausted=True)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(3600, "1h"), (432_000, "5d"), (90, "90s"), (120, "2m"), (1.5, "1.5s"), (86_400, "1d")],
)
def test_duration_reads_as_a_person_would_say_it(seconds: float, text: str) -> None:
    assert duration(seconds) == text

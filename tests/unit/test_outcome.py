"""One function maps an attempt to delivered / retry / dead."""

from __future__ import annotations

import pytest

from hookstream.engine.outcome import AttemptResult, Verdict, judge


@pytest.mark.parametrize(
    ("result", "verdict"),
    [
        (AttemptResult(status=200, duration_ms=1), Verdict.DELIVERED),
        (AttemptResult(status=204, duration_ms=1), Verdict.DELIVERED),
        (AttemptResult(status=299, duration_ms=1), Verdict.DELIVERED),
        (AttemptResult(status=301, duration_ms=1), Verdict.RETRY),
        (AttemptResult(status=400, duration_ms=1), Verdict.RETRY),
        (AttemptResult(status=429, duration_ms=1), Verdict.RETRY),
        (AttemptResult(status=500, duration_ms=1), Verdict.RETRY),
        (AttemptResult(status=410, duration_ms=1), Verdict.DEAD),
        (AttemptResult(status=None, duration_ms=1, error_class="timeout"), Verdict.RETRY),
        (
            AttemptResult(
                status=None,
                duration_ms=1,
                error_class="destination_forbidden",
                retriable_error=False,
            ),
            Verdict.DEAD,
        ),
        (AttemptResult(status=500, duration_ms=1, abort_requested=True), Verdict.DEAD),
    ],
)
def test_verdicts(result: AttemptResult, verdict: Verdict) -> None:
    assert judge(result)[0] is verdict


def test_the_reason_names_the_status_or_error() -> None:
    assert judge(AttemptResult(status=503, duration_ms=1))[1] == "http 503"
    assert judge(AttemptResult(status=None, duration_ms=1, error_class="timeout"))[1] == "timeout"

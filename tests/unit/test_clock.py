"""RFC 3339 timestamps as events carry them: normalised to UTC milliseconds, never
changed when already so (no servers)."""

from __future__ import annotations

import random

import pytest

from hookstream.engine.clock import normalized_rfc3339, parse_rfc3339, rfc3339


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("2026-01-02T03:04:05.678Z", "2026-01-02T03:04:05.678Z"),
        ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05.000Z"),
        ("2026-01-02T03:04:05.6789Z", "2026-01-02T03:04:05.678Z"),
        ("2026-01-02T03:04:05.678+00:00", "2026-01-02T03:04:05.678Z"),
        ("2026-01-02T05:04:05.678+02:00", "2026-01-02T03:04:05.678Z"),
        ("2026-01-01T23:30:00.000-04:00", "2026-01-02T03:30:00.000Z"),
        ("2024-02-29T00:00:00.000Z", "2024-02-29T00:00:00.000Z"),
        ("2026-01-02 03:04:05.678Z", "2026-01-02T03:04:05.678Z"),
        ("0001-01-01T00:00:00.000Z", "0001-01-01T00:00:00.000Z"),
        # Through a float, this one became .998.
        ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
        ("9999-12-31T23:59:59.999+00:00", "9999-12-31T23:59:59.999Z"),
    ],
)
def test_a_timestamp_is_normalized_to_utc_milliseconds(given: str, normalized: str) -> None:
    assert normalized_rfc3339(given) == normalized


@pytest.mark.parametrize(
    "given",
    [
        "2026-02-29T00:00:00.000Z",  # not a leap year
        "2026-13-01T00:00:00.000Z",
        "2026-01-02T24:00:00.000Z",
        "2026-01-02T03:04:60.000Z",
        "2026-01-02T03:04:05.678",  # no offset
        "٢٠٢٦-01-02T03:04:05.678Z",  # digits other than ASCII
        "0001-01-01T00:00:00.000+01:00",  # the year 0 in UTC
        "9999-12-31T23:59:59.000-01:00",  # the year 10000 in UTC
        "",
        "yesterday",
    ],
)
def test_what_is_not_a_timestamp_raises_value_error(given: str) -> None:
    with pytest.raises(ValueError, match=r"."):  # with a message saying why
        normalized_rfc3339(given)


def test_it_agrees_with_the_float_round_trip_on_ordinary_times() -> None:
    rng = random.Random(3339)
    for _ in range(2_000):
        ms = rng.randrange(-2_000_000_000_000, 4_000_000_000_000)
        text = rfc3339(ms / 1000)
        assert normalized_rfc3339(text) == text
        shifted = parse_rfc3339(text).astimezone(parse_rfc3339("2026-01-01T00:00:00+05:30").tzinfo)
        assert normalized_rfc3339(shifted.isoformat()) == text

"""Dead-letter ids, filter ranges and redrive outcomes (engine/letters.py)."""

from __future__ import annotations

import random

import pytest

from hookstream.engine.letters import (
    DeadLetterFilter,
    dead_at_ms,
    is_letter_id,
    letter_id,
    redrive_outcome,
)


def test_ids_sort_as_text_in_time_order() -> None:
    rng = random.Random(7)
    letters = [
        (rng.randrange(10**12, 2 * 10**12), rng.randrange(0, 64), rng.randrange(0, 10**12))
        for _ in range(2000)
    ]
    ids = [letter_id(*letter) for letter in letters]
    by_text = sorted(ids)
    assert [dead_at_ms(i) for i in by_text] == sorted(at for at, _, _ in letters)
    assert len(set(ids)) == len(set(letters))


def test_an_id_names_its_letter() -> None:
    at = 1_764_000_000_123
    assert letter_id(at, 3, 12345) == "1764000000123.3.12345"
    assert dead_at_ms(letter_id(at, 3, 12345)) == at
    assert is_letter_id(letter_id(at, 0, 0))
    assert letter_id(-5, 1, 2) == "0000000000000.1.2"  # a record without a timestamp


@pytest.mark.parametrize(
    "text",
    [
        "",
        "x",
        "3:5",
        "1764000000123",
        "1764000000123.3",
        "176400000012.3.4",
        "1764000000123.a.4",
        "1764000000123.3.4.5",
        "1764000000123.3.-4",
        " 1764000000123.3.4",
    ],
)
def test_what_is_not_an_id(text: str) -> None:
    assert not is_letter_id(text)


def _in_range(member: str, low: str, high: str) -> bool:
    """ZRANGEBYLEX semantics for `member`."""
    above = low == "-" or (member > low[1:] if low[0] == "(" else member >= low[1:])
    below = high == "+" or (member < high[1:] if high[0] == "(" else member <= high[1:])
    return above and below


def test_a_window_is_since_inclusive_until_exclusive() -> None:
    since, until = 1_764_000_000_000, 1_764_000_001_000
    low, high = DeadLetterFilter(since_ms=since, until_ms=until).lex_range()
    for at, inside in [
        (since - 1, False),
        (since, True),
        (since + 1, True),
        (until - 1, True),
        (until, False),
        (until + 1, False),
    ]:
        for partition, offset in [(0, 0), (11, 99999), (3, 7)]:
            assert _in_range(letter_id(at, partition, offset), low, high) is inside, (at, inside)


def test_a_cursor_continues_past_the_last_id() -> None:
    ids = sorted(letter_id(1_764_000_000_000 + i // 3, i % 3, i) for i in range(30))
    cursor = ids[10]
    low, high = DeadLetterFilter().lex_range(after=cursor)
    assert [i for i in ids if _in_range(i, low, high)] == ids[11:]
    # A cursor before `since` (from a page with another window) does not widen it.
    since = dead_at_ms(ids[20])
    low, high = DeadLetterFilter(since_ms=since).lex_range(after=ids[0])
    assert [i for i in ids if _in_range(i, low, high)] == [i for i in ids if dead_at_ms(i) >= since]


def test_newest_first_a_cursor_bounds_the_window_from_above() -> None:
    ids = sorted(letter_id(1_764_000_000_000 + i // 3, i % 3, i) for i in range(30))
    low, high = DeadLetterFilter().lex_range(after=ids[10], newest=True)
    assert [i for i in ids if _in_range(i, low, high)] == ids[:10]
    # A cursor past `until` (from another window) does not widen it.
    until = dead_at_ms(ids[5])
    low, high = DeadLetterFilter(until_ms=until).lex_range(after=ids[29], newest=True)
    assert [i for i in ids if _in_range(i, low, high)] == [i for i in ids if dead_at_ms(i) < until]


def test_fields_name_only_given_conditions() -> None:
    assert DeadLetterFilter().fields() == {}
    assert DeadLetterFilter(tenant="acme", event_type="a.b", since_ms=5).fields() == {
        "tenant": "acme",
        "event_type": "a.b",
    }


def test_redrive_outcomes() -> None:
    letter = letter_id(1_000, 0, 1)
    newer = letter_id(9_000, 2, 1)
    before = {"started_at": 50.0, "outcome": "delivered"}
    failed = {"started_at": 101.0, "outcome": "retry"}
    delivered = {"started_at": 102.0, "outcome": "delivered"}
    assert redrive_outcome(100.0, [], None, letter) == "pending"
    assert redrive_outcome(100.0, [before], letter, letter) == "pending"  # older attempts count not
    assert redrive_outcome(100.0, [failed], letter, letter) == "retrying"
    assert redrive_outcome(100.0, [delivered, failed], letter, letter) == "delivered"
    assert (
        redrive_outcome(100.0, [{"started_at": 103.0, "outcome": "dead"}], None, letter) == "dead"
    )
    assert redrive_outcome(100.0, [delivered], newer, letter) == "dead"  # it died again since

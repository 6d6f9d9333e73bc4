"""The JSON limits: integers past 64 bits are refused whatever surrounds them."""

from __future__ import annotations

import random

import orjson
import pytest

from hookstream.engine.json_input import INT_MAX, INT_MIN, loads, may_hold_a_wide_integer
from hookstream.errors import InvalidInput


@pytest.mark.parametrize(
    "number",
    [
        INT_MAX + 1,
        INT_MIN - 1,
        2**70,
        -(10**30),
        10**19 * 9 + 123,
        -(10**19),
    ],
)
@pytest.mark.parametrize(
    "shape",
    [
        b'{"n":%d}',
        b'{"a":[1,2,%d]}',
        b'{"pad":"%s","n":%%d}' % (b"x" * 5000),
        b'[{"deep":{"er":[%d]}}]',
        b'{"n": %d }',
        b'{"n":\n%d\n}',
    ],
)
def test_a_wide_integer_is_refused_in_any_place(shape: bytes, number: int) -> None:
    raw = shape % number
    assert may_hold_a_wide_integer(raw)
    with pytest.raises(InvalidInput) as refused:
        loads(raw)
    assert "64-bit" in refused.value.problems[0].message


@pytest.mark.parametrize("number", [INT_MAX, INT_MIN, 0, -1, 10**18, -(10**18), 10**19])
def test_integers_within_64_bits_are_read_exactly(number: int) -> None:
    assert loads(b'{"n":%d,"s":"%d"}' % (number, number)) == {"n": number, "s": str(number)}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"n":123456789012345678}',  # 18 digits
        b'{"n":-123456789012345678}',
        b'{"n":9999999999999999999}',  # 19 digits, within 64 bits
        b'{"n":-999999999999999999,"s":"1234567890123456789"}',
        b'{"d":"2026-12-06T13:42:03.123Z","f":1.5e300}',
        b'{"phone":"+44-1234-567890-12345"}',
    ],
)
def test_a_document_without_a_long_digit_run_needs_no_second_reading(raw: bytes) -> None:
    assert not may_hold_a_wide_integer(raw)
    assert loads(raw) == orjson.loads(raw)


def test_long_digit_runs_inside_strings_are_kept() -> None:
    raw = b'{"card":"12345678901234567890123","n":-12345678901234567890123.5}'
    assert may_hold_a_wide_integer(raw)
    assert loads(raw) == {"card": "12345678901234567890123", "n": -12345678901234567890123.5}


def test_the_scan_misses_no_wide_integer_in_random_documents() -> None:
    rng = random.Random(6)
    for _ in range(2000):
        digits = rng.randint(1, 24)
        number = rng.choice([-1, 1]) * int(
            "9" * digits if rng.random() < 0.3 else "1" + "0" * (digits - 1)
        )
        filler = "".join(rng.choice("ab -0123456789.") for _ in range(rng.randint(0, 30)))
        raw = orjson.dumps({"f": filler, "x": [filler]})[:-2] + b",%d]}" % number
        wide = not INT_MIN <= number <= INT_MAX
        assert not wide or may_hold_a_wide_integer(raw), raw
        if wide:
            with pytest.raises(InvalidInput):
                loads(raw)
        else:
            assert loads(raw)["x"][-1] == number

"""JSON that hookstream accepts: what it can carry exactly, to every stage.

Two kinds of document are refused instead of being changed or breaking a
later stage:
- **Nesting deeper than MAX_DEPTH** (64) levels. orjson encodes at most 254,
  and the schema validator and filter compiler recurse, so a deeper document
  would fail somewhere after it was accepted.
- **Integers outside 64 bits** (-2^63 to 2^64-1). orjson reads a wider one as
  a float, so 2^70 would arrive as 1.1805916207174113e+21: silently changed.
  Send such numbers as strings.

Both checks run on every ingest path (API bodies, EventPublisher, records
read from Kafka). On bytes, a scan in C decides whether the walk is needed at
all: a document with at most MAX_DEPTH brackets cannot be too deep, and one
without 20 digits in a row, or 19 after a minus, holds no wide integer. Those
runs are found by mapping every digit to "0" and looking for the zeros,
which costs 1.0 µs on a 342-byte event where a regular expression cost
7.6 µs (decision 045).
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

import orjson

from hookstream.errors import FieldProblem, InvalidInput

MAX_DEPTH: Final = 64
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**64 - 1
_MAX_PROBLEMS: Final = 10
# Where a number may be wider than 64 bits: 20 digits (2^64), or 19 after a minus (-2^63 - 1).
_DIGITS_AS_ZERO: Final = bytes.maketrans(b"123456789", b"000000000")
_TWENTY_DIGITS: Final = b"0" * 20
_MINUS_AND_NINETEEN: Final = b"-" + b"0" * 19


def loads(raw: bytes) -> Any:
    """Parse JSON; orjson.JSONDecodeError if it is not JSON, InvalidInput past the limits."""
    value = orjson.loads(raw)
    problems: list[FieldProblem] = []
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH:
        problems = value_problems(value)
    if not problems and may_hold_a_wide_integer(raw):
        # orjson has read any wide integer as a float; the standard parser reads it exactly.
        problems = value_problems(json.loads(raw))
    if problems:
        raise InvalidInput(problems)
    return value


def may_hold_a_wide_integer(raw: bytes) -> bool:
    """False when `raw` has no 20 digits in a row and no 19 after a minus, so no
    integer outside 64 bits.

    True also for such runs inside strings: the caller then checks exactly."""
    digits = raw.translate(_DIGITS_AS_ZERO)
    return _TWENTY_DIGITS in digits or _MINUS_AND_NINETEEN in digits


def value_problems(value: Any, root: str = "") -> list[FieldProblem]:
    """The places where `value` (parsed JSON, or Python data) passes the limits."""
    problems: list[FieldProblem] = []
    stack: list[tuple[Any, str, int]] = [(value, root, 0)]
    while stack and len(problems) < _MAX_PROBLEMS:
        item, path, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                problems.append(
                    FieldProblem(_shown(path), f"nested deeper than {MAX_DEPTH} levels")
                )
                continue
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                if isinstance(child, dict | list | int | float):
                    stack.append((child, _join(path, key), depth + 1))
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int) and not INT_MIN <= item <= INT_MAX:
            problems.append(
                FieldProblem(
                    _shown(path), "an integer outside the 64-bit range: send it as a string"
                )
            )
        elif isinstance(item, float) and not math.isfinite(item):
            problems.append(FieldProblem(_shown(path), "must be a finite number"))
    return problems


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _shown(path: str) -> str:
    """A field path short enough for an error message."""
    path = path or "$"
    return path if len(path) <= 120 else path[:117] + "..."

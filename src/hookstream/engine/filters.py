"""Payload filters: Mongo-style operators over dotted paths into an event.

`compile_filter(raw)` checks a filter once, when its endpoint changes, and
returns a predicate the router calls per event:

    {"data.amount": {"$gte": 100}, "data.currency": {"$in": ["EUR", "USD"]}}

A field whose value is an array matches when the array contains the value
(or equals it). Paths walk through arrays of objects the way Mongo does.
`$regex` runs on RE2, whose matching time is linear in the input, so no
pattern can stall the router (catastrophic backtracking is impossible).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson
import re2

from hookstream.errors import FieldProblem, InvalidInput

Predicate = Callable[[Mapping[str, Any]], bool]
ValueTest = Callable[[list[Any]], bool]

MAX_FILTER_BYTES = 8 * 1024
MAX_DEPTH = 8
MAX_PATTERN_LENGTH = 512
MAX_IN_VALUES = 256
MAX_PATH_PARTS = 16
# RE2 refuses patterns whose compiled program needs more memory than this.
REGEX_MAX_MEM = 1 << 20

COMPARISONS = ("$gt", "$gte", "$lt", "$lte")
FIELD_OPERATORS = frozenset(
    {"$eq", "$ne", *COMPARISONS, "$in", "$nin", "$exists", "$regex", "$options", "$not"}
)
REGEX_OPTIONS = frozenset("ims")


def compile_filter(raw: Any, *, where: str = "filter") -> Predicate:
    """Check `raw` and build its predicate; InvalidInput names the bad part."""
    if not isinstance(raw, dict):
        raise InvalidInput([FieldProblem(where, "must be a JSON object of conditions")])
    if len(orjson.dumps(raw)) > MAX_FILTER_BYTES:
        raise InvalidInput([FieldProblem(where, f"at most {MAX_FILTER_BYTES} bytes of JSON")])
    return _document(raw, where, 0)


def matches(predicate: Predicate | None, document: Mapping[str, Any]) -> bool:
    """True when there is no filter or `document` satisfies it."""
    return predicate is None or predicate(document)


def _bad(where: str, message: str) -> InvalidInput:
    return InvalidInput([FieldProblem(where, message)])


def _document(raw: dict[str, Any], where: str, depth: int) -> Predicate:
    if depth > MAX_DEPTH:
        raise _bad(where, f"nested deeper than {MAX_DEPTH} levels")
    parts: list[Predicate] = []
    for key, value in raw.items():
        here = f"{where}.{key}"
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise _bad(here, "must be a non-empty list of filters")
            subs = [
                _document(_object(item, f"{here}[{i}]"), f"{here}[{i}]", depth + 1)
                for i, item in enumerate(value)
            ]
            parts.append(_all(subs) if key == "$and" else _any(subs))
        elif key == "$not":
            parts.append(_negate(_document(_object(value, here), here, depth + 1)))
        elif key.startswith("$"):
            raise _bad(here, "unknown operator (top level takes $and, $or, $not or field paths)")
        else:
            parts.append(_field(key, value, here, depth + 1))
    return _all(parts)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(where, "must be a JSON object of conditions")
    return value


def _all(predicates: list[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]
    return lambda doc: all(p(doc) for p in predicates)


def _any(predicates: list[Predicate]) -> Predicate:
    return lambda doc: any(p(doc) for p in predicates)


def _field(path: str, condition: Any, where: str, depth: int) -> Predicate:
    parts = path.split(".")
    if len(parts) > MAX_PATH_PARTS or not all(parts):
        raise _bad(where, f"a path is 1-{MAX_PATH_PARTS} dot-separated names")
    test = _operators(condition, where, depth)

    def predicate(doc: Mapping[str, Any]) -> bool:
        return test(list(_values(doc, parts, 0)))

    return predicate


def _operators(condition: Any, where: str, depth: int) -> ValueTest:
    """A test over the values found at a path (empty list: the path is missing)."""
    if not (
        isinstance(condition, dict) and condition and all(k.startswith("$") for k in condition)
    ):
        return _eq_test(condition)
    if depth > MAX_DEPTH:
        raise _bad(where, f"nested deeper than {MAX_DEPTH} levels")
    tests: list[ValueTest] = []
    for op, operand in condition.items():
        here = f"{where}.{op}"
        if op not in FIELD_OPERATORS:
            raise _bad(here, f"unknown operator; use one of {', '.join(sorted(FIELD_OPERATORS))}")
        if op == "$eq":
            tests.append(_eq_test(operand))
        elif op == "$ne":
            tests.append(_negate(_eq_test(operand)))
        elif op in COMPARISONS:
            tests.append(_comparison(op, operand, here))
        elif op in ("$in", "$nin"):
            if not isinstance(operand, list) or len(operand) > MAX_IN_VALUES:
                raise _bad(here, f"must be a list of at most {MAX_IN_VALUES} values")
            inside = _in_test(operand)
            tests.append(inside if op == "$in" else _negate(inside))
        elif op == "$exists":
            if not isinstance(operand, bool):
                raise _bad(here, "must be true or false")
            tests.append(_exists if operand else _negate(_exists))
        elif op == "$regex":
            tests.append(_regex(operand, condition.get("$options", ""), here))
        elif op == "$options":
            if "$regex" not in condition:
                raise _bad(here, "only goes with $regex")
        else:  # $not
            if not isinstance(operand, dict) or not operand:
                raise _bad(here, "must be an object of operators")
            tests.append(_negate(_operators(operand, here, depth + 1)))
    return lambda values: all(t(values) for t in tests)


def _negate(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda arg: not test(arg)


def _exists(values: list[Any]) -> bool:
    return bool(values)


def _values(node: Any, parts: list[str], i: int) -> Iterator[Any]:
    """Every value at `parts[i:]` under `node`, walking into arrays of objects."""
    if i == len(parts):
        yield node
        return
    if isinstance(node, dict):
        if parts[i] in node:
            yield from _values(node[parts[i]], parts, i + 1)
    elif isinstance(node, list):
        if parts[i].isdigit() and int(parts[i]) < len(node):
            yield from _values(node[int(parts[i])], parts, i + 1)
        for element in node:
            if isinstance(element, dict):
                yield from _values(element, parts, i)


def _candidates(values: list[Any]) -> Iterator[Any]:
    """Each value, and the elements of each array value (an array matches by containing)."""
    for value in values:
        yield value
        if isinstance(value, list):
            yield from value


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return bool(a == b)


def _eq_test(operand: Any) -> ValueTest:
    if operand is None:  # Mongo: null matches a null value or a missing field
        return lambda values: not values or any(c is None for c in _candidates(values))
    return lambda values: any(_same(c, operand) for c in _candidates(values))


def _in_test(operands: list[Any]) -> ValueTest:
    tests = [_eq_test(v) for v in operands]
    return lambda values: any(t(values) for t in tests)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _comparison(op: str, operand: Any, where: str) -> ValueTest:
    if not (_number(operand) or isinstance(operand, str)):
        raise _bad(where, "must be a number or a string")
    kind = _number if _number(operand) else (lambda v: isinstance(v, str))
    compare: Callable[[Any], bool] = {
        "$gt": lambda v: v > operand,
        "$gte": lambda v: v >= operand,
        "$lt": lambda v: v < operand,
        "$lte": lambda v: v <= operand,
    }[op]
    return lambda values: any(kind(c) and compare(c) for c in _candidates(values))


def _regex(pattern: Any, options: Any, where: str) -> ValueTest:
    if not isinstance(pattern, str) or not 0 < len(pattern) <= MAX_PATTERN_LENGTH:
        raise _bad(where, f"must be a pattern of 1-{MAX_PATTERN_LENGTH} characters")
    if not isinstance(options, str) or not set(options) <= REGEX_OPTIONS:
        raise _bad(where.replace("$regex", "$options"), "may hold only the flags i, m and s")
    settings = re2.Options()
    settings.log_errors = False
    settings.max_mem = REGEX_MAX_MEM
    flags = f"(?{''.join(sorted(set(options)))})" if options else ""
    try:
        compiled = re2.compile(flags + pattern, settings)
    except re2.error as exc:
        message = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise _bad(where, f"not a valid RE2 pattern: {message}") from None
    return lambda values: any(
        isinstance(c, str) and compiled.search(c) is not None for c in _candidates(values)
    )

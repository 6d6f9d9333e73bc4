"""Payload filters: each operator, arrays, paths through arrays, errors naming the part."""

from __future__ import annotations

import time
from typing import Any

import pytest

from hookstream.engine.filters import compile_filter
from hookstream.errors import InvalidInput

DOC: dict[str, Any] = {
    "type": "invoice.paid",
    "data": {
        "amount": 150,
        "currency": "EUR",
        "paid": True,
        "tags": ["vip", "eu"],
        "note": None,
        "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 5}],
        "customer": {"email": "Ann@Corp.example"},
    },
}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"data.amount": 150}, True),
        ({"data.amount": {"$eq": 150.0}}, True),
        ({"data.amount": {"$ne": 150}}, False),
        ({"data.amount": {"$gt": 100, "$lte": 150}}, True),
        ({"data.amount": {"$lt": 100}}, False),
        ({"data.currency": {"$gte": "EUR"}}, True),
        ({"data.currency": {"$gt": 1}}, False),  # a string is not compared with a number
        ({"data.currency": {"$in": ["USD", "EUR"]}}, True),
        ({"data.currency": {"$nin": ["USD", "EUR"]}}, False),
        ({"data.tags": "vip"}, True),  # an array matches when it contains the value
        ({"data.tags": ["vip", "eu"]}, True),  # ... or equals it
        ({"data.tags": {"$in": ["none", "eu"]}}, True),
        ({"data.tags": {"$nin": ["vip"]}}, False),
        ({"data.items.sku": "b"}, True),  # paths walk through arrays of objects
        ({"data.items.qty": {"$gt": 4}}, True),
        ({"data.items.1.sku": "b"}, True),
        ({"data.paid": 1}, False),  # true is not 1
        ({"data.paid": True}, True),
        ({"data.note": None}, True),
        ({"data.missing": None}, True),  # null matches a missing field
        ({"data.missing": {"$exists": False}}, True),
        ({"data.amount": {"$exists": True}}, True),
        ({"data.missing": {"$ne": 1}}, True),
        ({"data.customer.email": {"$regex": "@corp\\.", "$options": "i"}}, True),
        ({"data.customer.email": {"$regex": "@corp\\."}}, False),
        ({"data.amount": {"$not": {"$gt": 200}}}, True),
        ({"$not": {"data.amount": 150}}, False),
        ({"$and": [{"data.amount": 150}, {"data.currency": "EUR"}]}, True),
        ({"$or": [{"data.amount": 1}, {"data.currency": "EUR"}]}, True),
        ({"$or": [{"data.amount": 1}, {"data.currency": "USD"}]}, False),
        ({"type": {"$regex": "^invoice\\."}, "data.amount": {"$gte": 100}}, True),
        ({}, True),
    ],
)
def test_operators(query: dict[str, Any], expected: bool) -> None:
    assert compile_filter(query)(DOC) is expected


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"data.a": {"$where": "1"}}, "filter.data.a.$where"),
        ({"$nor": []}, "filter.$nor"),
        ({"$and": [{"a": 1}, {"b": {"$in": 3}}]}, "filter.$and[1].b.$in"),
        ({"$or": []}, "filter.$or"),
        ({"a": {"$regex": "(unclosed"}}, "filter.a.$regex"),
        ({"a": {"$regex": "(a)\\1"}}, "filter.a.$regex"),  # backreferences: not RE2
        ({"a": {"$regex": "x", "$options": "g"}}, "filter.a.$options"),
        ({"a": {"$options": "i"}}, "filter.a.$options"),
        ({"a": {"$gt": [1]}}, "filter.a.$gt"),
        ({"a": {"$exists": "yes"}}, "filter.a.$exists"),
        ({"a..b": 1}, "filter.a..b"),
        ({"a": {"$not": 5}}, "filter.a.$not"),
    ],
)
def test_invalid_filters_name_the_bad_part(query: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        compile_filter(query)
    assert [p.field for p in exc.value.problems] == [field]


def test_depth_and_size_are_bounded() -> None:
    deep: dict[str, Any] = {"a": 1}
    for _ in range(12):
        deep = {"$and": [deep]}
    with pytest.raises(InvalidInput, match="deeper"):
        compile_filter(deep)
    with pytest.raises(InvalidInput, match="bytes"):
        compile_filter({"a": {"$in": ["x" * 100] * 200}})


def test_a_catastrophic_pattern_runs_in_linear_time() -> None:
    predicate = compile_filter({"data.s": {"$regex": "^(a+)+$"}})
    hostile = {"data": {"s": "a" * 100_000 + "!"}}
    started = time.perf_counter()
    assert predicate(hostile) is False
    # Backtracking engines take longer than the age of the universe here; RE2 is linear.
    assert time.perf_counter() - started < 1.0

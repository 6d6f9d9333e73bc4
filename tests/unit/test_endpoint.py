"""Endpoint creation input: what is accepted and refused."""

from __future__ import annotations

from typing import Any

import pytest

from hookstream.engine.endpoint import Endpoint, new_endpoint
from hookstream.errors import InvalidInput

BASE: dict[str, Any] = {"url": "https://hooks.example.com/in", "tenant": "acme"}


def test_defaults_and_round_trip() -> None:
    endpoint = new_endpoint(BASE, allow_private=False)
    assert endpoint.event_types == ("*",)
    assert (endpoint.retry_policy, endpoint.max_attempts) == ("exponential", None)
    assert Endpoint.from_record(endpoint.to_record()) == endpoint
    assert "secret" not in endpoint.to_dict()


def test_retry_policy_and_max_attempts_are_kept() -> None:
    endpoint = new_endpoint(
        {**BASE, "retry_policy": "linear", "max_attempts": 3}, allow_private=False
    )
    assert (endpoint.retry_policy, endpoint.max_attempts) == ("linear", 3)
    assert Endpoint.from_record(endpoint.to_record()) == endpoint


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"retry_policy": "sometimes"}, "retry_policy"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 51}, "max_attempts"),
        ({"max_attempts": "3"}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"event_types": []}, "event_types"),
        ({"event_types": "invoice.*"}, "event_types"),
        ({"description": 5}, "description"),
    ],
)
def test_invalid_fields_are_named(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        new_endpoint({**BASE, **change}, allow_private=False)
    assert field in {p.field for p in exc.value.problems}


def test_duplicate_globs_are_folded() -> None:
    endpoint = new_endpoint({**BASE, "event_types": ["a.*", "a.*", "b"]}, allow_private=False)
    assert endpoint.event_types == ("a.*", "b")

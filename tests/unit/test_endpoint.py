"""Endpoint creation input: what is accepted and refused."""

from __future__ import annotations

from typing import Any

import pytest

from hookstream.engine.destinations import STRICT_EGRESS
from hookstream.engine.endpoint import Endpoint, new_endpoint, patch_endpoint
from hookstream.errors import InvalidInput

BASE: dict[str, Any] = {"url": "https://hooks.example.com/in", "tenant": "acme"}


def test_defaults_and_round_trip() -> None:
    endpoint = new_endpoint(BASE, policy=STRICT_EGRESS)
    assert endpoint.event_types == ("*",)
    assert (endpoint.retry_policy, endpoint.max_attempts) == ("exponential", None)
    assert Endpoint.from_record(endpoint.to_record()) == endpoint
    assert "secret" not in endpoint.to_dict()


def test_retry_policy_and_max_attempts_are_kept() -> None:
    endpoint = new_endpoint(
        {**BASE, "retry_policy": "linear", "max_attempts": 3}, policy=STRICT_EGRESS
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
        new_endpoint({**BASE, **change}, policy=STRICT_EGRESS)
    assert field in {p.field for p in exc.value.problems}


def test_duplicate_globs_are_folded() -> None:
    endpoint = new_endpoint({**BASE, "event_types": ["a.*", "a.*", "b"]}, policy=STRICT_EGRESS)
    assert endpoint.event_types == ("a.*", "b")


def test_patch_changes_given_fields_and_null_resets() -> None:
    endpoint = new_endpoint({**BASE, "rate_limit": 5, "description": "d"}, policy=STRICT_EGRESS)
    patched = patch_endpoint(
        endpoint, {"rate_limit": None, "channels": ["eu"], "disabled": True}, STRICT_EGRESS
    )
    assert (patched.rate_limit, patched.channels, patched.disabled) == (None, ("eu",), True)
    assert (patched.description, patched.secret, patched.id) == ("d", endpoint.secret, endpoint.id)
    with pytest.raises(InvalidInput) as exc:
        patch_endpoint(endpoint, {"tenant": "x", "url": None, "bogus": 1}, STRICT_EGRESS)
    assert {p.field: p.message for p in exc.value.problems} == {
        "tenant": "cannot be changed",
        "bogus": "unknown field",
        "url": "cannot be null",
    }


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"X-A": "ok\r\nInjected: yes"}, "headers.X-A"),
        ({"X-A": "nul\x00byte"}, "headers.X-A"),
        ({"X-A": "x" * 1025}, "headers.X-A"),
        ({"Bad Name": "v"}, "headers.Bad Name"),
        ({"Bad\r\nName": "v"}, "headers.Bad\r\nName"),
        ({"Connection": "close"}, "headers.Connection"),
        ({"Host": "evil.example"}, "headers.Host"),
        ({"webhook-signature": "v1,forged"}, "headers.webhook-signature"),
        ({"Webhook-Id": "msg_forged"}, "headers.Webhook-Id"),
        ({"Content-Length": "0"}, "headers.Content-Length"),
        ({f"X-{i}": "v" for i in range(21)}, "headers"),
    ],
)
def test_custom_headers_that_could_inject_or_forge_are_refused(
    headers: dict[str, str], field: str
) -> None:
    with pytest.raises(InvalidInput) as exc:
        new_endpoint({**BASE, "headers": headers}, policy=STRICT_EGRESS)
    assert field in {p.field for p in exc.value.problems}


def test_rotation_keeps_the_old_secret_signing_until_it_expires() -> None:
    endpoint = new_endpoint(BASE, policy=STRICT_EGRESS)
    rotated = endpoint.rotated("whsec_new", 100.0, clock=lambda: 1000.0)
    assert rotated.signing_secrets(1050.0) == ("whsec_new", endpoint.secret)
    assert rotated.signing_secrets(1100.0) == ("whsec_new",)
    twice = rotated.rotated("whsec_newer", 100.0, clock=lambda: 1050.0)
    assert twice.signing_secrets(1060.0) == ("whsec_newer", "whsec_new", endpoint.secret)
    assert Endpoint.from_record(twice.to_record()) == twice
    assert "previous_secrets" not in twice.to_dict(include_secret=True)

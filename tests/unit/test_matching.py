"""Event-type globs and the per-tenant endpoint index."""

from __future__ import annotations

import pytest

from hookstream.engine.endpoint import Endpoint
from hookstream.engine.matching import EndpointIndex, compile_globs
from hookstream.engine.names import glob_problem


def _endpoint(eid: str, tenant: str, *globs: str, disabled: bool = False) -> Endpoint:
    return Endpoint(
        id=eid,
        tenant=tenant,
        url="https://example.com/hook",
        event_types=globs,
        secret="whsec_x",
        disabled=disabled,
    )


@pytest.mark.parametrize(
    ("globs", "event_type", "matches"),
    [
        (["*"], "invoice.paid", True),
        (["invoice.*"], "invoice.paid", True),
        (["invoice.*"], "invoice.paid.late", True),
        (["invoice.*"], "invoice", False),
        (["invoice.*"], "invoices.paid", False),
        (["invoice.paid"], "invoice.paid", True),
        (["invoice.paid"], "invoice.paid2", False),
        (["invoice.paid"], "Invoice.paid", False),
        (["*.created"], "user.created", True),
        (["*.created"], "user.deleted", False),
        (["user.*", "invoice.paid"], "invoice.paid", True),
        (["inv*"], "invoice.paid", True),
        (["com.example.order-*"], "com.example.order-created", True),
        (["com.example.order-*"], "com.example.orders", False),
        (["*-created"], "com.example.order-created", True),
        (["com.*.order-created"], "com.example.order-created", True),
        (["com.example.order-created"], "com.example.order_created", False),
    ],
)
def test_glob_matching(globs: list[str], event_type: str, matches: bool) -> None:
    assert bool(compile_globs(globs).match(event_type)) is matches


@pytest.mark.parametrize(
    "pattern", ["", "a..b", ".a", "a.", "a b", "a.[b]", "a?", "-a", "a-", "a--b", "a.-*", "x" * 201]
)
def test_invalid_globs_are_explained(pattern: str) -> None:
    assert glob_problem(pattern)


def test_regex_metacharacters_in_types_are_literal() -> None:
    assert glob_problem("a_b.c") is None
    assert not compile_globs(["a_b.c"]).match("a_bxc")


def test_index_matches_only_the_events_tenant() -> None:
    index = EndpointIndex()
    index.put(_endpoint("ep1", "acme", "*"))
    index.put(_endpoint("ep2", "globex", "*"))
    assert [e.id for e in index.match("acme", "invoice.paid")] == ["ep1"]
    assert [e.id for e in index.match("globex", "invoice.paid")] == ["ep2"]
    assert index.match("initech", "invoice.paid") == ()


def test_index_skips_disabled_endpoints() -> None:
    index = EndpointIndex()
    index.put(_endpoint("ep1", "acme", "*", disabled=True))
    assert index.match("acme", "x") == ()


def test_index_cache_follows_updates_and_removals() -> None:
    index = EndpointIndex()
    index.put(_endpoint("ep1", "acme", "invoice.*"))
    assert [e.id for e in index.match("acme", "invoice.paid")] == ["ep1"]
    index.put(_endpoint("ep1", "acme", "user.*"))
    assert index.match("acme", "invoice.paid") == ()
    index.put(_endpoint("ep2", "acme", "*"))
    assert [e.id for e in index.match("acme", "invoice.paid")] == ["ep2"]
    index.remove("ep2")
    assert index.match("acme", "invoice.paid") == ()
    assert index.all() == [index.get("ep1")]


def test_moving_an_endpoint_to_another_tenant_drops_it_from_the_old_one() -> None:
    index = EndpointIndex()
    index.put(_endpoint("ep1", "acme", "*"))
    index.match("acme", "a")
    index.put(_endpoint("ep1", "globex", "*"))
    assert index.match("acme", "a") == ()
    assert index.all("acme") == []
    assert [e.id for e in index.all("globex")] == ["ep1"]

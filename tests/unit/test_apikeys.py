"""API keys and rate tiers."""

from __future__ import annotations

import pytest

from hookstream.engine.apikeys import ApiKey, Tier, key_id_of, new_api_key, parse_tiers


def test_a_key_is_found_by_id_and_checked_by_hash() -> None:
    stored, key = new_api_key("ci", ["events:publish"], "acme", "standard")
    assert key_id_of(key) == stored.id
    assert stored.matches(key)
    assert not stored.matches(key[:-1] + ("a" if key[-1] != "a" else "b"))
    assert key not in stored.to_record().decode()
    assert stored.digest not in str(stored.to_dict())
    assert ApiKey.from_record(stored.to_record()) == stored
    assert stored.allows("events:publish")
    assert not stored.allows("endpoints:read")


@pytest.mark.parametrize("token", ["", "hsk_", "hsk_short_x", "Bearer", "hsk_0123456789ab"])
def test_malformed_keys_have_no_id(token: str) -> None:
    assert key_id_of(token) is None


def test_tiers_parse_with_a_default_burst() -> None:
    assert parse_tiers("free=100,basic=1000:5") == {
        "free": Tier("free", 100, 10),
        "basic": Tier("basic", 1000, 5),
    }
    for bad in ("", "free", "free=x", "free=0", "=5", "free=10:0"):
        with pytest.raises(ValueError, match="name"):
            parse_tiers(bad)

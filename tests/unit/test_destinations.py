"""Endpoint URLs and addresses: what real mode refuses and dev mode allows."""

from __future__ import annotations

import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from hookstream.egress import GuardedResolver
from hookstream.engine.addresses import is_public_address
from hookstream.engine.destinations import (
    DEV_EGRESS,
    STRICT_EGRESS,
    check_url,
    numeric_host,
)
from hookstream.errors import DestinationForbidden, InvalidInput


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fd00::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::127.0.0.1", False),  # IPv4-compatible
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("64:ff9b:1::1", False),  # NAT64 local use
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
        ("2002:5db8:d822::1", True),  # 6to4 of a public address
        ("64:ff9b::5db8:d822", True),  # NAT64 of a public address
        ("::", False),
        ("not an ip", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(address) is public


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",  # plain http outside dev
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://localhost/hook",
        "https://user:pass@example.com/hook",
        "ftp://example.com/hook",
        "https:///nohost",
        "https://example.com/a b",
        "https://example.com:99999/",
        "https://example.com/\r\nX-Injected: 1",
    ],
)
def test_real_mode_refuses(url: str) -> None:
    with pytest.raises(InvalidInput):
        check_url(url, policy=STRICT_EGRESS)


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",  # decimal
        "0x7f000001",  # hex
        "0x7F.0x0.0x0.0x1",
        "0177.0.0.1",  # octal
        "127.1",  # short
        "127.0.0.1.",  # trailing dot
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[2002:7f00:1::]",
        "[::127.0.0.1]",
        "[::1]",
        "[fe80::1%25eth0]",
        "169.254.169.254",
        "0xa9fea9fe",
        "10.1",
        "0",
        "localhost.",
        "metadata.google.internal",
    ],
)
def test_real_mode_refuses_every_spelling_of_an_internal_address(host: str) -> None:
    with pytest.raises(InvalidInput, match="must not point at"):
        check_url(f"https://{host}/hook", policy=STRICT_EGRESS)
    assert check_url(f"http://{host}/hook", policy=DEV_EGRESS)


def test_numeric_hosts_are_read_as_the_resolver_reads_them() -> None:
    assert numeric_host("2130706433") == "127.0.0.1"
    assert numeric_host("1.2.3") == "1.2.0.3"
    assert numeric_host("[::1]".strip("[]")) == "::1"
    assert numeric_host("hooks.example.com") is None
    assert numeric_host("deadbeef") is None  # a name: no 0x, not digits
    assert check_url("https://93.184.216.34/hook", policy=STRICT_EGRESS)


def test_dev_mode_allows_loopback_and_plain_http() -> None:
    assert check_url("http://127.0.0.1:9000/hook", policy=DEV_EGRESS)
    with pytest.raises(InvalidInput):
        check_url("ftp://127.0.0.1/", policy=DEV_EGRESS)


def test_real_mode_accepts_a_public_https_url() -> None:
    assert check_url("https://hooks.example.com/in?x=1", policy=STRICT_EGRESS)


class _FixedResolver(AbstractResolver):
    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        return None


async def test_guarded_resolver_keeps_only_public_addresses() -> None:
    resolver = GuardedResolver(_FixedResolver("10.0.0.1", "93.184.216.34"), policy=STRICT_EGRESS)
    assert [r["host"] for r in await resolver.resolve("x.example", 443)] == ["93.184.216.34"]


async def test_guarded_resolver_refuses_a_name_that_is_only_private() -> None:
    resolver = GuardedResolver(_FixedResolver("169.254.169.254"), policy=STRICT_EGRESS)
    with pytest.raises(DestinationForbidden):
        await resolver.resolve("metadata.example", 80)


class _FlippingResolver(_FixedResolver):
    """DNS rebinding: answers public first, then private."""

    def __init__(self, *answers: str) -> None:
        super().__init__()
        self.answers = list(answers)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.addresses = (self.answers.pop(0),)
        return await super().resolve(host, port, family)


async def test_a_name_whose_answers_flip_to_private_is_refused_on_the_flip() -> None:
    resolver = GuardedResolver(
        _FlippingResolver("93.184.216.34", "127.0.0.1", "93.184.216.34"), policy=STRICT_EGRESS
    )
    assert [r["host"] for r in await resolver.resolve("rebind.example", 443)] == ["93.184.216.34"]
    # Every connection resolves and checks again: the private answer is refused.
    with pytest.raises(DestinationForbidden, match="non-public"):
        await resolver.resolve("rebind.example", 443)
    assert [r["host"] for r in await resolver.resolve("rebind.example", 443)] == ["93.184.216.34"]


async def test_guarded_resolver_in_dev_mode_passes_everything() -> None:
    resolver = GuardedResolver(_FixedResolver("127.0.0.1"), policy=DEV_EGRESS)
    assert [r["host"] for r in await resolver.resolve("localhost", 80)] == ["127.0.0.1"]

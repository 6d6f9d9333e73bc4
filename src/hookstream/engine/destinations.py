"""Which URLs and addresses hookstream may call.

A webhook sender is an SSRF machine unless careful: outside dev mode, only
https URLs to public addresses are accepted (an `EgressPolicy` may allow plain
http and name CIDRs that are allowed anyway), and the check is repeated on every
connection by `GuardedResolver`, which refuses any resolved address the policy
does not permit and hands aiohttp only checked addresses (no second lookup).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult

from hookstream.errors import DestinationForbidden, FieldProblem, InvalidInput

MAX_URL_LENGTH = 2048
# IPv6 prefixes that carry an IPv4 address in their last 32 bits: NAT64's
# well-known prefix (RFC 6052) and the deprecated IPv4-compatible form.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215, local use
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Where deliveries may go: built from settings (`Settings.egress`)."""

    allow_private: bool = False  # dev mode: any address, http too
    allow_http: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()  # permitted even when not public

    @property
    def schemes(self) -> tuple[str, ...]:
        """The URL schemes an endpoint may use."""
        return ("http", "https") if self.allow_private or self.allow_http else ("https",)

    def permits(self, address: str) -> bool:
        """True when a connection to `address` (an IP) is allowed."""
        if self.allow_private or is_public_address(address):
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        return any(ip.version == net.version and ip in net for net in self.allowed_networks)


def parse_networks(raw: str) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDRs (`10.0.0.0/8, fd00::/8`); ValueError names a bad one."""
    networks: list[IPNetwork] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not a CIDR such as 10.0.0.0/8") from None
    return tuple(networks)


DEV_EGRESS = EgressPolicy(allow_private=True)
STRICT_EGRESS = EgressPolicy()


def is_public_address(address: str) -> bool:
    """True when `address` is a globally routable unicast IP.

    IPv6 forms that embed an IPv4 address (IPv4-mapped, IPv4-compatible,
    NAT64, 6to4) are judged by the IPv4 address they lead to.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return False
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public_address(str(embedded))
    return ip.is_global and not ip.is_multicast


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):  # not :: or ::1
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def numeric_host(host: str) -> str | None:
    """The IP a numeric host means, in canonical form, or None for a name.

    Besides plain literals, resolvers accept the legacy IPv4 spellings
    (2130706433, 0x7f000001, 0177.0.0.1, 127.1) and a trailing dot; each is
    read the way the resolver would, so none slips past the check as a "name".
    """
    host = host.rstrip(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if host and all(ch in "0123456789abcdefx." for ch in host.lower()):
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_url(url: str, policy: EgressPolicy) -> str:
    """Validate an endpoint URL; return it unchanged or raise InvalidInput.

    Outside dev the scheme must be https (unless the policy allows http) and a
    literal IP host must be permitted; names are resolved and checked by the
    API at registration (`refuse_resolved`) and again at every connection.
    """
    problems: list[FieldProblem] = []
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput([FieldProblem("url", f"at most {MAX_URL_LENGTH} characters")])
    if any(ch in url for ch in "\r\n\t\x00 "):
        raise InvalidInput([FieldProblem("url", "must not contain whitespace or control bytes")])
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise InvalidInput([FieldProblem("url", f"not a valid URL: {exc}")]) from None
    allowed_schemes = policy.schemes
    if parts.scheme not in allowed_schemes:
        problems.append(FieldProblem("url", f"scheme must be {' or '.join(allowed_schemes)}"))
    if not host:
        problems.append(FieldProblem("url", "must name a host"))
    if parts.username is not None or parts.password is not None:
        problems.append(FieldProblem("url", "must not carry credentials (user:pass@)"))
    if host and not policy.allow_private:
        name = host.rstrip(".")
        numeric = numeric_host(host)
        if numeric is None and (
            name == "localhost" or name.endswith((".localhost", ".local", ".internal"))
        ):
            problems.append(FieldProblem("url", "must not point at a local or internal name"))
        elif numeric is not None and not policy.permits(numeric):
            problems.append(
                FieldProblem("url", f"must not point at a private or reserved address ({numeric})")
            )
    if problems:
        raise InvalidInput(problems)
    return url


class GuardedResolver(AbstractResolver):
    """Wraps aiohttp's resolver and drops every address the policy does not permit.

    Raises DestinationForbidden when nothing public remains, so the attempt fails
    with a clear error class instead of reaching an internal service.
    """

    def __init__(self, inner: AbstractResolver, policy: EgressPolicy) -> None:
        self._inner = inner
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve `host` and keep only the addresses policy allows."""
        results = await self._inner.resolve(host, port, family)
        if self._policy.allow_private:
            return results
        permitted = [r for r in results if self._policy.permits(r["host"])]
        if not permitted:
            raise DestinationForbidden(f"{host} resolves only to non-public addresses")
        return permitted

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

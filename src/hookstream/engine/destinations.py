"""Which URLs and addresses hookstream may call.

A webhook sender is an SSRF machine unless careful: outside dev mode, only
https URLs to public addresses are accepted, and the check is repeated on every
connection by `GuardedResolver`, which refuses any resolved address that is not
public and hands aiohttp only checked addresses (no second lookup).
"""

from __future__ import annotations

import ipaddress
import socket
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


def check_url(url: str, *, allow_private: bool) -> str:
    """Validate an endpoint URL; return it unchanged or raise InvalidInput.

    Outside dev (`allow_private` False) the scheme must be https and a literal
    IP host must be public; names are checked again at connect time.
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
    allowed_schemes = ("http", "https") if allow_private else ("https",)
    if parts.scheme not in allowed_schemes:
        problems.append(FieldProblem("url", f"scheme must be {' or '.join(allowed_schemes)}"))
    if not host:
        problems.append(FieldProblem("url", "must name a host"))
    if parts.username is not None or parts.password is not None:
        problems.append(FieldProblem("url", "must not carry credentials (user:pass@)"))
    if host and not allow_private:
        name = host.rstrip(".")
        numeric = numeric_host(host)
        if name == "localhost" or name.endswith((".localhost", ".local", ".internal")):
            problems.append(FieldProblem("url", "must not point at a local or internal name"))
        elif numeric is not None and not is_public_address(numeric):
            problems.append(
                FieldProblem("url", f"must not point at a private or reserved address ({numeric})")
            )
    if problems:
        raise InvalidInput(problems)
    return url


class GuardedResolver(AbstractResolver):
    """Wraps aiohttp's resolver and drops every non-public address unless allowed.

    Raises DestinationForbidden when nothing public remains, so the attempt fails
    with a clear error class instead of reaching an internal service.
    """

    def __init__(self, inner: AbstractResolver, *, allow_private: bool) -> None:
        self._inner = inner
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve `host` and keep only the addresses policy allows."""
        results = await self._inner.resolve(host, port, family)
        if self._allow_private:
            return results
        public = [r for r in results if is_public_address(r["host"])]
        if not public:
            raise DestinationForbidden(f"{host} resolves only to non-public addresses")
        return public

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

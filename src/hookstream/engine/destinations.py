"""Which URLs hookstream may call, decided on the host the HTTP client will connect to.

A webhook sender is an SSRF machine unless careful. The check and the client
must agree on the host, so there is one canonical form: the URL as yarl (the
client's own parser) normalises it, UTS #46 mapping included, whose ASCII
`raw_host` is what aiohttp connects to. `destination()` computes it and judges
that host; registration, PATCH and every attempt call it, and the sender
connects with the very URL object it returns. A host that does not
canonicalise to a valid DNS name or IP address is refused.

Outside dev mode only https URLs to public addresses are accepted (an
`EgressPolicy` may allow plain http and name CIDRs that are allowed anyway);
names are resolved and checked again on every connection by the guarded
resolver (`hookstream.egress`).
"""

from __future__ import annotations

import ipaddress
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import NoReturn

from yarl import URL

from hookstream.engine.addresses import (
    IPNetwork,
    blocked_because,
    ends_in_number,
    is_public_address,
    legacy_ipv4,
)
from hookstream.errors import FieldProblem, InvalidInput

MAX_URL_LENGTH = 2048
MAX_HOST_LENGTH = 253
MAX_LABEL_LENGTH = 63
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa")


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


@dataclass(frozen=True, slots=True)
class Destination:
    """An endpoint URL in the one form both the check and the HTTP client use."""

    url: URL  # what the sender passes to aiohttp, unparsed again
    host: str  # the ASCII host it connects to (IPv6 without brackets)
    address: str | None  # the IP the host means when it is numeric, canonical


def numeric_host(host: str) -> str | None:
    """The IP a numeric host means, in canonical form, or None for a name.

    Besides plain literals, resolvers accept the legacy IPv4 spellings
    (2130706433, 0x7f000001, 0177.0.0.1, 127.1) and a trailing dot; each is
    read the way the resolver would, so none slips past the check as a "name".
    """
    host = host.removesuffix(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    return legacy_ipv4(host)


def check_url(url: str, policy: EgressPolicy) -> str:
    """Validate an endpoint URL; return it unchanged or raise InvalidInput naming `url`."""
    destination(url, policy)
    return url


@lru_cache(maxsize=8192)
def destination(url: str, policy: EgressPolicy) -> Destination:
    """The canonical destination of `url`, judged by `policy`; InvalidInput if refused.

    Cached: every attempt calls it, and the answer depends on nothing else.
    """
    if len(url) > MAX_URL_LENGTH:
        _refuse(f"at most {MAX_URL_LENGTH} characters")
    if any(_is_control_or_space(ch) for ch in url):
        _refuse("must not contain whitespace or control bytes")
    try:
        parsed = URL(url)
        host = parsed.raw_host
        _ = parsed.port  # a bad port raises here
    except (ValueError, UnicodeError) as exc:
        _refuse(f"not a valid URL: {exc}")
    problems: list[str] = []
    if parsed.scheme not in policy.schemes:
        problems.append(f"scheme must be {' or '.join(policy.schemes)}")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        problems.append("must not carry credentials (user:pass@)")
    if not host:
        _refuse(*problems, "must name a host")
    address, problem = _judge_host(host, policy)
    if problem:
        problems.append(problem)
    if problems:
        _refuse(*problems)
    return Destination(url=parsed, host=host, address=address)


def _judge_host(host: str, policy: EgressPolicy) -> tuple[str | None, str | None]:
    """(the IP a numeric host means, the problem with the host or None)."""
    if not host.isascii():
        return None, "the host does not convert to an ASCII name (IDNA)"
    if ":" in host:  # an IPv6 literal; yarl has checked its syntax
        literal = str(ipaddress.ip_address(host.split("%", 1)[0]))
        problem = _address_problem(literal, policy)
        if problem is None and "%" in host and not policy.allow_private:
            problem = "must not carry an IPv6 zone id"
        return literal, problem
    if "%" in host:
        return None, "the host must not be percent-encoded"
    name = host.removesuffix(".")
    problem = _name_problem(name)
    if problem:
        return None, problem
    if ends_in_number(name):
        address = legacy_ipv4(name)
        if address is None:
            return None, f"{host} ends in a number but is not an IPv4 address"
        return address, _address_problem(address, policy)
    if not policy.allow_private and (name == "localhost" or name.endswith(_INTERNAL_SUFFIXES)):
        return None, "must not point at a local or internal name"
    return None, None


def _name_problem(name: str) -> str | None:
    if len(name) > MAX_HOST_LENGTH:
        return f"the host has more than {MAX_HOST_LENGTH} characters"
    for label in name.split("."):
        if not label:
            return "the host has an empty label (two dots in a row, or a leading dot)"
        if len(label) > MAX_LABEL_LENGTH:
            return f"a label of the host has more than {MAX_LABEL_LENGTH} characters"
        if not all(ch in _NAME_CHARS for ch in label):
            return "the host has characters a DNS name cannot have"
    return None


def _address_problem(address: str, policy: EgressPolicy) -> str | None:
    if policy.permits(address):
        return None
    why = blocked_because(address) or "not permitted"
    detail = f"{address} is not a public address: {why}"
    return f"must not point at a private or reserved address ({detail})"


def _is_control_or_space(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Zs")


def _refuse(*messages: str) -> NoReturn:
    raise InvalidInput([FieldProblem("url", message) for message in messages])

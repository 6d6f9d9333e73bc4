"""Which IP addresses a webhook may reach: the blocklist, and how numeric hosts read.

The blocklist is the IANA special-purpose address registries (IPv4 and IPv6),
every entry that is not globally reachable, plus multicast and the cloud
providers' metadata and host addresses that sit in public space. It is
stricter than the registries in one way: a block is refused whole even where
the registry marks a few anycast addresses inside it as reachable (192.0.0.9,
2001:1::1, ...); no webhook receiver lives there.

IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64,
6to4) are judged by the IPv4 address they lead to; forms whose embedded
address cannot be judged (Teredo, IPv4-translated) are refused.
"""

from __future__ import annotations

import ipaddress
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# IANA IPv4 Special-Purpose Address Registry, entries not globally reachable.
IPV4_SPECIAL: Final = (
    ("0.0.0.0/8", "this network (RFC 791)"),
    ("10.0.0.0/8", "private use (RFC 1918)"),
    ("100.64.0.0/10", "shared address space, CGNAT (RFC 6598)"),
    ("127.0.0.0/8", "loopback (RFC 1122)"),
    ("169.254.0.0/16", "link local (RFC 3927)"),
    ("172.16.0.0/12", "private use (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.0.2.0/24", "documentation, TEST-NET-1 (RFC 5737)"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast (RFC 7526)"),
    ("192.168.0.0/16", "private use (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation, TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "documentation, TEST-NET-3 (RFC 5737)"),
    ("240.0.0.0/4", "reserved (RFC 1112)"),
    ("255.255.255.255/32", "limited broadcast (RFC 919)"),
    ("224.0.0.0/4", "multicast (RFC 5771)"),
)
# IANA IPv6 Special-Purpose Address Registry, entries not globally reachable.
# ::ffff:0:0/96, ::/96 (but :: and ::1), 64:ff9b::/96 and 2002::/16 carry an
# IPv4 address and are judged by it instead.
IPV6_SPECIAL: Final = (
    ("::/128", "unspecified (RFC 4291)"),
    ("::1/128", "loopback (RFC 4291)"),
    ("::ffff:0:0:0/96", "IPv4-translated (RFC 2765)"),
    ("64:ff9b:1::/48", "IPv4-IPv6 translation, local use (RFC 8215)"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("100:0:0:1::/64", "dummy IPv6 prefix (RFC 9780)"),
    ("2001::/23", "IETF protocol assignments, Teredo included (RFC 2928, RFC 4380)"),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("3fff::/20", "documentation (RFC 9637)"),
    ("5f00::/16", "segment routing SIDs (RFC 9602)"),
    ("fc00::/7", "unique local (RFC 4193)"),
    ("fe80::/10", "link-local unicast (RFC 4291)"),
    ("fec0::/10", "deprecated site-local (RFC 3879)"),
    ("ff00::/8", "multicast (RFC 4291)"),
)
# Metadata and host services that answer on addresses outside the blocks above
# (169.254.169.254, 100.100.100.200 and fd00:ec2::254 are inside them already).
CLOUD_HOSTS: Final = (("168.63.129.16/32", "Azure host endpoint (WireServer)"),)

BLOCKED: Final[tuple[tuple[IPNetwork, str], ...]] = tuple(
    (ipaddress.ip_network(cidr), why) for cidr, why in (*IPV4_SPECIAL, *IPV6_SPECIAL, *CLOUD_HOSTS)
)

_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052, well-known prefix
_IPV4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")


def blocked_because(address: str) -> str | None:
    """Why `address` (an IP, maybe with a zone) may not be reached; None when it may.

    A string that is not an IP address is refused too.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner = blocked_because(str(embedded))
            return None if inner is None else f"carries {embedded}: {inner}"
    matches = [(net, why) for net, why in BLOCKED if ip.version == net.version and ip in net]
    # The most specific block names the reason (255.255.255.255 is inside 240.0.0.0/4).
    return max(matches, key=lambda match: match[0].prefixlen)[1] if matches else None


def is_public_address(address: str) -> bool:
    """True when `address` is a globally reachable unicast IP (not on the blocklist)."""
    return blocked_because(address) is None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):  # not :: or ::1
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def legacy_ipv4(host: str) -> str | None:
    """The IPv4 address a resolver reads `host` as, in dotted form; None if not numeric.

    Resolvers (inet_aton) and browsers (WHATWG) accept one to four parts, each
    decimal, 0x hex or 0 octal, the last filling the remaining bytes:
    2130706433, 0x7f000001, 0177.0.0.1, 127.1 all mean 127.0.0.1.
    """
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        value = _ipv4_number(part)
        if value is None:
            return None
        values.append(value)
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        return None
    number = last
    for i, value in enumerate(head):
        number += value << (8 * (3 - i))
    return str(ipaddress.IPv4Address(number))


def ends_in_number(host: str) -> bool:
    """True when the last label is numeric (WHATWG): then the host must be an IPv4 address."""
    last = host.rstrip(".").rsplit(".", 1)[-1]
    return _ipv4_number(last) is not None


def _ipv4_number(part: str) -> int | None:
    lowered = part.lower()
    if lowered.startswith("0x"):
        digits = lowered[2:]
        return int(digits, 16) if digits and _only(digits, _HEX) else (0 if not digits else None)
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8) if _only(part, _OCTAL) else None
    return int(part) if part and _only(part, _DECIMAL) else None


_DECIMAL: Final = frozenset("0123456789")
_OCTAL: Final = frozenset("01234567")
_HEX: Final = frozenset("0123456789abcdef")


def _only(text: str, allowed: frozenset[str]) -> bool:
    return all(ch in allowed for ch in text)

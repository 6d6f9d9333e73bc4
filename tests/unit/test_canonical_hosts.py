"""The SSRF check judges the host the HTTP client will connect to.

Scenario: an attacker spells an internal address so that the check and the
client disagree (Unicode digits and dots that UTS #46 maps to ASCII, mixed
scripts, trailing dots, percent-encoding, zone ids, control bytes). Every
spelling either canonicalises to the address the client would reach, and is
judged as that address, or is refused as a host that does not canonicalise.
"""

from __future__ import annotations

import sys
import unicodedata

import idna
import pytest
from yarl import URL

from hookstream.engine.addresses import blocked_because, legacy_ipv4
from hookstream.engine.destinations import (
    DEV_EGRESS,
    STRICT_EGRESS,
    EgressPolicy,
    check_url,
    destination,
)
from hookstream.errors import InvalidInput


def _ascii_look_alikes() -> dict[str, str]:
    """Code points that UTS #46 (the client's mapping) turns into ASCII digits and dots.

    Candidates are those whose compatibility form is digits and dots; UTS #46
    is then asked, since it maps most of them but not all (U+FE19 it refuses).
    """
    found: dict[str, str] = {}
    for code in range(0x80, sys.maxunicode + 1):
        ch = chr(code)
        folded = unicodedata.normalize("NFKC", ch)
        if not folded or folded == ch or not all(c in "0123456789." for c in folded):
            continue
        try:
            mapped = idna.uts46_remap(ch, std3_rules=False, transitional=False)
        except idna.IDNAError:
            continue
        if mapped == folded:
            found[ch] = folded
    return found


LOOK_ALIKES = _ascii_look_alikes()
# The label separators of IDNA (UTS #46 maps each to "."); NFKC maps only some.
DOTS = ["\u3002", "\uff0e", "\uff61"]


def test_there_are_many_look_alikes_to_try() -> None:
    # Fullwidth, mathematical, segmented (U+1FBF0..9), circled, parenthesised ...
    assert len(LOOK_ALIKES) > 100
    assert "\U0001fbf7" in LOOK_ALIKES
    assert "\uff17" in LOOK_ALIKES


def _private_spelling(ch: str, folded: str) -> str:
    """A host whose ASCII reading is in 10.0.0.0/8, spelled with `ch`."""
    if folded == ".":
        return f"10{ch}0.0.1"
    if folded.startswith("."):
        return f"10.0{ch}1"
    return f"10.{ch}" + ("0.1" if folded.endswith(".") else ".0.1")


@pytest.mark.parametrize("ch", sorted(LOOK_ALIKES), ids=lambda c: f"U+{ord(c):04X}")
def test_every_unicode_digit_or_dot_spelling_of_a_private_address_is_refused(ch: str) -> None:
    host = _private_spelling(ch, LOOK_ALIKES[ch])
    with pytest.raises(InvalidInput) as refused:
        check_url(f"https://{host}/hook", STRICT_EGRESS)
    assert refused.value.problems[0].field == "url"
    # Where the client would read an address, the refusal names that address.
    try:
        client_host = URL(f"https://{host}/hook").raw_host or ""
    except (ValueError, UnicodeError):
        return
    reached = legacy_ipv4(client_host.rstrip("."))
    if reached is not None:
        assert f"({reached} is not a public address" in str(refused.value)


@pytest.mark.parametrize("dot", DOTS, ids=lambda c: f"U+{ord(c):04X}")
def test_ideographic_and_fullwidth_dots_are_dots(dot: str) -> None:
    for host in (f"127{dot}0{dot}0{dot}1", f"169.254.169{dot}254", f"10.0.0.1{dot}"):
        with pytest.raises(InvalidInput, match="not a public address"):
            check_url(f"https://{host}/", STRICT_EGRESS)


@pytest.mark.parametrize(
    "host",
    [
        "\U0001fbf1\U0001fbf2\U0001fbf7.0.0.1",  # segmented digits, the reported case
        "\uff11\uff12\uff17.\uff10.\uff10.\uff11",  # fullwidth
        "\u2460\u2461\u2466.0.0.1",  # circled
        "\U0001d7cf\U0001d7d0\U0001d7d5.0.0.1",  # mathematical bold
        "1\uff16\uff19.\U0001fbf2\U0001fbf5\U0001fbf4.169.254",  # mixed scripts: 169.254.169.254
        "\U0001fbf1\U0001fbf6\U0001fbf9.254.169.254",  # segmented metadata address
        "127.0.0.1.",  # trailing dot
        "127\u30020\u30020\u30021\u3002",  # trailing ideographic dot
        "0x7f.1",
        "2130706433",
        "0177.0.0.01",
        "[::1]",
        "[::ffff:7f00:1]",
        "[::ffff:0:7f00:1]",  # IPv4-translated
        "[fe80::1%25eth0]",  # zone id on link-local
        "[::1%25lo]",
        "168.63.129.16",  # Azure host endpoint
    ],
)
def test_internal_spellings_are_refused_by_address(host: str) -> None:
    with pytest.raises(InvalidInput, match=r"not a public address|zone id"):
        check_url(f"https://{host}/hook", STRICT_EGRESS)


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("%31%32%37.0.0.1", "percent-encoded"),
        ("exa%6dple.com", "percent-encoded"),
        ("a" * 64 + ".example.com", "more than 63 characters"),
        ("a..example.com", "empty label"),
        (".example.com", "empty label"),
        ("example.com..", "empty label"),
        (("a" * 60 + ".") * 5 + "com", "more than 253 characters"),
        ("999.0.0.1", "not an IPv4 address"),
        ("1.2.3.4.5", "not an IPv4 address"),
        ("08.0.0.1", "not an IPv4 address"),
        ("hooks.example.com.0x", "not an IPv4 address"),
        ("ex!ample.com", "cannot have"),
        ("ex*ample.com", "cannot have"),
        ("localhost", "local or internal"),
        ("api.localhost", "local or internal"),
        ("router.home.arpa", "local or internal"),
        ("metadata.google.internal", "local or internal"),
    ],
)
def test_hosts_that_do_not_canonicalise_are_refused(host: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        check_url(f"https://{host}/hook", STRICT_EGRESS)


@pytest.mark.parametrize(
    "url",
    [
        "https://exa\x0bmple.com/",
        "https://example.com/\x7f",
        "https://example.com/\x00",
        "https://exa\u200bmple.com/",  # zero-width space
        "https://example.com/\u202e",  # right-to-left override
        "https://example.com\u3000/",  # ideographic space
        "https://example.com/\x85",  # C1 next line
        "https://example.com/a b",
    ],
)
def test_control_bytes_and_spaces_are_refused_anywhere(url: str) -> None:
    with pytest.raises(InvalidInput, match="whitespace or control bytes"):
        check_url(url, STRICT_EGRESS)


def test_a_public_unicode_name_is_kept_and_connected_to_in_its_ascii_form() -> None:
    url = "https://b\u00fccher.example/hook"
    assert check_url(url, STRICT_EGRESS) == url  # stored as given, never changed
    target = destination(url, STRICT_EGRESS)
    assert target.host == "xn--bcher-kva.example"
    assert target.url.raw_host == target.host
    assert target.address is None


def test_the_destination_is_the_url_the_client_sends_to() -> None:
    target = destination("https://\uff18.\uff18.\uff18.\uff18:8443/in?x=1", STRICT_EGRESS)
    assert (target.host, target.address) == ("8.8.8.8", "8.8.8.8")
    assert str(target.url) == "https://8.8.8.8:8443/in?x=1"


def test_dev_mode_allows_loopback_spellings_but_still_needs_a_valid_host() -> None:
    assert check_url("http://\uff11\uff12\uff17.0.0.1:9000/hook", DEV_EGRESS)
    assert check_url("http://[fe80::1%25eth0]:9000/hook", DEV_EGRESS)
    with pytest.raises(InvalidInput, match="percent-encoded"):
        check_url("http://%31%32%37.0.0.1/", DEV_EGRESS)
    with pytest.raises(InvalidInput, match="empty label"):
        check_url("http://a..b/", DEV_EGRESS)


def test_an_allowlisted_network_is_judged_on_the_canonical_address() -> None:
    import ipaddress

    policy = EgressPolicy(allowed_networks=(ipaddress.ip_network("10.1.0.0/16"),))
    assert check_url("https://10.\uff11.2.3/hook", policy)
    with pytest.raises(InvalidInput, match=r"10\.2\.2\.3"):
        check_url("https://10.\uff12.2.3/hook", policy)


# One address inside every blocked range, written out by hand (not read from the table).
BLOCKED_SAMPLES = [
    ("0.1.2.3", "this network"),
    ("10.200.0.1", "private use"),
    ("100.64.0.1", "shared address space"),
    ("100.100.100.200", "shared address space"),  # Alibaba metadata
    ("127.255.255.254", "loopback"),
    ("169.254.169.254", "link local"),  # AWS, GCP, Azure, OCI metadata
    ("169.254.170.2", "link local"),  # ECS task metadata
    ("172.31.255.255", "private use"),
    ("192.0.0.8", "IETF protocol assignments"),
    ("192.0.0.170", "IETF protocol assignments"),
    ("192.0.2.10", "TEST-NET-1"),
    ("192.88.99.1", "6to4 relay"),
    ("192.168.255.1", "private use"),
    ("198.19.0.1", "benchmarking"),
    ("198.51.100.7", "TEST-NET-2"),
    ("203.0.113.9", "TEST-NET-3"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "limited broadcast"),
    ("224.0.0.251", "multicast"),
    ("239.255.255.250", "multicast"),
    ("168.63.129.16", "Azure"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::ffff:0:a00:1", "IPv4-translated"),
    ("64:ff9b:1::a", "local use"),
    ("100::1", "discard-only"),
    ("100:0:0:1::1", "dummy"),
    ("2001::1", "Teredo"),
    ("2001:2::1", "IETF protocol assignments"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("5f00::1", "segment routing"),
    ("fd00:ec2::254", "unique local"),  # AWS IPv6 metadata
    ("fc00::1", "unique local"),
    ("fe80::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("::ffff:169.254.169.254", "link local"),  # IPv4-mapped
    ("::10.0.0.1", "private use"),  # IPv4-compatible
    ("64:ff9b::a9fe:a9fe", "link local"),  # NAT64
    ("2002:c0a8:1::1", "private use"),  # 6to4 of 192.168.0.1
]


@pytest.mark.parametrize(("address", "why"), BLOCKED_SAMPLES)
def test_every_special_purpose_range_is_blocked(address: str, why: str) -> None:
    reason = blocked_because(address)
    assert reason is not None
    assert why in reason
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(InvalidInput, match="not a public address"):
        check_url(f"https://{host}/hook", STRICT_EGRESS)


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700::1111",
        "64:ff9b::808:808",
        "::ffff:1.1.1.1",
    ],
)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_because(address) is None

"""The SSRF guard refuses every non-public address unless allow-listed."""

from __future__ import annotations

import ipaddress

import pytest

from kimonaudit.errors import InvalidInput
from kimonaudit.sinks import ssrf

REFUSED = [
    "127.0.0.1", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "fe80::1", "fc00::1", "100.64.0.1", "0.0.0.0", "::", "224.0.0.1", "239.1.1.1",
    "ff02::1", "ff0e::1", "192.0.2.1", "198.18.0.1", "240.0.0.1", "255.255.255.255",
    "::ffff:127.0.0.1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "2001:db8::1",
]  # fmt: skip
ALLOWED = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("ip", REFUSED)
def test_special_addresses_are_refused(ip: str) -> None:
    """Loopback, private, link-local, multicast, reserved... are refused."""
    assert ssrf.refusal(ipaddress.ip_address(ip)) is not None
    with pytest.raises(ssrf.DestinationRefused, match="refused"):
        ssrf.check_host(ip, 443)


@pytest.mark.parametrize("ip", ALLOWED)
def test_public_addresses_pass(ip: str) -> None:
    assert ssrf.refusal(ipaddress.ip_address(ip)) is None


def test_allowlist_admits_ranges() -> None:
    """KIMONAUDIT_DESTINATION_ALLOWLIST CIDRs admit what they cover, no more."""
    allow = ssrf.parse_allowlist("127.0.0.0/8, ::1/128")
    assert ssrf.check_host("127.0.0.1", 80, allow) == "127.0.0.1"
    assert ssrf.check_host("[::1]", 80, allow) == "::1"
    with pytest.raises(ssrf.DestinationRefused):
        ssrf.check_host("10.0.0.1", 80, allow)
    with pytest.raises(InvalidInput, match="not a CIDR"):
        ssrf.parse_allowlist("127.0.0.0/8,nonsense")


def test_names_are_judged_by_every_address() -> None:
    """A name with one private address among public ones is refused (the
    resolver is what a rebinding attacker controls)."""

    def resolver(host: str, port: int) -> list[str]:
        return {"good.test": ["8.8.8.8"], "mixed.test": ["8.8.4.4", "10.0.0.7"]}[host]

    assert ssrf.check_host("good.test", 443, resolve=resolver) == "8.8.8.8"
    with pytest.raises(ssrf.DestinationRefused, match=r"10\.0\.0\.7"):
        ssrf.check_host("mixed.test", 443, resolve=resolver)


def test_localhost_resolves_and_is_refused() -> None:
    """The system resolver is used for names: localhost is loopback."""
    with pytest.raises(ssrf.DestinationRefused, match="loopback"):
        ssrf.check_host("localhost", 80)


def test_hosts_only_resolution_makes_no_dns_query(tmp_path) -> None:
    """KIMONAUDIT_DESTINATION_RESOLVE=hosts: names come from the hosts file
    alone; anything else is an error, not a DNS lookup."""
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost receiver.test # comment\n8.8.8.8 public.test\n")
    assert ssrf.hosts_resolver("Receiver.TEST", 80, str(hosts)) == ["127.0.0.1"]
    with pytest.raises(InvalidInput, match="not in"):
        ssrf.hosts_resolver("example.com", 443, str(hosts))
    from kimonaudit.sinks import settings

    assert settings.resolver("hosts") is ssrf.hosts_resolver
    assert settings.resolver("dns") is ssrf.system_resolver

"""The SSRF guard: a destination may only reach public addresses.

A host is resolved and every address it resolves to must be global unicast:
loopback, private (RFC 1918, ULA), shared (100.64/10), link-local,
multicast, unspecified, documentation, benchmarking, reserved and other
special ranges are refused, IPv4 embedded in IPv6 (mapped, NAT64, 6to4)
judged as the IPv4 address. The operator may allow ranges with
``KIMONAUDIT_DESTINATION_ALLOWLIST`` (comma-separated CIDRs). The check
runs when a destination is created and again before every delivery, and a
delivery connects to the address that was checked (DNS rebinding gets
nowhere). Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence

from kimonaudit.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]


class DestinationRefused(InvalidInput):
    """A destination's host resolves to an address the guard refuses."""


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_6TO4 = ipaddress.ip_network("2002::/16")


def parse_allowlist(text: str) -> tuple[IPNetwork, ...]:
    """``"127.0.0.0/8, ::1/128"`` -> networks; InvalidInput naming a bad one."""
    nets: list[IPNetwork] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise InvalidInput(
                f"{part!r} is not a CIDR range", field="KIMONAUDIT_DESTINATION_ALLOWLIST"
            ) from None
    return tuple(nets)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def refusal(ip: IPAddress, allow: Sequence[IPNetwork] = ()) -> str | None:
    """Why `ip` may not be reached (None if it may)."""
    if any(ip.version == net.version and ip in net for net in allow):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            why = refusal(inner, allow)
            return None if why is None else f"{why} (embedded in {ip})"
    for test, name in (
        (ip.is_loopback, "loopback"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
    ):
        if test:
            return f"{ip} is a {name} address"
    if not ip.is_global:
        return f"{ip} is in a special-purpose range"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InvalidInput(f"cannot resolve {host!r}: {exc.strerror}", field="url") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def hosts_resolver(host: str, port: int, path: str = "/etc/hosts") -> list[str]:
    """Addresses of `host` from the hosts file only (no DNS query)."""
    found: list[str] = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) >= 2 and host.lower() in (n.lower() for n in fields[1:]):
                    found.append(fields[0])
    except OSError:
        pass
    if not found:
        raise InvalidInput(
            f"cannot resolve {host!r}: not in {path} (KIMONAUDIT_DESTINATION_RESOLVE=hosts)",
            field="url",
        )
    return list(dict.fromkeys(found))


def check_host(
    host: str,
    port: int,
    allow: Sequence[IPNetwork] = (),
    resolve: Resolver = system_resolver,
) -> str:
    """Resolve `host`; Forbidden if any address it has is refused, else the
    first address (the one to connect to)."""
    try:
        addresses = [ipaddress.ip_address(host.strip("[]").split("%", 1)[0])]
    except ValueError:
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolve(host, port)]
    if not addresses:
        raise InvalidInput(f"{host!r} resolves to no address", field="url")
    for ip in addresses:
        why = refusal(ip, allow)
        if why is not None:
            raise DestinationRefused(
                f"{host!r} refused: {why}; an operator can allow it with "
                "KIMONAUDIT_DESTINATION_ALLOWLIST",
                field="url",
            )
    return str(addresses[0])

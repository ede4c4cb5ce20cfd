"""IP addresses as the stores keep them: 16 bytes, IPv4 mapped into IPv6.

One width for both families lets one byte-wise comparison answer "is this
address in that network" for IPv4 and IPv6 alike (``ip BETWEEN low AND
high``), on SQLite blobs and PostgreSQL ``bytea`` the same way.
"""

from __future__ import annotations

import ipaddress

from kimonaudit.errors import InvalidInput

# ::ffff:0:0/96 (RFC 4291 section 2.5.5.2): where IPv4 addresses live.
_V4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"


def _v4_mapped(address: ipaddress.IPv4Address) -> bytes:
    return _V4_MAPPED_PREFIX + address.packed


def ip_to_bytes(text: str) -> bytes:
    """The 16-byte form of an IPv4 or IPv6 address (IPv4 as ``::ffff:a.b.c.d``).

    A zone index (``fe80::1%eth0``) is dropped: it only means something on
    the host that logged it.
    """
    if not isinstance(text, str):
        raise InvalidInput(f"not an IP address: {text!r}", field="ip")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidInput(f"not an IP address: {text!r}", field="ip") from None
    if isinstance(address, ipaddress.IPv4Address):
        return _v4_mapped(address)
    return address.packed


def bytes_to_ip(b: bytes) -> str:
    """The text form of a stored address; IPv4-mapped addresses print as IPv4."""
    if not isinstance(b, bytes | bytearray | memoryview) or len(b) != 16:
        raise InvalidInput("a stored IP address must be 16 bytes", field="ip")
    address = ipaddress.IPv6Address(bytes(b))
    mapped = address.ipv4_mapped
    return str(mapped) if mapped is not None else str(address)


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(text, str):
        raise InvalidInput(f"not an IP network: {text!r}", field="ip")
    try:
        # Host bits are allowed (10.1.2.3/8 means 10.0.0.0/8): people paste
        # an address they saw and add a prefix length.
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidInput(f"not an IP address or CIDR network: {text!r}", field="ip") from None


def cidr_bounds(text: str) -> tuple[bytes, bytes]:
    """Inclusive lowest and highest 16-byte addresses of a CIDR network.

    An IPv4 network is mapped into ``::ffff:0:0/96``; a bare address is its
    own /32 or /128.
    """
    network = _network(text)
    if isinstance(network, ipaddress.IPv4Network):
        return _v4_mapped(network.network_address), _v4_mapped(network.broadcast_address)
    return network.network_address.packed, network.broadcast_address.packed


def canonical_ip(text: str) -> str:
    """One spelling per address or network, so equal filters compare equal.

    Addresses print as :func:`bytes_to_ip` does; networks print their network
    address and prefix length, with an IPv4-mapped IPv6 network shown as IPv4.
    """
    if "/" not in text:
        return bytes_to_ip(ip_to_bytes(text))
    network = _network(text)
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return f"{mapped}/{network.prefixlen - 96}"
    return str(network)

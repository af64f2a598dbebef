"""Outbound requests to user-given URLs (webhooks) go only to public addresses.

A webhook URL is resolved with DNS and refused when any address it resolves to is loopback,
private (RFC 1918, unique-local), link-local (169.254.0.0/16 holds the cloud metadata services),
multicast, reserved or unspecified, unless it lies in an operator allow-list of networks
(`PARE_WEBHOOK_ALLOW_NETWORKS`, a JSON list of CIDRs, empty by default). The check runs at submit
and again at delivery, and the delivery connects to the very address that was checked (the host
name travels in the Host header and as the TLS server name), so a DNS answer that changes between
the check and the connection (rebinding) cannot redirect the request. Redirects are not followed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from app.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (`url`, the address in place of the name) and the name."""

    url: str
    host: str
    address: str


def _forbidden(address: IPAddress) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for test, why in (
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local (cloud metadata)"),
        (address.is_private, "private"),
        (address.is_multicast, "multicast"),
        (address.is_reserved, "reserved"),
        (address.is_unspecified, "unspecified"),
    ):
        if test:
            return why
    return None


def _allowed(address: IPAddress, networks: Sequence[str]) -> bool:
    return any(address in ipaddress.ip_network(net, strict=False) for net in networks)


def check_url(url: str, *, allow_networks: Sequence[str], field: str = "webhook.url") -> Target:
    """Resolve `url`'s host and refuse it unless every address is public or allow-listed."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidRequest("a webhook URL is http(s)://host[:port]/path", field=field)
    if parts.username or parts.password:
        raise InvalidRequest("a webhook URL may not carry credentials", field=field)
    if host in METADATA_HOSTS:
        raise InvalidRequest(f"webhook host {host!r} is a metadata service", field=field)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise InvalidRequest(f"webhook host {host!r} does not resolve", field=field) from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    for address in addresses:
        why = _forbidden(address)
        if why and not _allowed(address, allow_networks):
            raise InvalidRequest(
                f"webhook host {host!r} resolves to a {why} address; webhooks go to public addresses "
                "only (an operator may allow networks with PARE_WEBHOOK_ALLOW_NETWORKS)",
                field=field,
            )
    first = str(addresses[0])
    netloc = f"[{first}]" if ":" in first else first
    if parts.port:
        netloc += f":{parts.port}"
    return Target(urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), parts.netloc, first)

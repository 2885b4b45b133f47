"""Where webhooks may be sent: the allowlist, checked at creation and again before each send.

A webhook URL is chosen by a tenant, so sending to it is a server-side
request on their behalf. Without these checks a tenant could point the farm
at its own internals (the database, the Ray dashboard, a cloud metadata
service). At creation the URL is checked as written; before every attempt
the host is resolved, every address it resolves to is checked, and the
request goes to the checked address itself, so a DNS answer that changes
between check and connect (DNS rebinding) cannot redirect it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field
from typing import Any

import httpx

from farm.settings import WebhookSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_LABEL = r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?"
_HOST_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
PRIVATE_REFUSED = "loopback/private addresses are not allowed"


class TargetRefused(ValueError):
    """The URL may not receive webhooks; the message says why, for the API and the attempt log."""


@dataclass(frozen=True)
class Target:
    """A checked destination: connect to ``url`` (an IP), present ``host`` to the receiver."""

    url: httpx.URL
    host_header: str
    extensions: dict[str, Any] = field(default_factory=dict)


def check_url(url: str, settings: WebhookSettings) -> httpx.URL:
    """Parse and check a URL as written (no DNS); raise TargetRefused with the reason."""
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError, TypeError):
        raise TargetRefused("not a valid URL") from None
    if parsed.scheme not in ("http", "https"):
        raise TargetRefused("only http and https URLs are allowed")
    if parsed.userinfo:
        raise TargetRefused("credentials in the URL are not allowed")
    if port is not None and not 0 < port < 65536:
        raise TargetRefused("the port must be between 1 and 65535")
    host = host_of(parsed)
    if not host:
        raise TargetRefused("the URL has no host")
    ip = literal_ip(host)
    if ip is None and not _HOST_RE.match(host):
        raise TargetRefused(f"not a valid host name: {host!r}")
    if settings.allowed_hosts and not host_allowed(host, settings.allowed_hosts):
        raise TargetRefused(f"host {host} is not in the allowed hosts")
    if ip is not None:
        refuse_address(ip, settings)
    elif not settings.allow_private and (host == "localhost" or host.endswith(".localhost")):
        raise TargetRefused(PRIVATE_REFUSED)
    return parsed


def resolve(url: str, settings: WebhookSettings) -> Target:
    """Check the URL, resolve its host and check every address; OSError if it does not resolve."""
    parsed = check_url(url, settings)
    host = host_of(parsed)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(_unmapped(ipaddress.ip_address(info[4][0].split("%", 1)[0])) for info in infos))
    if not addresses:
        raise OSError(f"{host} has no address")
    for ip in addresses:
        try:
            refuse_address(ip, settings)
        except TargetRefused as exc:
            raise TargetRefused(f"{host} resolves to {ip}: {exc}") from None
    pinned = parsed.copy_with(host=str(addresses[0]))
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    return Target(url=pinned, host_header=parsed.netloc.decode("ascii"), extensions=extensions)


def host_of(url: httpx.URL) -> str:
    """The host in ASCII (IDNA), lower case, without IPv6 brackets or a trailing dot."""
    return url.raw_host.decode("ascii").strip("[]").lower().rstrip(".")


def host_allowed(host: str, patterns: list[str]) -> bool:
    """Exact names match themselves; ``*.example.com`` matches any name below example.com."""
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


def literal_ip(host: str) -> IPAddress | None:
    """The address a host names by itself, including the short forms resolvers accept (127.1)."""
    try:
        return _unmapped(ipaddress.ip_address(host))
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fx.]+", host):  # inet_aton reads only numeric forms: 127.1, 0x7f.1, 2130706433
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def refuse_address(ip: IPAddress, settings: WebhookSettings) -> None:
    """Raise TargetRefused for addresses webhooks must not reach."""
    if ip.is_multicast or ip.is_unspecified:
        raise TargetRefused("multicast and unspecified addresses are not allowed")
    if not ip.is_global and not settings.allow_private:
        raise TargetRefused(PRIVATE_REFUSED)


def _unmapped(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip

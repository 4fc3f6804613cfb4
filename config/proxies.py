"""Who sent a request: the trust model for proxies.

The web processes run without daphne's `--proxy-headers`, so `REMOTE_ADDR` is always the peer
that opened the connection (behind a proxy: the proxy). A proxy appends the address it received
a request from to `X-Forwarded-For`, after whatever the client wrote there; so behind
`TRUSTED_PROXY_HOPS` proxies that each append, the client is that many entries from the right,
and every entry left of it proves nothing. Access decisions never rest on a forwarded address.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest

# Headers a proxy (or a client pretending to be one) adds.
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def _ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def peer_address(request: HttpRequest) -> str | None:
    """The address of the connection's other end (a proxy, when there is one)."""
    return _ip(request.META.get("REMOTE_ADDR", ""))


def is_forwarded(request: HttpRequest) -> bool:
    """Whether the request says it came through a proxy."""
    return any(request.META.get(header) for header in FORWARDING_HEADERS)


def behind_proxy() -> bool:
    """Whether the deployment declares a proxy in front of the web processes."""
    return settings.TRUST_PROXY_HEADERS or settings.TRUSTED_PROXY_HOPS > 0


def client_address(request: HttpRequest) -> str | None:
    """The client's address as far as the trusted proxies vouch for it (login throttling).

    With no trusted hop, the peer. With N hops, the Nth `X-Forwarded-For` entry from the right;
    with fewer entries than hops (a request that bypassed the outer proxy), the leftmost one.
    """
    hops = settings.TRUSTED_PROXY_HOPS
    peer = peer_address(request)
    if hops <= 0:
        return peer
    chain = [part for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part]
    if not chain:
        return peer
    return _ip(chain[-hops] if len(chain) >= hops else chain[0]) or peer

"""Requests to addresses a tenant chose (webhook endpoints, HTTP tools), safe from SSRF.

A tenant could point a URL at the platform's own network (the database, the metadata service of
the cloud it runs on, a loopback admin port). So every request:

- goes only to `http`/`https` URLs, without following redirects;
- resolves the host name when it is sent (not when the URL was saved) and refuses the request if
  any address it resolves to is private, loopback, link-local, multicast or reserved, unless the
  address lies in `OUTBOUND_ALLOWED_NETWORKS`;
- connects to the address that was checked (the host name goes in the `Host` header and in TLS's
  SNI, so certificates are still verified against it): a DNS answer that changes between the
  check and the connection cannot redirect the request;
- reads at most `max_bytes` of the answer, within `timeout` seconds.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import certifi
import httpx
from django.conf import settings

USER_AGENT = "voice-platform/1"


class OutboundRefused(Exception):
    """The URL may not be requested (scheme, host, or an address the platform does not allow)."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (`url`, host replaced by the address) and as whom."""

    url: str
    host: str  # the Host header (host[:port] as written in the URL)
    server_name: str  # for TLS: the certificate must be valid for this name


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def text(self, limit: int = 500) -> str:
        return self.body[:limit].decode("utf-8", "replace")


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(net, strict=False) for net in settings.OUTBOUND_ALLOWED_NETWORKS]


def check_address(address: str) -> None:
    """Refuse an address inside the platform's own networks, unless explicitly allowed."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if any(ip in network for network in allowed_networks()):
        return
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        raise OutboundRefused(f"address {ip} is not allowed (private or reserved network)")


def _split(url: str) -> tuple[str, str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OutboundRefused(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused("only http and https URLs with a host name may be requested")
    if parts.username or parts.password:
        raise OutboundRefused("URLs with credentials in them are not allowed")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _target(url: str, addresses: list[str]) -> Target:
    if not addresses:
        raise OutboundRefused("the host name does not resolve")
    for address in addresses:
        check_address(address)
    parts = urlsplit(url)
    address = addresses[0]
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    host = parts.netloc.rsplit("@", 1)[-1]
    return Target(url=pinned, host=host, server_name=parts.hostname or "")


def _addresses(infos: list) -> list[str]:
    return list(dict.fromkeys(info[4][0] for info in infos))


def resolve(url: str) -> Target:
    """Check `url` and resolve its host now (blocking DNS)."""
    _, hostname, port = _split(url)
    try:
        infos = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise OutboundRefused(f"the host name does not resolve: {exc}") from None
    return _target(url, _addresses(infos))


async def aresolve(url: str) -> Target:
    """Check `url` and resolve its host now, without blocking the event loop."""
    _, hostname, port = _split(url)
    try:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise OutboundRefused(f"the host name does not resolve: {exc}") from None
    return _target(url, _addresses(infos))


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context per process, shared by every request: making one loads the whole CA
    bundle (tens of milliseconds), which a tool call on a live line should not pay each time."""
    return ssl.create_default_context(cafile=certifi.where())


def _request(target: Target, method: str, headers: dict[str, str], content: bytes):
    return {
        "method": method,
        "url": target.url,
        "headers": {"User-Agent": USER_AGENT, **headers, "Host": target.host},
        "content": content,
        "extensions": {"sni_hostname": target.server_name},
    }


def request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    content: bytes = b"",
    timeout: float = 10.0,
    max_bytes: int = 64 * 1024,
) -> Answer:
    """Send one request (blocking; `timeout` bounds each step: connecting, sending, each read).
    Raises OutboundRefused, or httpx.HTTPError on failure."""
    target = resolve(url)
    with httpx.Client(
        timeout=timeout, follow_redirects=False, trust_env=False, verify=_tls()
    ) as client:
        with client.stream(**_request(target, method, headers or {}, content)) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) >= max_bytes:
                    break
            return Answer(response.status_code, bytes(body[:max_bytes]), dict(response.headers))


async def arequest(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    content: bytes = b"",
    timeout: float = 10.0,
    max_bytes: int = 64 * 1024,
) -> Answer:
    """Send one request from the event loop, all of it within `timeout` seconds. Raises
    OutboundRefused, TimeoutError, or httpx.HTTPError."""
    async with asyncio.timeout(timeout):
        return await _arequest(method, url, headers or {}, content, timeout, max_bytes)


async def _arequest(
    method: str, url: str, headers: dict[str, str], content: bytes, timeout: float, max_bytes: int
) -> Answer:
    target = await aresolve(url)
    async with httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, trust_env=False, verify=_tls()
    ) as client:
        async with client.stream(**_request(target, method, headers, content)) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= max_bytes:
                    break
            return Answer(response.status_code, bytes(body[:max_bytes]), dict(response.headers))

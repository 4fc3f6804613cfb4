"""Twilio request signatures (X-Twilio-Signature), checked against the right auth token."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from django.conf import settings
from django.http import HttpRequest
from twilio.request_validator import RequestValidator

from tenants.models import Tenant

logger = logging.getLogger(__name__)


def public_url(request: HttpRequest, path: str | None = None) -> str:
    """The URL Twilio used (or should use) for `path` (default: this request's full path).

    With PUBLIC_BASE_URL set it wins (the address Twilio is configured with, in front of any TLS
    proxy); otherwise the request's own scheme and host, which honour the proxy headers when
    TRUST_PROXY_HEADERS is on.
    """
    path = path if path is not None else request.get_full_path()
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL + path
    return request.build_absolute_uri(path)


def public_base_url(request: HttpRequest) -> str:
    """Scheme and host Twilio reaches us on, without a trailing slash."""
    return public_url(request, "/").rstrip("/")


def auth_token_for(tenant: Tenant | None) -> str:
    """The tenant's own Twilio auth token when it brings its account, else the platform's."""
    if tenant is not None and tenant.has_twilio_auth_token:
        try:
            return tenant.get_twilio_auth_token()
        except ValueError:
            logger.error(
                "tenant's Twilio auth token cannot be decrypted", extra={"tenant": tenant.slug}
            )
            return ""
    return settings.TWILIO_AUTH_TOKEN


def signature_is_valid(
    *, url: str, params: Mapping[str, str], signature: str, auth_token: str
) -> bool:
    """Constant-time check of Twilio's signature; fails closed without a token or signature."""
    if not (auth_token and signature):
        return False
    return RequestValidator(auth_token).validate(url, params, signature)


def request_is_signed(request: HttpRequest, *, tenant: Tenant | None) -> bool:
    return signature_is_valid(
        url=public_url(request),
        params=request.POST,
        signature=request.headers.get("X-Twilio-Signature", ""),
        auth_token=auth_token_for(tenant),
    )


def sign(*, url: str, params: Mapping[str, str], auth_token: str) -> str:
    """Sign like Twilio does (for the call simulator and tests)."""
    return RequestValidator(auth_token).compute_signature(url, dict(params))


def websocket_url(http_url: str) -> str:
    """The ws(s):// form of an http(s):// URL."""
    if http_url.startswith("https://"):
        return "wss://" + http_url[len("https://") :]
    if http_url.startswith("http://"):
        return "ws://" + http_url[len("http://") :]
    return http_url


def _header(scope: Mapping, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def websocket_public_url(scope: Mapping) -> str:
    """The wss:// URL Twilio opened (and signed) for this ASGI websocket scope.

    Same rules as `public_url()`: PUBLIC_BASE_URL wins; else the Host header and the
    connection's scheme, or the proxy's X-Forwarded-* headers when TRUST_PROXY_HEADERS is on.
    """
    path = scope.get("path", "")
    query = scope.get("query_string", b"").decode("latin-1")
    tail = path + (f"?{query}" if query else "")
    if settings.PUBLIC_BASE_URL:
        return websocket_url(settings.PUBLIC_BASE_URL) + tail
    scheme = scope.get("scheme") or "ws"
    host = _header(scope, b"host")
    if getattr(settings, "USE_X_FORWARDED_HOST", False):
        host = _header(scope, b"x-forwarded-host").split(",")[0].strip() or host
        proto = _header(scope, b"x-forwarded-proto").split(",")[0].strip()
        if proto:
            scheme = "wss" if proto in ("https", "wss") else "ws"
    return f"{scheme}://{host}{tail}"


def websocket_is_signed(scope: Mapping, *, tenant: Tenant | None) -> bool:
    """Twilio signs a WebSocket handshake over its full URL, with no parameters."""
    return signature_is_valid(
        url=websocket_public_url(scope),
        params={},
        signature=_header(scope, b"x-twilio-signature"),
        auth_token=auth_token_for(tenant),
    )

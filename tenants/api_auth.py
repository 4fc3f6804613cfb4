"""Who is calling the REST API: tenant API keys and throttling per key.

Kept apart from the views: DRF imports authentication classes while its own views load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.throttling import SimpleRateThrottle

from tenants.models import ApiKey
from tenants.selectors import unscoped_api_key_for
from tenants.services import api_key_touch

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer vpk_...` (or `X-Api-Key: vpk_...`): a tenant's API key.

    request.user is an anonymous user; request.auth is the ApiKey.
    """

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        key = self._key_from(request)
        if key is None:
            return None
        api_key = unscoped_api_key_for(key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        api_key_touch(api_key=api_key)
        return AnonymousUser(), api_key

    def _key_from(self, request: Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() == "bearer":
                value = value.strip()
                if not value:
                    raise exceptions.AuthenticationFailed("Empty Bearer token.")
                return value
        if value := request.headers.get("X-Api-Key", "").strip():
            return value
        return None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class IsTenantPrincipal(BasePermission):
    """A valid API key, or a signed-in active user."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if isinstance(request.auth, ApiKey):
            return True
        user = request.user
        return bool(user and user.is_authenticated and user.is_active)


# --- Throttling -----------------------------------------------------------------------------


class ApiKeyThrottle(SimpleRateThrottle):
    """Requests per API key (or per signed-in user), counted in the default cache."""

    scope = "api"

    def get_rate(self) -> str | None:
        return settings.API_THROTTLE_RATE or None

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if isinstance(request.auth, ApiKey):
            ident = f"key:{request.auth.prefix}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}

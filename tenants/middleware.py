"""Enter the tenant scope for every HTTP request, once.

Platform staff get every tenant; a member gets the tenants of their memberships; anyone else an
empty scope (queries on tenant-owned models return nothing). Twilio webhooks narrow the scope
to the tenant of the dialled number themselves.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django_scopes import scope, scopes_disabled

from tenants.access import is_platform_staff, member_tenant_ids


class TenantScopeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and is_platform_staff(user):
            with scopes_disabled():
                return self.get_response(request)
        # A list, never None: django-scopes treats None as "no filter".
        tenant_ids = member_tenant_ids(user) if user is not None else []
        with scope(tenant=tenant_ids):
            return self.get_response(request)

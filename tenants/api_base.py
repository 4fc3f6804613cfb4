"""The REST API's safe path: authentication, the tenant of a request, scoping, roles, throttling.

Every API view inherits `TenantAPIView` or `TenantViewSet`. They resolve the tenant once (from
the API key, or from the signed-in user's membership), enter the django-scopes scope for the
whole request, refuse writes to viewers, and filter every queryset by the tenant. Subclasses
cannot override `get_queryset`/`initial`/`dispatch`; they may narrow the queryset in
`scope_queryset()`, which runs before the tenant filter is applied.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model, QuerySet
from django_scopes import scope
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.views import exception_handler
from rest_framework.viewsets import GenericViewSet

from tenants.access import is_platform_staff
from tenants.api_auth import ApiKeyAuthentication, ApiKeyThrottle, IsTenantPrincipal
from tenants.models import WRITE_ROLES, ApiKey, Membership, Role, Tenant

TENANT_HEADER = "X-Tenant"


# --- The tenant of a request ----------------------------------------------------------------


@dataclass(frozen=True)
class TenantAccess:
    tenant: Tenant
    role: str

    @property
    def can_write(self) -> bool:
        return self.role in WRITE_ROLES


def resolve_tenant(request: Request) -> TenantAccess:
    """Which tenant this request acts on, and with which role.

    API key: the key's tenant and role. Session: the user's tenant; a user of several tenants
    (and platform staff) names one with the X-Tenant header (slug or id). A tenant the caller
    may not see is answered with 404.
    """
    named = request.headers.get(TENANT_HEADER, "").strip()
    if isinstance(request.auth, ApiKey):
        tenant = request.auth.tenant
        if named and named not in (tenant.slug, str(tenant.id)):
            raise exceptions.NotFound("No such tenant.")
        return TenantAccess(tenant=tenant, role=request.auth.role)

    user = request.user
    if not (user and user.is_authenticated and user.is_active):
        raise exceptions.NotAuthenticated()
    if is_platform_staff(user):
        if not named:
            raise exceptions.ValidationError(
                {TENANT_HEADER: "Platform staff: name the tenant with the X-Tenant header."}
            )
        tenant = _tenant_named(Tenant.objects.filter(active=True), named)
        return TenantAccess(tenant=tenant, role=Role.OWNER)

    memberships = list(
        Membership.objects.filter(user=user, tenant__active=True).select_related("tenant")
    )
    if named:
        by_name = {m.tenant.slug: m for m in memberships} | {
            str(m.tenant_id): m for m in memberships
        }
        if named not in by_name:
            raise exceptions.NotFound("No such tenant.")
        membership = by_name[named]
    elif len(memberships) == 1:
        membership = memberships[0]
    elif not memberships:
        raise exceptions.NotFound("You are not a member of any active tenant.")
    else:
        raise exceptions.ValidationError(
            {
                TENANT_HEADER: "You belong to several tenants: name one with the X-Tenant header "
                "(its slug or id)."
            }
        )
    return TenantAccess(tenant=membership.tenant, role=membership.role)


def _tenant_named(qs: QuerySet[Tenant], named: str) -> Tenant:
    tenant = qs.filter(slug=named).first()
    if tenant is None:
        with contextlib.suppress(DjangoValidationError, ValueError):
            tenant = qs.filter(id=named).first()
    if tenant is None:
        raise exceptions.NotFound("No such tenant.")
    return tenant


# --- Base classes ---------------------------------------------------------------------------

_SEALED = ("dispatch", "initial", "get_queryset")


class _TenantScoped:
    """The mixin behind TenantAPIView and TenantViewSet (see the module docstring)."""

    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [IsTenantPrincipal]
    throttle_classes = [ApiKeyThrottle]

    # The tenant-owned model listed by the view; queried only inside the request's scope.
    model: type[Model]
    tenant: Tenant
    access: TenantAccess

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__ != __name__:
            for name in _SEALED:
                if name in cls.__dict__:
                    raise TypeError(
                        f"{cls.__name__} may not override {name}(): the tenant filter and scope "
                        "live there. Narrow the queryset in scope_queryset() instead."
                    )

    def dispatch(self, request, *args, **kwargs):
        # Until the tenant is known, the scope is empty: any tenant-owned query finds nothing.
        self._scopes = contextlib.ExitStack()
        # The tenant's scope (entered in initial()) is left first, then the empty one.
        with scope(tenant=[]), self._scopes:
            return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        self.access = resolve_tenant(request)
        self.tenant = self.access.tenant
        self._scopes.enter_context(scope(tenant=self.tenant.id))
        if request.method not in SAFE_METHODS and not self.access.can_write:
            raise exceptions.PermissionDenied(
                "Your role in this tenant can read but not change anything."
            )

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request tenant
            return self.model._base_manager.none()
        qs = self.scope_queryset(self.model.objects.all())
        return qs.filter(tenant=self.tenant)

    def scope_queryset(self, queryset: QuerySet) -> QuerySet:
        """Narrow or annotate the queryset (the tenant filter is applied after this)."""
        return queryset


class TenantAPIView(_TenantScoped, GenericAPIView):
    pass


class TenantViewSet(_TenantScoped, GenericViewSet):
    pass


class TenantCursorPagination(CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.api_auth.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "vpk_<prefix>.<secret>",
            "description": "A tenant API key, created by a tenant owner in the console or admin.",
        }


# --- Errors ---------------------------------------------------------------------------------


def api_exception_handler(exc: Exception, context: dict) -> Any:
    """DRF's handler, plus model validation errors from services answered as 400 per field."""
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            detail: Any = {
                ("non_field_errors" if k == "__all__" else k): v
                for k, v in exc.message_dict.items()
            }
        else:
            detail = {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    return exception_handler(exc, context)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


_ERROR_EXAMPLES = {
    "401": "Invalid or revoked API key.",
    "403": "Your role in this tenant can read but not change anything.",
    "404": "No AssistantConfig matches the given query.",
    "429": "Request was throttled. Expected available in 12 seconds.",
}
_ERROR_DESCRIPTIONS = {
    "400": "Invalid input: an object mapping each bad field (or `non_field_errors`, or `detail` "
    "for a malformed body) to a list of messages.",
    "401": "No credentials, or a wrong or revoked API key.",
    "403": "Authenticated, but the role (viewer, or a read-only key) may not change data.",
    "404": "No such object in your tenant (another tenant's objects are never revealed).",
    "429": "Too many requests for this API key; retry after the `Retry-After` header's seconds.",
}


def _error_response(code: str) -> OpenApiResponse:
    if code == "400":
        return OpenApiResponse(
            response=OpenApiTypes.OBJECT,
            description=_ERROR_DESCRIPTIONS[code],
            examples=[
                OpenApiExample(
                    "Bad field",
                    value={"temperature": ["Ensure this value is less than or equal to 2.0."]},
                    status_codes=["400"],
                )
            ],
        )
    return OpenApiResponse(
        response=ErrorSerializer,
        description=_ERROR_DESCRIPTIONS[code],
        examples=[
            OpenApiExample(
                f"Error {code}", value={"detail": _ERROR_EXAMPLES[code]}, status_codes=[code]
            )
        ],
    )


class TenantAutoSchema(AutoSchema):
    """Adds the X-Tenant header and the common error responses to every tenant API operation."""

    def get_override_parameters(self):
        params = list(super().get_override_parameters())
        if isinstance(self.view, _TenantScoped):
            params.append(
                OpenApiParameter(
                    TENANT_HEADER,
                    OpenApiTypes.STR,
                    OpenApiParameter.HEADER,
                    description="Session auth only, for users of several tenants (and platform "
                    "staff): the tenant's slug or id. Ignored with an API key unless it names "
                    "another tenant (404).",
                )
            )
        return params

    def _get_response_bodies(self, direction="response"):
        # Hooked here rather than in get_response_serializers(), which @extend_schema replaces.
        responses = super()._get_response_bodies(direction)
        if not isinstance(self.view, _TenantScoped):
            return responses
        codes = ["400", "401", "404", "429"]
        if self.method not in SAFE_METHODS:
            codes.append("403")
        for code in codes:
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    _error_response(code), code, direction=direction
                )
        return dict(sorted(responses.items()))

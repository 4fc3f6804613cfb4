"""/api/v1/phone-numbers/ and /api/v1/rate-limits/."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.request import Request
from rest_framework.response import Response

from tenants import services
from tenants.api_base import TenantAPIView, TenantCursorPagination, TenantViewSet
from tenants.models import PhoneNumber
from tenants.selectors import effective_rate_limits
from tenants.serializers import PhoneNumberSerializer, RateLimitSerializer


class _ByNumber(TenantCursorPagination):
    ordering = "number"


@extend_schema_view(
    list=extend_schema(summary="List phone numbers"),
    create=extend_schema(
        summary="Add a phone number",
        description="The number must be unique on the platform and in E.164 form.",
        examples=[
            OpenApiExample(
                "Main line",
                value={"number": "+14155550100", "assistant": None, "label": "Main line"},
                request_only=True,
            )
        ],
    ),
    retrieve=extend_schema(summary="Read a phone number"),
    update=extend_schema(summary="Replace a phone number's settings"),
    partial_update=extend_schema(
        summary="Change a phone number (e.g. point it at another assistant)",
        examples=[
            OpenApiExample(
                "Point at another assistant",
                value={"assistant": "0b6c2f0e-5d0a-4f51-9a8e-2f7d0c1e9a10"},
                request_only=True,
            )
        ],
    ),
    destroy=extend_schema(summary="Delete a phone number"),
)
class PhoneNumberViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TenantViewSet,
):
    """The tenant's phone numbers and the assistant each one rings."""

    model = PhoneNumber
    serializer_class = PhoneNumberSerializer
    pagination_class = _ByNumber

    def perform_create(self, serializer: PhoneNumberSerializer) -> None:
        serializer.instance = services.phone_number_create(
            tenant=self.tenant, **serializer.validated_data
        )

    def perform_update(self, serializer: PhoneNumberSerializer) -> None:
        serializer.instance = services.phone_number_update(
            phone_number=serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance: PhoneNumber) -> None:
        services.phone_number_delete(phone_number=instance)


class RateLimitView(TenantAPIView):
    """The limits in force for your tenant. Platform staff change them in the admin."""

    serializer_class = RateLimitSerializer

    @extend_schema(
        summary="Read the tenant's effective rate limits",
        responses=RateLimitSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        rows = effective_rate_limits(tenant=self.tenant)
        return Response(RateLimitSerializer(rows, many=True).data)

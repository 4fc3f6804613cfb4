"""/api/v1/phone-numbers/ and /api/v1/rate-limits/."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from tenants.api_base import TenantAPIView
from tenants.selectors import effective_rate_limits
from tenants.serializers import RateLimitSerializer


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

"""/api/v1/rate-limits/ and /api/v1/provider-keys/."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from tenants.api_base import TenantAPIView
from tenants.selectors import effective_rate_limits
from tenants.serializers import ProviderKeysSerializer, RateLimitSerializer
from tenants.services import tenant_provider_keys_set


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


class ProviderKeysView(TenantAPIView):
    """Your tenant's own keys for stream mode's providers (Deepgram, AssemblyAI). Write-only:
    stored encrypted and never shown back; without one the platform's key is used."""

    serializer_class = ProviderKeysSerializer

    @extend_schema(summary="Which provider keys the tenant has set")
    def get(self, request: Request) -> Response:
        return Response(ProviderKeysSerializer(self.tenant).data)

    @extend_schema(summary="Set or remove the tenant's provider keys")
    def patch(self, request: Request) -> Response:
        serializer = ProviderKeysSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tenant = tenant_provider_keys_set(tenant=self.tenant, keys=serializer.validated_data)
        return Response(ProviderKeysSerializer(tenant).data)

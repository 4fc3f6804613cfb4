"""REST API: the analytics endpoint (the dashboard's figures for a period)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from analytics.selectors import period_figures
from analytics.serializers import AnalyticsQuerySerializer, AnalyticsSerializer
from tenants.api_base import TenantAPIView


class AnalyticsView(TenantAPIView):
    """The dashboard's figures for a period: the tenant's totals and one row per assistant."""

    serializer_class = AnalyticsSerializer

    @extend_schema(
        summary="Figures for a period, per tenant and per assistant",
        parameters=[
            OpenApiParameter("start", OpenApiTypes.DATETIME, description="Default: end - 7 days."),
            OpenApiParameter("end", OpenApiTypes.DATETIME, description="Exclusive; default: now."),
            OpenApiParameter("assistant", OpenApiTypes.UUID, description="Only this assistant."),
        ],
        responses=AnalyticsSerializer,
    )
    def get(self, request: Request) -> Response:
        query = AnalyticsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        figures = period_figures(
            tenant=self.tenant,
            start=query.validated_data["start"],
            end=query.validated_data["end"],
            assistant_id=query.validated_data.get("assistant"),
        )
        return Response(AnalyticsSerializer(figures).data)

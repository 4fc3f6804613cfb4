"""/api/v1/call-reports/ (cost and analysis of each call) and each assistant's analysis plan."""

from __future__ import annotations

import re

import django_filters
from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from assistants.models import AssistantConfig
from calls.api import UTCDateTimeFilter
from insights.models import AnalysisPlan, CallReport, Sentiment
from insights.serializers import (
    AnalysisPlanSerializer,
    CallReportDetailSerializer,
    CallReportSerializer,
)
from tenants.access import get_owned_or_404
from tenants.api_base import TenantAPIView, TenantCursorPagination, TenantViewSet

# A data field's name: letters, digits, "_" and "-" (no "__": that would name a lookup).
FIELD_NAME = re.compile(r"^[A-Za-z0-9-]+(_[A-Za-z0-9-]+)*$")


class CallReportFilter(django_filters.FilterSet):
    success = django_filters.BooleanFilter(help_text="Successful (true) or failed (false) calls.")
    sentiment = django_filters.ChoiceFilter(choices=Sentiment.choices)
    analysis_status = django_filters.ChoiceFilter(choices=CallReport.Analysis.choices)
    assistant = django_filters.UUIDFilter(field_name="call__assistant_id")
    started_after = UTCDateTimeFilter(field_name="call__started_at", lookup_expr="gte")
    started_before = UTCDateTimeFilter(field_name="call__started_at", lookup_expr="lt")
    data = django_filters.CharFilter(
        method="filter_data",
        help_text="An extracted field's value, `name:value` (e.g. `reason:repair`).",
    )

    class Meta:
        model = CallReport
        fields: list[str] = []

    def filter_data(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        field, sep, wanted = value.partition(":")
        if not sep or not FIELD_NAME.match(field):
            raise serializers.ValidationError(
                {"data": "Use name:value, the name of letters, digits, - and _."}
            )
        return queryset.filter(**{f"data__{field}": wanted})


class _NewestFirst(TenantCursorPagination):
    ordering = "-created_at"


@extend_schema_view(
    list=extend_schema(
        summary="List call reports (newest first)",
        description="Each ended call's cost and analysis. Filter by success, sentiment, "
        "assistant, start time or an extracted field (`data=name:value`).",
    ),
    retrieve=extend_schema(summary="Read a call's report, with the cost of each turn"),
)
class CallReportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """What each call cost and what its analysis found. Addressed by the call's id."""

    model = CallReport
    pagination_class = _NewestFirst
    filter_backends = [DjangoFilterBackend]
    filterset_class = CallReportFilter
    lookup_field = "call_id"
    lookup_url_kwarg = "pk"

    def scope_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = queryset.select_related("call")
        if self.action == "retrieve":
            queryset = queryset.prefetch_related("turn_costs__turn")
        return queryset

    def get_serializer_class(self):
        return CallReportDetailSerializer if self.action == "retrieve" else CallReportSerializer


class AnalysisPlanView(TenantAPIView):
    """How an assistant's calls are analysed: success criteria, fields to extract, model."""

    model = AnalysisPlan
    serializer_class = AnalysisPlanSerializer

    def get_object(self) -> AnalysisPlan:
        """The assistant's plan (unsaved defaults when it has none); 404 for an assistant
        that is not the tenant's."""
        assistant = get_owned_or_404(
            AssistantConfig, tenant=self.tenant, pk=self.kwargs["assistant_pk"]
        )
        plan = AnalysisPlan.objects.filter(tenant=self.tenant, assistant=assistant).first()
        return plan or AnalysisPlan(tenant=self.tenant, assistant=assistant)

    @extend_schema(summary="Read an assistant's analysis plan (defaults when none is set)")
    def get(self, request: Request, assistant_pk: str) -> Response:
        return Response(AnalysisPlanSerializer(self.get_object()).data)

    @extend_schema(summary="Set an assistant's analysis plan")
    def put(self, request: Request, assistant_pk: str) -> Response:
        serializer = AnalysisPlanSerializer(self.get_object(), data=request.data)
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(serializer.data)

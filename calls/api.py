"""/api/v1/calls/ (with turns and audio) and /api/v1/analytics/."""

from __future__ import annotations

import django_filters
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from calls.models import Call, Turn
from calls.serializers import (
    CallDetailSerializer,
    CallSerializer,
    TurnAudioSerializer,
    as_utc,
)
from tenants.api_base import TenantCursorPagination, TenantViewSet
from tenants.phone import normalize_e164


def _e164_or_raw(value: str) -> str:
    try:
        return normalize_e164(value)
    except ValidationError:
        return value


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    def filter(self, qs, value):
        return super().filter(qs, as_utc(value) if value is not None else value)


class CallFilter(django_filters.FilterSet):
    started_after = UTCDateTimeFilter(
        field_name="started_at", lookup_expr="gte", label="Calls that started at or after this."
    )
    started_before = UTCDateTimeFilter(
        field_name="started_at", lookup_expr="lt", label="Calls that started before this."
    )
    status = django_filters.MultipleChoiceFilter(
        choices=Call.Status.choices, label="One or more statuses (repeat the parameter)."
    )
    assistant = django_filters.UUIDFilter(field_name="assistant_id", label="An assistant's id.")
    phone_number = django_filters.UUIDFilter(
        field_name="phone_number_id", label="A phone number's id."
    )
    number = django_filters.CharFilter(
        method="filter_number", label="The dialled number (E.164), e.g. +14155550100."
    )
    caller = django_filters.CharFilter(method="filter_caller", label="The caller's number (E.164).")

    class Meta:
        model = Call
        fields: list[str] = []

    def filter_number(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(to_number=_e164_or_raw(value))

    def filter_caller(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(from_number=_e164_or_raw(value))


class _NewestFirst(TenantCursorPagination):
    ordering = "-started_at"


@extend_schema_view(
    list=extend_schema(
        summary="List calls (newest first)",
        description="Cursor-paginated: follow `next` until it is null.",
    ),
    retrieve=extend_schema(summary="Read a call with its turns", responses=CallDetailSerializer),
)
class CallViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Calls to the tenant's numbers, with the settings each ran with and every turn's timings."""

    model = Call
    serializer_class = CallSerializer
    pagination_class = _NewestFirst
    filter_backends = [DjangoFilterBackend]
    filterset_class = CallFilter

    def scope_queryset(self, queryset: QuerySet[Call]) -> QuerySet[Call]:
        queryset = queryset.annotate(turn_count=Count("turns"))
        if self.action == "retrieve":
            queryset = queryset.prefetch_related("turns")
        return queryset

    def get_serializer_class(self):
        return CallDetailSerializer if self.action == "retrieve" else CallSerializer

    @extend_schema(
        summary="Audio URLs of a call's assistant turns",
        description="The speech files played to the caller, in order. Files are deleted after "
        "TTS_AUDIO_TTL_HOURS; a turn spoken with Twilio's voice has none.",
        responses=TurnAudioSerializer(many=True),
    )
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def audio(self, request: Request, pk: str | None = None) -> Response:
        call = self.get_object()
        turns = Turn.objects.filter(
            tenant=self.tenant, call=call, role=Turn.Role.ASSISTANT
        ).order_by("sequence")
        return Response(TurnAudioSerializer(turns, many=True).data)

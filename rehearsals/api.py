"""/api/v1/replays/ and /api/v1/assistants/{id}/scenarios/: rehearse an assistant from a tenant's
own tools and CI."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from assistants.api import OfAssistant
from assistants.models import AssistantConfig
from rehearsals import replay, scenarios
from rehearsals.models import ReplayRun, Scenario
from rehearsals.serializers import (
    ReplayRequestSerializer,
    ReplayRunDetailSerializer,
    ReplayRunSerializer,
    ScenarioRunRequestSerializer,
    ScenarioRunResultSerializer,
    ScenarioSerializer,
)
from rehearsals.services import replay_begin
from tenants.access import get_owned_or_404
from tenants.api_base import TenantCursorPagination, TenantViewSet


class _Newest(TenantCursorPagination):
    ordering = "-created_at"


class _ByName(TenantCursorPagination):
    ordering = "name"


def _candidate(assistant: AssistantConfig, name: str):
    try:
        return scenarios.candidate_named(assistant=assistant, name=name)
    except LookupError as exc:
        raise exceptions.ValidationError({"version": str(exc)}) from exc


@extend_schema_view(
    list=extend_schema(summary="List replay runs"),
    retrieve=extend_schema(summary="Read a replay run: its report and each call, turn by turn"),
    create=extend_schema(
        summary="Replay recorded calls against a draft or a version",
        request=ReplayRequestSerializer,
        responses={201: ReplayRunSerializer},
    ),
)
class ReplayRunViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, TenantViewSet
):
    """Recorded calls said again to a candidate; the workers run them, the report follows."""

    model = ReplayRun
    serializer_class = ReplayRunSerializer
    pagination_class = _Newest

    def get_serializer_class(self):
        return ReplayRunDetailSerializer if self.action == "retrieve" else ReplayRunSerializer

    def scope_queryset(self, queryset):
        if self.action == "retrieve":
            return queryset.prefetch_related("calls")
        return queryset

    def create(self, request: Request, *args, **kwargs) -> Response:
        data = ReplayRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        assistant = get_owned_or_404(AssistantConfig, tenant=self.tenant, pk=given["assistant"])
        _, version, _ = _candidate(assistant, given["version"])
        selection = replay.Selection(
            since=given["since"],
            until=given["until"],
            outcome=given["outcome"],
            success=given["success"],
            call_ids=tuple(str(call) for call in given["calls"]),
            limit=given["limit"],
        )
        try:
            run = replay_begin(
                assistant=assistant,
                version=version,
                selection=selection,
                concurrency=given["concurrency"],
                budget_tokens=given.get("budget_tokens"),
                user=request.user,
            )
        except replay.NothingToReplay as exc:
            raise exceptions.ValidationError({"calls": str(exc)}) from exc
        return Response(ReplayRunSerializer(run).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(summary="List an assistant's test scenarios"),
    create=extend_schema(summary="Add a test scenario"),
    retrieve=extend_schema(summary="Read a test scenario"),
    update=extend_schema(summary="Replace a test scenario"),
    partial_update=extend_schema(summary="Change a test scenario"),
    destroy=extend_schema(summary="Delete a test scenario"),
)
@extend_schema(
    parameters=[
        OpenApiParameter(
            "assistant_pk", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The assistant."
        )
    ]
)
class ScenarioViewSet(
    OfAssistant,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TenantViewSet,
):
    """Test conversations for an assistant, with the checks they must pass."""

    model = Scenario
    serializer_class = ScenarioSerializer
    pagination_class = _ByName

    def _save(self, scenario: Scenario, fields: dict) -> Scenario:
        for name, value in fields.items():
            setattr(scenario, name, value)
        try:
            scenario.full_clean()
        except DjangoValidationError as exc:
            raise exceptions.ValidationError(exc.message_dict) from exc
        scenario.save()
        return scenario

    def perform_create(self, serializer: ScenarioSerializer) -> None:
        scenario = Scenario(tenant=self.tenant, assistant=self.assistant())
        serializer.instance = self._save(scenario, serializer.validated_data)

    def perform_update(self, serializer: ScenarioSerializer) -> None:
        serializer.instance = self._save(serializer.instance, serializer.validated_data)

    @extend_schema(
        summary="Run scenarios (all, a suite, or some) against the draft or a version",
        description="Runs while the request waits and answers with every run's transcript and "
        'check results; "passed" is false when one failed (for CI).',
        request=ScenarioRunRequestSerializer,
        responses={200: ScenarioRunResultSerializer},
    )
    @action(detail=False, methods=["post"])
    def run(self, request: Request, assistant_pk: str) -> Response:
        data = ScenarioRunRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        assistant = self.assistant()
        candidate, version, label = _candidate(assistant, given["version"])
        chosen = scenarios.scenarios_select(
            assistant=assistant,
            suite=given["suite"],
            ids=[str(i) for i in given.get("scenarios") or []],
        )
        if not chosen:
            raise exceptions.ValidationError({"scenarios": "No active scenario matches."})
        runs = scenarios.scenarios_run(
            assistant=assistant,
            scenarios=chosen,
            candidate=candidate,
            label=label,
            version=version,
            user=request.user,
        )
        result = {"passed": all(run.passed for run in runs), "runs": runs}
        return Response(ScenarioRunResultSerializer(result).data)

"""/api/v1/outbound-calls/, /api/v1/campaigns/ (contacts, moves, results) and /api/v1/do-not-call/."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.parsers import FileUploadParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from assistants.models import AssistantConfig
from assistants.serializers import PhoneNumberSerializer
from campaigns import callbacks, contacts, numbers, selectors, services
from campaigns.models import (
    Campaign,
    Contact,
    DoNotCall,
    OutboundCall,
    Recording,
    RecordingSettings,
    ScheduledCallback,
)
from campaigns.serializers import (
    CallbackSerializer,
    CampaignSerializer,
    ContactSerializer,
    DoNotCallSerializer,
    OutboundCallInput,
    OutboundCallSerializer,
    RecordingSerializer,
    RecordingSettingsSerializer,
    TwilioNumberInput,
    TwilioNumberSerializer,
)
from tenants import services as tenant_services
from tenants.access import get_owned_or_404
from tenants.api_base import (
    ErrorSerializer,
    TenantAPIView,
    TenantCursorPagination,
    TenantViewSet,
)
from tenants.models import PhoneNumber
from tenants.twilio_numbers import TwilioLookupError
from tools.api import ASSISTANT_PARAMETER


class _NewestFirst(TenantCursorPagination):
    ordering = "-created_at"


class _ByNumber(TenantCursorPagination):
    ordering = "number"


@extend_schema_view(
    list=extend_schema(summary="List outbound calls"),
    retrieve=extend_schema(summary="Read an outbound call"),
    create=extend_schema(
        summary="Call someone now",
        request=OutboundCallInput,
        description="From one of your numbers, with an assistant whose prompt and greeting get "
        "`variables` filled in (`{{first_name}}`). 400 for a number on the do-not-call list; "
        "503 when Twilio refused or could not be reached (the call is stored as failed).",
        responses={
            201: OutboundCallSerializer,
            503: OpenApiResponse(ErrorSerializer, description="Twilio did not place the call."),
        },
    ),
)
class OutboundCallViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, TenantViewSet
):
    """Calls the platform placed: one at a time here, or by a campaign."""

    model = OutboundCall
    serializer_class = OutboundCallSerializer
    pagination_class = _NewestFirst

    def scope_queryset(self, queryset):
        return queryset.select_related("call")

    def create(self, request: Request, *args, **kwargs) -> Response:
        given = OutboundCallInput(data=request.data, context=self.get_serializer_context())
        given.is_valid(raise_exception=True)
        try:
            outbound = services.call_place(tenant=self.tenant, **given.validated_data)
        except services.DoNotCallError as exc:
            raise exceptions.ValidationError({"to": [str(exc)]}) from exc
        except services.OutboundError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(OutboundCallSerializer(outbound).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(summary="List campaigns"),
    retrieve=extend_schema(summary="Read a campaign with its live progress"),
    create=extend_schema(summary="Create a campaign (a draft: upload contacts, then start it)"),
    partial_update=extend_schema(summary="Change a campaign's settings"),
)
class CampaignViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    TenantViewSet,
):
    """Contact lists called by an assistant inside calling windows and limits."""

    model = Campaign
    serializer_class = CampaignSerializer
    pagination_class = _NewestFirst
    http_method_names = ["get", "post", "patch", "head", "options"]

    def perform_create(self, serializer: CampaignSerializer) -> None:
        serializer.save(tenant=self.tenant)

    def perform_update(self, serializer: CampaignSerializer) -> None:
        if serializer.instance.status in (Campaign.Status.COMPLETED, Campaign.Status.CANCELED):
            raise exceptions.ValidationError({"status": ["This campaign is over."]})
        serializer.save()

    def _move(self, action_name: str) -> Response:
        campaign = services.campaign_move(campaign=self.get_object(), action=action_name)
        return Response(CampaignSerializer(campaign, context=self.get_serializer_context()).data)

    @extend_schema(summary="Start calling", request=None, responses=CampaignSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        return self._move("start")

    @extend_schema(summary="Pause (calls in progress finish)", request=None)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        return self._move("pause")

    @extend_schema(summary="Resume a paused campaign", request=None)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self._move("resume")

    @extend_schema(summary="Cancel: no one else is called", request=None)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        return self._move("cancel")

    @extend_schema(
        methods=["POST"],
        summary="Upload contacts (CSV)",
        description="A CSV file (multipart field `file`, or the body with Content-Type "
        "text/csv) with a `number` column (E.164); optional `timezone` (IANA) and `opt_out`; "
        "other columns become variables. Answers a report of rows added and left out.",
        request={"multipart/form-data": OpenApiTypes.OBJECT, "text/csv": OpenApiTypes.STR},
        responses=OpenApiTypes.OBJECT,
    )
    @extend_schema(methods=["GET"], summary="List contacts", responses=ContactSerializer(many=True))
    @action(
        detail=True,
        methods=["get", "post"],
        parser_classes=[MultiPartParser, FileUploadParser],
        pagination_class=_ByNumber,
    )
    def contacts(self, request: Request, pk: str | None = None) -> Response:
        campaign = self.get_object()
        if request.method == "GET":
            rows = Contact.objects.filter(tenant=self.tenant, campaign=campaign)
            page = self.paginate_queryset(rows)
            return self.get_paginated_response(ContactSerializer(page, many=True).data)
        upload = request.FILES.get("file")
        if upload is None:
            raise exceptions.ValidationError({"file": ["Attach a CSV file."]})
        if upload.size > contacts.MAX_CSV_BYTES:
            raise exceptions.ValidationError({"file": ["The file is over 10 MB."]})
        try:
            report = contacts.contacts_import(campaign=campaign, data=upload.read())
        except ValidationError as exc:
            raise exceptions.ValidationError({"file": exc.messages}) from exc
        return Response(report.as_dict(), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Per-contact results (CSV)", responses={(200, "text/csv"): OpenApiTypes.STR}
    )
    @action(detail=True, methods=["get"])
    def results(self, request: Request, pk: str | None = None) -> HttpResponse:
        campaign = self.get_object()
        names, rows = selectors.campaign_results(campaign=campaign)
        data_names = selectors.campaign_data_fields(campaign=campaign)
        # Written inside the request's tenant scope (a streamed body would be read after it).
        body = "".join(contacts.results_csv(variable_names=names, rows=rows, data_names=data_names))
        response = HttpResponse(body, content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.id}.csv"'
        return response


@extend_schema_view(
    list=extend_schema(summary="List the do-not-call numbers"),
    create=extend_schema(summary="Add a number (adding it again changes nothing)"),
    retrieve=extend_schema(summary="Read a do-not-call entry"),
    destroy=extend_schema(summary="Take a number off the list"),
)
class DoNotCallViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    TenantViewSet,
):
    """Numbers no outbound call, campaign or callback ever dials."""

    model = DoNotCall
    serializer_class = DoNotCallSerializer
    pagination_class = _NewestFirst

    def perform_create(self, serializer: DoNotCallSerializer) -> None:
        serializer.instance = services.dnc_add(tenant=self.tenant, **serializer.validated_data)


@extend_schema_view(
    list=extend_schema(summary="List call recordings"),
    retrieve=extend_schema(summary="Read a recording (with its file's URL)"),
)
class RecordingViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Recordings of calls whose assistant records them, kept for its retention period."""

    model = Recording
    serializer_class = RecordingSerializer
    pagination_class = _NewestFirst


@extend_schema(parameters=[ASSISTANT_PARAMETER])
class RecordingSettingsView(TenantAPIView):
    """Whether an assistant's calls (inbound and outbound, every mode) are recorded, announced,
    and how long their recordings are kept (`retention_days`; null: the tenant's period)."""

    model = RecordingSettings
    serializer_class = RecordingSettingsSerializer

    def _assistant(self) -> AssistantConfig:
        return get_owned_or_404(AssistantConfig, tenant=self.tenant, pk=self.kwargs["assistant_pk"])

    def scope_queryset(self, queryset):
        return queryset.filter(assistant=self._assistant())

    @extend_schema(summary="Read an assistant's recording settings")
    def get(self, request: Request, assistant_pk: str) -> Response:
        found = self.get_queryset().first() or RecordingSettings(assistant=self._assistant())
        return Response(RecordingSettingsSerializer(found).data)

    @extend_schema(summary="Change an assistant's recording settings")
    def patch(self, request: Request, assistant_pk: str) -> Response:
        given = RecordingSettingsSerializer(data=request.data, partial=True)
        given.is_valid(raise_exception=True)
        changed = services.recording_settings_set(
            assistant=self._assistant(), **given.validated_data
        )
        return Response(RecordingSettingsSerializer(changed).data)


class _DueFirst(TenantCursorPagination):
    ordering = "due_at"


@extend_schema_view(
    list=extend_schema(summary="List the callbacks assistants promised"),
    retrieve=extend_schema(summary="Read a callback"),
)
class CallbackViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Calls back an assistant promised a caller (its `schedule_callback` tool), placed from
    the number that was called once due and once the promising call is over."""

    model = ScheduledCallback
    serializer_class = CallbackSerializer
    pagination_class = _DueFirst

    def scope_queryset(self, queryset):
        return queryset.select_related("outbound")

    @extend_schema(
        summary="Cancel a callback not yet placed",
        request=None,
        responses={200: CallbackSerializer, 400: ErrorSerializer},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        callback = self.get_object()
        if not callbacks.callback_cancel(callback=callback):
            raise exceptions.ValidationError(
                {"status": [f"A callback that is {callback.status} cannot be canceled."]}
            )
        callback.refresh_from_db()
        return Response(CallbackSerializer(callback).data)


class TwilioNumbersView(TenantAPIView):
    """The numbers of the tenant's own Twilio account, and importing one: the platform points
    its voice URL, fallback URL and status callback at itself (and back at nothing when the
    number is removed)."""

    model = PhoneNumber
    serializer_class = TwilioNumberSerializer

    @extend_schema(
        summary="List your Twilio account's numbers", responses=TwilioNumberSerializer(many=True)
    )
    def get(self, request: Request) -> Response:
        try:
            listed = numbers.numbers_in_account(tenant=self.tenant)
        except (numbers.NoOwnAccount, TwilioLookupError) as exc:
            return _twilio_refusal(exc)
        return Response(TwilioNumberSerializer(listed, many=True).data)

    @extend_schema(
        summary="Import a number and point it at the platform",
        request=TwilioNumberInput,
        responses={
            201: PhoneNumberSerializer,
            503: OpenApiResponse(ErrorSerializer, description="Twilio could not be reached."),
        },
    )
    def post(self, request: Request) -> Response:
        given = TwilioNumberInput(data=request.data, context=self.get_serializer_context())
        given.is_valid(raise_exception=True)
        try:
            phone_number = numbers.number_import(tenant=self.tenant, **given.validated_data)
        except tenant_services.NumberClaimRefused as exc:
            if exc.reason == exc.UNAVAILABLE:
                return Response({"detail": exc.message}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
            raise exceptions.ValidationError({"number": [exc.message]}) from exc
        except (numbers.NoOwnAccount, TwilioLookupError) as exc:
            return _twilio_refusal(exc)
        return Response(PhoneNumberSerializer(phone_number).data, status=status.HTTP_201_CREATED)


def _twilio_refusal(exc: Exception) -> Response:
    if isinstance(exc, TwilioLookupError) and not exc.permanent:
        return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)

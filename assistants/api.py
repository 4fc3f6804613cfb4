"""/api/v1/assistants/ and their FAQ entries."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from assistants import services, versions
from assistants.models import AssistantConfig, AssistantVersion, FAQEntry
from assistants.serializers import (
    AssistantSerializer,
    ChangeSerializer,
    FAQEntrySerializer,
    PhoneNumberSerializer,
    PublishSerializer,
    VersionDetailSerializer,
    VersionSerializer,
)
from tenants import services as tenant_services
from tenants.access import get_owned_or_404, is_platform_staff
from tenants.api_base import ErrorSerializer, TenantCursorPagination, TenantViewSet
from tenants.models import PhoneNumber, Tenant

ASSISTANT_EXAMPLE = OpenApiExample(
    "Front desk",
    value={
        "name": "Front desk",
        "model": "llama-3.3-70b-versatile",
        "temperature": 0.7,
        "system_prompt": "You are Acme Plumbing's receptionist. Answer in one or two sentences.",
        "greeting": "Acme Plumbing, how can I help?",
        "language": "en-US",
        "tts_engine": "gtts",
    },
    request_only=True,
)


class _ByName(TenantCursorPagination):
    ordering = "name"


class _ByCreation(TenantCursorPagination):
    ordering = "created_at"


@extend_schema_view(
    list=extend_schema(summary="List assistants"),
    create=extend_schema(summary="Create an assistant", examples=[ASSISTANT_EXAMPLE]),
    retrieve=extend_schema(summary="Read an assistant"),
    update=extend_schema(summary="Replace an assistant's settings"),
    partial_update=extend_schema(summary="Change some of an assistant's settings"),
    destroy=extend_schema(
        summary="Delete an assistant",
        description="Refused with 409 while a phone number points at it. Its FAQ entries go "
        "with it; past calls keep a snapshot of its settings.",
        responses={
            204: None,
            409: OpenApiResponse(ErrorSerializer, description="A number still uses it."),
        },
    ),
)
class AssistantViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TenantViewSet,
):
    """A tenant's assistants: how each listens, thinks (Groq model, prompt) and speaks."""

    model = AssistantConfig
    serializer_class = AssistantSerializer
    pagination_class = _ByName

    def scope_queryset(self, queryset):
        return queryset.prefetch_related("phone_numbers")

    def perform_create(self, serializer: AssistantSerializer) -> None:
        serializer.instance = services.assistant_create(
            tenant=self.tenant, **serializer.validated_data
        )

    def perform_update(self, serializer: AssistantSerializer) -> None:
        serializer.instance = services.assistant_update(
            assistant=serializer.instance, **serializer.validated_data
        )

    @extend_schema(
        summary="Publish the draft as a new version",
        description="Freezes the assistant's settings, FAQ, tools and knowledge references into "
        "the next version and makes it the one callers get; calls under way finish on theirs. "
        "Refused with 409 when the assistant requires its scenarios to pass and one fails.",
        request=PublishSerializer,
        responses={
            201: VersionSerializer,
            409: OpenApiResponse(ErrorSerializer, description="A required scenario failed."),
        },
    )
    @action(detail=True, methods=["post"])
    def publish(self, request: Request, pk: str | None = None) -> Response:
        assistant = self.get_object()
        data = PublishSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            version = versions.version_publish(
                assistant=assistant, user=request.user, note=data.validated_data.get("note", "")
            )
        except versions.PublishRefused as exc:
            return Response(
                {"detail": "Not published: " + str(exc), "reasons": exc.reasons},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(VersionSerializer(version).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args, **kwargs) -> Response:
        try:
            services.assistant_delete(assistant=self.get_object())
        except services.AssistantInUse as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)


class OfAssistant:
    """Views of one assistant's rows (`assistant_pk` in the URL): another tenant's assistant,
    or none, answers 404. Its rows are the view's queryset before the tenant filter."""

    kwargs: dict
    tenant: Tenant

    def assistant(self) -> AssistantConfig:
        if not hasattr(self, "_assistant"):
            self._assistant = get_owned_or_404(
                AssistantConfig, tenant=self.tenant, pk=self.kwargs["assistant_pk"]
            )
        return self._assistant

    def scope_queryset(self, queryset):
        return queryset.filter(assistant=self.assistant())


@extend_schema_view(
    list=extend_schema(summary="List an assistant's FAQ entries"),
    create=extend_schema(
        summary="Add an FAQ entry",
        examples=[
            OpenApiExample(
                "Opening hours",
                value={
                    "patterns": "what are your opening hours\nwhen are you open",
                    "answer": "We are open from eight to six, Monday to Friday.",
                },
                request_only=True,
            )
        ],
    ),
    retrieve=extend_schema(summary="Read an FAQ entry"),
    update=extend_schema(summary="Replace an FAQ entry"),
    partial_update=extend_schema(summary="Change an FAQ entry"),
    destroy=extend_schema(summary="Delete an FAQ entry"),
)
@extend_schema(
    parameters=[
        OpenApiParameter(
            "assistant_pk",
            OpenApiTypes.UUID,
            OpenApiParameter.PATH,
            description="The assistant's id.",
        )
    ]
)
class FAQEntryViewSet(
    OfAssistant,
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TenantViewSet,
):
    """Canned answers: when a caller says one of the patterns, the assistant answers without
    the LLM."""

    model = FAQEntry
    serializer_class = FAQEntrySerializer
    pagination_class = _ByCreation

    def perform_create(self, serializer: FAQEntrySerializer) -> None:
        serializer.instance = services.faq_entry_create(
            assistant=self.assistant(), **serializer.validated_data
        )

    def perform_update(self, serializer: FAQEntrySerializer) -> None:
        serializer.instance = services.faq_entry_update(
            entry=serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance: FAQEntry) -> None:
        services.faq_entry_delete(entry=instance)


class _ByVersion(TenantCursorPagination):
    ordering = "-number"


@extend_schema_view(
    list=extend_schema(summary="List an assistant's versions (newest first)"),
    retrieve=extend_schema(summary="Read a version with its frozen config"),
)
@extend_schema(
    parameters=[
        OpenApiParameter(
            "assistant_pk", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The assistant."
        )
    ]
)
class VersionViewSet(OfAssistant, mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Published versions of an assistant: immutable; one of them is live."""

    model = AssistantVersion
    serializer_class = VersionSerializer
    pagination_class = _ByVersion
    lookup_field = "number"
    lookup_value_regex = "[0-9]+"

    def scope_queryset(self, queryset):
        return super().scope_queryset(queryset).select_related("assistant", "created_by")

    def get_serializer_class(self):
        return VersionDetailSerializer if self.action == "retrieve" else VersionSerializer

    @extend_schema(
        summary="Roll back: make this version live again",
        request=None,
        responses={200: VersionSerializer},
    )
    @action(detail=True, methods=["post"])
    def publish(self, request: Request, assistant_pk: str, number: str) -> Response:
        version = versions.version_rollback(version=self.get_object())
        version.assistant.refresh_from_db()
        return Response(VersionSerializer(version).data)

    @extend_schema(
        summary="Compare this version with another one (or the draft), field by field",
        parameters=[
            OpenApiParameter(
                "against",
                str,
                description='A version number, or "draft" (the default).',
            )
        ],
        responses={200: ChangeSerializer(many=True)},
    )
    @action(detail=True, methods=["get"])
    def diff(self, request: Request, assistant_pk: str, number: str) -> Response:
        version = self.get_object()
        against = request.query_params.get("against", "draft")
        if against == "draft":
            other = versions.draft_freeze(assistant=self.assistant())
        elif against.isdigit():
            found = versions.version_by_number(assistant=self.assistant(), number=int(against))
            if found is None:
                raise exceptions.NotFound(f"No version {against}.")
            other = versions.Frozen.of(found)
        else:
            raise exceptions.ValidationError({"against": 'Give a version number or "draft".'})
        changes = versions.versions_diff(versions.Frozen.of(version), other)
        return Response(ChangeSerializer(changes, many=True).data)


class _ByNumber(TenantCursorPagination):
    ordering = "number"


class TwilioUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "twilio_unavailable"


def _refusal(exc: tenant_services.NumberClaimRefused) -> exceptions.APIException:
    if exc.reason == exc.STAFF_ONLY:
        return exceptions.PermissionDenied(exc.message)
    if exc.reason == exc.UNAVAILABLE:
        return TwilioUnavailable(exc.message)
    return exceptions.ValidationError({"number": [exc.message]})


_NUMBER_REFUSALS = {
    403: OpenApiResponse(
        ErrorSerializer,
        description="A viewer's role, or a tenant on the platform's Twilio account adding a "
        "number (platform staff assign those).",
    ),
    503: OpenApiResponse(
        ErrorSerializer, description="Twilio could not be asked about the number; try again."
    ),
}


@extend_schema_view(
    list=extend_schema(summary="List phone numbers"),
    create=extend_schema(
        summary="Add a phone number",
        description="In E.164 form. A tenant adds only numbers of its own Twilio account "
        "(set in the admin): Twilio is asked whether the account holds the number. Numbers on "
        "the platform's Twilio account are assigned by platform staff (403).",
        responses={201: PhoneNumberSerializer, **_NUMBER_REFUSALS},
        examples=[
            OpenApiExample(
                "Main line",
                value={"number": "+14155550100", "assistant": None, "label": "Main line"},
                request_only=True,
            )
        ],
    ),
    retrieve=extend_schema(summary="Read a phone number"),
    update=extend_schema(
        summary="Replace a phone number's settings",
        description="A changed `number` is checked as when adding one.",
        responses={200: PhoneNumberSerializer, **_NUMBER_REFUSALS},
    ),
    partial_update=extend_schema(
        summary="Change a phone number (e.g. point it at another assistant)",
        description="A changed `number` is checked as when adding one.",
        responses={200: PhoneNumberSerializer, **_NUMBER_REFUSALS},
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
        try:
            serializer.instance = tenant_services.phone_number_create(
                tenant=self.tenant,
                assigned_by_staff=is_platform_staff(self.request.user),
                **serializer.validated_data,
            )
        except tenant_services.NumberClaimRefused as exc:
            raise _refusal(exc) from exc

    def perform_update(self, serializer: PhoneNumberSerializer) -> None:
        try:
            serializer.instance = tenant_services.phone_number_update(
                phone_number=serializer.instance,
                assigned_by_staff=is_platform_staff(self.request.user),
                **serializer.validated_data,
            )
        except tenant_services.NumberClaimRefused as exc:
            raise _refusal(exc) from exc

    def perform_destroy(self, instance: PhoneNumber) -> None:
        tenant_services.phone_number_delete(phone_number=instance)

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model
from rest_framework import serializers
from rest_framework.exceptions import NotFound

from assistants.models import AssistantConfig
from campaigns.models import (
    Campaign,
    Contact,
    DoNotCall,
    OutboundCall,
    Recording,
    RecordingSettings,
    ScheduledCallback,
)
from campaigns.recordings import recording_url
from campaigns.selectors import campaign_progress
from campaigns.services import variables_clean
from tenants.models import PhoneNumber
from tenants.phone import normalize_e164


class TenantObjectField(serializers.PrimaryKeyRelatedField):
    """An id of one of the request tenant's objects; any other id (another tenant's, unknown,
    malformed) answers 404 alike, so nothing about other tenants leaks."""

    def __init__(self, model: type[Model], **kwargs) -> None:
        self.model = model
        super().__init__(pk_field=serializers.UUIDField(), **kwargs)

    def get_queryset(self):
        return self.model.objects.filter(tenant=self.context["view"].tenant)

    def to_internal_value(self, data):
        name = self.field_name
        if not isinstance(data, str):
            raise serializers.ValidationError(f"Give the {name}'s id (a UUID string).")
        try:
            return self.get_queryset().get(pk=data)
        except (self.model.DoesNotExist, DjangoValidationError, ValueError) as exc:
            raise NotFound(f"{name}: no {name} {data[:64]!r} in your tenant.") from exc


def _e164(value: str) -> str:
    try:
        return normalize_e164(value)
    except DjangoValidationError as exc:
        raise serializers.ValidationError(exc.messages) from exc


def _variables(value: object) -> dict:
    try:
        return variables_clean(value)
    except DjangoValidationError as exc:
        raise serializers.ValidationError(exc.messages) from exc


class OutboundCallInput(serializers.Serializer):
    assistant = TenantObjectField(AssistantConfig, help_text="The assistant that talks.")
    phone_number = TenantObjectField(PhoneNumber, help_text="The tenant's number to call from.")
    to = serializers.CharField(max_length=32, help_text="Who to call, E.164.")
    variables = serializers.JSONField(
        required=False, help_text='Filled into the prompt and greeting: {"first_name": "Ada"}.'
    )

    def validate_to(self, value: str) -> str:
        return _e164(value)

    def validate_variables(self, value: object) -> dict:
        return _variables(value)


class OutboundCallSerializer(serializers.ModelSerializer):
    call = serializers.UUIDField(source="call_id", read_only=True)
    call_sid = serializers.CharField(source="call.call_sid", read_only=True)
    to = serializers.CharField(source="call.to_number", read_only=True)
    from_number = serializers.CharField(source="call.from_number", read_only=True)
    status = serializers.CharField(source="call.status", read_only=True)
    duration_seconds = serializers.IntegerField(source="call.duration_seconds", read_only=True)
    contact = serializers.UUIDField(source="contact_id", read_only=True)

    class Meta:
        model = OutboundCall
        fields = [
            "id",
            "call",
            "call_sid",
            "to",
            "from_number",
            "status",
            "duration_seconds",
            "answered_by",
            "voicemail_left",
            "variables",
            "contact",
            "placed_at",
            "created_at",
        ]
        read_only_fields = fields


CAMPAIGN_SETTINGS = [
    "name",
    "timezone",
    "window_start",
    "window_end",
    "window_days",
    "max_concurrent",
    "calls_per_second",
    "max_attempts",
    "retry_delay_seconds",
]


class CampaignSerializer(serializers.ModelSerializer):
    assistant = TenantObjectField(AssistantConfig)
    phone_number = TenantObjectField(PhoneNumber)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Campaign
        fields = [
            "id",
            "assistant",
            "phone_number",
            *CAMPAIGN_SETTINGS,
            "status",
            "progress",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = ["id", "status", "created_at", "started_at", "finished_at"]

    def get_progress(self, campaign: Campaign) -> dict[str, int]:
        return campaign_progress(campaign=campaign)

    def validate_window_days(self, value: str) -> str:
        days = "".join(sorted(set(value)))
        if not days or any(day not in "1234567" for day in days):
            raise serializers.ValidationError("ISO weekday digits: 1 (Monday) to 7 (Sunday).")
        return days

    def validate(self, attrs: dict) -> dict:
        start = attrs.get("window_start", getattr(self.instance, "window_start", None))
        end = attrs.get("window_end", getattr(self.instance, "window_end", None))
        if start and end and start >= end:
            raise serializers.ValidationError(
                {"window_end": "The window must end after it starts."}
            )
        return attrs


class ContactSerializer(serializers.ModelSerializer):
    last_call = serializers.UUIDField(source="last_call_id", read_only=True)

    class Meta:
        model = Contact
        fields = [
            "id",
            "number",
            "timezone",
            "variables",
            "state",
            "outcome",
            "attempts",
            "next_attempt_at",
            "last_call",
        ]
        read_only_fields = fields


class DoNotCallSerializer(serializers.ModelSerializer):
    class Meta:
        model = DoNotCall
        fields = ["id", "number", "source", "note", "created_at"]
        read_only_fields = ["id", "source", "created_at"]
        validators: list = []  # (tenant, number) is unique: adding it again changes nothing

    def validate_number(self, value: str) -> str:
        return _e164(value)


class RecordingSerializer(serializers.ModelSerializer):
    call = serializers.UUIDField(source="call_id", read_only=True)
    url = serializers.SerializerMethodField(help_text="The MP3 file; empty until fetched.")

    class Meta:
        model = Recording
        fields = ["id", "call", "status", "duration_seconds", "url", "delete_after", "created_at"]
        read_only_fields = fields

    def get_url(self, recording: Recording) -> str:
        request = self.context.get("request")
        base = settings.PUBLIC_BASE_URL or (request.build_absolute_uri("/") if request else "")
        return recording_url(recording, base_url=base)


class RecordingSettingsSerializer(serializers.ModelSerializer):
    class Meta:
        model = RecordingSettings
        fields = ["record_calls", "announce_recording", "retention_days"]


class CallbackSerializer(serializers.ModelSerializer):
    promised_on = serializers.UUIDField(
        source="promised_on_id", read_only=True, help_text="The call on which it was promised."
    )
    assistant = serializers.UUIDField(source="assistant_id", read_only=True)
    phone_number = serializers.UUIDField(source="phone_number_id", read_only=True)
    call = serializers.SerializerMethodField(help_text="The call placed, once placed.")

    class Meta:
        model = ScheduledCallback
        fields = [
            "id",
            "number",
            "due_at",
            "status",
            "note",
            "promised_on",
            "assistant",
            "phone_number",
            "call",
            "error",
            "created_at",
        ]
        read_only_fields = fields

    def get_call(self, callback: ScheduledCallback) -> str | None:
        outbound = callback.outbound
        return str(outbound.call_id) if outbound else None


class TwilioNumberInput(serializers.Serializer):
    number = serializers.CharField(max_length=32, help_text="A number of your Twilio account.")
    assistant = TenantObjectField(
        AssistantConfig, required=False, allow_null=True, help_text="The assistant it rings."
    )
    label = serializers.CharField(max_length=100, required=False, allow_blank=True)

    def validate_number(self, value: str) -> str:
        return _e164(value)


class TwilioNumberSerializer(serializers.Serializer):
    number = serializers.CharField()
    imported = serializers.BooleanField(help_text="Already on the platform.")
    wired = serializers.BooleanField(help_text="Its voice URL points at the platform.")

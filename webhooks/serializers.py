"""The webhooks API's shapes, and the documented shapes of what each event sends."""

from __future__ import annotations

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from calls.models import Call, Turn
from insights.models import CallReport, Sentiment
from webhooks.models import Attempt, Delivery, Endpoint, Event, EventType
from webhooks.services import event_body


class EndpointSerializer(serializers.ModelSerializer):
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices),
        allow_empty=False,
        help_text="The event types sent to this endpoint.",
    )

    class Meta:
        model = Endpoint
        fields = [
            "id",
            "url",
            "description",
            "events",
            "enabled",
            "disabled_reason",
            "failures_in_a_row",
            "created_at",
        ]
        read_only_fields = ["id", "disabled_reason", "failures_in_a_row", "created_at"]

    def validate_url(self, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise serializers.ValidationError("Only http and https addresses can receive events.")
        return value

    def validate_events(self, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class EndpointCreatedSerializer(EndpointSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="The signing secret (`whsec_...`): verify deliveries with it."
    )

    class Meta(EndpointSerializer.Meta):
        fields = [*EndpointSerializer.Meta.fields, "secret"]


class SecretSerializer(serializers.Serializer):
    secret = serializers.CharField(read_only=True, help_text="The current signing secret.")
    previous_secret_expires_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="Until then the previous secret signs every message too.",
    )


class RotateSerializer(serializers.Serializer):
    overlap_hours = serializers.FloatField(
        required=False,
        min_value=0,
        max_value=24 * 30,
        help_text="How long the old secret keeps signing beside the new one (default 24).",
    )


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = Attempt
        fields = ["number", "sent_at", "status_code", "latency_ms", "response_excerpt", "error"]


class DeliverySerializer(serializers.ModelSerializer):
    event_type = serializers.CharField(source="event.type", read_only=True)
    event = serializers.UUIDField(source="event_id", read_only=True)
    endpoint = serializers.UUIDField(source="endpoint_id", read_only=True)
    call = serializers.UUIDField(source="event.call_id", read_only=True, allow_null=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "event",
            "event_type",
            "call",
            "endpoint",
            "message_id",
            "status",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "created_at",
            "delivered_at",
        ]
        read_only_fields = fields


class DeliveryDetailSerializer(DeliverySerializer):
    body = serializers.SerializerMethodField(help_text="The JSON body sent (every attempt).")
    attempt_log = AttemptSerializer(many=True, read_only=True)

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "body", "attempt_log"]
        read_only_fields = fields

    def get_body(self, delivery: Delivery) -> str:
        return event_body(delivery.event).decode()


class ResendSerializer(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.UUIDField(), min_length=1, max_length=1000, help_text="Delivery ids."
    )


# --- what each event sends (documentation of the payloads) ------------------------------------


class _Assistant(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()


class CallSummary(serializers.Serializer):
    id = serializers.UUIDField()
    call_sid = serializers.CharField()
    assistant = _Assistant()
    to = serializers.CharField()
    direction = serializers.CharField()
    mode = serializers.ChoiceField(choices=Call.Mode.choices)
    status = serializers.CharField()
    started_at = serializers.DateTimeField()
    answered_at = serializers.DateTimeField(allow_null=True)

    def get_fields(self):  # "from" is a keyword in Python
        fields = super().get_fields()
        fields["from"] = serializers.CharField(help_text="The caller's number.")
        return fields


class EndedCall(CallSummary):
    ended_at = serializers.DateTimeField()
    duration_seconds = serializers.IntegerField(allow_null=True)
    outcome = serializers.CharField()
    error = serializers.CharField()
    recording_url = serializers.URLField(allow_null=True)


class TranscriptTurn(serializers.Serializer):
    sequence = serializers.IntegerField()
    role = serializers.ChoiceField(choices=Turn.Role.choices)
    text = serializers.CharField()
    interrupted = serializers.BooleanField()
    heard_text = serializers.CharField()
    at = serializers.DateTimeField()
    source = serializers.CharField()
    timings_ms = serializers.DictField(child=serializers.IntegerField(allow_null=True))


class Cost(serializers.Serializer):
    currency = serializers.CharField()
    total = serializers.DecimalField(max_digits=14, decimal_places=6)
    llm = serializers.DecimalField(max_digits=14, decimal_places=6)
    telephony = serializers.DecimalField(max_digits=14, decimal_places=6)
    speech = serializers.DecimalField(max_digits=14, decimal_places=6)
    analysis = serializers.DecimalField(max_digits=14, decimal_places=6)
    llm_tokens_in = serializers.IntegerField()
    llm_tokens_out = serializers.IntegerField()
    speech_characters = serializers.IntegerField()
    billed_minutes = serializers.IntegerField()


class Analysis(serializers.Serializer):
    status = serializers.ChoiceField(choices=CallReport.Analysis.choices)
    summary = serializers.CharField()
    success = serializers.BooleanField(allow_null=True)
    success_reason = serializers.CharField()
    sentiment = serializers.ChoiceField(choices=Sentiment.choices, allow_blank=True)
    data = serializers.DictField(help_text="The fields of the assistant's data schema.")
    model = serializers.CharField()
    error = serializers.CharField()
    analyzed_at = serializers.DateTimeField()


class CallStartedData(serializers.Serializer):
    call = CallSummary()


class CallEndedData(serializers.Serializer):
    call = EndedCall()
    transcript = TranscriptTurn(many=True)
    cost = Cost()


class CallAnalyzedData(serializers.Serializer):
    call = CallSummary()
    analysis = Analysis()


class CallTransferredData(serializers.Serializer):
    call = CallSummary()
    transfer_number = serializers.CharField()


EVENT_DATA = PolymorphicProxySerializer(
    component_name="WebhookEventData",
    serializers={
        EventType.CALL_STARTED: CallStartedData,
        EventType.CALL_ENDED: CallEndedData,
        EventType.CALL_ANALYZED: CallAnalyzedData,
        EventType.CALL_TRANSFERRED: CallTransferredData,
    },
    resource_type_field_name=None,
)


class EventSerializer(serializers.ModelSerializer):
    """An event as its body is sent: `{"type", "timestamp", "data"}`."""

    timestamp = serializers.DateTimeField(source="created_at", read_only=True)
    data = serializers.SerializerMethodField()

    class Meta:
        model = Event
        fields = ["id", "type", "timestamp", "data"]
        read_only_fields = fields

    @extend_schema_field(EVENT_DATA)
    def get_data(self, event: Event) -> dict:
        return event.payload

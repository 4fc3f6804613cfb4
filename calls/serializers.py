from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone
from rest_framework import serializers

from calls.models import Call, Turn


def as_utc(value: datetime) -> datetime:
    """An aware datetime in UTC (PostgreSQL refuses offsets beyond ±15:59, which ISO 8601 and
    Python allow up to ±23:59); the extremes of the calendar are clamped."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        extreme = datetime.max if value.year > 1 else datetime.min
        return extreme.replace(tzinfo=UTC)


class TurnSerializer(serializers.ModelSerializer):
    class Meta:
        model = Turn
        fields = [
            "id", "sequence", "role", "text", "confidence", "interrupted", "heard_text",
            "created_at", "llm_first_token_ms", "llm_done_ms", "first_audio_ms",
            "response_sent_ms", "last_token_sent_ms", "model_used", "tokens_in", "tokens_out",
            "cache_hit", "source", "fallbacks", "audio_urls", "error",
        ]  # fmt: skip
        read_only_fields = fields


class CallSerializer(serializers.ModelSerializer):
    phone_number = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    assistant = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    turn_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Call
        fields = [
            "id", "call_sid", "status", "outcome", "mode", "direction", "from_number",
            "to_number", "phone_number", "assistant", "started_at", "answered_at", "ended_at",
            "duration_seconds", "error", "turn_count",
        ]  # fmt: skip
        read_only_fields = fields


class CallDetailSerializer(CallSerializer):
    turns = TurnSerializer(many=True, read_only=True)
    config_snapshot = serializers.JSONField(
        read_only=True, help_text="The assistant's settings when the call started."
    )

    class Meta(CallSerializer.Meta):
        fields = [*CallSerializer.Meta.fields, "config_snapshot", "turns"]
        read_only_fields = fields


class TurnAudioSerializer(serializers.ModelSerializer):
    turn = serializers.UUIDField(source="id", read_only=True)

    class Meta:
        model = Turn
        fields = ["turn", "sequence", "text", "audio_urls"]
        read_only_fields = fields


class AnalyticsQuerySerializer(serializers.Serializer):
    start = serializers.DateTimeField(
        required=False, help_text="Start of the period (ISO 8601); default: 7 days before end."
    )
    end = serializers.DateTimeField(required=False, help_text="End (exclusive); default: now.")
    assistant = serializers.UUIDField(
        required=False, help_text="Only this assistant's row (the tenant totals stay)."
    )

    def validate(self, attrs: dict) -> dict:
        end = as_utc(attrs.get("end") or timezone.now())
        start = as_utc(attrs.get("start") or end - timedelta(days=7))
        if start >= end:
            raise serializers.ValidationError({"start": "The start must come before the end."})
        if end - start > timedelta(days=366):
            raise serializers.ValidationError({"start": "The period may be at most 366 days."})
        return {**attrs, "start": start, "end": end}


class FiguresSerializer(serializers.Serializer):
    """The dashboard's figures (analytics.selectors) under the API's names."""

    calls = serializers.IntegerField()
    answered = serializers.IntegerField()
    rejected = serializers.IntegerField()
    failed = serializers.IntegerField()
    total_duration_seconds = serializers.IntegerField(source="total_duration")
    avg_duration_seconds = serializers.FloatField(source="avg_duration", allow_null=True)
    turns = serializers.IntegerField()
    turns_per_call = serializers.FloatField(
        allow_null=True, help_text="Turns per call that was not rejected."
    )
    assistant_replies = serializers.IntegerField(source="assistant_turns")
    llm_first_token_ms_p50 = serializers.FloatField(source="first_token_p50", allow_null=True)
    llm_first_token_ms_p90 = serializers.FloatField(source="first_token_p90", allow_null=True)
    response_sent_ms_p50 = serializers.FloatField(
        source="turn_p50", allow_null=True, help_text="Whole-turn latency."
    )
    response_sent_ms_p90 = serializers.FloatField(source="turn_p90", allow_null=True)
    fallback_rate = serializers.FloatField(
        allow_null=True, help_text="Share of assistant replies that needed a fallback."
    )
    error_rate = serializers.FloatField(allow_null=True)
    cache_hit_rate = serializers.FloatField(allow_null=True)
    tokens_used = serializers.IntegerField(source="tokens")


class TenantFiguresSerializer(FiguresSerializer):
    token_budget = serializers.IntegerField(
        allow_null=True, help_text="Tokens allowed in the period by the daily limit; null: none."
    )
    token_budget_used = serializers.FloatField(allow_null=True)


class AssistantFiguresSerializer(FiguresSerializer):
    assistant = serializers.UUIDField()
    name = serializers.CharField()


class AnalyticsSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    tenant = TenantFiguresSerializer()
    assistants = AssistantFiguresSerializer(many=True)

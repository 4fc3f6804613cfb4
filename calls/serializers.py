from __future__ import annotations

from datetime import UTC, datetime

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
            "id",
            "sequence",
            "role",
            "text",
            "confidence",
            "language",
            "interrupted",
            "heard_text",
            "created_at",
            "llm_first_token_ms",
            "llm_done_ms",
            "first_audio_ms",
            "response_sent_ms",
            "last_token_sent_ms",
            "model_used",
            "route",
            "route_reason",
            "tokens_in",
            "tokens_out",
            "cache_hit",
            "source",
            "fallbacks",
            "audio_urls",
            "tool_calls",
            "passages",
            "error",
        ]
        read_only_fields = fields


class CallSerializer(serializers.ModelSerializer):
    phone_number = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    assistant = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    turn_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Call
        fields = [
            "id",
            "call_sid",
            "status",
            "outcome",
            "mode",
            "direction",
            "from_number",
            "to_number",
            "phone_number",
            "assistant",
            "started_at",
            "answered_at",
            "ended_at",
            "duration_seconds",
            "language",
            "error",
            "turn_count",
        ]
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

"""The API's analytics: the dashboard's figures for a period, under the API's names."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import serializers

from calls.serializers import as_utc


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

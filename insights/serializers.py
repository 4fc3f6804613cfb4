from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from insights.models import AnalysisPlan, CallReport, TurnCost, validate_data_schema


class AnalysisPlanSerializer(serializers.ModelSerializer):
    data_schema = serializers.JSONField(
        required=False,
        help_text='JSON Schema of the fields to extract, e.g. {"type": "object", "properties": '
        '{"name": {"type": "string"}}}.',
    )

    class Meta:
        model = AnalysisPlan
        fields = ["enabled", "model", "prompt", "success_criteria", "data_schema", "updated_at"]
        read_only_fields = ["updated_at"]

    def validate_model(self, value: str) -> str:
        if value and value not in settings.LLM_MODELS:
            raise serializers.ValidationError(
                f"Unknown model {value!r}; choose one of: {', '.join(settings.LLM_MODELS)}."
            )
        return value

    def validate_data_schema(self, value: object) -> object:
        try:
            validate_data_schema(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return value or {}


class TurnCostSerializer(serializers.ModelSerializer):
    turn = serializers.UUIDField(source="turn_id")
    sequence = serializers.IntegerField(source="turn.sequence")

    class Meta:
        model = TurnCost
        fields = ["turn", "sequence", "llm_cost", "speech_cost", "speech_characters"]


class CallReportSerializer(serializers.ModelSerializer):
    call = serializers.UUIDField(source="call_id", read_only=True)
    assistant = serializers.UUIDField(source="call.assistant_id", read_only=True, allow_null=True)
    started_at = serializers.DateTimeField(source="call.started_at", read_only=True)

    class Meta:
        model = CallReport
        fields = [
            "call",
            "assistant",
            "started_at",
            "currency",
            "total_cost",
            "llm_cost",
            "telephony_cost",
            "speech_cost",
            "analysis_cost",
            "tokens_in",
            "tokens_out",
            "speech_characters",
            "billed_minutes",
            "analysis_status",
            "summary",
            "success",
            "success_reason",
            "sentiment",
            "data",
            "analysis_model",
            "analysis_error",
            "analyzed_at",
        ]
        read_only_fields = fields


class CallReportDetailSerializer(CallReportSerializer):
    turn_costs = TurnCostSerializer(many=True, read_only=True)

    class Meta(CallReportSerializer.Meta):
        fields = [*CallReportSerializer.Meta.fields, "turn_costs"]
        read_only_fields = fields

from __future__ import annotations

from rest_framework import serializers

from rehearsals.models import ReplayCall, ReplayRun, Scenario, ScenarioRun


class ScenarioSerializer(serializers.ModelSerializer):
    """A test scenario: a caller (lines, or an LLM with a goal and persona) and checks."""

    class Meta:
        model = Scenario
        fields = [
            "id",
            "name",
            "suite",
            "active",
            "lines",
            "caller_goal",
            "caller_persona",
            "max_turns",
            "checks",
            "tool_answers",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]
        validators: list = []  # the (assistant, name) uniqueness is checked by the view


class ScenarioRunSerializer(serializers.ModelSerializer):
    scenario = serializers.CharField(source="scenario.name", read_only=True)
    candidate = serializers.CharField(source="candidate_label", read_only=True)

    class Meta:
        model = ScenarioRun
        fields = [
            "id",
            "scenario",
            "candidate",
            "passed",
            "results",
            "transcript",
            "error",
            "tokens",
            "created_at",
        ]
        read_only_fields = fields


class ScenarioRunRequestSerializer(serializers.Serializer):
    version = serializers.CharField(
        required=False, default="draft", help_text='A version number, "draft" or "published".'
    )
    suite = serializers.CharField(required=False, allow_blank=True, default="")
    scenarios = serializers.ListField(
        child=serializers.UUIDField(), required=False, help_text="Only these scenarios."
    )


class ScenarioRunResultSerializer(serializers.Serializer):
    passed = serializers.BooleanField(help_text="Every scenario passed.")
    runs = ScenarioRunSerializer(many=True)


class ReplayCallSerializer(serializers.ModelSerializer):
    call = serializers.UUIDField(source="call_id", read_only=True)

    class Meta:
        model = ReplayCall
        fields = ["call", "status", "turns_changed", "tokens", "error", "turns"]
        read_only_fields = fields


class ReplayRunSerializer(serializers.ModelSerializer):
    assistant = serializers.UUIDField(source="assistant_id", read_only=True)
    candidate = serializers.CharField(source="candidate_label", read_only=True)

    class Meta:
        model = ReplayRun
        fields = [
            "id",
            "assistant",
            "candidate",
            "status",
            "message",
            "selection",
            "concurrency",
            "budget_tokens",
            "tokens_spent",
            "report",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


class ReplayRunDetailSerializer(ReplayRunSerializer):
    calls = ReplayCallSerializer(many=True, read_only=True)

    class Meta(ReplayRunSerializer.Meta):
        fields = [*ReplayRunSerializer.Meta.fields, "calls"]
        read_only_fields = fields


class ReplayRequestSerializer(serializers.Serializer):
    assistant = serializers.UUIDField()
    version = serializers.CharField(
        required=False, default="draft", help_text='A version number, "draft" or "published".'
    )
    since = serializers.DateTimeField(required=False, allow_null=True, default=None)
    until = serializers.DateTimeField(required=False, allow_null=True, default=None)
    outcome = serializers.CharField(required=False, allow_blank=True, default="")
    success = serializers.BooleanField(required=False, allow_null=True, default=None)
    calls = serializers.ListField(child=serializers.UUIDField(), required=False, default=list)
    limit = serializers.IntegerField(required=False, min_value=1, default=0)
    concurrency = serializers.IntegerField(required=False, min_value=1, max_value=16, default=2)
    budget_tokens = serializers.IntegerField(required=False, min_value=1, allow_null=True)

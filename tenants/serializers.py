from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.exceptions import NotFound

from assistants.models import AssistantConfig
from tenants.models import PhoneNumber, RateLimit
from tenants.phone import normalize_e164


class TenantAssistantField(serializers.PrimaryKeyRelatedField):
    """An assistant id of the request's tenant; any other id (another tenant's) answers 404."""

    def get_queryset(self):
        return AssistantConfig.objects.filter(tenant=self.context["view"].tenant)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError("Give the assistant's id (a UUID string) or null.")
        try:
            return self.get_queryset().get(pk=data)
        except (AssistantConfig.DoesNotExist, DjangoValidationError, ValueError) as exc:
            # Unknown, malformed and another tenant's ids all read the same: no existence leak.
            raise NotFound(f"assistant: no assistant {data[:64]!r} in your tenant.") from exc


class PhoneNumberSerializer(serializers.ModelSerializer):
    number = serializers.CharField(
        max_length=32, help_text="E.164 with country code, e.g. +14155550100."
    )
    assistant = TenantAssistantField(
        allow_null=True,
        required=False,
        help_text="The assistant that answers this number (an id of your tenant), or null.",
    )

    class Meta:
        model = PhoneNumber
        fields = ["id", "number", "assistant", "label", "active", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_number(self, value: str) -> str:
        try:
            return normalize_e164(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc


class RateLimitSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=RateLimit.Kind.choices)
    description = serializers.CharField()
    source = serializers.ChoiceField(
        choices=["tenant", "default", "none"],
        help_text="tenant: your own limit; default: the platform default; none: no limit.",
    )
    limit = serializers.IntegerField(allow_null=True)
    window_seconds = serializers.IntegerField(
        allow_null=True, help_text="Ignored for concurrent calls."
    )
    action = serializers.ChoiceField(choices=RateLimit.Action.choices, allow_null=True)
    message = serializers.CharField(allow_null=True, help_text="What the caller hears.")

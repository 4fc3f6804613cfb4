from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from assistants.models import AssistantConfig, FAQEntry
from assistants.services import ASSISTANT_FIELDS, FAQ_FIELDS


class AssistantSerializer(serializers.ModelSerializer):
    """An assistant's configuration. Model fields are validated by the model's own validators."""

    model = serializers.CharField(
        max_length=100,
        required=False,
        help_text="A Groq model this platform allows: " + ", ".join(settings.LLM_MODELS) + ".",
    )
    fallback_model = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        help_text="Used when the main model fails; empty for none.",
    )
    phone_numbers = serializers.SlugRelatedField(
        slug_field="number", many=True, read_only=True, help_text="Numbers it answers."
    )

    class Meta:
        model = AssistantConfig
        fields = ["id", *sorted(ASSISTANT_FIELDS), "phone_numbers", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        # The (tenant, name) uniqueness is checked by the service, where the tenant is known.
        validators: list = []

    def validate_model(self, value: str) -> str:
        return _known_model(value)

    def validate_fallback_model(self, value: str) -> str:
        return _known_model(value) if value else value


def _known_model(value: str) -> str:
    if value not in settings.LLM_MODELS:
        raise serializers.ValidationError(
            f"Unknown model {value!r}; choose one of: {', '.join(settings.LLM_MODELS)}."
        )
    return value


class FAQEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = FAQEntry
        fields = ["id", *sorted(FAQ_FIELDS), "created_at"]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {"patterns": {"max_length": 5000}}

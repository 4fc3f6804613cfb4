from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.exceptions import NotFound

from assistants.models import AssistantConfig, AssistantVersion, FAQEntry
from assistants.services import ASSISTANT_FIELDS, FAQ_FIELDS
from tenants.models import PhoneNumber
from tenants.phone import normalize_e164


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
    fast_model = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        help_text="Answers short, simple turns; empty: the main model answers every turn.",
    )
    phone_numbers = serializers.SlugRelatedField(
        slug_field="number", many=True, read_only=True, help_text="Numbers it answers."
    )
    published_version = serializers.SlugRelatedField(
        slug_field="number",
        read_only=True,
        allow_null=True,
        help_text="The version callers get (the settings here are the draft); null: none yet.",
    )

    class Meta:
        model = AssistantConfig
        fields = [
            "id",
            *sorted(ASSISTANT_FIELDS),
            "phone_numbers",
            "published_version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        # The (tenant, name) uniqueness is checked by the service, where the tenant is known.
        validators: list = []

    def validate_model(self, value: str) -> str:
        return _known_model(value)

    def validate_fallback_model(self, value: str) -> str:
        return _known_model(value) if value else value

    def validate_fast_model(self, value: str) -> str:
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

    pinned_version = serializers.IntegerField(
        source="pinned_version.number",
        allow_null=True,
        required=False,
        min_value=1,
        help_text="Answer with this version (number) of its assistant instead of the published "
        "one; null for the published one. Re-pointing the number to another assistant unpins it.",
    )

    class Meta:
        model = PhoneNumber
        fields = ["id", "number", "assistant", "label", "active", "pinned_version", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_number(self, value: str) -> str:
        try:
            return normalize_e164(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc

    def validate(self, attrs: dict) -> dict:
        if "pinned_version" not in attrs:
            return attrs
        number = (attrs.pop("pinned_version") or {}).get("number")
        if number is None:
            attrs["pinned_version"] = None
            return attrs
        assistant = attrs.get("assistant", getattr(self.instance, "assistant", None))
        version = (
            AssistantVersion.objects.filter(assistant=assistant, number=number).first()
            if assistant is not None
            else None
        )
        if version is None:
            raise serializers.ValidationError(
                {"pinned_version": f"The number's assistant has no version {number}."}
            )
        attrs["pinned_version"] = version
        return attrs


class VersionSerializer(serializers.ModelSerializer):
    """A published version: the assistant's settings, FAQ, tools and knowledge references."""

    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    live = serializers.SerializerMethodField(help_text="Callers get this version now.")

    class Meta:
        model = AssistantVersion
        fields = ["id", "number", "note", "live", "created_by", "created_at", "published_at"]
        read_only_fields = fields

    def get_live(self, version: AssistantVersion) -> bool:
        return version.assistant.published_version_id == version.id


class VersionDetailSerializer(VersionSerializer):
    class Meta(VersionSerializer.Meta):
        fields = [*VersionSerializer.Meta.fields, "config", "parts"]
        read_only_fields = fields


class PublishSerializer(serializers.Serializer):
    note = serializers.CharField(
        max_length=500, required=False, allow_blank=True, help_text="What changed, and why."
    )


class ChangeSerializer(serializers.Serializer):
    field = serializers.CharField()
    before = serializers.CharField()
    after = serializers.CharField()

from __future__ import annotations

from rest_framework import serializers

from tenants.models import RateLimit


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


class ProviderKeysSerializer(serializers.Serializer):
    """Stream mode's provider keys: written, never read back; reading says which are set."""

    deepgram_api_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="Deepgram (recognition and voice); an empty string removes it.",
    )
    assemblyai_api_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="AssemblyAI (recognition); an empty string removes it.",
    )
    deepgram_api_key_set = serializers.BooleanField(source="has_deepgram_api_key", read_only=True)
    assemblyai_api_key_set = serializers.BooleanField(
        source="has_assemblyai_api_key", read_only=True
    )

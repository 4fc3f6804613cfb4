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

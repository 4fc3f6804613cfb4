from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from tools.models import (
    BuiltinTools,
    HttpTool,
    TransferDestination,
    validate_headers,
    validate_registered,
)
from tools.services import BUILTIN_FIELDS, HTTP_TOOL_FIELDS


class HttpToolSerializer(serializers.ModelSerializer):
    """An HTTP tool. Header values are write-only: reads list the header names only."""

    headers = serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=4000),
        write_only=True,
        required=False,
        help_text='Sent with every request, e.g. {"Authorization": "Bearer ..."}; stored '
        "encrypted and never shown again. Replaces the stored headers when given.",
    )
    header_names = serializers.SerializerMethodField()
    signing_secret = serializers.SerializerMethodField(
        help_text="Verify the webhook-signature of each request with it (Standard Webhooks)."
    )

    class Meta:
        model = HttpTool
        fields = [
            "id",
            *sorted(HTTP_TOOL_FIELDS),
            "headers",
            "header_names",
            "signing_secret",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators: list = []  # (assistant, name) uniqueness: checked by the model's clean

    def get_header_names(self, tool: HttpTool) -> list[str]:
        return tool.header_names()

    def get_signing_secret(self, tool: HttpTool) -> str:
        return tool.get_signing_secret()

    def validate_headers(self, value: dict) -> dict:
        try:
            return validate_headers(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc


class TransferDestinationSerializer(serializers.ModelSerializer):
    class Meta:
        model = TransferDestination
        fields = ["id", "name", "number", "description"]
        read_only_fields = ["id"]
        validators: list = []


class BuiltinToolsSerializer(serializers.ModelSerializer):
    registered = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        max_length=50,
        help_text="Further built-in tools switched on, by name (e.g. schedule_callback).",
    )

    class Meta:
        model = BuiltinTools
        fields = sorted(BUILTIN_FIELDS)

    def validate_registered(self, value: list[str]) -> list[str]:
        try:
            return validate_registered(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict["registered"]) from exc

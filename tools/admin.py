from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django_scopes.forms import SafeModelChoiceField

from tenants.admin_base import TenantScopedAdmin
from tools import builtins
from tools.models import BuiltinTools, HttpTool, TransferDestination, validate_headers


def parse_headers(text: str) -> dict[str, str]:
    """`Name: value` lines as a dict of headers (checked)."""
    headers = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise ValidationError(f"Write each header as Name: value ({line[:40]!r}).")
        headers[name.strip()] = value.strip()
    return validate_headers(headers)


class HttpToolForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    headers = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One `Name: value` per line, sent with every request (e.g. Authorization). "
        "Stored encrypted and never shown again; leave empty to keep the stored headers.",
    )

    class Meta:
        model = HttpTool
        fields = [
            "tenant",
            "assistant",
            "name",
            "description",
            "parameters",
            "url",
            "method",
            "timeout_seconds",
            "active",
        ]
        # Built at import time, outside any scope; the admin narrows the choices per request.
        field_classes = {"assistant": SafeModelChoiceField}

    def clean_headers(self) -> dict[str, str] | None:
        text = self.cleaned_data.get("headers", "")
        return parse_headers(text) if text.strip() else None

    def save(self, commit: bool = True) -> HttpTool:
        tool = super().save(commit=False)
        if self.cleaned_data.get("headers") is not None:
            tool.set_headers(self.cleaned_data["headers"])
        tool.ensure_signing_secret()
        if commit:
            tool.save()
        return tool


@admin.register(HttpTool)
class HttpToolAdmin(TenantScopedAdmin):
    form = HttpToolForm
    list_display = ["name", "assistant", "tenant", "method", "url", "active"]
    list_filter = ["active", "method"]
    search_fields = ["name", "description", "url"]
    list_select_related = ["tenant", "assistant"]
    readonly_fields = ["header_list", "signing_secret"]

    @admin.display(description="Headers set")
    def header_list(self, obj: HttpTool) -> str:
        return ", ".join(obj.header_names()) or "—"

    @admin.display(description="Signing secret")
    def signing_secret(self, obj: HttpTool) -> str:
        """The tenant's server verifies each request's `webhook-signature` with it."""
        return obj.get_signing_secret() if obj.signing_secret_encrypted else "(made on save)"

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [*HttpToolForm.Meta.fields, "headers", "header_list", "signing_secret"]


@admin.register(TransferDestination)
class TransferDestinationAdmin(TenantScopedAdmin):
    list_display = ["name", "number", "assistant", "tenant"]
    search_fields = ["name", "number"]
    list_select_related = ["tenant", "assistant"]


class BuiltinToolsForm(forms.ModelForm):
    registered = forms.MultipleChoiceField(
        label="More built-in tools",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        choices=builtins.choices,  # read when the form is shown: apps register at start-up
    )

    class Meta:
        model = BuiltinTools
        fields = [
            "tenant",
            "assistant",
            "transfer_call",
            "end_call",
            "lookup_knowledge",
            "knowledge_in_prompt",
            "registered",
        ]
        field_classes = {"assistant": SafeModelChoiceField}


@admin.register(BuiltinTools)
class BuiltinToolsAdmin(TenantScopedAdmin):
    form = BuiltinToolsForm
    list_display = [
        "assistant",
        "tenant",
        "transfer_call",
        "end_call",
        "lookup_knowledge",
        "knowledge_in_prompt",
        "registered",
    ]
    list_select_related = ["tenant", "assistant"]

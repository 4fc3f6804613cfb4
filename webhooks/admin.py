from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from calls.admin import ReadOnlyRecordAdmin
from core.signing import new_secret
from tenants import crypto
from tenants.admin_base import ReadOnlyRecordInline, TenantScopedAdmin
from webhooks import services
from webhooks.models import Attempt, Delivery, Endpoint, Event, EventType


class EndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=EventType.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = Endpoint
        fields = ["tenant", "url", "description", "events", "enabled"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        if not url.lower().startswith(("http://", "https://")):
            raise forms.ValidationError("Only http and https addresses can receive events.")
        return url


@admin.register(Endpoint)
class EndpointAdmin(TenantScopedAdmin):
    form = EndpointForm
    list_display = ["url", "description", "tenant", "enabled", "failures_in_a_row", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["url", "description"]
    actions = ["rotate_secret"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        """The secret is shown to those who may change the endpoint (they set up its
        receiver), never to viewers."""
        fields = ["disabled_reason", "failures_in_a_row"]
        if obj is not None and self.has_change_permission(request, obj):
            fields.insert(0, "signing_secret")
        return fields

    @admin.display(description="Signing secret")
    def signing_secret(self, obj: Endpoint) -> str:
        return format_html("<code>{}</code>", obj.secret)

    def save_model(self, request: HttpRequest, obj: Endpoint, form: Any, change: bool) -> None:
        if not obj.secret_encrypted:
            obj.secret_encrypted = crypto.encrypt(new_secret())
        if change and "enabled" in form.changed_data and obj.enabled:
            obj.failures_in_a_row, obj.disabled_reason = 0, ""
        super().save_model(request, obj, form, change)

    @admin.action(description="Rotate the signing secret (the old one signs 24 h more)")
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        endpoints = [e for e in queryset if self.has_change_permission(request, e)]
        for endpoint in endpoints:
            services.endpoint_rotate_secret(endpoint=endpoint)
        messages.success(request, f"New secrets for {len(endpoints)} endpoint(s): see each page.")


class AttemptInline(ReadOnlyRecordInline):
    model = Attempt
    fields = ["number", "sent_at", "status_code", "latency_ms", "response_excerpt", "error"]
    readonly_fields = fields


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyRecordAdmin):
    list_display = [
        "message_id",
        "event_type",
        "endpoint",
        "tenant",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["status", "event__type"]
    search_fields = ["message_id", "endpoint__url"]
    list_select_related = ["event", "endpoint", "tenant"]
    inlines = [AttemptInline]
    actions = ["resend"]

    @admin.display(description="Event")
    def event_type(self, obj: Delivery) -> str:
        return obj.event.type

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Read-only fields, but those who may write may resend (an action).
        return obj is None and TenantScopedAdmin.has_change_permission(self, request, obj)

    @admin.action(description="Resend (same webhook-id, from the start of the schedule)")
    def resend(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        allowed = [d for d in queryset if TenantScopedAdmin.has_change_permission(self, request, d)]
        count = services.deliveries_resend(deliveries=allowed)
        messages.success(request, f"{count} deliveries queued again.")


@admin.register(Event)
class EventAdmin(ReadOnlyRecordAdmin):
    list_display = ["type", "tenant", "call", "created_at"]
    list_filter = ["type"]
    list_select_related = ["tenant", "call"]
    date_hierarchy = "created_at"

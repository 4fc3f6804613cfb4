from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from calls.models import Call, Turn
from tenants.access import is_platform_staff
from tenants.admin_base import TenantScopedAdmin


class ReadOnlyRecordAdmin(TenantScopedAdmin):
    """Calls and turns are written by the pipeline; in the admin they are records to read."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)


class TurnInline(admin.TabularInline):
    model = Turn
    extra = 0
    can_delete = False
    fields = [
        "sequence",
        "role",
        "text",
        "interrupted",
        "llm_first_token_ms",
        "response_sent_ms",
        "source",
        "model_used",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A tenant's members have no model permissions: whoever may read the call reads its
        # turns (platform staff still need `view_turn`).
        if is_platform_staff(request.user):
            return super().has_view_permission(request, obj)
        return self.admin_site._registry[Call].has_view_permission(request, obj)


@admin.register(Call)
class CallAdmin(ReadOnlyRecordAdmin):
    list_display = [
        "call_sid",
        "tenant",
        "to_number",
        "assistant",
        "mode",
        "status",
        "outcome",
        "started_at",
        "duration_seconds",
    ]
    list_filter = ["status", "mode", "outcome"]
    search_fields = ["call_sid", "from_number", "to_number"]
    date_hierarchy = "started_at"
    list_select_related = ["tenant", "assistant"]
    inlines = [TurnInline]


@admin.register(Turn)
class TurnAdmin(ReadOnlyRecordAdmin):
    list_display = [
        "call",
        "sequence",
        "role",
        "text",
        "llm_first_token_ms",
        "response_sent_ms",
        "cache_hit",
        "created_at",
    ]
    list_filter = ["role", "cache_hit", "source"]
    search_fields = ["text", "call__call_sid"]
    list_select_related = ["call"]

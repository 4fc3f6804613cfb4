from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from calls.admin import ReadOnlyRecordAdmin
from insights.api import FIELD_NAME
from insights.models import AnalysisPlan, CallReport, TurnCost
from tenants.access import is_platform_staff
from tenants.admin_base import TenantScopedAdmin


@admin.register(AnalysisPlan)
class AnalysisPlanAdmin(TenantScopedAdmin):
    list_display = ["assistant", "tenant", "enabled", "model", "updated_at"]
    list_filter = ["enabled"]
    list_select_related = ["assistant", "tenant"]


class TurnCostInline(admin.TabularInline):
    model = TurnCost
    extra = 0
    can_delete = False
    fields = ["turn", "llm_cost", "speech_cost", "speech_characters"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if is_platform_staff(request.user):
            return super().has_view_permission(request, obj)
        return self.admin_site._registry[CallReport].has_view_permission(request, obj)


@admin.register(CallReport)
class CallReportAdmin(ReadOnlyRecordAdmin):
    """Search `name:value` finds the calls whose extracted field `name` is `value`."""

    list_display = [
        "call",
        "tenant",
        "success",
        "sentiment",
        "analysis_status",
        "total_cost",
        "currency",
        "created_at",
    ]
    list_filter = ["success", "sentiment", "analysis_status"]
    search_fields = ["summary", "call__call_sid"]
    search_help_text = "Words of the summary, a CallSid, or an extracted field as name:value."
    list_select_related = ["call", "tenant"]
    inlines = [TurnCostInline]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        field, sep, value = search_term.partition(":")
        if sep and FIELD_NAME.match(field.strip()):
            return queryset.filter(**{f"data__{field.strip()}": value.strip()}), False
        return super().get_search_results(request, queryset, search_term)

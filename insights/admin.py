from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from calls.admin import ReadOnlyRecordAdmin
from insights.api import FIELD_NAME
from insights.models import AnalysisPlan, CallReport, TurnCost
from tenants.admin_base import ReadOnlyRecordInline, TenantScopedAdmin


@admin.register(AnalysisPlan)
class AnalysisPlanAdmin(TenantScopedAdmin):
    list_display = ["assistant", "tenant", "enabled", "model", "updated_at"]
    list_filter = ["enabled"]
    list_select_related = ["assistant", "tenant"]


class TurnCostInline(ReadOnlyRecordInline):
    model = TurnCost
    fields = ["turn", "llm_cost", "speech_cost", "speech_characters"]
    readonly_fields = fields


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

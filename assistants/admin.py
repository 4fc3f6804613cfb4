from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from assistants.models import AssistantConfig, FAQEntry
from assistants.services import assistant_prepare_greeting
from tenants.admin_base import TenantScopedAdmin


@admin.register(AssistantConfig)
class AssistantConfigAdmin(TenantScopedAdmin):
    list_display = [
        "name", "tenant", "mode", "model", "language", "tts_engine", "updated_at", "talk_link",
    ]  # fmt: skip
    list_filter = ["mode", "tts_engine", "model"]
    search_fields = ["name"]
    list_select_related = ["tenant"]
    fieldsets = [
        (None, {"fields": ["tenant", "name", "mode"]}),
        ("Language model", {
            "fields": ["model", "fallback_model", "temperature", "max_tokens", "context_turns",
                       "system_prompt"],
        }),
        ("Voice", {
            "fields": ["greeting", "language", "tts_engine", "tts_voice", "speech_timeout",
                       "interruptible"],
        }),
        ("Transfer to a human", {"fields": ["transfer_number", "transfer_digit"]}),
    ]  # fmt: skip

    @admin.display(description="Try it")
    def talk_link(self, obj: AssistantConfig) -> str:
        return format_html('<a href="{}">Talk to it</a>', reverse("assistant-talk", args=[obj.id]))

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        assistant_prepare_greeting(assistant=obj)


@admin.register(FAQEntry)
class FAQEntryAdmin(TenantScopedAdmin):
    list_display = ["__str__", "assistant", "tenant", "active"]
    list_filter = ["active"]
    search_fields = ["patterns", "answer"]
    list_select_related = ["tenant", "assistant"]

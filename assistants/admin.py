from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from assistants.models import AssistantConfig, FAQEntry, SpeechAudio
from assistants.services import assistant_prepare_greeting
from assistants.speech import speech_url
from tenants.admin_base import TenantScopedAdmin


@admin.register(AssistantConfig)
class AssistantConfigAdmin(TenantScopedAdmin):
    # The talk link next to the name: a last column is scrolled out of sight on laptop screens.
    list_display = [
        "name",
        "talk_link",
        "tenant",
        "mode",
        "model",
        "language",
        "tts_engine",
        "updated_at",
    ]
    list_filter = ["mode", "tts_engine", "model"]
    search_fields = ["name"]
    list_select_related = ["tenant"]
    fieldsets = [
        (None, {"fields": ["tenant", "name", "mode"]}),
        (
            "Language model",
            {
                "fields": [
                    "model",
                    "fallback_model",
                    "fast_model",
                    "temperature",
                    "max_tokens",
                    "context_turns",
                    "system_prompt",
                ],
            },
        ),
        (
            "Voice",
            {
                "fields": [
                    "greeting",
                    "language",
                    "tts_engine",
                    "tts_voice",
                    "speech_timeout",
                    "interruptible",
                ],
            },
        ),
        (
            "Languages",
            {
                "fields": ["other_languages", "transcription_provider", "voices", "phrases"],
            },
        ),
        (
            "Stream mode: recognition and voice",
            {
                "fields": [
                    "recognition_provider",
                    "recognition_model",
                    "endpointing_ms",
                    "recognition_keywords",
                    "voice_provider",
                    "stream_voice",
                ],
            },
        ),
        ("Transfer to a human", {"fields": ["transfer_number", "transfer_digit"]}),
    ]

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


@admin.register(SpeechAudio)
class SpeechAudioAdmin(TenantScopedAdmin):
    """Made and expired by the speech tasks; here to read why a sentence had no audio."""

    list_display = [
        "text",
        "tenant",
        "engine",
        "voice",
        "language",
        "state",
        "synth_ms",
        "created_at",
    ]
    list_filter = ["engine", "language"]
    search_fields = ["text", "error"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant"]
    fields = [
        "tenant",
        "text",
        "engine",
        "voice",
        "language",
        "state",
        "error",
        "player",
        "content_type",
        "synth_ms",
        "created_at",
    ]
    readonly_fields = fields

    @admin.display(description="State")
    def state(self, obj: SpeechAudio) -> str:
        if obj.file:
            return "ready"
        return "failed" if obj.error else "being made"

    @admin.display(description="Audio")
    def player(self, obj: SpeechAudio) -> str:
        if not obj.file:
            return "—"
        return format_html('<audio controls preload="none" src="{}"></audio>', speech_url(obj))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the cleanup task deletes files and rows together

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from assistants import versions
from assistants.models import AssistantConfig, AssistantVersion, FAQEntry, SpeechAudio
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
        "live_version",
        "updated_at",
    ]
    list_filter = ["mode", "tts_engine", "model"]
    search_fields = ["name"]
    list_select_related = ["tenant"]
    readonly_fields = ["live_version"]
    fieldsets = [
        (None, {"fields": ["tenant", "name", "mode", "live_version", "scenarios_required"]}),
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

    @admin.display(description="Live version")
    def live_version(self, obj: AssistantConfig) -> str:
        if not obj.pk:
            return "—"
        publish = reverse("admin:assistants_assistantconfig_publish", args=[obj.pk])
        live = f"v{obj.published_version.number}" if obj.published_version_id else "none"
        return format_html('{} · <a href="{}">Publish the draft…</a>', live, publish)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:  # a new assistant answers at once with its first settings
            versions.version_publish(
                assistant=obj, user=request.user, note="First version", check=False
            )
        assistant_prepare_greeting(assistant=obj)

    def get_urls(self):
        publish = self.admin_site.admin_view(self.publish_view)
        own = [path("<uuid:pk>/publish/", publish, name="assistants_assistantconfig_publish")]
        return own + super().get_urls()

    def publish_view(self, request: HttpRequest, pk: str) -> HttpResponse:
        """Show what the draft changes against the live version, and publish it on POST."""
        assistant = self.get_object(request, str(pk))
        if assistant is None:
            raise Http404("Not found.")
        if not self.has_change_permission(request, assistant):
            raise PermissionDenied
        reasons: list[str] = []
        if request.method == "POST":
            try:
                version = versions.version_publish(
                    assistant=assistant, user=request.user, note=request.POST.get("note", "")
                )
            except versions.PublishRefused as exc:
                reasons = exc.reasons
            else:
                self.message_user(request, f"Published {version}: callers get it now.")
                url = reverse("admin:assistants_assistantconfig_change", args=[assistant.pk])
                return HttpResponseRedirect(url)
        live = assistant.published_version
        draft = versions.draft_freeze(assistant=assistant)
        changes = versions.versions_diff(versions.Frozen.of(live), draft) if live else []
        context = {
            **self.admin_site.each_context(request),
            "title": f"Publish {assistant.name}",
            "assistant": assistant,
            "changes": changes,
            "reasons": reasons,
            "live_label": f"v{live.number}" if live else "(none)",
            "next_number": assistant.versions.count() + 1,
        }
        return TemplateResponse(request, "admin/assistants/publish.html", context)


@admin.register(AssistantVersion)
class AssistantVersionAdmin(TenantScopedAdmin):
    """Published versions: read only; roll back by making an older one live again."""

    list_display = ["__str__", "assistant", "tenant", "is_live", "note", "created_by", "created_at"]
    list_select_related = ["tenant", "assistant", "created_by"]
    list_filter = ["assistant"]
    search_fields = ["note", "assistant__name"]
    fields = ["assistant", "number", "note", "created_by", "created_at", "published_at", "compare"]
    readonly_fields = fields
    actions = ["make_live"]

    @admin.display(description="Live", boolean=True)
    def is_live(self, obj: AssistantVersion) -> bool:
        return obj.assistant.published_version_id == obj.id

    @admin.display(description="Compare")
    def compare(self, obj: AssistantVersion) -> str:
        url = reverse("admin:assistants_assistantversion_diff", args=[obj.pk])
        return format_html(
            '<a href="{}">Field by field, with the draft or another version</a>', url
        )

    @admin.action(
        description="Roll back: make the selected version live again", permissions=["change"]
    )
    def make_live(self, request: HttpRequest, queryset) -> None:
        chosen = list(queryset[:2])
        if len(chosen) != 1:
            self.message_user(request, "Choose one version.", level=messages.WARNING)
            return
        if not self.has_change_permission(request, chosen[0]):
            raise PermissionDenied
        version = versions.version_rollback(version=chosen[0])
        self.message_user(request, f"{version} is live again.")

    def get_urls(self):
        diff = self.admin_site.admin_view(self.diff_view)
        own = [path("<uuid:pk>/diff/", diff, name="assistants_assistantversion_diff")]
        return own + super().get_urls()

    def diff_view(self, request: HttpRequest, pk: str) -> HttpResponse:
        version = self.get_object(request, str(pk))
        if version is None or not self.has_view_permission(request, version):
            raise Http404("Not found.")
        against = request.GET.get("against", "draft")
        others = version.assistant.versions.exclude(pk=version.pk).order_by("-number")
        if against.isdigit() and (other := others.filter(number=int(against)).first()):
            frozen, label = versions.Frozen.of(other), f"v{other.number}"
        else:
            frozen, label = versions.draft_freeze(assistant=version.assistant), "the draft"
        context = {
            **self.admin_site.each_context(request),
            "title": f"{version} compared",
            "version": version,
            "against_label": label,
            "others": others,
            "changes": versions.versions_diff(versions.Frozen.of(version), frozen),
        }
        return TemplateResponse(request, "admin/assistants/diff.html", context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions are made by publishing the draft

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # calls point at them: history stays


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

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from calls.admin import ReadOnlyRecordAdmin
from campaigns import callbacks, selectors, services
from campaigns.models import (
    Campaign,
    Contact,
    DoNotCall,
    OutboundCall,
    OutboundSettings,
    Recording,
    RecordingSettings,
    ScheduledCallback,
)
from tenants.admin_base import TenantScopedAdmin


def _move_action(action: str, description: str):
    def move(modeladmin: CampaignAdmin, request: HttpRequest, queryset: QuerySet) -> None:
        for campaign in queryset:
            if not modeladmin.has_change_permission(request, campaign):
                continue
            try:
                services.campaign_move(campaign=campaign, action=action)
            except ValidationError as exc:
                modeladmin.message_user(request, f"{campaign}: {exc.messages[0]}", messages.ERROR)

    move.__name__ = f"{action}_campaigns"
    move.short_description = description  # type: ignore[attr-defined]
    return move


@admin.register(Campaign)
class CampaignAdmin(TenantScopedAdmin):
    """Campaigns are created and filled through the API (CSV upload); here they are watched
    and started, paused, resumed or canceled."""

    list_display = ["name", "tenant", "status", "assistant", "phone_number", "started_at"]
    list_filter = ["status"]
    search_fields = ["name"]
    readonly_fields = ["status", "started_at", "finished_at", "progress"]
    actions = [
        _move_action("start", "Start calling"),
        _move_action("pause", "Pause"),
        _move_action("resume", "Resume"),
        _move_action("cancel", "Cancel"),
    ]

    @admin.display(description="Progress")
    def progress(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "—"
        figures = selectors.campaign_progress(campaign=obj)
        return ", ".join(f"{name.replace('_', ' ')}: {value}" for name, value in figures.items())


@admin.register(Contact)
class ContactAdmin(ReadOnlyRecordAdmin):
    list_display = ["number", "campaign", "state", "outcome", "attempts", "next_attempt_at"]
    list_filter = ["state", "outcome"]
    search_fields = ["number", "campaign__name"]
    list_select_related = ["campaign"]


@admin.register(OutboundCall)
class OutboundCallAdmin(ReadOnlyRecordAdmin):
    list_display = ["call", "tenant", "contact", "answered_by", "voicemail_left", "placed_at"]
    list_filter = ["answered_by", "voicemail_left"]
    search_fields = ["call__call_sid", "call__to_number"]
    list_select_related = ["call", "contact", "tenant"]


@admin.register(DoNotCall)
class DoNotCallAdmin(TenantScopedAdmin):
    list_display = ["number", "tenant", "source", "note", "created_at"]
    list_filter = ["source"]
    search_fields = ["number"]
    readonly_fields = ["source"]


@admin.register(OutboundSettings)
class OutboundSettingsAdmin(TenantScopedAdmin):
    list_display = ["assistant", "tenant", "detect_machines", "action"]


@admin.register(RecordingSettings)
class RecordingSettingsAdmin(TenantScopedAdmin):
    list_display = ["assistant", "tenant", "record_calls", "announce_recording", "retention_days"]


@admin.register(Recording)
class RecordingAdmin(ReadOnlyRecordAdmin):
    list_display = ["recording_sid", "tenant", "call", "status", "duration_seconds", "created_at"]
    list_filter = ["status"]
    list_select_related = ["tenant", "call"]


@admin.register(ScheduledCallback)
class ScheduledCallbackAdmin(ReadOnlyRecordAdmin):
    """Callbacks assistants promised on calls; a scheduled one can be canceled here."""

    list_display = ["number", "due_at", "status", "tenant", "assistant", "note", "promised_on"]
    list_filter = ["status"]
    search_fields = ["number", "note"]
    list_select_related = ["tenant", "assistant", "promised_on"]
    actions = ["cancel_callbacks"]

    @admin.action(description="Cancel the selected callbacks")
    def cancel_callbacks(self, request: HttpRequest, queryset: QuerySet) -> None:
        canceled = 0
        for callback in queryset:
            if self._has_write(request, callback):
                canceled += callbacks.callback_cancel(callback=callback)
        self.message_user(request, f"{canceled} callback(s) canceled.", messages.SUCCESS)

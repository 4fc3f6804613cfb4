from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django_scopes import scope

from assistants.models import AssistantConfig
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
from tenants.access import is_platform_staff
from tenants.admin_base import TenantScopedAdmin
from tenants.models import PhoneNumber
from tenants.phone import normalize_e164


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


class PlaceCallForm(forms.Form):
    """One call now, as the API places it: the choices are the tenants' the user may write."""

    phone_number = forms.ModelChoiceField(
        queryset=PhoneNumber.objects.none(), label="From", help_text="One of your numbers."
    )
    to = forms.CharField(max_length=32, help_text="Who to call, in E.164 (+14155550123).")
    assistant = forms.ModelChoiceField(queryset=AssistantConfig.objects.none())
    variables = forms.JSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text='Filled into the prompt and greeting: {"first_name": "Ada"}.',
    )

    def __init__(self, *args, tenant_ids: list | None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        numbers = PhoneNumber._base_manager.filter(active=True).select_related("tenant")
        assistants = AssistantConfig._base_manager.select_related("tenant")
        if tenant_ids is not None:  # None: platform staff, every tenant
            numbers = numbers.filter(tenant_id__in=tenant_ids)
            assistants = assistants.filter(tenant_id__in=tenant_ids)
        self.fields["phone_number"].queryset = numbers.order_by("tenant__name", "number")
        self.fields["assistant"].queryset = assistants.order_by("tenant__name", "name")

    def clean_to(self) -> str:
        return normalize_e164(self.cleaned_data["to"])

    def clean_variables(self) -> dict:
        return services.variables_clean(self.cleaned_data.get("variables"))

    def clean(self) -> dict:
        data = super().clean()
        number, assistant = data.get("phone_number"), data.get("assistant")
        if number and assistant and number.tenant_id != assistant.tenant_id:
            self.add_error("assistant", "Choose an assistant of the number's tenant.")
        return data


@admin.register(OutboundCall)
class OutboundCallAdmin(ReadOnlyRecordAdmin):
    list_display = ["call", "tenant", "contact", "answered_by", "voicemail_left", "placed_at"]
    list_filter = ["answered_by", "voicemail_left"]
    search_fields = ["call__call_sid", "call__to_number"]
    list_select_related = ["call", "contact", "tenant"]
    change_list_template = "admin/campaigns/outboundcall/change_list.html"

    def get_urls(self):
        place = self.admin_site.admin_view(self.place_call_view)
        return [
            path("place/", place, name="campaigns_outboundcall_place"),
            *super().get_urls(),
        ]

    def _placing_tenants(self, request: HttpRequest) -> list | None:
        """The tenants the user may call from (None: every tenant); PermissionDenied if none."""
        if is_platform_staff(request.user):
            return None
        ids = self._tenant_ids(request, write=True)
        if not (request.user.is_staff and ids):
            raise PermissionDenied
        return ids

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        try:
            self._placing_tenants(request)
            may_place = True
        except PermissionDenied:
            may_place = False
        extra = {**(extra_context or {}), "may_place_call": may_place}
        return super().changelist_view(request, extra_context=extra)

    def place_call_view(self, request: HttpRequest) -> HttpResponse:
        """Place a call now (the admin's "Place a call"): the result is the call's page, or
        the form again with what went wrong."""
        form = PlaceCallForm(request.POST or None, tenant_ids=self._placing_tenants(request))
        if request.method == "POST" and form.is_valid():
            outbound = self._place(request, form)
            if outbound is not None:
                url = reverse("admin:campaigns_outboundcall_change", args=[outbound.pk])
                return HttpResponseRedirect(url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Place a call",
            "form": form,
        }
        return TemplateResponse(request, "admin/campaigns/outboundcall/place.html", context)

    def _place(self, request: HttpRequest, form: PlaceCallForm) -> OutboundCall | None:
        data = form.cleaned_data
        tenant = data["phone_number"].tenant
        try:
            with scope(tenant=tenant.id):
                outbound = services.call_place(
                    tenant=tenant,
                    assistant=data["assistant"],
                    phone_number=data["phone_number"],
                    to=data["to"],
                    variables=data["variables"],
                )
        except services.DoNotCallError as exc:
            form.add_error("to", str(exc))
            return None
        except services.OutboundError as exc:
            form.add_error(None, f"Twilio did not place the call: {exc}")
            return None
        except ValidationError as exc:
            form.add_error(None, exc.messages)
            return None
        message = f"Calling {data['to']} from {data['phone_number'].number}: Twilio accepted it."
        self.message_user(request, message, messages.SUCCESS)
        return outbound


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

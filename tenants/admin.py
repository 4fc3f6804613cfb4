from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers
from django_scopes.forms import SafeModelChoiceField

from tenants.access import is_platform_staff, member_tenant_ids
from tenants.admin_base import TenantScopedAdmin
from tenants.models import ApiKey, Membership, PhoneNumber, RateLimit, Role, Tenant
from tenants.phone import normalize_e164
from tenants.services import (
    NumberClaimRefused,
    api_key_create,
    api_key_revoke,
    phone_number_claim_check,
)


def _secret_field(help_text: str) -> forms.CharField:
    return forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=help_text,
    )


class TenantForm(forms.ModelForm):
    """The Twilio auth token and the provider keys are write-only: typed in, stored encrypted,
    never shown back."""

    SECRETS = ("twilio_auth_token", "deepgram_api_key", "assemblyai_api_key")

    twilio_auth_token = _secret_field("Leave empty to keep the stored token.")
    clear_twilio_auth_token = forms.BooleanField(required=False, label="Remove the stored token")
    deepgram_api_key = _secret_field(
        "Stream mode's recognition and voice (Deepgram); leave empty to keep the stored key, or "
        "to use the platform's."
    )
    clear_deepgram_api_key = forms.BooleanField(required=False, label="Remove the stored key")
    assemblyai_api_key = _secret_field(
        "Stream mode's recognition with AssemblyAI; leave empty to keep the stored key, or to "
        "use the platform's."
    )
    clear_assemblyai_api_key = forms.BooleanField(
        required=False, label="Remove the stored AssemblyAI key"
    )

    class Meta:
        model = Tenant
        fields = [
            "name",
            "slug",
            "active",
            "timezone",
            "recording_retention_days",
            "twilio_account_sid",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if retention := self.fields.get("recording_retention_days"):  # absent when read-only
            retention.required = False
            retention.help_text += " Empty: kept as it is (30 days for a new tenant)."

    def clean_recording_retention_days(self) -> int:
        days = self.cleaned_data.get("recording_retention_days")
        return self.instance.recording_retention_days if days is None else days

    def save(self, commit: bool = True) -> Tenant:
        tenant = super().save(commit=False)
        for name in self.SECRETS:
            if self.cleaned_data.get(f"clear_{name}"):
                getattr(tenant, f"set_{name}")("")
            elif secret := self.cleaned_data.get(name):
                getattr(tenant, f"set_{name}")(secret)
        if commit:
            tenant.save()
        return tenant


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantForm
    list_display = ["name", "slug", "active", "timezone", "twilio_token_set", "created_at"]
    list_filter = ["active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}

    @admin.display(boolean=True, description="Own Twilio token")
    def twilio_token_set(self, obj: Tenant) -> bool:
        return obj.has_twilio_auth_token

    def _owner_ids(self, request: HttpRequest) -> list:
        return member_tenant_ids(request.user, roles=[Role.OWNER])

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        qs = super().get_queryset(request)
        if is_platform_staff(request.user):
            return qs
        return qs.filter(id__in=member_tenant_ids(request.user))

    def get_readonly_fields(self, request: HttpRequest, obj: Tenant | None = None):
        if is_platform_staff(request.user):
            return []
        return ["slug", "active"]

    def get_prepopulated_fields(self, request: HttpRequest, obj: Tenant | None = None):
        # A read-only slug is not a form field: prepopulating it would break the page.
        if is_platform_staff(request.user):
            return super().get_prepopulated_fields(request, obj)
        return {}

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None and not is_platform_staff(request.user):
            raise Http404("Not found.")
        return obj

    def has_module_permission(self, request: HttpRequest) -> bool:
        if is_platform_staff(request.user):
            return super().has_module_permission(request)
        return request.user.is_staff and bool(member_tenant_ids(request.user))

    def has_view_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        if is_platform_staff(request.user):
            return super().has_view_permission(request, obj)
        ids = member_tenant_ids(request.user)
        return request.user.is_staff and bool(ids) and (obj is None or obj.id in ids)

    def has_change_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        if is_platform_staff(request.user):
            return super().has_change_permission(request, obj)
        ids = self._owner_ids(request)
        return request.user.is_staff and bool(ids) and (obj is None or obj.id in ids)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_platform_staff(request.user) and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        return is_platform_staff(request.user) and super().has_delete_permission(request, obj)


class PlatformStaffOnlyAdmin(admin.ModelAdmin):
    """Managed by platform staff only; invisible to tenant admins."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_platform_staff(request.user) and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_platform_staff(request.user) and super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_platform_staff(request.user) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_platform_staff(request.user) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_platform_staff(request.user) and super().has_delete_permission(request, obj)


@admin.register(Membership)
class MembershipAdmin(PlatformStaffOnlyAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role", "tenant"]
    search_fields = ["user__username", "user__email", "tenant__name"]
    autocomplete_fields = ["user", "tenant"]


@admin.register(RateLimit)
class RateLimitAdmin(PlatformStaffOnlyAdmin):
    list_display = ["kind", "tenant", "limit", "window_seconds", "action", "updated_at"]
    list_filter = ["kind", "action", "tenant"]


class PhoneNumberForm(forms.ModelForm):
    """Platform staff assign any number; a tenant's admin adds (or changes to) only a number
    its own Twilio account holds (tenants.services.phone_number_claim_check)."""

    assigned_by_staff = False  # set per request by PhoneNumberAdmin.get_form

    class Meta:
        model = PhoneNumber
        fields = ["tenant", "number", "label", "assistant", "pinned_version", "active"]
        # Built at import time, outside any scope; the admin narrows the choices per request.
        field_classes = {
            "assistant": SafeModelChoiceField,
            "pinned_version": SafeModelChoiceField,
        }

    def clean_number(self) -> str:
        number = normalize_e164(self.cleaned_data["number"])
        tenant = self.cleaned_data.get("tenant")
        if not self.assigned_by_staff and number != self.instance.number:
            if tenant is None:
                raise forms.ValidationError("Choose the number's tenant first.")
            try:
                phone_number_claim_check(tenant=tenant, number=number)
            except NumberClaimRefused as exc:
                raise forms.ValidationError(exc.message, code=exc.reason) from exc
        # The model's unique check runs in the request's tenant scope and cannot see a number
        # another tenant holds; the database would then refuse the row with an error page.
        taken = PhoneNumber._base_manager.filter(number=number).exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError("This number is already in use.", code="unique")
        return number


@admin.register(PhoneNumber)
class PhoneNumberAdmin(TenantScopedAdmin):
    form = PhoneNumberForm
    list_display = ["number", "label", "tenant", "assistant", "active"]
    list_filter = ["active"]
    search_fields = ["number", "label"]
    list_select_related = ["tenant", "assistant"]

    def get_form(self, request: HttpRequest, obj: PhoneNumber | None = None, **kwargs: Any):
        form = super().get_form(request, obj, **kwargs)
        form.assigned_by_staff = is_platform_staff(request.user)
        return form


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["tenant", "name", "role"]


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdmin):
    """Tenant owners create and revoke keys; the full key is shown once, on creation."""

    form = ApiKeyForm
    list_display = [
        "name",
        "display_prefix",
        "tenant",
        "role",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["role"]
    search_fields = ["name", "prefix"]
    list_select_related = ["tenant", "created_by"]
    actions = ["revoke"]

    def _tenant_ids(self, request: HttpRequest, *, write: bool = False) -> list:
        if not write:
            return super()._tenant_ids(request)
        if not hasattr(request, "_api_key_owner_ids"):
            request._api_key_owner_ids = member_tenant_ids(request.user, roles=[Role.OWNER])
        return request._api_key_owner_ids

    @admin.display(description="Key")
    def display_prefix(self, obj: ApiKey) -> str:
        return f"vpk_{obj.prefix}…"

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None):
        if obj is None:
            return ["display_prefix"]
        return [
            "tenant",
            "name",
            "role",
            "display_prefix",
            "created_by",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None):
        if obj is None:
            return ["tenant", "name", "role"]
        return self.get_readonly_fields(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False  # revoke instead: the row keeps the history of who used what

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            return
        if not is_platform_staff(request.user) and obj.tenant_id not in self._tenant_ids(
            request, write=True
        ):
            raise Http404("Not found.")
        created, key = api_key_create(
            tenant=obj.tenant, name=obj.name, role=obj.role, created_by=request.user
        )
        obj.pk, obj.prefix, obj.created_at = created.pk, created.prefix, created.created_at
        obj._state.adding = False
        obj._new_key = key  # for response_add; never through `messages`, which may be a cookie

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue=None):
        """The new key, in this response only (not stored, not cached, not redirected)."""
        key = getattr(obj, "_new_key", None)
        if key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "New API key",
            "api_key": obj,
            "key": key,
        }
        response: HttpResponse = TemplateResponse(
            request, "admin/tenants/apikey/created.html", context
        )
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        allowed = self._tenant_ids(request, write=True)
        count = 0
        for api_key in queryset:
            if is_platform_staff(request.user) or api_key.tenant_id in allowed:
                api_key_revoke(api_key=api_key)
                count += 1
        messages.success(request, f"Revoked {count} key(s).")

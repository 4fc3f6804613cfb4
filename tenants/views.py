"""The tenant console: pages for tenant owners (server-rendered, login required)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST
from django_scopes import scope

from tenants.access import get_owned_or_404
from tenants.models import ApiKey, Membership, Role, Tenant
from tenants.selectors import api_keys_of
from tenants.services import api_key_create, api_key_revoke


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the key is for, e.g. 'CRM sync'.")
    role = forms.ChoiceField(choices=ApiKey._meta.get_field("role").choices, initial=Role.ADMIN)


def _owned_tenants(request: HttpRequest) -> list[Tenant]:
    return [
        m.tenant
        for m in Membership.objects.filter(user=request.user, role=Role.OWNER, tenant__active=True)
        .select_related("tenant")
        .order_by("tenant__name")
    ]


def _tenant(request: HttpRequest, slug: str | None) -> tuple[Tenant, list[Tenant]]:
    """The owned tenant named by `slug` (the first owned one by default), else 404."""
    owned = _owned_tenants(request)
    if not owned:
        raise Http404("Only a tenant's owners manage its API keys.")
    if slug is None:
        return owned[0], owned
    for tenant in owned:
        if tenant.slug == slug:
            return tenant, owned
    raise Http404("No such tenant.")


@never_cache  # a new key is in the page: no copy in any cache
@login_required
@require_http_methods(["GET", "POST"])
def api_keys(request: HttpRequest) -> HttpResponse:
    tenant, owned = _tenant(request, request.GET.get("tenant"))
    new_key = None
    with scope(tenant=tenant.id):
        form = ApiKeyCreateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            api_key, new_key = api_key_create(
                tenant=tenant,
                name=form.cleaned_data["name"],
                role=form.cleaned_data["role"],
                created_by=request.user,
            )
            form = ApiKeyCreateForm()
        status = 400 if request.method == "POST" and new_key is None else 200
        return render(
            request,
            "tenants/api_keys.html",
            {
                "tenant": tenant,
                "owned": owned,
                "keys": api_keys_of(tenant=tenant),
                "form": form,
                "new_key": new_key,
            },
            status=status,
        )


@login_required
@require_POST
def api_key_revoke_view(request: HttpRequest, key_id: str) -> HttpResponse:
    tenant, _ = _tenant(request, request.GET.get("tenant"))
    with scope(tenant=tenant.id):
        api_key = get_owned_or_404(ApiKey, tenant=tenant, pk=key_id)
        api_key_revoke(api_key=api_key)
    messages.success(request, f"Revoked the key {api_key.name!r} (vpk_{api_key.prefix}…).")
    return redirect(f"/console/api-keys/?tenant={tenant.slug}")

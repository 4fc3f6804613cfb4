"""Admin base class for tenant-owned models.

Platform staff see every row. A tenant's admin (a staff user with a membership) sees only the rows
of their tenants, may only pick their tenants' objects in foreign keys, gets 404 for any other
tenant's page, and may write only with an owner or admin role.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import ForeignKey, Model, QuerySet
from django.http import Http404, HttpRequest

from tenants.access import is_platform_staff, member_tenant_ids
from tenants.models import WRITE_ROLES, Tenant


def _is_tenant_owned(model: type[Model]) -> bool:
    try:
        field = model._meta.get_field("tenant")
    except Exception:
        return False
    return isinstance(field, ForeignKey) and field.related_model is Tenant


class TenantScopedAdmin(admin.ModelAdmin):
    """ModelAdmin for models with a `tenant` FK. Read-only for viewers."""

    tenant_field = "tenant"

    # --- who may do what ----------------------------------------------------------------------
    def _tenant_ids(self, request: HttpRequest, *, write: bool = False) -> list:
        cache_key = "_tenant_ids_write" if write else "_tenant_ids_read"
        if not hasattr(request, cache_key):
            ids = member_tenant_ids(request.user, roles=WRITE_ROLES if write else None)
            setattr(request, cache_key, ids)
        return getattr(request, cache_key)

    def has_module_permission(self, request: HttpRequest) -> bool:
        if is_platform_staff(request.user):
            return super().has_module_permission(request)
        return request.user.is_staff and bool(self._tenant_ids(request))

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if is_platform_staff(request.user):
            return super().has_view_permission(request, obj)
        if not (request.user.is_staff and self._tenant_ids(request)):
            return False
        return obj is None or self._obj_tenant_id(obj) in self._tenant_ids(request)

    def _has_write(self, request: HttpRequest, obj: Model | None) -> bool:
        if not request.user.is_staff:
            return False
        ids = self._tenant_ids(request, write=True)
        return bool(ids) and (obj is None or self._obj_tenant_id(obj) in ids)

    def has_add_permission(self, request: HttpRequest) -> bool:
        if is_platform_staff(request.user):
            return super().has_add_permission(request)
        return self._has_write(request, None)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if is_platform_staff(request.user):
            return super().has_change_permission(request, obj)
        return self._has_write(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if is_platform_staff(request.user):
            return super().has_delete_permission(request, obj)
        return self._has_write(request, obj)

    def _obj_tenant_id(self, obj: Model) -> Any:
        return getattr(obj, f"{self.tenant_field}_id")

    # --- what they see ------------------------------------------------------------------------
    def get_queryset(self, request: HttpRequest) -> QuerySet:
        qs = super().get_queryset(request)
        if is_platform_staff(request.user):
            return qs
        return qs.filter(**{f"{self.tenant_field}__in": self._tenant_ids(request)})

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None and not is_platform_staff(request.user):
            # Another tenant's object, or none at all: the same answer either way.
            raise Http404("Not found.")
        return obj

    def formfield_for_foreignkey(self, db_field: ForeignKey, request: HttpRequest, **kwargs: Any):
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if formfield is None:
            return formfield
        related = db_field.related_model
        if is_platform_staff(request.user):
            # A scope-safe field starts empty; staff choose among every tenant's objects (the
            # model's clean() keeps them to the row's tenant).
            if _is_tenant_owned(related):
                formfield.queryset = related._base_manager.all()
            return formfield
        ids = self._tenant_ids(request, write=True)
        if related is Tenant:
            formfield.queryset = Tenant.objects.filter(id__in=ids)
            if len(ids) == 1:
                formfield.initial = ids[0]
        elif _is_tenant_owned(related):
            formfield.queryset = related._base_manager.filter(tenant_id__in=ids)
        return formfield

    def get_list_filter(self, request: HttpRequest):
        filters = list(super().get_list_filter(request))
        if is_platform_staff(request.user) and self.tenant_field not in filters:
            filters.insert(0, self.tenant_field)
        return filters

    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        if not is_platform_staff(request.user):
            if self._obj_tenant_id(obj) not in self._tenant_ids(request, write=True):
                raise PermissionDenied
        super().save_model(request, obj, form, change)


class ReadOnlyRecordInline(admin.TabularInline):
    """Rows the platform writes (attempts, costs), shown read-only under their parent. A
    tenant's members have no model permissions: whoever may read the parent reads them
    (platform staff still need the view permission)."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if is_platform_staff(request.user):
            return super().has_view_permission(request, obj)
        return self.admin_site._registry[self.parent_model].has_view_permission(request, obj)

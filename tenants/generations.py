"""A process' own copies of a tenant's call settings, kept while they cannot have changed.

Every call reads its tenant's rate limits, webhook endpoints and recording settings; they change
rarely. Each change (a save or delete of one of those rows, in the change's own transaction)
adds one to the tenant's `settings_generation`, and a copy is used only while the tenant row
it is asked with has the generation the copy was read under. So a call sees the settings as of
the moment its tenant was read (the dialled number's lookup, the socket's call), in every
process, without asking Redis or another process.

An app registers its models with `invalidate_on_change(Model)`; a row without a tenant (a
platform default) changes every tenant's generation. Writes that skip Django's signals
(`QuerySet.update`, `bulk_create`) to a registered model must call `settings_changed` themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from django.db import models
from django.db.models import F
from django.db.models.signals import post_delete, post_save

from tenants import directory
from tenants.models import Tenant

T = TypeVar("T")

MAX_ENTRIES = 20_000  # (tenant, kind) pairs kept per process; past it, all are read again

_entries: dict[tuple[object, str], tuple[int, object]] = {}
_lock = threading.Lock()


def cached(tenant: Tenant, kind: str, load: Callable[[], T]) -> T:
    """The tenant's settings of `kind`: this process' copy when it was read under the tenant's
    current generation, else `load()` (kept for the next call)."""
    key = (tenant.pk, kind)
    entry = _entries.get(key)
    if entry is not None and entry[0] == tenant.settings_generation:
        return entry[1]  # type: ignore[return-value]
    value = load()
    with _lock:
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
        _entries[key] = (tenant.settings_generation, value)
    return value


def settings_changed(tenant_id: object | None) -> None:
    """A tenant's call settings changed (every tenant's, for None: a platform default)."""
    tenants = Tenant.objects.all() if tenant_id is None else Tenant.objects.filter(pk=tenant_id)
    tenants.update(settings_generation=F("settings_generation") + 1)
    directory.changed()  # the dialled numbers are kept with their tenant's generation


def _changed(sender: type, instance: models.Model, raw: bool = False, **kwargs: object) -> None:
    if raw:  # fixtures being loaded: no tenant to count on yet
        return
    settings_changed(instance.tenant_id)  # type: ignore[attr-defined]


def invalidate_on_change(model: type[models.Model]) -> None:
    """Saving or deleting a `model` row (which has a `tenant` FK) changes its tenant's
    generation."""
    uid = f"tenants.generations.{model._meta.label_lower}"
    post_save.connect(_changed, sender=model, dispatch_uid=uid + ".save")
    post_delete.connect(_changed, sender=model, dispatch_uid=uid + ".delete")

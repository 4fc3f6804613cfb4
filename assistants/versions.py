"""Versions of an assistant: the editable draft (the assistant's own row, its FAQ and tools) is
frozen into an immutable, numbered version when it is published; phone numbers answer with the
published version (or one pinned on the number), and every call keeps the version it ran on.

The apps above this one add their own parts to a version (tools, knowledge references) through
`register_part()`, and their own conditions for publishing (scenarios that must pass) through
`register_publish_check()`, both from their `AppConfig.ready()`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from assistants.models import AssistantConfig, AssistantVersion, CallConfig, FAQEntry
from tenants import directory

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

    from tenants.models import PhoneNumber

Freezer = Callable[[AssistantConfig], Any]
PublishCheck = Callable[[AssistantConfig, "Frozen"], list[str]]

_parts: dict[str, Freezer] = {}
_checks: list[PublishCheck] = []


def register_part(name: str, freeze: Freezer) -> None:
    """Let `freeze(assistant)` (JSON) be part `name` of every version from now on."""
    _parts[name] = freeze


def register_publish_check(check: PublishCheck) -> None:
    """`check(assistant, frozen)` returns why the draft may not be published ([] if it may)."""
    if check not in _checks:
        _checks.append(check)


@dataclass(frozen=True)
class Frozen:
    """An assistant's config and parts, as a version keeps them (or the draft's, unsaved)."""

    config: CallConfig
    parts: dict

    @classmethod
    def of(cls, version: AssistantVersion) -> Frozen:
        return cls(config=version.config, parts=version.parts)


class PublishRefused(Exception):
    """The draft may not be published (a required scenario failed)."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(reasons))


def faq_freeze(assistant: AssistantConfig) -> list[dict]:
    rows = FAQEntry.objects.filter(tenant_id=assistant.tenant_id, assistant=assistant, active=True)
    return [{"patterns": row.patterns, "answer": row.answer} for row in rows.order_by("created_at")]


register_part("faq", faq_freeze)


def draft_freeze(*, assistant: AssistantConfig) -> Frozen:
    """The draft as a version would keep it, now."""
    parts = {name: freeze(assistant) for name, freeze in _parts.items()}
    return Frozen(config=assistant.snapshot(), parts=parts)


def version_publish(
    *,
    assistant: AssistantConfig,
    user: AbstractBaseUser | None = None,
    note: str = "",
    check: bool = True,
) -> AssistantVersion:
    """Freeze the draft into the next version and make it the one callers get.

    Calls already under way finish on the version they started with. Refused (PublishRefused)
    when a publish check fails, unless `check` is off (the first version of a new assistant).
    """
    frozen = draft_freeze(assistant=assistant)
    if check:
        reasons = [reason for each in _checks for reason in each(assistant, frozen)]
        if reasons:
            raise PublishRefused(reasons)
    with transaction.atomic():
        locked = AssistantConfig.objects.select_for_update().get(
            pk=assistant.pk, tenant_id=assistant.tenant_id
        )
        last = locked.versions.aggregate(last=Max("number"))["last"] or 0
        version = AssistantVersion(
            tenant_id=assistant.tenant_id,
            assistant=locked,
            number=last + 1,
            note=note[:500],
            parts=frozen.parts,
            created_by=user if user is not None and user.is_authenticated else None,
            published_at=timezone.now(),
        )
        version.config = {**frozen.config, "version": version.number, "version_id": str(version.id)}
        # The answer cache is kept per version: a new version never answers with the old one's.
        version.config["updated_at"] = f"{frozen.config.get('updated_at')}#v{version.number}"
        version.save()
        _make_live(locked, version)
    assistant.published_version = version
    return version


def version_rollback(*, version: AssistantVersion) -> AssistantVersion:
    """Make an older (or any) version of the assistant the one callers get again. The draft is
    left as it is."""
    with transaction.atomic():
        assistant = AssistantConfig.objects.select_for_update().get(
            pk=version.assistant_id, tenant_id=version.tenant_id
        )
        version.published_at = timezone.now()
        version.save(update_fields=["published_at"])
        _make_live(assistant, version)
    return version


def _make_live(assistant: AssistantConfig, version: AssistantVersion) -> None:
    # `update()`: the draft's own timestamp (and so its answer cache) is not touched.
    AssistantConfig.objects.filter(pk=assistant.pk, tenant_id=assistant.tenant_id).update(
        published_version=version
    )
    directory.changed()  # a dialled number is kept with its assistant's version


def version_for(*, assistant: AssistantConfig, number: PhoneNumber | None = None):
    """The version a call to `number` (answered by `assistant`) runs on: the number's pinned
    one, else the assistant's published one; None for an assistant never published."""
    if number is not None and number.pinned_version_id:
        return number.pinned_version
    if assistant.published_version_id:
        return assistant.published_version
    return None


# A version never changes once published: its parts are read from the database once per process.
_PARTS_CACHE_SIZE = 1024
_parts_cache: dict[tuple[str, str], dict] = {}


def version_parts(*, tenant_id: object, version_id: object) -> dict | None:
    """The frozen FAQ, tools and knowledge of a version of `tenant_id`'s (None: no such
    version). Read once per process and kept (a version is immutable; the oldest entries go
    past the cache's size)."""
    key = (str(tenant_id), str(version_id))
    parts = _parts_cache.get(key)
    if parts is None:
        parts = (
            AssistantVersion.objects.filter(id=version_id, tenant_id=tenant_id)
            .values_list("parts", flat=True)
            .first()
        )
        if parts is None:
            return None
        if len(_parts_cache) >= _PARTS_CACHE_SIZE:
            _parts_cache.pop(next(iter(_parts_cache)), None)
        _parts_cache[key] = parts
    return parts


def version_by_number(*, assistant: AssistantConfig, number: int) -> AssistantVersion | None:
    return AssistantVersion.objects.filter(
        tenant_id=assistant.tenant_id, assistant=assistant, number=number
    ).first()


# --- diff ----------------------------------------------------------------------------------------

_IGNORED = frozenset({"id", "updated_at", "version", "version_id"})


@dataclass(frozen=True)
class Change:
    """One field that differs between two versions, with both values as text."""

    field: str
    before: str
    after: str


def _flatten(frozen: Frozen) -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in frozen.config.items():
        if key not in _IGNORED:
            flat[key] = _text(value)
    for name, part in frozen.parts.items():
        if isinstance(part, dict):
            for key, value in part.items():
                flat[f"{name}.{key}"] = _text(value)
        elif isinstance(part, list):
            flat[name] = "\n".join(_text(item) for item in part)
        else:
            flat[name] = _text(part)
    return flat


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def versions_diff(before: Frozen, after: Frozen) -> list[Change]:
    """The fields (settings, FAQ, tools, knowledge) that differ, in a stable order."""
    old, new = _flatten(before), _flatten(after)
    return [
        Change(field=key, before=old.get(key, ""), after=new.get(key, ""))
        for key in sorted(old.keys() | new.keys())
        if old.get(key, "") != new.get(key, "")
    ]

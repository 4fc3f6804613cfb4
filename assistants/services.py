"""Assistant services: create, change and delete assistants and their FAQ entries."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import ProtectedError

from assistants.models import AssistantConfig, FAQEntry, SpeechAudio
from assistants.speech import speech_prepare
from assistants.versions import version_publish
from tenants.models import PhoneNumber, Tenant

logger = logging.getLogger(__name__)


def assistant_prepare_greeting(*, assistant: AssistantConfig) -> SpeechAudio | None:
    """Queue the greeting's audio now, so the first caller hears it without waiting.

    Called whenever an assistant is created or changed. Best effort: a speech engine problem
    is logged and the greeting is spoken with Twilio's voice until the audio exists.
    """
    try:
        return speech_prepare(
            tenant=assistant.tenant,
            engine=assistant.tts_engine,
            voice=assistant.tts_voice,
            language=assistant.language,
            text=assistant.greeting,
        )
    except Exception:
        logger.warning(
            "could not queue the greeting's audio",
            extra={"assistant": str(assistant.id)},
            exc_info=True,
        )
        return None


# Fields a tenant may set on an assistant (everything but ids, tenant and timestamps).
ASSISTANT_FIELDS = frozenset(
    {
        "name",
        "mode",
        "model",
        "fallback_model",
        "fast_model",
        "temperature",
        "max_tokens",
        "context_turns",
        "system_prompt",
        "greeting",
        "language",
        "other_languages",
        "transcription_provider",
        "tts_engine",
        "tts_voice",
        "voices",
        "phrases",
        "speech_timeout",
        "interruptible",
        "transfer_number",
        "transfer_digit",
        "recognition_provider",
        "recognition_model",
        "endpointing_ms",
        "recognition_keywords",
        "voice_provider",
        "stream_voice",
        "scenarios_required",
    }
)


class AssistantInUse(Exception):
    """The assistant answers at least one phone number, so it cannot be deleted."""

    def __init__(self, numbers: list[str]) -> None:
        self.numbers = numbers
        super().__init__(
            "This assistant answers "
            + ", ".join(numbers)
            + ". Point those numbers at another assistant (or delete them) first."
        )


def _check_fields(changes: dict[str, Any], allowed: frozenset[str]) -> None:
    if unknown := set(changes) - allowed:
        raise ValueError(f"cannot set {sorted(unknown)}")


@transaction.atomic
def assistant_create(*, tenant: Tenant, **fields: Any) -> AssistantConfig:
    """A new assistant of `tenant`; its greeting's audio is queued after commit."""
    _check_fields(fields, ASSISTANT_FIELDS)
    assistant = AssistantConfig(tenant=tenant, **fields)
    assistant.full_clean()
    assistant.save()
    # A new assistant answers at once: its first settings are version 1. Later edits are a
    # draft until they are published.
    version_publish(assistant=assistant, note="First version", check=False)
    assistant_prepare_greeting(assistant=assistant)
    return assistant


@transaction.atomic
def assistant_update(*, assistant: AssistantConfig, **changes: Any) -> AssistantConfig:
    _check_fields(changes, ASSISTANT_FIELDS)
    for name, value in changes.items():
        setattr(assistant, name, value)
    assistant.full_clean()
    assistant.save()
    assistant_prepare_greeting(assistant=assistant)
    return assistant


@transaction.atomic
def assistant_delete(*, assistant: AssistantConfig) -> None:
    """Delete `assistant` and its FAQ; refused (AssistantInUse) while a number points at it.

    Past calls keep their settings snapshot; their assistant link becomes empty.
    """
    numbers = list(
        PhoneNumber.objects.filter(tenant=assistant.tenant, assistant=assistant)
        .select_for_update()
        .values_list("number", flat=True)
    )
    if numbers:
        raise AssistantInUse(numbers)
    try:
        assistant.delete()
    except ProtectedError as exc:  # a number was pointed at it meanwhile
        raise AssistantInUse([str(obj) for obj in exc.protected_objects]) from exc


FAQ_FIELDS = frozenset({"patterns", "answer", "active"})


def faq_entry_create(*, assistant: AssistantConfig, **fields: Any) -> FAQEntry:
    _check_fields(fields, FAQ_FIELDS)
    entry = FAQEntry(tenant=assistant.tenant, assistant=assistant, **fields)
    entry.full_clean()
    entry.save()
    return entry


def faq_entry_update(*, entry: FAQEntry, **changes: Any) -> FAQEntry:
    _check_fields(changes, FAQ_FIELDS)
    for name, value in changes.items():
        setattr(entry, name, value)
    entry.full_clean()
    entry.save()
    return entry


def faq_entry_delete(*, entry: FAQEntry) -> None:
    entry.delete()

"""Reads of assistants across the tenants a user may see."""

from __future__ import annotations

import uuid

from django_scopes import scopes_disabled

from assistants.models import AssistantConfig
from assistants.speech import speech_key
from providers.speech import TTSError, get_engine
from tenants.access import is_platform_staff, member_tenant_ids


def assistant_for_user(*, user, assistant_id: object) -> AssistantConfig | None:
    """The assistant if `user` belongs to its (active) tenant or is platform staff, else None
    (the caller answers 404: another tenant's assistant does not exist for this user)."""
    try:
        assistant_id = uuid.UUID(str(assistant_id))
    except ValueError:
        return None
    # A named bypass: the tenant is not known until the assistant is found; membership decides.
    with scopes_disabled():
        assistants = AssistantConfig.objects.select_related("tenant").filter(
            id=assistant_id, tenant__active=True
        )
        if not is_platform_staff(user):
            assistants = assistants.filter(tenant_id__in=member_tenant_ids(user))
        return assistants.first()


def unscoped_greeting_speech_keys() -> dict[str, AssistantConfig]:
    """Every assistant (of every tenant) whose greeting is spoken from an audio file, by the
    speech key of that greeting. A named bypass: the audio cleanup keeps these for all tenants."""
    greetings = {}
    with scopes_disabled():
        for assistant in AssistantConfig.objects.select_related("tenant"):
            try:
                makes_audio = get_engine(assistant.tts_engine).produces_audio
            except TTSError:
                continue
            text = assistant.greeting.strip()
            if makes_audio and text:
                key = speech_key(
                    tenant_id=assistant.tenant_id, engine=assistant.tts_engine,
                    voice=assistant.tts_voice, language=assistant.language, text=text,
                )  # fmt: skip
                greetings[key] = assistant
    return greetings

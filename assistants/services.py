"""Assistant services: work that follows a change to an assistant's configuration."""

from __future__ import annotations

import logging

from assistants.models import AssistantConfig, SpeechAudio
from assistants.speech import speech_prepare

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
            "could not queue the greeting's audio", extra={"assistant": str(assistant.id)},
            exc_info=True,
        )
        return None

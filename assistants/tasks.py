"""Celery entry points for speech audio. Thin: they enter the tenant's scope and call services."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.core.exceptions import ValidationError
from django_scopes import scope

from assistants.models import SpeechAudio
from assistants.speech import speech_expire, speech_synthesize

# Engines have their own timeouts (gTTS per request, espeak-ng per run); this is the backstop.
SYNTHESIS_SOFT_TIME_LIMIT = 20


@shared_task(soft_time_limit=SYNTHESIS_SOFT_TIME_LIMIT, time_limit=SYNTHESIS_SOFT_TIME_LIMIT + 10)
def synthesize_speech(tenant_id: str, audio_id: str) -> str:
    """Make the audio of one of `tenant_id`'s SpeechAudio rows.

    Returns "made", "failed", "already made", "already failed" (a retry clears the error before
    it queues), or "not found" (also for another tenant's row).
    """
    with scope(tenant=tenant_id):
        try:
            audio = SpeechAudio.objects.filter(tenant_id=tenant_id, pk=audio_id).first()
        except (ValidationError, ValueError):
            audio = None
        if audio is None:
            return "not found"
        if audio.file:
            return "already made"
        if audio.error:
            return "already failed"
        audio = speech_synthesize(audio=audio)
        return "made" if audio.file else "failed"


@shared_task(soft_time_limit=600, time_limit=660)
def cleanup_speech_audio() -> int:
    """Delete speech audio older than TTS_AUDIO_TTL_HOURS (every tenant's) except the assistants'
    current greetings, whose audio is made again if it is missing; return the count deleted."""
    hours = getattr(settings, "TTS_AUDIO_TTL_HOURS", 24)
    return speech_expire(older_than=timedelta(hours=hours))

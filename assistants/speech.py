"""Speech audio services: a per-tenant cache of synthesised sentences, made off the request.

A sentence is keyed by tenant + engine + voice + language + text, stored once as a `SpeechAudio`
row, synthesised by a Celery task into Django storage under a random name, and deleted after a
TTL. A failure is stored on the row; a transient one is retried by a later request after
`RETRY_AFTER`, a permanent one is not.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Collection
from datetime import timedelta
from typing import TYPE_CHECKING

from celery import current_app
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from assistants.models import AssistantConfig, SpeechAudio
from providers.speech import TTSError, get_engine

if TYPE_CHECKING:
    from tenants.models import Tenant

logger = logging.getLogger(__name__)

# A row without a file this old (a transient failure, or a task that never ran) is made again.
RETRY_AFTER = timedelta(minutes=1)
# Marks a stored error that trying again cannot fix (unknown voice, engine not installed).
PERMANENT_ERROR_PREFIX = "permanent: "
_CLEANUP_BATCH = 500


def speech_key(*, tenant_id: object, engine: str, voice: str, language: str, text: str) -> str:
    """sha256 hex of everything that decides the audio, the tenant included: one tenant never
    gets another tenant's audio."""
    payload = json.dumps([str(tenant_id), engine, voice, language, text], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def speech_prepare(
    *, tenant: Tenant, engine: str, voice: str, language: str, text: str
) -> SpeechAudio | None:
    """The cached audio row for this sentence, queueing its synthesis if it is new.

    None when the engine makes no audio (Twilio's <Say>) or there is nothing to say. The row may
    not have its file yet: poll it, or use <Say> when it is not ready in time. A repeated sentence
    is made once; the task is queued after the surrounding transaction commits. Needs the
    tenant's scope (or scopes disabled). Raises TTSError for an unknown engine.
    """
    text = text.strip()
    if not text or not get_engine(engine).produces_audio:
        return None
    key = speech_key(tenant_id=tenant.id, engine=engine, voice=voice, language=language, text=text)
    audio, created = SpeechAudio.objects.get_or_create(
        tenant=tenant,
        key=key,
        defaults={"engine": engine, "voice": voice, "language": language, "text": text},
    )
    if created or _claim_retry(audio):
        _queue(audio)
    return audio


def _claim_retry(audio: SpeechAudio) -> bool:
    """Whether this request takes the job of making `audio` again (at most one request does)."""
    if audio.file or audio.error.startswith(PERMANENT_ERROR_PREFIX):
        return False
    now = timezone.now()
    if audio.created_at > now - RETRY_AFTER:
        return False
    # Only the request that still sees the old timestamp wins; the new one restarts the clock.
    claimed = SpeechAudio.objects.filter(
        pk=audio.pk, tenant_id=audio.tenant_id, file="", created_at=audio.created_at
    ).update(error="", created_at=now)
    if claimed:
        audio.error, audio.created_at = "", now
    return bool(claimed)


# The worker's task, named rather than imported: the tasks module calls these services.
SYNTHESIZE_TASK = "assistants.tasks.synthesize_speech"


def _queue(audio: SpeechAudio) -> None:
    task = current_app.signature(SYNTHESIZE_TASK, args=(str(audio.tenant_id), str(audio.id)))
    # robust: a broker outage must not fail the caller's request; the row is retried later.
    transaction.on_commit(task.delay, robust=True)


def speech_engine_problem(engine: str) -> str:
    """Why `engine` cannot make audio here now ("" when it can), found by speaking one short
    word and throwing the audio away. For start-up checks, not for requests: it may take as
    long as the engine's timeout (GTTS_TIMEOUT)."""
    try:
        get_engine(engine).synthesize("Hello.", language="en-US", voice="")
    except TTSError as exc:
        return exc.message
    return ""


def speech_url(audio: SpeechAudio, *, base_url: str = "") -> str:
    """Absolute URL of the stored file: the storage's URL when it is absolute (an object store),
    else PUBLIC_BASE_URL (or `base_url`, the address the request came in on) + that path."""
    url = default_storage.url(audio.file)
    if url.startswith(("http://", "https://", "//")):
        return url
    return (settings.PUBLIC_BASE_URL or base_url).rstrip("/") + url


def speech_synthesize(*, audio: SpeechAudio) -> SpeechAudio:
    """Make the audio of `audio` now and store it (or the error) on the row."""
    if audio.file:
        return audio
    started = time.monotonic()
    try:
        result = get_engine(audio.engine).synthesize(
            audio.text, language=audio.language, voice=audio.voice
        )
    except TTSError as exc:
        error = (PERMANENT_ERROR_PREFIX if exc.permanent else "") + exc.message
        # The reason goes in the message: a Celery worker's plain log format drops extra fields.
        logger.warning(
            "speech synthesis failed (%s): %s",
            audio.engine,
            error,
            extra={"engine": audio.engine, "error": error},
        )
        SpeechAudio.objects.filter(pk=audio.pk, tenant_id=audio.tenant_id, file="").update(
            error=error[:2000]
        )
        audio.error = error[:2000]
        return audio
    synth_ms = round((time.monotonic() - started) * 1000)
    name = default_storage.save(
        f"tts/{secrets.token_urlsafe(18)}.{result.extension}", ContentFile(result.data)
    )
    saved = SpeechAudio.objects.filter(pk=audio.pk, tenant_id=audio.tenant_id, file="").update(
        file=name, content_type=result.content_type, synth_ms=synth_ms, error=""
    )
    if not saved:
        # Made twice (a retry raced the first task) or deleted meanwhile: keep the other file.
        default_storage.delete(name)
        current = SpeechAudio.objects.filter(pk=audio.pk, tenant_id=audio.tenant_id).first()
        return current or audio
    audio.file, audio.content_type, audio.synth_ms, audio.error = (
        name,
        result.content_type,
        synth_ms,
        "",
    )
    return audio


def speech_cleanup(*, older_than: timedelta, keep: Collection[str] = ()) -> int:
    """Delete the files and rows of audio created more than `older_than` ago, except the rows
    whose key is in `keep`; return the number of rows deleted.

    Crosses tenants on purpose: runs under `scopes_disabled()` (a named bypass) because expiry is
    the same for every tenant and nothing is returned but a count. A row whose file cannot be
    deleted is kept, so the next run tries again.
    """
    cutoff = timezone.now() - older_than
    keep = frozenset(keep)
    deleted = 0
    last = None
    with scopes_disabled():
        expired = SpeechAudio.objects.filter(created_at__lt=cutoff)
        while True:
            page = expired if last is None else expired.filter(pk__gt=last)
            batch = list(page.order_by("pk").values_list("pk", "file", "key")[:_CLEANUP_BATCH])
            if not batch:
                return deleted
            last = batch[-1][0]
            done = []
            for pk, name, key in batch:
                if key in keep or (name and not _delete_file(name)):
                    continue
                done.append(pk)
            deleted += expired.filter(pk__in=done).delete()[0]


def speech_expire(*, older_than: timedelta) -> int:
    """Delete speech audio created more than `older_than` ago, except the current greeting of
    every assistant, and queue the greetings that have no audio at all (deleted before they were
    kept, or never queued); return the number of rows deleted.

    Greetings stay because every call starts with one: without its file a caller would hear
    Twilio's voice until the assistant is saved again. Crosses tenants, as `speech_cleanup` does.
    """
    greetings = _unscoped_greetings()
    deleted = speech_cleanup(older_than=older_than, keep=greetings.keys())
    with scopes_disabled():
        present = set(
            SpeechAudio.objects.filter(key__in=list(greetings)).values_list("key", flat=True)
        )
    for key, assistant in greetings.items():
        if key in present:
            continue
        try:
            with scope(tenant=assistant.tenant_id):
                speech_prepare(
                    tenant=assistant.tenant,
                    engine=assistant.tts_engine,
                    voice=assistant.tts_voice,
                    language=assistant.language,
                    text=assistant.greeting,
                )
        except Exception:  # one assistant's engine problem must not stop the others
            logger.warning(
                "could not queue a greeting's audio",
                extra={"assistant": str(assistant.id)},
                exc_info=True,
            )
    return deleted


def _unscoped_greetings() -> dict[str, AssistantConfig]:
    """Every assistant (of every tenant) whose greeting is spoken from an audio file, by the
    speech key of that greeting. A named bypass: expiry keeps these for all tenants."""
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
                    tenant_id=assistant.tenant_id,
                    engine=assistant.tts_engine,
                    voice=assistant.tts_voice,
                    language=assistant.language,
                    text=text,
                )
                greetings[key] = assistant
    return greetings


def _delete_file(name: str) -> bool:
    try:
        default_storage.delete(name)
    except Exception:  # any storage backend, any failure: keep the row and try next time
        logger.warning("could not delete speech audio file", exc_info=True)
        return False
    return True

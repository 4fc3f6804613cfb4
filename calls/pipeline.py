"""Gather mode's answer: LLM sentences sent to TTS as they complete, played where ready in time."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings

from assistants.models import SpeechAudio
from assistants.responder import Reply, respond
from assistants.speech import speech_prepare, speech_url
from calls import services
from calls.models import Call, Turn
from calls.twiml import Utterance
from tenants import ratelimits
from tenants.models import RateLimit

logger = logging.getLogger(__name__)
# Polling for audio starts fast and slows down, so many calls waiting at once stay cheap.
POLL_FIRST_SECONDS = 0.02
POLL_MAX_SECONDS = 0.1


@dataclass
class Spoken:
    sentence: str
    audio: SpeechAudio | None = None
    error: str = ""


def prepare_speech(*, call: Call, config: dict, text: str) -> Spoken:
    """Queue speech for `text` with the assistant's engine; a failure means Twilio's <Say>."""
    try:
        audio = speech_prepare(
            tenant=call.tenant,
            engine=config.get("tts_engine", "say"),
            voice=config.get("tts_voice", ""),
            language=config.get("language", "en-US"),
            text=text,
        )
    except Exception as exc:  # speech is best effort: <Say> still answers the caller
        logger.warning("could not queue speech", exc_info=True)
        return Spoken(sentence=text, error=f"tts: {type(exc).__name__}")
    return Spoken(sentence=text, audio=audio)


def wait_for_audio(
    spoken: list[Spoken], *, until: float, base_url: str = ""
) -> tuple[dict[str, str], float | None]:
    """Wait (until `until`) for the queued audio; return {audio id: url} and when the first
    sentence's audio was ready (monotonic), if it was."""
    first_id = str(spoken[0].audio.id) if spoken and spoken[0].audio is not None else None
    # Audio found in the cache when it was asked for is ready now; only the rest is polled.
    urls = {
        str(s.audio.id): speech_url(s.audio, base_url=base_url)
        for s in spoken
        if s.audio is not None and s.audio.file
    }
    pending = {str(s.audio.id) for s in spoken if s.audio is not None} - urls.keys()
    first_ready_at = None
    interval = POLL_FIRST_SECONDS
    while True:
        if pending:
            rows = SpeechAudio.objects.filter(id__in=pending).values("id", "file", "error")
            for row in rows:
                key = str(row["id"])
                if row["file"]:
                    urls[key] = speech_url(SpeechAudio(file=row["file"]), base_url=base_url)
                if row["file"] or row["error"]:
                    pending.discard(key)
        if first_id and first_id in urls and first_ready_at is None:
            first_ready_at = time.monotonic()
        if not pending or time.monotonic() >= until:
            return urls, first_ready_at
        time.sleep(min(interval, max(0.0, until - time.monotonic())))
        interval = min(interval * 1.5, POLL_MAX_SECONDS)


def gather_answer(
    *, call: Call, utterance: str, started_at: float, history: list[tuple[str, str]],
    sequence: int | None = None, base_url: str = "", limits: dict[str, RateLimit] | None = None,
) -> tuple[list[Utterance], Turn]:  # fmt: skip
    """Answer the caller's `utterance` and store the assistant's turn with its timings.

    `history`: the call's turns before the caller's; `sequence`: the number the assistant's turn
    should get (see `services.turn_add`); `base_url` makes audio URLs absolute when
    PUBLIC_BASE_URL is not set; `limits` are the tenant's rate limits as read for this turn."""
    config = call.config_snapshot
    deadline = started_at + settings.WEBHOOK_DEADLINE_SECONDS
    reply = Reply(started_at=started_at)
    spoken: list[Spoken] = []
    first_sentence_at = None
    for sentence in respond(
        tenant_id=call.tenant_id, config=config, history=history, utterance=utterance,
        deadline=deadline - 1.5, reply=reply,
    ):  # fmt: skip
        first_sentence_at = first_sentence_at or time.monotonic()
        spoken.append(prepare_speech(call=call, config=config, text=sentence))
    answered_at = time.monotonic()

    wait_until = min(answered_at + settings.TTS_WAIT_SECONDS, deadline - 0.3)
    urls, first_audio_at = wait_for_audio(spoken, until=wait_until, base_url=base_url)
    utterances = [
        Utterance(text=s.sentence, audio_url=urls.get(str(s.audio.id), "") if s.audio else "")
        for s in spoken
    ]
    fallbacks = list(reply.llm.fallbacks)
    if any(
        s.audio is not None and not u.audio_url for s, u in zip(spoken, utterances, strict=True)
    ):
        fallbacks.append("tts:say")
    errors = list(reply.llm.errors) + [s.error for s in spoken if s.error]
    tokens = (reply.llm.tokens_in or 0) + (reply.llm.tokens_out or 0)
    if tokens:
        ratelimits.tokens_spend(tenant=call.tenant, tokens=tokens, limits=limits)

    turn = services.turn_add(
        call=call,
        role=Turn.Role.ASSISTANT,
        text=reply.text,
        sequence=sequence,
        source=reply.source,
        cache_hit=reply.cache_hit,
        model_used=reply.llm.model_used if reply.source == "llm" else "",
        tokens_in=reply.llm.tokens_in,
        tokens_out=reply.llm.tokens_out,
        llm_first_token_ms=reply.ms_since_start(reply.llm.first_token_at or first_sentence_at),
        llm_done_ms=reply.ms_since_start(answered_at),
        first_audio_ms=reply.ms_since_start(first_audio_at),
        response_sent_ms=reply.ms_since_start(time.monotonic()),
        fallbacks=fallbacks,
        audio_urls=[u.audio_url for u in utterances if u.audio_url],
        error="; ".join(errors)[:2000],
    )
    return utterances, turn

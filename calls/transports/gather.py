"""Gather mode: `/twilio/gather` gets the caller's words (Twilio's speech recognition) and answers
with TwiML. The engine's answer is cut into sentences; each goes to a speech worker as soon as it
is complete, while the LLM keeps talking; the reply plays each sentence whose audio is ready in
time (`<Play>`) and lets Twilio say the rest (`<Say>`), then listens again.

An answer of several sentences does not wait for all of their audio (GATHER_EARLY_REPLY): as soon
as the first sentence's audio is ready, the reply plays the sentences ready by then and sends
Twilio (`<Redirect>`) to `/twilio/gather-continue`, which plays the rest and listens again. The
continuation URL is signed and names the call and the turn: it serves no other call. The whole
answer is stored before the first sentence is played; a caller who hangs up before the rest is
played has the turn marked as interrupted, with what they heard.

The view is synchronous (Django runs it on its thread); the engine runs on the event loop, with
its database work sent back to this thread, so the webhook sees one connection and transaction.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.core import signing
from django.core.cache import BaseCache
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from twilio.twiml.voice_response import VoiceResponse

from assistants.models import CallConfig, SpeechAudio
from assistants.speech import speech_prepare, speech_url
from calls import languages, phrases, services, signals
from calls.engine import Conversation, Reply, clean_text
from calls.models import Call, Turn
from calls.sentences import SentenceSplitter
from calls.transports import twiml
from calls.transports.signatures import public_base_url, public_url
from calls.transports.twilio import call_webhook, field, float_field
from core import caching

logger = logging.getLogger(__name__)
# Polling for audio starts fast and slows down, so many calls waiting at once stay cheap.
POLL_FIRST_SECONDS = 0.02
POLL_MAX_SECONDS = 0.1
# Of the webhook's deadline, what the LLM may not use (speech, the reply itself).
LLM_MARGIN_SECONDS = 1.5
# A gather request's answer is kept this long, for a replay of the same request.
REPLAY_SECONDS = 3600
REPLAY_PENDING = "pending"
# Database work of the engine runs back on the view's own thread (its connection, its request).
on_view_thread = functools.partial(sync_to_async, thread_sensitive=True)
CONTINUATION_SALT = "calls.gather.continuation"
# A continuation is fetched within seconds; an older link is refused.
CONTINUATION_MAX_AGE_SECONDS = 600


def gather_url(request: HttpRequest) -> str:
    return public_url(request, "/twilio/gather")


@dataclass
class Spoken:
    sentence: str
    audio: SpeechAudio | None = None
    error: str = ""


def continuation_key(call: Call) -> str:
    """Where the cache notes a call's answer whose rest is still to be played."""
    return f"gather:continuation:{call.id}"


def prepare_speech(*, call: Call, config: CallConfig, text: str) -> Spoken:
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


def _audio_ready(pending: set[str]) -> list[dict]:
    return list(SpeechAudio.objects.filter(id__in=pending).values("id", "file", "error"))


class GatherSpeaker:
    """Says an answer as TwiML: sentences queued for speech as they complete, played where
    their audio is ready by the time the answer is done."""

    streams_text = False
    read_every = 0.0  # each piece of the answer as it comes

    def __init__(self, *, call: Call, base_url: str, respond_by: float) -> None:
        self.call = call
        self.config = languages.for_call(call)  # its language and voice follow the conversation
        self.base_url = base_url
        self.respond_by = respond_by  # monotonic: when Twilio must have its TwiML
        self.splitter = SentenceSplitter()
        self.spoken: list[Spoken] = []
        self.utterances: list[twiml.Utterance] = []
        # With an early reply: how many of the utterances are played at once (the rest follow
        # through the continuation), and how much of the answer's text they are.
        self.played_first = 0
        self.text_played_first = 0
        self.database = on_view_thread

    async def say(self, reply: Reply, text: str, *, complete: bool = False) -> None:
        if complete:
            sentences = self.splitter.feed(text + " ") + self.splitter.flush()
        else:
            sentences = self.splitter.feed(text)
        for sentence in sentences:
            await self._queue(reply, sentence)

    async def _queue(self, reply: Reply, sentence: str) -> None:
        reply.parts.append((" " if reply.parts else "") + sentence)
        if reply.source == Turn.Source.SYSTEM:  # the platform's own lines never wait for audio
            self.spoken.append(Spoken(sentence=sentence))
            return
        spoken = await self.database(prepare_speech)(
            call=self.call, config=self.config, text=sentence
        )
        self.spoken.append(spoken)

    async def done(self, reply: Reply) -> None:
        for sentence in self.splitter.flush():
            await self._queue(reply, sentence)
        until = min(time.monotonic() + settings.TTS_WAIT_SECONDS, self.respond_by - 0.3)
        early = self._may_reply_early(reply)
        urls, reply.first_audio_at = await wait_for_audio(
            self.spoken, until=until, base_url=self.base_url, first_only=early
        )
        for spoken in self.spoken:
            url = urls.get(str(spoken.audio.id), "") if spoken.audio is not None else ""
            self.utterances.append(twiml.Utterance(text=spoken.sentence, audio_url=url))
            if spoken.error:
                reply.errors.append(spoken.error)
        ready = next(
            (i for i, u in enumerate(self.utterances) if not u.audio_url), len(self.utterances)
        )
        if early and 0 < ready < len(self.utterances):
            self.played_first = ready
            self.text_played_first = len("".join(reply.parts[:ready]))
        for spoken, utterance in zip(self.spoken, self.first_part(), strict=False):
            if utterance.audio_url:
                reply.audio_urls.append(utterance.audio_url)
            elif spoken.audio is not None and "tts:say" not in reply.fallbacks:
                reply.fallbacks.append("tts:say")
        reply.first_sent_at = time.monotonic()

    def _may_reply_early(self, reply: Reply) -> bool:
        """Whether the reply may play the first sentences before the rest's audio is ready:
        an answer of several sentences with audio, that goes on with the conversation."""
        return (
            settings.GATHER_EARLY_REPLY
            and reply.handoff is None
            and len(self.spoken) > 1
            and all(spoken.audio is not None for spoken in self.spoken)
        )

    def first_part(self) -> list[twiml.Utterance]:
        """What this reply plays: all of the answer, or (an early reply) its first sentences."""
        return self.utterances[: self.played_first or len(self.utterances)]

    async def stop(self, reply: Reply) -> None:
        """Nothing streams: what was queued is what the caller will hear."""

    async def cut(self, reply: Reply) -> None:
        """An unfinished sentence is not said."""
        self.splitter = SentenceSplitter()

    async def end(self, handoff: dict) -> None:
        """A webhook has no session to end: the view reads `reply.handoff`."""

    async def switch_language(self, config: CallConfig) -> None:
        """The rest of the answer, and the next <Gather>, are in the new language."""
        self.config = config


async def wait_for_audio(
    spoken: list[Spoken], *, until: float, base_url: str, first_only: bool = False
) -> tuple[dict[str, str], float | None]:
    """Wait (until `until`) for the queued audio; return {audio id: url} and when the first
    sentence's audio was ready (monotonic), if it was. `first_only`: return as soon as the
    first sentence's audio is ready (or has failed), with whatever else is ready by then."""
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
            for row in await on_view_thread(_audio_ready)(pending):
                key = str(row["id"])
                if row["file"]:
                    urls[key] = speech_url(SpeechAudio(file=row["file"]), base_url=base_url)
                if row["file"] or row["error"]:
                    pending.discard(key)
        if first_id and first_id in urls and first_ready_at is None:
            first_ready_at = time.monotonic()
        first_settled = first_id is None or first_id not in pending
        if not pending or time.monotonic() >= until or (first_only and first_settled):
            return urls, first_ready_at
        await asyncio.sleep(min(interval, max(0.0, until - time.monotonic())))
        interval = min(interval * 1.5, POLL_MAX_SECONDS)


async def _answer(
    call: Call,
    speaker: GatherSpeaker,
    *,
    utterance: str,
    received_at: float,
    confidence: float | None,
) -> Reply:
    conversation = Conversation(call=call, speaker=speaker, database=on_view_thread)
    await conversation.start()
    reply = await conversation.answer(
        utterance,
        received_at=received_at,
        deadline=speaker.respond_by - LLM_MARGIN_SECONDS,
        confidence=confidence,
    )
    return reply


def _request_key(request: HttpRequest, call: Call) -> str:
    """The identity of one gather request: Twilio's idempotency token, else the signed request
    itself (a replay repeats signature and parameters byte for byte)."""
    identity = request.headers.get("I-Twilio-Idempotency-Token", "")[:200]
    if not identity:
        signature = request.headers.get("X-Twilio-Signature", "")
        identity = signature + "|" + urlencode(sorted(request.POST.lists()), doseq=True)
    return f"gather:{call.id}:{hashlib.sha256(identity.encode()).hexdigest()}"


def once_per_request(view: Callable[[HttpRequest, Call], HttpResponse]) -> Callable:
    """A gather request is answered once: a replay (or Twilio's retry of one already being
    answered) gets the same TwiML, without a second turn or a second LLM request."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, call: Call) -> HttpResponse:
        if not field(request, "SpeechResult").strip():
            # Silence costs nothing, and Twilio's silent requests look alike: each is counted.
            return view(request, call)
        key = _request_key(request, call)
        cache = caching.shared_cache()
        try:
            first = cache.add(key, REPLAY_PENDING, timeout=REPLAY_SECONDS)
        except Exception:  # the cache is down: answer (a replay may then be answered twice)
            logger.warning("gather: replay check unavailable", exc_info=True)
            return view(request, call)
        if not first:
            logger.warning("gather: a repeated request answered with the first one's TwiML")
            return twiml.twiml_response(_first_answer(cache, key, call, gather_url(request)))
        try:
            response = view(request, call)
        except Exception:
            cache.delete(key)  # a retry is answered afresh
            raise
        cache.set(key, response.content.decode(), timeout=REPLAY_SECONDS)
        return response

    return wrapper


def _first_answer(cache: BaseCache, key: str, call: Call, action_url: str) -> str | VoiceResponse:
    """The TwiML the first of the same requests got, once it is ready (else: listen again)."""
    until = time.monotonic() + settings.WEBHOOK_DEADLINE_SECONDS
    while True:
        body = cache.get(key)
        if body and body != REPLAY_PENDING:
            return body
        if time.monotonic() >= until or body is None:
            return twiml.speak_and_listen(
                [], config=languages.for_call(call), action_url=action_url
            )
        time.sleep(0.05)


def _handoff(handoff: dict, speaker: GatherSpeaker, *, config: CallConfig) -> VoiceResponse:
    """The answer's last words, then what the engine decided: a transfer the caller asked for
    (<Dial>), a goodbye (<Hangup/>), or a rate limit's message and a hang-up."""
    if handoff.get("transfer") and handoff.get("number"):
        response = VoiceResponse()
        twiml.speak(response, speaker.utterances, config=config)
        response.dial(handoff["number"])
        return response
    if handoff.get("hangup"):
        response = VoiceResponse()
        twiml.speak(response, speaker.utterances, config=config)
        response.hangup()
        return response
    goodbye = handoff.get("message") or phrases.say(phrases.GOODBYE, config=config)
    return twiml.hang_up_with(goodbye, config=config)


@call_webhook(
    unknown=lambda: twiml.twiml_response(twiml.hang_up_with(phrases.GOODBYE)), active_only=True
)
@once_per_request
def gather(request: HttpRequest, call: Call) -> HttpResponse:
    """The caller said something (or nothing): answer and listen again."""
    received_at = time.monotonic()
    config = languages.for_call(call)
    action_url = gather_url(request)
    said = field(request, "SpeechResult").strip()
    speech = clean_text(said, settings.MAX_UTTERANCE_CHARS)
    if len(said) > len(speech):  # not Twilio's recognition: stored and sent only in part
        logger.warning("gather: caller text cut", extra={"chars": len(said), "kept": len(speech)})
    if not speech:
        if services.call_note_silence(call=call):
            goodbye = phrases.say(phrases.GOODBYE, config=config)
            return twiml.twiml_response(twiml.hang_up_with(goodbye, config=config))
        reprompt = [twiml.Utterance(text=phrases.say(phrases.REPROMPT, config=config))]
        return twiml.twiml_response(
            twiml.speak_and_listen(reprompt, config=config, action_url=action_url)
        )

    speaker = GatherSpeaker(
        call=call,
        base_url=public_base_url(request),
        respond_by=received_at + settings.WEBHOOK_DEADLINE_SECONDS,
    )
    reply = async_to_sync(_answer)(
        call,
        speaker,
        utterance=speech,
        received_at=received_at,
        confidence=float_field(request, "Confidence"),
    )
    config = speaker.config  # the language the caller was answered in
    if reply.handoff is not None:
        return twiml.twiml_response(_handoff(reply.handoff, speaker, config=config))
    if speaker.played_first and reply.turn is not None:
        return twiml.twiml_response(_early_reply(request, call, speaker, reply.turn))
    return twiml.twiml_response(
        twiml.speak_and_listen(speaker.utterances, config=config, action_url=action_url)
    )


def _early_reply(
    request: HttpRequest, call: Call, speaker: GatherSpeaker, turn: Turn
) -> VoiceResponse:
    """The answer's first sentences, then Twilio fetches the rest from a link that only this
    call's continuation of this turn can use. The cache notes it until the rest is played."""
    said = speaker.text_played_first
    token = signing.dumps(
        {"call": str(call.id), "turn": str(turn.id), "said": said}, salt=CONTINUATION_SALT
    )
    heard = turn.text[:said].strip()
    try:
        caching.shared_cache().set(
            continuation_key(call),
            {"turn": str(turn.id), "heard": heard},
            timeout=CONTINUATION_MAX_AGE_SECONDS,
        )
    except Exception:  # only the hang-up bookkeeping is lost
        logger.warning("gather: could not note the continuation", exc_info=True)
    url = public_url(request, "/twilio/gather-continue?" + urlencode({"c": token}))
    return twiml.play_then_redirect(speaker.first_part(), config=speaker.config, url=url)


def _continuation(request: HttpRequest, call: Call) -> tuple[Turn, int] | None:
    """The turn and the length of its text already played that the signed link names, if the
    link is valid and about this call."""
    try:
        data = signing.loads(
            request.GET.get("c", ""), salt=CONTINUATION_SALT, max_age=CONTINUATION_MAX_AGE_SECONDS
        )
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or data.get("call") != str(call.id):
        return None
    turn = Turn.objects.filter(
        id=data.get("turn"), call=call, tenant_id=call.tenant_id, role=Turn.Role.ASSISTANT
    ).first()
    said = data.get("said")
    if turn is None or not isinstance(said, int) or not 0 <= said <= len(turn.text):
        return None
    return turn, said


@call_webhook(unknown=lambda: twiml.twiml_response(twiml.hang_up()), active_only=True)
def gather_continue(request: HttpRequest, call: Call) -> HttpResponse:
    """The rest of an answer whose first sentences were played early: play it (the audio ready
    by now, Twilio's voice for the rest) and listen again."""
    found = _continuation(request, call)
    if found is None:
        return HttpResponseNotFound("No such continuation for this call.")
    turn, said = found
    _forget_continuation(call, turn)
    config = languages.speaking(call.config_snapshot, turn.language) if turn.language else None
    config = config or languages.for_call(call)
    splitter = SentenceSplitter()
    sentences = splitter.feed(turn.text[said:] + " ") + splitter.flush()
    spoken = [prepare_speech(call=call, config=config, text=text) for text in sentences]
    until = time.monotonic() + settings.TTS_WAIT_SECONDS
    base_url = public_base_url(request)
    urls, _ = async_to_sync(wait_for_audio)(spoken, until=until, base_url=base_url)
    utterances = [
        twiml.Utterance(text=s.sentence, audio_url=urls.get(str(s.audio.id), "") if s.audio else "")
        for s in spoken
    ]
    services.turn_add_audio(
        turn=turn,
        audio_urls=[u.audio_url for u in utterances if u.audio_url],
        said_by_twilio=any(not u.audio_url for u in utterances),
    )
    return twiml.twiml_response(
        twiml.speak_and_listen(utterances, config=config, action_url=gather_url(request))
    )


def _forget_continuation(call: Call, turn: Turn) -> None:
    try:
        cache = caching.shared_cache()
        noted = cache.get(continuation_key(call))
        if noted and noted.get("turn") == str(turn.id):
            cache.delete(continuation_key(call))
    except Exception:
        logger.warning("gather: could not read the continuation note", exc_info=True)


@receiver(signals.call_ended, dispatch_uid="gather-continuation-unplayed")
def _rest_never_played(sender: object, call: Call, **kwargs: object) -> None:
    """The caller hung up after an early reply's first sentences, before Twilio fetched the
    rest: the turn keeps what the caller heard."""
    if call.mode != Call.Mode.GATHER:  # only gather answers are continued
        return
    try:
        cache = caching.shared_cache()
        noted = cache.get(continuation_key(call))
        if not noted:
            return
        cache.delete(continuation_key(call))
    except Exception:
        logger.warning("gather: could not read the continuation note", exc_info=True)
        return
    turn = Turn.objects.filter(id=noted["turn"], call=call, tenant_id=call.tenant_id).first()
    if turn is not None and not turn.interrupted:
        services.turn_mark_interrupted(turn=turn, heard_text=noted["heard"])

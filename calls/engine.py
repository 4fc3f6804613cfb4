"""The conversation engine: one turn, from the caller's words to the assistant's answer, for
every transport (gather webhooks, ConversationRelay, the browser talk page).

A turn, in order:
1. the caller's words are cleaned and bounded; the FAQ (read once per conversation) is matched;
2. the LLM is asked at once, while the caller's turn is stored, the rate limits and token budget
   are checked and the answer cache is looked up (one trip to the database pool); nothing the
   LLM says reaches the caller before that check allows it;
3. the answer comes from the FAQ, else the answer cache, else the LLM (`providers.llm`: retries,
   fallback model, deadline), else the apology;
4. the transport's `Speaker` says it (streams text frames, or makes audio for TwiML) and fills in
   when the caller got it;
5. the assistant's turn is stored with its timings, the tokens spent, the answer cached, and the
   dashboards told.

The conversation has a language (`Conversation.language`, stored on the Call and on each turn):
a turn in, or asking for, another language the assistant accepts switches it (`calls.languages`)
before the turn is answered. The LLM is told to answer in it, the platform's lines are said in it,
and the `Speaker` is told (`switch_language`) so that speech and recognition follow.

A transport is a thin adapter: it turns its protocol into calls of `Conversation` and implements
`Speaker`. Everything here runs on the event loop; database work goes through the thread pool of
`core.asyncdb` with the caller's tenant scope and log context (entered by the transport).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings

from assistants.faq import FAQ, normalize
from assistants.models import CallConfig
from assistants.versions import version_parts
from calls import events, languages, phrases, routing, services
from calls.models import Call, Turn
from core import caching
from core.asyncdb import database_async
from providers import llm
from tenants import ratelimits
from tenants.models import RateLimit
from tools.toolbox import CallFacts, Outcome, Toolbox, run_all
from tools.versions import toolbox_thaw

logger = logging.getLogger(__name__)

TRANSFER_REASON = "live-agent-handoff"
END_CALL_REASON = "end-call"


def clean_text(text: object, limit: int) -> str:
    """Caller-supplied text as something PostgreSQL stores: a string, no NULs, bounded."""
    if not isinstance(text, str):
        return ""
    return text.replace("\x00", "").strip()[:limit]


def heard_of(said: str, heard: str) -> str:
    """What the caller heard of an answer, as a prefix of what was said: a client's report of
    what was heard never puts words in the assistant's mouth."""
    if said.startswith(heard):
        return heard
    return os.path.commonprefix([said, heard])


@dataclass
class Reply:
    """One answer of the assistant, filled in as it is made and said (times: monotonic)."""

    utterance: str
    received_at: float
    deadline: float
    # When the words were recognised, if that came after `received_at` (the caller stopped).
    recognized_at: float | None = None
    source: str = ""  # a Turn.Source
    cache_hit: bool = False
    llm: llm.LLMResult = field(default_factory=llm.LLMResult)
    # What the caller was given, in order (sent frames, or sentences queued for speech).
    parts: list[str] = field(default_factory=list)
    # What the model said (without the platform's own lines, e.g. the filler).
    deltas: list[str] = field(default_factory=list)
    first_sent_at: float | None = None
    last_sent_at: float | None = None
    first_audio_at: float | None = None
    audio_urls: list[str] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)  # the transport's own (e.g. tts:say)
    errors: list[str] = field(default_factory=list)  # the transport's own (e.g. speech)
    error: str = ""  # why answering failed, if it did
    settled: bool = False  # the tokens reserved for it are counted as really spent
    partial_at: float = 0.0  # when the dashboard was last shown the words so far
    interrupted: bool = False
    heard: str = ""
    # What should happen to the call after this answer (e.g. hang up with a message).
    handoff: dict | None = None
    language: str = ""  # the conversation's language while this answer was given
    tool_calls: list[dict] = field(default_factory=list)  # the tools run, as the turn keeps them
    passages: list[dict] = field(default_factory=list)  # knowledge put into the prompt
    route: routing.Route | None = None  # the model the LLM was asked with, and why
    storing: bool = False
    turn: Turn | None = None
    prepare: asyncio.Future | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def ms(self, moment: float | None) -> int | None:
        return None if moment is None else max(0, round((moment - self.received_at) * 1000))


class Speaker(Protocol):
    """How a transport gets an answer to the caller."""

    # Whether the dashboard should see the answer's words while they stream.
    streams_text: bool
    # Once an answer has begun, the model's stream need be read at most this often (seconds):
    # what arrived meanwhile is said as one piece. 0: each piece as it comes.
    read_every: float

    async def say(self, reply: Reply, text: str, *, complete: bool = False) -> None:
        """Give the caller `text`: a piece of the answer, or (`complete`) all that is left of
        it. Appends what the caller gets to `reply.parts` and sets `reply.first_sent_at`."""

    async def done(self, reply: Reply) -> None:
        """The answer is complete: finish saying it and note when the caller got it."""

    async def stop(self, reply: Reply) -> None:
        """The answer stops early (interrupted, failed): settle what is under way, so that
        `reply.parts` is what the caller got."""

    async def cut(self, reply: Reply) -> None:
        """The model broke off mid-answer: drop what has not reached the caller yet (e.g. an
        unfinished sentence), if the transport still can."""

    async def end(self, handoff: dict) -> None:
        """End a live session; `handoff` says what should happen to the call next."""

    async def switch_language(self, config: CallConfig) -> None:
        """The conversation goes on in `config["language"]`, spoken with `config["tts_voice"]`:
        speak (and, where the transport recognises speech, listen) in it from now on."""


@dataclass
class Prepared:
    """What the check beside the LLM request found: the caller's stored turn, and a rate limit
    hit or a ready answer (FAQ, cache) that makes the LLM's answer unwanted."""

    caller_turn: Turn
    limited: ratelimits.Verdict | None = None
    reservation: ratelimits.TokenReservation | None = None  # taken from the token budget
    source: str = ""
    text: str = ""
    cache_key: str = ""  # where the LLM's answer may be cached


def build_messages(
    *,
    config: CallConfig,
    history: list[tuple[str, str]],
    utterance: str,
    language: str | None = None,
) -> list[dict]:
    """System prompt, the last `context_turns` turns, then what the caller just said. An
    assistant that speaks several languages is told which one to answer in."""
    limit = settings.MAX_UTTERANCE_CHARS
    system = config["system_prompt"]
    if language and languages.is_multilingual(config):
        system = f"{system}\n\n{languages.instruction(language)}"
    messages = [{"role": "system", "content": system}]
    keep = int(config.get("context_turns", 10))
    for role, text in history[-keep:] if keep else []:
        if text:
            role = "user" if role == "caller" else "assistant"
            messages.append({"role": role, "content": text[:limit]})
    messages.append({"role": "user", "content": utterance[:limit]})
    return messages


def tokens_at_most(*, config: CallConfig, messages: list[dict]) -> int:
    """An upper bound of what one answer to `messages` may cost: the prompt (a token is rarely
    shorter than three characters) plus the most the model may write."""
    prompt = sum(len(m["content"]) // 3 + 4 for m in messages) + 3
    return prompt + int(config["max_tokens"])


def answer_cache_key(*, tenant_id: object, config: CallConfig, utterance: str) -> str:
    raw = "|".join(
        [str(tenant_id), config["id"], str(config.get("updated_at")), normalize(utterance)]
    )
    return "answer:" + hashlib.sha256(raw.encode()).hexdigest()


def _cache_get(key: str) -> str | None:
    try:
        return caching.shared_cache().get(key)
    except Exception:  # the cache is an optimisation: carry on without it
        logger.warning("answer cache unavailable", exc_info=True)
        return None


def _cache_set(key: str, value: str) -> None:
    try:
        caching.shared_cache().set(key, value, timeout=settings.ANSWER_CACHE_SECONDS)
    except Exception:
        logger.warning("answer cache unavailable", exc_info=True)


def equipment_load(
    *, config: CallConfig, parts: dict | None, tenant_id: object
) -> tuple[FAQ, Toolbox]:
    """The FAQ and toolbox of a conversation: from a version's frozen `parts`, else (no
    version) the assistant's current ones."""
    language = config.get("language", "en-US")
    if parts is None:
        faq = FAQ.load(config["id"])
        toolbox = Toolbox.load(assistant_id=config["id"], tenant_id=tenant_id, language=language)
        return faq, toolbox
    faq = FAQ.of_entries(parts.get("faq") or [])
    toolbox = toolbox_thaw(parts.get("tools") or {}, tenant_id=tenant_id, language=language)
    return faq, toolbox


class Conversation:
    """A conversation bound to one Call (of the tenant whose scope is active).

    `answer()` runs one whole turn (the gather webhook awaits it). A live session (relay, talk)
    uses `prompt()`, `interrupt()`, `dtmf()` and `close()`: an answer runs as a task that a new
    prompt or an interruption cancels, and what the caller heard of it is stored.
    """

    def __init__(
        self,
        *,
        call: Call,
        speaker: Speaker,
        database: Callable[[Callable], Callable] = database_async,
    ) -> None:
        self.call = call
        # How database work is run from the event loop: the shared pool of threads, or (for a
        # webhook whose view waits for the answer) the view's own thread.
        self.database = database
        self.config: CallConfig = call.config_snapshot
        self.speaker = speaker
        # The config to speak with: the conversation's language (the call's) and its voice.
        self.speaking: CallConfig = languages.for_call(call)
        self.language: str = self.speaking["language"]
        self.history: list[tuple[str, str]] = []
        self.faq = FAQ()
        self.limits: dict[str, RateLimit] = {}
        self.toolbox = Toolbox()
        self.tools: list[dict] = []  # the toolbox's definitions, as the model is offered them
        self.tool_names: frozenset[str] = frozenset()  # their telling words (model routing)
        self.turns = 0  # turns of the call stored so far (the next one is number turns + 1)
        self.ended = False
        self._reply: Reply | None = None
        self._task: asyncio.Task | None = None
        self._last_turn: Turn | None = None

    async def start(self, *, held_by: str = "", first_socket: bool = False) -> None:
        """Read what the conversation needs before the first turn: the call's turns so far,
        the assistant's FAQ and the tenant's rate limits (like the call's config snapshot,
        they hold for the whole call; edits apply to the next call). `held_by`: the server
        process whose socket holds the call, noted on it in the same trip to the database.
        `first_socket`: the call's voice webhook just answered it, so it has no turns yet."""
        languages.warm_up_soon(self.config)
        loaded = await self.database(self._load)(held_by, first_socket)
        self.history, self.turns, self.faq, self.limits, self.toolbox = loaded
        self.tools = self.toolbox.definitions()
        self.tool_names = routing.tool_words(self.tools)

    def _load(
        self, held_by: str = "", first_socket: bool = False
    ) -> tuple[list[tuple[str, str]], int, FAQ, dict[str, RateLimit], Toolbox]:
        """One trip to the database pool for all of it."""
        if held_by:
            services.call_hold(call=self.call, server=held_by)
        history, last = ([], 0) if first_socket else services.call_history_and_last(call=self.call)
        parts = (
            version_parts(tenant_id=self.call.tenant_id, version_id=self.call.version_id)
            if self.call.version_id
            else None
        )
        faq, toolbox = equipment_load(
            config=self.config, parts=parts, tenant_id=self.call.tenant_id
        )
        return history, last, faq, ratelimits.effective_limits(self.call.tenant), toolbox

    def _next_sequence(self) -> int:
        self.turns += 1
        return self.turns

    def phrase(self, line: str) -> str:
        """One of the platform's lines (or a tenant's own message), in the conversation's
        language."""
        return phrases.say(line, config=self.speaking)

    async def _follow_language(self, utterance: str) -> bool:
        """Switch to the language the caller speaks or asks for, if the assistant accepts it
        and it is not the current one. True when it switched."""
        if not languages.is_multilingual(self.config):
            return False
        # In a thread: the detector's first use in a process loads its models.
        language = await asyncio.to_thread(languages.detect, utterance, config=self.config)
        if language is None or language == self.language:
            return False
        previous, self.language = self.language, language
        self.speaking = languages.speaking(self.config, language)
        logger.info("language switched", extra={"language": language, "previous": previous})
        await self.speaker.switch_language(self.speaking)
        events.publish("language", call=self.call, language=language, previous=previous)
        return True

    # --- one turn ------------------------------------------------------------------------------

    async def answer(
        self,
        utterance: str,
        *,
        received_at: float,
        deadline: float,
        confidence: float | None = None,
        recognized_at: float | None = None,
    ) -> Reply:
        """Answer what the caller said and store both turns. `deadline` (monotonic) bounds the
        LLM. Cancelling the task stores the answer as interrupted, with what was said of it."""
        reply = Reply(
            utterance=utterance,
            received_at=received_at,
            deadline=deadline,
            recognized_at=recognized_at,
        )
        self._reply = reply
        try:
            await self._answer(reply, confidence)
        finally:
            if (reservation := self._reservation(reply)) is not None:
                # Not stored (interrupted before a word was said, or storing failed): the
                # tokens reserved for it are settled anyway.
                settle = self.database(ratelimits.tokens_settle)
                await asyncio.shield(settle(reservation=reservation, spent=reply.llm.tokens))
        return reply

    @staticmethod
    def _reservation(reply: Reply) -> ratelimits.TokenReservation | None:
        """The reply's token reservation, while it is not settled yet."""
        prepare = reply.prepare
        if reply.settled or prepare is None or not prepare.done() or prepare.cancelled():
            return None
        if prepare.exception() is not None:
            return None
        return prepare.result().reservation

    async def _answer(self, reply: Reply, confidence: float | None) -> None:
        try:
            await self._respond(reply, confidence)
        except asyncio.CancelledError:
            await self.speaker.stop(reply)
            if reply.prepare is not None:
                await asyncio.wait([reply.prepare])  # the caller's turn is stored first
            if reply.parts:
                await asyncio.shield(self._store(reply))
                if reply.turn is not None:
                    turn = services.turn_as_event(reply.turn)
                    events.publish("interrupted", call=self.call, turn=turn)
            raise
        except Exception as exc:
            logger.exception("answering failed")
            reply.error = f"{type(exc).__name__}: {exc}"[:500]
            try:
                await self.speaker.stop(reply)
                if reply.last_sent_at is None:  # the caller is waiting: close the answer
                    reply.source = reply.source or Turn.Source.APOLOGY
                    await self.speaker.say(
                        reply, "" if reply.parts else self.phrase(phrases.APOLOGY), complete=True
                    )
                    await self.speaker.done(reply)
                await self._store(reply)
            except Exception:
                logger.exception("could not store the answer")

    async def _respond(self, reply: Reply, confidence: float | None) -> None:
        switched = await self._follow_language(reply.utterance)
        reply.language = self.language
        history = list(self.history)
        faq_text = self.faq.answer(reply.utterance)
        messages = None
        if not faq_text:
            messages = build_messages(
                config=self.config,
                history=history,
                utterance=reply.utterance,
                language=self.language,
            )
            await self._add_knowledge(reply, messages)
        # The caller's turn is stored and the limits and answer cache checked while the LLM is
        # already being asked: none of it is on the path to the first token.
        checking = asyncio.ensure_future(
            self.database(self._prepare)(
                utterance=reply.utterance,
                confidence=confidence,
                history=history,
                faq_text=faq_text,
                reserve_tokens=tokens_at_most(config=self.config, messages=messages)
                if messages
                else 0,
                sequence=self._next_sequence(),
                language=self.language,
                switched=switched,
            )
        )
        checking.add_done_callback(self._caller_turn_stored)
        reply.prepare = checking
        self.history.append((Turn.Role.CALLER, reply.utterance))
        stream, first = None, None
        if messages:
            reply.route = routing.route(
                config=self.config,
                utterance=reply.utterance,
                faq=self.faq,
                tool_names=self.tool_names,
            )
            stream = self._ask_llm(reply, messages)
            first = asyncio.ensure_future(anext(stream, None))
        try:
            # Shielded: an interrupt does not stop the caller's turn from being stored.
            prepared: Prepared = await asyncio.shield(checking)
        except BaseException:
            await self._drop_llm(first, stream)
            raise

        if prepared.limited is not None or prepared.text:
            await self._drop_llm(first, stream)
        if prepared.limited is not None:
            await self._limited(reply, prepared.limited)
            return
        if prepared.text:
            reply.source, reply.cache_hit = prepared.source, prepared.source == Turn.Source.CACHE
            await self.speaker.say(reply, prepared.text, complete=True)
            await self.speaker.done(reply)
            await self._store(reply)
            return

        reply.source = Turn.Source.LLM
        try:
            delta = await self._first_delta(reply, first)
            while delta is not None:
                await self._say_delta(reply, delta)
                delta = await anext(stream, None)
        finally:
            await stream.aclose()
        unanswered = await self._use_tools(reply, messages)
        if reply.handoff is not None:  # a transfer or a goodbye, already said
            pass
        elif unanswered and not reply.llm.not_configured:
            line = (" " if reply.parts else "") + self.phrase(phrases.TOOL_TROUBLE)
            await self.speaker.say(reply, line, complete=True)
        elif not reply.deltas:
            not_configured = reply.llm.not_configured
            reply.source = Turn.Source.NOT_CONFIGURED if not_configured else Turn.Source.APOLOGY
            text = phrases.NOT_CONFIGURED if not_configured else phrases.APOLOGY
            await self.speaker.say(reply, self.phrase(text), complete=True)
        elif reply.llm.truncated:  # broken off mid-answer: no half sentence left hanging
            await self.speaker.cut(reply)
            await self.speaker.say(reply, " " + self.phrase(phrases.CUT_SHORT), complete=True)
        await self.speaker.done(reply)
        await self._store(reply, cache_key=prepared.cache_key)

    async def _first_delta(self, reply: Reply, first: asyncio.Future) -> str | None:
        """The model's first piece of text. A caller on a live line who has heard nothing
        for LLM_FILLER_SECONDS hears a short "one moment" while the model keeps going."""
        wait = settings.LLM_FILLER_SECONDS
        if self.speaker.streams_text and wait > 0:
            timeout = max(0.0, reply.received_at + wait - time.monotonic())
            done, _ = await asyncio.wait([first], timeout=timeout)
            if not done:
                await self.speaker.say(reply, self.phrase(phrases.ONE_MOMENT) + " ")
        return await first

    async def _say_delta(self, reply: Reply, delta: str) -> None:
        reply.deltas.append(delta)
        await self.speaker.say(reply, delta)
        self._publish_partial(reply)

    def _ask_llm(
        self, reply: Reply, messages: list[dict], result: llm.LLMResult | None = None
    ) -> AsyncIterator[str]:
        config = self.config
        chosen = reply.route or routing.route(
            config=config, utterance=reply.utterance, faq=self.faq, tool_names=self.tool_names
        )
        return llm.stream_reply(
            model=chosen.model,
            fallback_model=chosen.fallback_model,
            messages=messages,
            temperature=float(config["temperature"]),
            max_tokens=int(config["max_tokens"]),
            deadline=reply.deadline,
            result=reply.llm if result is None else result,
            tools=self.tools or None,
            read_every=self.speaker.read_every,
        )

    # --- tools ---------------------------------------------------------------------------------

    async def _add_knowledge(self, reply: Reply, messages: list[dict]) -> None:
        """Put the knowledge passages that match the caller's words strongly into the system
        prompt (when the assistant has it switched on)."""
        if not self.toolbox.knowledge_in_prompt:
            return
        hits = await self.database(self.toolbox.prompt_passages)(reply.utterance)
        if not hits:
            return
        reply.passages = [hit.as_dict() for hit in hits]
        facts = "\n".join(f"- {hit.title}: {hit.text}" for hit in hits)
        prompt = f"{messages[0]['content']}\n\nFrom the business's documents:\n{facts}"
        messages[0] = {"role": "system", "content": prompt}

    async def _use_tools(self, reply: Reply, messages: list[dict]) -> bool:
        """Run the tools the model asked for, give it their results and say what it answers
        then; up to TOOL_MAX_ROUNDS rounds, all inside the turn's deadline. A transfer or
        hang-up the model asked for ends the turn with its line (`reply.handoff`). True when
        the model said nothing after its tools (it failed, or wanted yet more tools)."""
        unanswered = False
        for _ in range(settings.TOOL_MAX_ROUNDS):
            calls = reply.llm.tool_calls
            if not calls or reply.llm.truncated:
                break
            said = len(reply.deltas)
            outcomes = await self._run_tools(reply, calls)
            if await self._act(reply, outcomes):
                return False
            messages = [
                *messages,
                {
                    "role": "assistant",
                    "content": "".join(reply.deltas[said:]) or None,
                    "tool_calls": [call.as_message() for call in calls],
                },
                *(
                    {"role": "tool", "tool_call_id": o.call.id, "content": o.content}
                    for o in outcomes
                ),
            ]
            later, before = llm.LLMResult(), len(reply.deltas)
            stream = self._ask_llm(reply, messages, result=later)
            try:
                async for delta in stream:
                    await self._say_delta(reply, delta)
            finally:
                await stream.aclose()
                reply.llm.absorb(later)
            unanswered = len(reply.deltas) == before
        reply.llm.tool_calls = []  # calls beyond the last round are not run
        return unanswered

    async def _run_tools(self, reply: Reply, calls: list[llm.ToolCall]) -> list[Outcome]:
        """Run the calls at once; a caller kept waiting longer than TOOL_FILLER_SECONDS hears
        a short "one moment while I check" meanwhile."""
        running = asyncio.ensure_future(
            run_all(
                self.toolbox,
                calls,
                facts=self._facts(),
                deadline=reply.deadline - settings.TOOL_ANSWER_RESERVE_SECONDS,
                database=self.database,
            )
        )
        try:
            done, _ = await asyncio.wait([running], timeout=settings.TOOL_FILLER_SECONDS)
            if not done:
                await self.speaker.say(reply, self.phrase(phrases.CHECKING) + " ")
            outcomes = await running
        except asyncio.CancelledError:
            running.cancel()
            raise
        for outcome in outcomes:
            reply.tool_calls.append(outcome.record())
            logger.info(
                "tool called",
                extra={"tool": outcome.call.name, "status": outcome.status, "ms": outcome.ms},
            )
        return outcomes

    async def _act(self, reply: Reply, outcomes: list[Outcome]) -> bool:
        """Carry out a transfer or a hang-up the model asked for: say its line and tell the
        transport what to do next. False when no tool asked for one."""
        action = next((o.action for o in outcomes if o.action is not None), None)
        if action is None:
            return False
        if action.get("transfer"):
            line = self.phrase(phrases.TRANSFERRING).format(destination=action["destination"])
            await self._note_outcome(Call.Outcome.TRANSFERRED)
            reply.handoff = {"reason": TRANSFER_REASON, "trigger": "words", **action}
        else:
            line = self.phrase(phrases.GOODBYE)
            reply.handoff = {"reason": END_CALL_REASON, **action}
        await self.speaker.say(reply, (" " if reply.parts else "") + line, complete=True)
        return True

    async def _note_outcome(self, outcome: str) -> None:
        """Note how the call is ending (a rehearsal of the conversation keeps it to itself)."""
        await self.database(services.call_set_outcome)(call=self.call, outcome=outcome)

    def _facts(self) -> CallFacts:
        call = self.call
        return CallFacts(
            id=str(call.id),
            sid=call.call_sid,
            from_number=call.from_number,
            to_number=call.to_number,
            mode=call.mode,
        )

    @staticmethod
    async def _drop_llm(first: asyncio.Future | None, stream: AsyncIterator[str] | None) -> None:
        """Stop an LLM request whose answer is not wanted (the HTTP stream is closed)."""
        if first is None or stream is None:
            return
        first.cancel()
        await asyncio.wait([first])
        await stream.aclose()

    async def _limited(self, reply: Reply, verdict: ratelimits.Verdict) -> None:
        reply.source, reply.error = Turn.Source.SYSTEM, f"rate limit: {verdict.limit.kind}"
        message = self.phrase(verdict.message)
        if verdict.action == RateLimit.Action.SPEAK_AND_CONTINUE:
            await self.speaker.say(reply, message, complete=True)
            await self.speaker.done(reply)
            await self._store(reply)
            return
        reply.parts.append(message)  # said by whoever ends the call
        await self._store(reply)
        await self._note_outcome(Call.Outcome.REJECTED_RATE_LIMIT)
        reply.handoff = {"reason": "rate-limit", "message": message}

    async def _store(self, reply: Reply, *, cache_key: str = "") -> None:
        reply.storing = True
        if reply.prepare is not None:
            await asyncio.wait([reply.prepare])  # the caller's turn comes first
        if reply.last_sent_at is None and reply.parts and self.speaker.streams_text:
            reply.last_sent_at = time.monotonic()
        reservation = self._reservation(reply)
        reply.settled = True
        turn = await self.database(self._store_sync)(
            reply=reply,
            cache_key=cache_key,
            sequence=self._next_sequence(),
            reservation=reservation,
        )
        self.turns = max(self.turns, turn.sequence)  # in case another writer took the number
        self._publish_turn(turn)
        reply.turn = self._last_turn = turn
        self.history.append(
            (Turn.Role.ASSISTANT, turn.heard_text if turn.interrupted else turn.text)
        )

    # --- database work (runs in a worker thread, inside the conversation's tenant scope) -------

    def _prepare(
        self,
        *,
        utterance: str,
        confidence: float | None,
        history: list[tuple[str, str]],
        faq_text: str | None,
        reserve_tokens: int,
        sequence: int,
        language: str,
        switched: bool,
    ) -> Prepared:
        """Store the caller's turn (and the call's new language, if the turn switched it), then
        check the limits and look for a ready answer."""
        call = self.call
        if call.silent_prompts:
            services.call_count_silence(call=call, silent=False)
        if switched:
            services.call_set_language(call=call, language=language)
        caller_turn = services.turn_add(
            call=call,
            role=Turn.Role.CALLER,
            text=utterance,
            sequence=sequence,
            publish=False,
            confidence=confidence,
            language=language,
        )
        # The most the LLM may spend on the turn is taken from the token budget before it answers.
        verdict = ratelimits.turn_verdict(
            tenant=call.tenant,
            call_sid=call.call_sid,
            limits=self.limits,
            reserve_tokens=reserve_tokens,
        )
        if not verdict.allowed:
            return Prepared(caller_turn=caller_turn, limited=verdict)
        prepared = Prepared(caller_turn=caller_turn, reservation=verdict.reservation)
        if faq_text:
            prepared.source, prepared.text = Turn.Source.FAQ, faq_text
            return prepared
        # Only a first question is answered from the cache: later ones depend on the talk.
        if settings.ANSWER_CACHE_SECONDS <= 0 or any(r == "caller" for r, _ in history):
            return prepared
        key = answer_cache_key(tenant_id=call.tenant_id, config=self.config, utterance=utterance)
        if cached := _cache_get(key):
            prepared.source, prepared.text = Turn.Source.CACHE, cached
        else:
            prepared.cache_key = key
        return prepared

    def _store_sync(
        self,
        *,
        reply: Reply,
        cache_key: str,
        sequence: int,
        reservation: ratelimits.TokenReservation | None,
    ) -> Turn:
        result = reply.llm
        is_llm = reply.source == Turn.Source.LLM
        ratelimits.tokens_settle(reservation=reservation, spent=result.tokens)
        complete = not (
            reply.interrupted
            or result.failed
            or result.truncated
            or reply.error
            or reply.tool_calls
        )
        if is_llm and complete and cache_key and reply.deltas:
            _cache_set(cache_key, "".join(reply.deltas))
        return services.turn_add(
            call=self.call,
            role=Turn.Role.ASSISTANT,
            text=reply.text,
            sequence=sequence,
            publish=False,
            interrupted=reply.interrupted,
            heard_text=heard_of(reply.text, reply.heard) if reply.interrupted else "",
            language=reply.language or self.language,
            source=reply.source,
            cache_hit=reply.cache_hit,
            model_used=result.model_used if is_llm else "",
            route=reply.route.route if is_llm and reply.route else "",
            route_reason=reply.route.reason if is_llm and reply.route else "",
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            transcript_final_ms=reply.ms(reply.recognized_at),
            llm_first_token_ms=reply.ms(result.first_token_at),
            llm_done_ms=reply.ms(result.done_at),
            first_audio_ms=reply.ms(reply.first_audio_at),
            response_sent_ms=reply.ms(reply.first_sent_at),
            last_token_sent_ms=reply.ms(reply.last_sent_at),
            fallbacks=list(result.fallbacks) + reply.fallbacks,
            audio_urls=reply.audio_urls,
            tool_calls=reply.tool_calls,
            passages=reply.passages,
            error="; ".join([*result.errors, *reply.errors, *filter(None, [reply.error])])[:2000],
        )

    # --- a live session ------------------------------------------------------------------------

    async def prompt(
        self,
        utterance: object,
        *,
        speech_ended_at: float | None = None,
        confidence: float | None = None,
    ) -> None:
        """The caller said `utterance`: stop any answer still streaming, then answer this.

        `speech_ended_at` (monotonic): when the caller stopped talking, for a transport that
        recognises speech itself; the turn's timings then count from that moment.
        """
        now = time.monotonic()
        text = clean_text(utterance, settings.MAX_UTTERANCE_CHARS)
        if not text or self.ended:
            return
        await self._stop_answer(heard=None)
        received_at = min(speech_ended_at, now) if speech_ended_at is not None else now
        answering = self.answer(
            text,
            received_at=received_at,
            deadline=now + settings.RELAY_ANSWER_SECONDS,
            confidence=confidence,
            recognized_at=now if speech_ended_at is not None else None,
        )
        self._task = asyncio.create_task(self._run(answering))

    async def _run(self, answering: Coroutine[None, None, Reply]) -> None:
        reply = await answering
        if reply.handoff is not None:
            await self._end(reply.handoff)

    async def interrupt(self, heard: object) -> None:
        """The caller talked over the answer; `heard` is what they heard of it."""
        heard_text = clean_text(heard, 20000)
        if self._task is not None and not self._task.done():
            await self._stop_answer(heard=heard_text)
            return
        turn = self._last_turn
        if turn is not None and not turn.interrupted:
            heard_text = heard_of(turn.text, heard_text)
            await self.database(services.turn_mark_interrupted)(turn=turn, heard_text=heard_text)
            self._replace_history(turn.text, heard_text)

    async def dtmf(self, digit: object) -> None:
        key = digit[:1] if isinstance(digit, str) else ""
        if key and key == self.config.get("transfer_digit") and self.config.get("transfer_number"):
            await self.transfer(trigger="dtmf")
        else:
            logger.info("keypad digit ignored", extra={"digit": key})

    async def transfer(self, *, trigger: str) -> None:
        """Hand the caller to the assistant's transfer number (the transport dials it)."""
        if self.ended:
            return
        await self._stop_answer(heard=None)
        await self._note_outcome(Call.Outcome.TRANSFERRED)
        await self._end({"reason": TRANSFER_REASON, "transfer": True, "trigger": trigger})

    async def error(self, description: str) -> None:
        """The transport's far end reported an error: show it on the dashboards."""
        events.publish("error", call=self.call, description=description)

    async def close(self) -> None:
        """The session is over: store what was said and close the call (once)."""
        self.ended = True
        await self._stop_answer(heard=None)
        await self.database(services.call_finish)(call=self.call)

    async def abandon(self, *, error: str) -> None:
        """The conversation cannot go on (e.g. it could not start): close the call as failed,
        so that it does not stay live or hold a line."""
        self.ended = True
        await self.database(services.call_finish)(
            call=self.call, outcome=Call.Outcome.ERROR, error=error
        )

    async def _end(self, handoff: dict) -> None:
        self.ended = True
        await self.speaker.end(handoff)

    async def _stop_answer(self, *, heard: str | None) -> None:
        """Cancel the answer being given (its turn is stored as interrupted).

        `heard` is what the caller heard (None: unknown). An answer already fully given is not
        cancelled; it is marked interrupted once stored.
        """
        task, reply = self._task, self._reply
        if task is None or reply is None or task.done():
            return
        if reply.storing:
            await asyncio.wait([task])
            if heard is not None and reply.turn is not None:
                await self.interrupt(heard)
            return
        reply.interrupted, reply.heard = True, heard or ""
        task.cancel()
        await asyncio.wait([task])

    def _replace_history(self, text: str, heard: str) -> None:
        for index in range(len(self.history) - 1, -1, -1):
            role, said = self.history[index]
            if role == Turn.Role.ASSISTANT and said == text:
                self.history[index] = (role, heard)
                return

    # --- events --------------------------------------------------------------------------------

    def _publish_partial(self, reply: Reply) -> None:
        """Show the words on the dashboard as they stream, at most every few hundred ms."""
        if not self.speaker.streams_text:
            return
        now = time.monotonic()
        if now - reply.partial_at < settings.RELAY_PARTIAL_EVENT_SECONDS:
            return
        reply.partial_at = now
        events.publish("partial", call=self.call, text=reply.text[-2000:])

    def _caller_turn_stored(self, future: asyncio.Future) -> None:
        if not future.cancelled() and future.exception() is None:
            turn = future.result().caller_turn
            self.turns = max(self.turns, turn.sequence)
            self._publish_turn(turn)

    def _publish_turn(self, turn: Turn) -> None:
        """Announce a stored turn to the dashboards (queued: publishing never waits)."""
        events.publish("turn", call=self.call, turn=services.turn_as_event(turn))

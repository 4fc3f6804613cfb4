"""Relay mode's conversation engine: one live session that answers token by token.

The engine knows nothing of Twilio's framing: it speaks to an `Output` (send a piece of text,
end the session with handoff data). `calls.consumers.ConversationRelayConsumer` adapts it to
Twilio ConversationRelay messages; another transport (a browser page) can adapt it to its own.

Everything here runs on the event loop: database work goes through `config.asyncdb.database_async` (a thread pool),
the LLM through the async Groq client. The caller's tenant scope and log context are entered
by the entry point (the consumer) before the session starts; tasks started here inherit them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings

from assistants import llm
from assistants.responder import (
    APOLOGY,
    FAQ,
    NOT_CONFIGURED,
    ReadyAnswer,
    build_messages,
    ready_answer,
    remember_answer,
)
from calls import events, services
from calls.models import Call, Turn
from config.asyncdb import database_async
from tenants import ratelimits
from tenants.models import RateLimit

logger = logging.getLogger(__name__)

TRANSFER_REASON = "live-agent-handoff"


class Output(Protocol):
    """Where a session's answers go."""

    async def send_text(self, token: str, *, last: bool) -> None:
        """Send a piece of the answer; `last` closes the assistant's talk cycle."""

    async def end(self, handoff: dict) -> None:
        """End the session; `handoff` says what should happen to the call next."""


def clean_text(text: object, limit: int) -> str:
    """Caller-supplied text as something PostgreSQL stores: a string, no NULs, bounded."""
    if not isinstance(text, str):
        return ""
    return text.replace("\x00", "")[:limit].strip()


@dataclass
class Prepared:
    """What the check beside the LLM request found: the caller's stored turn, and a rate limit
    hit or a ready answer (FAQ, cache) that makes the LLM's answer unwanted."""

    caller_turn: Turn
    limited: ratelimits.Verdict | None = None
    ready: ReadyAnswer = field(default_factory=ReadyAnswer)


@dataclass
class Answer:
    """One answer being streamed, with its timings (time.monotonic())."""

    utterance: str
    received_at: float
    parts: list[str] = field(default_factory=list)
    source: str = ""
    cache_hit: bool = False
    llm: llm.LLMResult = field(default_factory=llm.LLMResult)
    first_sent_at: float | None = None
    last_sent_at: float | None = None
    partial_at: float = 0.0
    interrupted: bool = False
    heard: str = ""
    error: str = ""
    storing: bool = False
    turn: Turn | None = None
    prepare: asyncio.Future | None = None
    # Streamed text not sent yet, the timer that sends it, and the send running for it.
    pending: list[str] = field(default_factory=list)
    flush_timer: asyncio.TimerHandle | None = None
    flushing: asyncio.Task | None = None
    sending: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def ms(self, moment: float | None) -> int | None:
        return None if moment is None else max(0, round((moment - self.received_at) * 1000))


class RelaySession:
    """A live conversation bound to one Call (of the tenant whose scope is active)."""

    def __init__(self, *, call: Call, output: Output) -> None:
        self.call = call
        self.config = call.config_snapshot
        self.output = output
        self.history: list[tuple[str, str]] = []
        self.faq = FAQ()
        self.limits: dict[str, RateLimit] = {}
        self.turns = 0  # turns of the call stored so far (the next one is number turns + 1)
        self.ended = False
        self._answer: Answer | None = None
        self._task: asyncio.Task | None = None
        self._last_turn: Turn | None = None
        self._background: set[asyncio.Task] = set()

    async def start(self) -> None:
        """Read what the session needs before the first prompt: the call's turns so far, the
        assistant's FAQ and the tenant's rate limits (like the call's config snapshot, they
        hold for the whole call; edits apply to the next call)."""
        self.history, self.faq, self.limits = await database_async(self._load)()
        self.turns = len(self.history)

    def _load(self) -> tuple[list[tuple[str, str]], FAQ, dict[str, RateLimit]]:
        return (
            services.call_history(call=self.call),
            FAQ.load(self.config["id"]),
            ratelimits.effective_limits(self.call.tenant),
        )

    def _next_sequence(self) -> int:
        self.turns += 1
        return self.turns

    # --- what the caller does ------------------------------------------------------------------

    async def prompt(self, utterance: object) -> None:
        """The caller said `utterance`: stop any answer still streaming, then answer this."""
        received_at = time.monotonic()
        text = clean_text(utterance, settings.MAX_UTTERANCE_CHARS)
        if not text or self.ended:
            return
        await self._stop_answer(heard=None)
        answer = Answer(utterance=text, received_at=received_at)
        self._answer = answer
        self._task = asyncio.create_task(self._run(answer))

    async def interrupt(self, heard: object) -> None:
        """The caller talked over the answer; `heard` is what they heard of it."""
        heard_text = clean_text(heard, 20000)
        if self._task is not None and not self._task.done():
            await self._stop_answer(heard=heard_text)
            return
        turn = self._last_turn
        if turn is not None and not turn.interrupted:
            await database_async(services.turn_mark_interrupted)(
                turn=turn, heard_text=heard_text
            )
            self._replace_history(turn.text, heard_text)

    async def dtmf(self, digit: object) -> None:
        key = digit[:1] if isinstance(digit, str) else ""
        if key and key == self.config.get("transfer_digit") and self.config.get("transfer_number"):
            await self.transfer(trigger="dtmf")
        else:
            logger.info("relay: keypad digit ignored", extra={"digit": key})

    async def transfer(self, *, trigger: str) -> None:
        """Hand the caller to the assistant's transfer number (the action URL dials it)."""
        if self.ended:
            return
        await self._stop_answer(heard=None)
        await database_async(services.call_set_outcome)(
            call=self.call, outcome=Call.Outcome.TRANSFERRED
        )
        await self._end({"reason": TRANSFER_REASON, "transfer": True, "trigger": trigger})

    async def error(self, description: object) -> None:
        text = clean_text(description, 500)
        logger.warning("relay: Twilio reported an error", extra={"description": text})
        await events.apublish("error", call=self.call, description=text)

    async def close(self) -> None:
        """The connection is gone: store what was said and close the call (once)."""
        self.ended = True
        await self._stop_answer(heard=None)
        if self._background:
            await asyncio.wait(self._background, timeout=2)
        await database_async(services.call_finish)(call=self.call)

    # --- answering -----------------------------------------------------------------------------

    async def _end(self, handoff: dict) -> None:
        self.ended = True
        await self.output.end(handoff)

    async def _stop_answer(self, *, heard: str | None) -> None:
        """Cancel the answer being streamed (its turn is stored as interrupted).

        `heard` is what the caller heard (None: unknown). An answer already fully sent is
        not cancelled; it is marked interrupted once stored.
        """
        task, answer = self._task, self._answer
        if task is None or answer is None or task.done():
            return
        if answer.storing:
            await asyncio.wait([task])
            if heard is not None and answer.turn is not None:
                await self.interrupt(heard)
            return
        answer.interrupted, answer.heard = True, heard or ""
        task.cancel()
        await asyncio.wait([task])

    async def _run(self, answer: Answer) -> None:
        try:
            await self._respond(answer)
        except asyncio.CancelledError:
            await self._settle_stream(answer)
            if answer.prepare is not None:
                await asyncio.wait([answer.prepare])  # the caller's turn is stored first
            if answer.parts:
                await asyncio.shield(self._store(answer))
                if answer.turn is not None:
                    turn = services.turn_as_event(answer.turn)
                    await asyncio.shield(events.apublish("interrupted", call=self.call, turn=turn))
            raise
        except Exception as exc:
            logger.exception("relay: answering failed")
            answer.error = f"{type(exc).__name__}: {exc}"[:500]
            try:
                await self._settle_stream(answer)
                if answer.last_sent_at is None:  # the caller is waiting: close the talk cycle
                    answer.source = answer.source or "apology"
                    await self._send(answer, "" if answer.parts else APOLOGY, last=True)
                await self._store(answer)
            except Exception:
                logger.exception("relay: could not store the answer")

    async def _respond(self, answer: Answer) -> None:
        history = list(self.history)
        faq_text = self.faq.answer(answer.utterance)
        # The caller's turn is stored and the limits and answer cache checked while the LLM is
        # already being asked: none of it is on the path to the first token. Nothing the LLM
        # says is sent before the check allows it.
        checking = asyncio.ensure_future(
            database_async(self._prepare)(
                utterance=answer.utterance, history=history, faq_text=faq_text,
                sequence=self._next_sequence(),
            )
        )  # fmt: skip
        checking.add_done_callback(self._caller_turn_stored)
        answer.prepare = checking
        self.history.append((Turn.Role.CALLER, answer.utterance))
        stream, first = None, None
        if not faq_text:
            stream = self._ask_llm(answer, history)
            first = asyncio.ensure_future(anext(stream, None))
        try:
            # Shielded: an interrupt does not stop the caller's turn from being stored.
            prepared: Prepared = await asyncio.shield(checking)
        except BaseException:
            await self._drop_llm(first, stream)
            raise

        if prepared.limited is not None or prepared.ready.text:
            await self._drop_llm(first, stream)
        if prepared.limited is not None:
            await self._limited(answer, prepared.limited)
            return
        if prepared.ready.text:
            answer.source, answer.cache_hit = (
                prepared.ready.source,
                prepared.ready.source == "cache",
            )
            await self._send(answer, prepared.ready.text, last=True)
            await self._store(answer)
            return

        answer.source = "llm"
        try:
            delta = await first
            while delta is not None:
                await self._stream(answer, delta)
                self._publish_partial(answer)
                delta = await anext(stream, None)
        finally:
            await stream.aclose()
        if answer.parts or answer.pending:
            self._stop_timer(answer)
            await self._flush(answer, last=True)
        else:
            answer.source = "not_configured" if answer.llm.not_configured else "apology"
            await self._send(
                answer, NOT_CONFIGURED if answer.llm.not_configured else APOLOGY, last=True
            )
        await self._store(answer, cache_key=prepared.ready.cache_key)

    def _ask_llm(self, answer: Answer, history: list[tuple[str, str]]):
        config = self.config
        messages = build_messages(config=config, history=history, utterance=answer.utterance)
        return llm.astream_reply(
            model=config["model"], fallback_model=config.get("fallback_model", ""),
            messages=messages, temperature=float(config["temperature"]),
            max_tokens=int(config["max_tokens"]),
            deadline=answer.received_at + settings.RELAY_ANSWER_SECONDS, result=answer.llm,
        )  # fmt: skip

    @staticmethod
    async def _drop_llm(first: asyncio.Future | None, stream) -> None:
        """Stop an LLM request whose answer is not wanted (the HTTP stream is closed)."""
        if first is None:
            return
        first.cancel()
        await asyncio.wait([first])
        await stream.aclose()

    async def _send(self, answer: Answer, token: str, *, last: bool) -> None:
        await self.output.send_text(token, last=last)
        now = time.monotonic()
        if token:
            answer.parts.append(token)
            if answer.first_sent_at is None:
                answer.first_sent_at = now
        if last:
            answer.last_sent_at = now

    async def _stream(self, answer: Answer, delta: str) -> None:
        """Send a piece of the streaming answer: the first at once, the next ones gathered for
        up to RELAY_TEXT_BATCH_MS into one frame (a frame per token costs more than the token,
        and speech of the first words lasts far longer than the wait)."""
        answer.pending.append(delta)
        window = settings.RELAY_TEXT_BATCH_MS / 1000
        if answer.first_sent_at is None or window <= 0:
            await self._flush(answer)
        elif answer.flush_timer is None:
            loop = asyncio.get_running_loop()
            answer.flush_timer = loop.call_later(window, self._flush_soon, answer)

    def _flush_soon(self, answer: Answer) -> None:
        answer.flush_timer = None
        if answer.flushing is None or answer.flushing.done():
            answer.flushing = asyncio.create_task(self._flush(answer))

    async def _flush(self, answer: Answer, *, last: bool = False) -> None:
        """Send the text gathered so far (in order: one send at a time)."""
        async with answer.sending:
            if answer.interrupted:  # the caller talked over it: what is left is not said
                answer.pending.clear()
                return
            text = "".join(answer.pending)
            answer.pending.clear()
            if text or last:
                await self._send(answer, text, last=last)
        if answer.pending and answer.flush_timer is None and not last:
            loop = asyncio.get_running_loop()
            window = settings.RELAY_TEXT_BATCH_MS / 1000
            answer.flush_timer = loop.call_later(window, self._flush_soon, answer)

    @staticmethod
    def _stop_timer(answer: Answer) -> None:
        if answer.flush_timer is not None:
            answer.flush_timer.cancel()
            answer.flush_timer = None

    async def _settle_stream(self, answer: Answer) -> None:
        """The answer stops early: no more batched sends; one already under way finishes, so
        that what is stored is what was sent."""
        self._stop_timer(answer)
        answer.pending.clear()
        if answer.flushing is not None and not answer.flushing.done():
            await asyncio.wait([answer.flushing])

    def _publish_partial(self, answer: Answer) -> None:
        """Show the words on the dashboard as they stream, at most every few hundred ms."""
        now = time.monotonic()
        if now - answer.partial_at < settings.RELAY_PARTIAL_EVENT_SECONDS:
            return
        answer.partial_at = now
        self._in_background(events.apublish("partial", call=self.call, text=answer.text[-2000:]))

    def _caller_turn_stored(self, future: asyncio.Future) -> None:
        if not future.cancelled() and future.exception() is None:
            turn = future.result().caller_turn
            self.turns = max(self.turns, turn.sequence)
            self._publish_turn(turn)

    def _publish_turn(self, turn: Turn) -> None:
        """Announce a stored turn to the dashboards, without waiting for it."""
        self._in_background(
            events.apublish("turn", call=self.call, turn=services.turn_as_event(turn))
        )

    def _in_background(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _limited(self, answer: Answer, verdict: ratelimits.Verdict) -> None:
        answer.source, answer.error = "system", f"rate limit: {verdict.limit.kind}"
        if verdict.action == RateLimit.Action.SPEAK_AND_CONTINUE:
            await self._send(answer, verdict.message, last=True)
            await self._store(answer)
            return
        answer.parts.append(verdict.message)
        await self._store(answer)
        await database_async(services.call_set_outcome)(
            call=self.call, outcome=Call.Outcome.REJECTED_RATE_LIMIT
        )
        # The action URL says the message and hangs up: TwiML speech is not cut off.
        await self._end({"reason": "rate-limit", "message": verdict.message})

    async def _store(self, answer: Answer, *, cache_key: str = "") -> None:
        answer.storing = True
        if answer.prepare is not None:
            await asyncio.wait([answer.prepare])  # the caller's turn comes first
        if answer.last_sent_at is None and answer.parts:
            answer.last_sent_at = time.monotonic()
        turn = await database_async(self._store_sync)(
            answer=answer, cache_key=cache_key, sequence=self._next_sequence()
        )
        self.turns = max(self.turns, turn.sequence)  # in case another writer took the number
        self._publish_turn(turn)
        answer.turn = self._last_turn = turn
        self.history.append(
            (Turn.Role.ASSISTANT, turn.heard_text if turn.interrupted else turn.text)
        )

    # --- database work (runs in a worker thread, inside the session's tenant scope) ------------

    def _prepare(
        self, *, utterance: str, history: list[tuple[str, str]], faq_text: str | None,
        sequence: int,
    ) -> Prepared:  # fmt: skip
        """Store the caller's turn, then check the limits and look for a ready answer."""
        call = self.call
        caller_turn = services.turn_add(
            call=call, role=Turn.Role.CALLER, text=utterance, sequence=sequence, publish=False
        )
        verdict = ratelimits.turn_verdict(
            tenant=call.tenant, call_sid=call.call_sid, limits=self.limits
        )
        if not verdict.allowed:
            return Prepared(caller_turn=caller_turn, limited=verdict)
        if faq_text:
            ready = ReadyAnswer(source="faq", text=faq_text)
        else:
            ready = ready_answer(
                tenant_id=call.tenant_id, config=self.config, history=history,
                utterance=utterance, faq=self.faq,
            )  # fmt: skip
        return Prepared(caller_turn=caller_turn, ready=ready)

    def _store_sync(self, *, answer: Answer, cache_key: str, sequence: int) -> Turn:
        result = answer.llm
        is_llm = answer.source == "llm"
        tokens = (result.tokens_in or 0) + (result.tokens_out or 0)
        if tokens:
            ratelimits.tokens_spend(tenant=self.call.tenant, tokens=tokens, limits=self.limits)
        complete = not (answer.interrupted or result.failed or result.truncated or answer.error)
        if is_llm and complete:
            remember_answer(cache_key=cache_key, text=answer.text)
        errors = list(result.errors) + ([answer.error] if answer.error else [])
        return services.turn_add(
            call=self.call,
            role=Turn.Role.ASSISTANT,
            text=answer.text,
            sequence=sequence,
            publish=False,
            interrupted=answer.interrupted,
            heard_text=answer.heard if answer.interrupted else "",
            source=answer.source,
            cache_hit=answer.cache_hit,
            model_used=result.model_used if is_llm else "",
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            llm_first_token_ms=answer.ms(result.first_token_at),
            llm_done_ms=answer.ms(result.done_at),
            response_sent_ms=answer.ms(answer.first_sent_at),
            last_token_sent_ms=answer.ms(answer.last_sent_at),
            fallbacks=list(result.fallbacks),
            error="; ".join(errors)[:2000],
        )

    def _replace_history(self, text: str, heard: str) -> None:
        for index in range(len(self.history) - 1, -1, -1):
            role, said = self.history[index]
            if role == Turn.Role.ASSISTANT and said == text:
                self.history[index] = (role, heard)
                return

"""Language models: the provider registry and the one retry / fallback / deadline policy.

`stream_reply()` yields text deltas as the model produces them and records what happened (model
used, tokens, first-token time, fallbacks, errors) on an `LLMResult`. It never raises for provider
trouble: when every attempt fails it ends with `result.failed = True` and the caller apologises.
Cancelling the consuming task closes every open provider stream at once.

The policy is made for a caller waiting on the line:
- the answer's first token comes within LLM_FIRST_TOKEN_DEADLINE_SECONDS (and before the caller's
  own deadline), whichever model gives it and however many attempts it takes: one deadline for
  both models, after which the caller hears the apology rather than more silence;
- failures a retry can help (429, 5xx, a stream broken before any text) are tried again after a
  backoff, up to LLM_MAX_ATTEMPTS times per model: a random backoff is cut short to fit before
  that deadline, a Retry-After that does not fit gives up on the model, and nothing waits after
  a model's last attempt; permanent errors and timeouts give up on the model at once;
- the fallback model is asked as soon as the main model gives up, or beside it once the main model
  is late (no token after LLM_HEDGE_SECONDS, or its next attempt would come later than that); the
  first model to give a token answers, and the other request is closed at once;
- once text was given, a failure ends the answer there (`result.truncated`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from core import metrics
from providers.llm.base import ChatProvider, LLMError, LLMNotConfigured, LLMResult, ToolCall

__all__ = [
    "ChatProvider",
    "complete",
    "LLMError",
    "LLMNotConfigured",
    "LLMResult",
    "PROVIDERS",
    "ToolCall",
    "get_provider",
    "is_configured",
    "reset_clients",
    "stream_reply",
]

logger = logging.getLogger(__name__)

PROVIDERS = {
    "groq": "providers.llm.groq.GroqProvider",
}

# An attempt with less time than this left for its first token is not worth starting.
MIN_ATTEMPT_SECONDS = 0.3


@cache
def get_provider(name: str = "groq") -> ChatProvider:
    """The provider called `name` (one instance per process: its connections are reused)."""
    return import_string(PROVIDERS[name])()


def is_configured() -> bool:
    return get_provider().is_configured()


def reset_clients() -> None:
    """Forget the providers' clients (settings changed, e.g. in tests)."""
    for name in PROVIDERS:
        get_provider(name).reset()


def _models(model: str, fallback_model: str) -> list[str]:
    return [model] + ([fallback_model] if fallback_model and fallback_model != model else [])


@dataclass
class _Ask:
    """What every attempt at one answer shares."""

    provider: ChatProvider
    messages: list[dict]
    temperature: float
    max_tokens: int
    first_token_by: float  # time.monotonic(): the one deadline of every attempt's first token
    result: LLMResult
    tools: list[dict] | None = None
    read_every: float = 0.0


@dataclass
class _Begun:
    """An answer whose text has begun: its first delta ("" if it finished without text) and
    the stream of the rest."""

    model: str
    attempt: int
    first: str
    stream: AsyncIterator[str]
    usage: LLMResult  # this attempt's own tokens and first-token time


def _record(error: LLMError, *, model: str, attempt: int, result: LLMResult) -> None:
    result.errors.append(f"{model}: {error}")
    metrics.LLM_ERRORS.labels(model=model, kind=metrics.error_kind(str(error))).inc()
    logger.warning(
        "llm attempt failed", extra={"model": model, "attempt": attempt + 1, "error": str(error)}
    )


def _backoff(error: LLMError, *, attempt: int, first_token_by: float) -> float | None:
    """How long to wait before trying the model again, or None to give up on it."""
    if error.permanent or attempt + 1 >= settings.LLM_MAX_ATTEMPTS:
        return None
    # A model that does not answer in time is likely overloaded: waiting for it again would
    # spend the caller's time.
    if error.timeout:
        return None
    room = first_token_by - MIN_ATTEMPT_SECONDS - time.monotonic()
    if error.retry_after is not None:
        # The server's own word: an earlier attempt would be refused again.
        return error.retry_after if error.retry_after <= room else None
    if room <= 0:
        return None
    return min(room, settings.LLM_BACKOFF_SECONDS * (2**attempt) * (0.5 + random.random()))


async def _begin(
    ask: _Ask, model: str, *, why: str = "", retry_at: Callable[[float], None] | None = None
) -> _Begun | None:
    """Try `model` until its answer begins; None when it gives up (errors are recorded).

    `why` is recorded in `result.fallbacks` when the first request is made; `retry_at` is told
    when each next attempt is due, before the wait for it."""
    result = ask.result
    for attempt in range(settings.LLM_MAX_ATTEMPTS):
        remaining = ask.first_token_by - time.monotonic()
        # A retry's wait left it time; a first attempt needs some to be worth making.
        if remaining <= 0 or (attempt == 0 and remaining < MIN_ATTEMPT_SECONDS):
            return None
        if attempt:
            result.fallbacks.append(f"retry:{model}")
        elif why:
            result.fallbacks.append(why)
        usage = LLMResult()
        result.model_used = model
        stream = ask.provider.attempt(
            model=model,
            messages=ask.messages,
            temperature=ask.temperature,
            max_tokens=ask.max_tokens,
            timeout=min(remaining, settings.LLM_FIRST_TOKEN_TIMEOUT_SECONDS),
            result=usage,
            **({"tools": ask.tools} if ask.tools else {}),
            read_every=ask.read_every,
        )
        try:
            first = await anext(stream, "")
        except asyncio.CancelledError:
            await stream.aclose()
            raise
        except Exception as exc:  # noqa: BLE001 - every provider failure is classified
            await stream.aclose()
            error = ask.provider.classify(exc)
            _record(error, model=model, attempt=attempt, result=result)
            wait = _backoff(error, attempt=attempt, first_token_by=ask.first_token_by)
            if wait is None:
                return None
            if retry_at is not None:
                retry_at(time.monotonic() + wait)
            await asyncio.sleep(wait)
            continue
        return _Begun(model=model, attempt=attempt, first=first, stream=stream, usage=usage)
    return None


async def _race(ask: _Ask, models: list[str], *, hedge_at: float) -> _Begun | None:
    """The first answer to begin: the main model's, or the fallback model's, asked once the main
    model gives up or is late. The other request is closed. None when none begins in time."""
    late = asyncio.Event()

    def main_retry_at(moment: float) -> None:
        if moment > hedge_at:
            late.set()  # the main model cannot answer before the hedge: ask the fallback now

    main = asyncio.create_task(_begin(ask, models[0], retry_at=main_retry_at))
    tasks = [main]  # main model first: when both begin at once, the main model answers
    timer = asyncio.create_task(_until(hedge_at, late)) if len(models) > 1 else None
    won: _Begun | None = None
    try:
        while True:
            waiting = [task for task in [*tasks, timer] if task is not None and not task.done()]
            if not waiting:
                return None
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task in done and (begun := task.result()) is not None:
                    won = begun
                    return won
            if timer is not None and (timer in done or main.done()):
                why = f"{'fallback_model' if main.done() else 'hedge'}:{models[1]}"
                timer.cancel()
                timer = None
                tasks.append(asyncio.create_task(_begin(ask, models[1], why=why)))
    finally:
        others = [task for task in [*tasks, timer] if task is not None]
        for task in others:
            task.cancel()
        await asyncio.wait(others)
        for task in tasks:  # a request that began while the winner was chosen is closed too
            if task.done() and not task.cancelled() and task.exception() is None:
                begun = task.result()
                if begun is not None and begun is not won:
                    await begun.stream.aclose()


async def _until(moment: float, event: asyncio.Event) -> None:
    """Return at `moment`, or earlier once `event` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), moment - time.monotonic())


async def stream_reply(
    *,
    model: str,
    fallback_model: str,
    messages: list[dict],
    temperature: float,
    max_tokens: int,
    deadline: float,
    result: LLMResult,
    tools: list[dict] | None = None,
    read_every: float = 0.0,
) -> AsyncIterator[str]:
    """Yield the answer's text deltas from `model`, or from `fallback_model` (see the module's
    policy); `deadline` (a `time.monotonic()` value) bounds the whole answer. Once text has been
    yielded, a failure ends the answer there (`result.truncated`). With `tools` (OpenAI-style
    definitions) the model may ask for tool calls: they are on `result.tool_calls` at the end.
    With `read_every` (seconds), after the first delta the model's stream is read at most that
    often, and what arrived meanwhile comes as one delta: for a caller that sends text in
    batches anyway, each batch costs one pass instead of one per token."""
    provider = get_provider()
    if not provider.is_configured():
        result.failed = result.not_configured = True
        result.errors.append(str(LLMNotConfigured()))
        return
    asked_at = time.monotonic()
    ask = _Ask(
        provider=provider,
        messages=messages,
        temperature=temperature,
        max_tokens=max_tokens,
        first_token_by=min(deadline, asked_at + settings.LLM_FIRST_TOKEN_DEADLINE_SECONDS),
        result=result,
        tools=tools,
        read_every=read_every,
    )
    begun = await _race(
        ask, _models(model, fallback_model), hedge_at=asked_at + settings.LLM_HEDGE_SECONDS
    )
    if begun is None:
        result.failed = True
        result.done_at = time.monotonic()
        return
    usage = begun.usage
    result.model_used, result.first_token_at = begun.model, usage.first_token_at
    try:
        delta = begun.first
        while delta:
            yield delta
            if time.monotonic() > deadline:
                result.truncated = True
                result.errors.append("deadline reached while streaming")
                break
            delta = await anext(begun.stream, "")
    except Exception as exc:  # noqa: BLE001 - every provider failure is classified
        error = provider.classify(exc)
        _record(error, model=begun.model, attempt=begun.attempt, result=result)
        result.truncated = True
    finally:
        await begun.stream.aclose()
        result.tokens_in, result.tokens_out = usage.tokens_in, usage.tokens_out
        result.tool_calls = [] if result.truncated else usage.tool_calls
    result.done_at = time.monotonic()


def complete(
    *,
    model: str,
    messages: list[dict],
    max_tokens: int,
    response_format: dict | None = None,
    timeout: float,
    result: LLMResult,
) -> str:
    """A whole answer, blocking, for work nobody waits on the line for (e.g. analysing a call
    that ended): failures a retry can help are tried again after a backoff (Retry-After wins),
    up to LLM_MAX_ATTEMPTS times within `timeout` seconds; then the last LLMError is raised."""
    provider = get_provider()
    if not provider.is_configured():
        raise LLMNotConfigured()
    give_up_at = time.monotonic() + timeout
    for attempt in range(settings.LLM_MAX_ATTEMPTS):
        result.model_used = model
        try:
            return provider.complete(
                model=model,
                messages=messages,
                max_tokens=max_tokens,
                response_format=response_format,
                timeout=max(give_up_at - time.monotonic(), MIN_ATTEMPT_SECONDS),
                result=result,
            )
        except Exception as exc:  # noqa: BLE001 - every provider failure is classified
            error = provider.classify(exc)
            _record(error, model=model, attempt=attempt, result=result)
            wait = error.retry_after
            if wait is None:
                wait = settings.LLM_BACKOFF_SECONDS * (2**attempt) * (0.5 + random.random())
            last = attempt + 1 >= settings.LLM_MAX_ATTEMPTS
            if error.permanent or last or time.monotonic() + wait >= give_up_at:
                raise error from exc
            time.sleep(wait)
    raise LLMError("LLM_MAX_ATTEMPTS allows no attempt", permanent=True)


def whole_answer(stream: AsyncIterator[str]) -> str:
    """All of a `stream_reply()` at once, from synchronous code (scripts, benchmarks)."""

    async def collect() -> str:
        return "".join([delta async for delta in stream])

    return asyncio.run(collect())

"""Language models: the provider registry and the one retry / fallback / deadline policy.

`stream_reply()` yields text deltas as the model produces them and records what happened (model
used, tokens, first-token time, fallbacks, errors) on an `LLMResult`. It never raises for provider
trouble: when every attempt fails it ends with `result.failed = True` and the caller apologises.
Cancelling the consuming task closes the provider's stream at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from core import metrics
from providers.llm.base import ChatProvider, LLMError, LLMNotConfigured, LLMResult

__all__ = [
    "ChatProvider",
    "LLMError",
    "LLMNotConfigured",
    "LLMResult",
    "PROVIDERS",
    "get_provider",
    "is_configured",
    "reset_clients",
    "stream_reply",
]

logger = logging.getLogger(__name__)

PROVIDERS = {
    "groq": "providers.llm.groq.GroqProvider",
}


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


def _after_failure(
    error: LLMError, *, model: str, attempt: int, yielded: bool, deadline: float, result: LLMResult
) -> float | None:
    """Record a failed attempt; return how long to wait before trying `model` again, or None to
    move on to the next model. When text was already given, the answer ends there (the caller
    returns; `result.truncated`)."""
    result.errors.append(f"{model}: {error}")
    metrics.LLM_ERRORS.labels(model=model, kind=metrics.error_kind(str(error))).inc()
    logger.warning(
        "llm attempt failed", extra={"model": model, "attempt": attempt + 1, "error": str(error)}
    )
    if yielded:
        result.truncated = True
        result.done_at = time.monotonic()
        return None
    # A model that does not answer in time is likely overloaded: waiting for it again would
    # spend the caller's time; the fallback model gets the rest.
    if error.permanent or error.timeout:
        return None
    backoff = error.retry_after
    if backoff is None:
        backoff = settings.LLM_BACKOFF_SECONDS * (2**attempt) * (0.5 + random.random())
    if time.monotonic() + backoff > deadline - 0.5:
        return None
    result.fallbacks.append(f"retry:{model}")
    return backoff


async def stream_reply(
    *,
    model: str,
    fallback_model: str,
    messages: list[dict],
    temperature: float,
    max_tokens: int,
    deadline: float,
    result: LLMResult,
) -> AsyncIterator[str]:
    """Yield the answer's text deltas, trying `model` then `fallback_model` before `deadline`.

    `deadline` is a `time.monotonic()` value. 429/5xx are retried with backoff (honouring
    Retry-After) while time remains; permanent errors and timeouts move on to the fallback
    model. Once text has been yielded, a failure ends the answer there (`result.truncated`).
    """
    provider = get_provider()
    if not provider.is_configured():
        result.failed = result.not_configured = True
        result.errors.append(str(LLMNotConfigured()))
        return
    yielded = False
    for index, current in enumerate(_models(model, fallback_model)):
        if index:
            result.fallbacks.append(f"fallback_model:{current}")
        for attempt in range(settings.LLM_MAX_ATTEMPTS):
            remaining = deadline - time.monotonic()
            if remaining < 0.2:
                break
            timeout = min(remaining, settings.LLM_FIRST_TOKEN_TIMEOUT_SECONDS)
            result.model_used = current
            stream = provider.attempt(
                model=current,
                messages=messages,
                temperature=temperature,
                max_tokens=max_tokens,
                timeout=timeout,
                result=result,
            )
            try:
                async for delta in stream:
                    yielded = True
                    yield delta
                    if time.monotonic() > deadline:
                        result.truncated = True
                        result.errors.append("deadline reached while streaming")
                        result.done_at = time.monotonic()
                        return
                result.done_at = time.monotonic()
                return
            except Exception as exc:  # noqa: BLE001 - every provider failure is classified
                backoff = _after_failure(
                    provider.classify(exc),
                    model=current,
                    attempt=attempt,
                    yielded=yielded,
                    deadline=deadline,
                    result=result,
                )
                if yielded:
                    return
                if backoff is None:
                    break
                await asyncio.sleep(backoff)
            finally:
                await stream.aclose()
    result.failed = True
    result.done_at = time.monotonic()


def whole_answer(stream: AsyncIterator[str]) -> str:
    """All of a `stream_reply()` at once, from synchronous code (scripts, benchmarks)."""

    async def collect() -> str:
        return "".join([delta async for delta in stream])

    return asyncio.run(collect())

"""The Groq LLM: one client per process, streaming, retries and fallback inside a deadline.

`stream_reply()` yields text deltas as Groq produces them and records what happened (model used,
tokens, first-token time, fallbacks, errors) on an `LLMResult`. It never raises for provider
trouble: when every attempt fails it ends with `result.failed = True` and the caller apologises.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import groq
import httpx
from django.conf import settings

from config import metrics

logger = logging.getLogger(__name__)


class LLMError(Exception):
    """A failed LLM attempt. `permanent` says whether retrying the same model can help."""

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: float | None = None,
        timeout: bool = False,
    ):  # fmt: skip
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.timeout = timeout


class LLMNotConfigured(LLMError):
    def __init__(self) -> None:
        super().__init__("no LLM configured (set GROQ_API_KEY or GROQ_BASE_URL)", permanent=True)


@dataclass
class LLMResult:
    model_used: str = ""
    tokens_in: int | None = None
    tokens_out: int | None = None
    first_token_at: float | None = None  # time.monotonic()
    done_at: float | None = None
    fallbacks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: bool = False
    not_configured: bool = False
    truncated: bool = False  # the answer stopped early (stream cut, deadline)


_client: groq.Groq | None = None
_async_client: groq.AsyncGroq | None = None
_async_client_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def is_configured() -> bool:
    return bool(settings.GROQ_API_KEY or settings.GROQ_BASE_URL)


def _client_kwargs() -> dict:
    return {
        # A local Groq-compatible server needs no key, but the SDK insists on one.
        "api_key": settings.GROQ_API_KEY or "unused-local-key",
        "base_url": settings.GROQ_BASE_URL or None,
        "max_retries": 0,  # retries are ours, bounded by the webhook deadline
        "timeout": httpx.Timeout(settings.LLM_TIMEOUT_SECONDS, connect=2.0),
    }


def get_client() -> groq.Groq:
    """The process-wide Groq client (its connection pool is reused across calls)."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = groq.Groq(**_client_kwargs())
    return _client


def get_async_client() -> groq.AsyncGroq:
    """The process-wide async client, for code running on the event loop.

    Its connections belong to one event loop, so a new loop (another test, a management
    command) gets a client of its own.
    """
    global _async_client, _async_client_loop
    loop = asyncio.get_running_loop()
    if _async_client is None or _async_client_loop is not loop:
        _async_client = groq.AsyncGroq(**_client_kwargs())
        _async_client_loop = loop
    return _async_client


def reset_clients() -> None:
    """Forget the clients (settings changed, e.g. in tests)."""
    global _client, _async_client, _async_client_loop
    _client = _async_client = _async_client_loop = None


def classify(exc: Exception) -> LLMError:
    """Turn an SDK exception into an LLMError saying whether a retry can help."""
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, groq.APITimeoutError | httpx.TimeoutException):
        return LLMError("timeout", timeout=True)
    if isinstance(exc, httpx.TransportError):  # e.g. the stream was cut mid-answer
        return LLMError(f"stream broken: {type(exc).__name__}")
    if isinstance(exc, groq.APIConnectionError):
        return LLMError(f"connection error: {exc}")
    if isinstance(exc, groq.APIStatusError):
        status = exc.status_code
        retry_after = None
        header = exc.response.headers.get("retry-after") if exc.response is not None else None
        if header:
            try:
                retry_after = float(header)
            except ValueError:
                retry_after = None
        retryable = status in (408, 409, 429) or status >= 500
        return LLMError(f"HTTP {status}", permanent=not retryable, retry_after=retry_after)
    return LLMError(f"{type(exc).__name__}: {exc}")


CHAT_COMPLETIONS = "/openai/v1/chat/completions"


def _request(
    *, model: str, messages: list[dict], temperature: float, max_tokens: int, timeout: float
) -> tuple[dict, dict]:
    """The chat request's body and options, as the SDK's `create()` would send them.

    The body is built here rather than by `create()`: its generic parameter transform inspects
    every field's type on every call, which costs more than the rest of the request.
    """
    body = {
        "model": model,
        "messages": messages,
        "temperature": temperature,
        "max_completion_tokens": max_tokens,
        "stream": True,
    }
    return body, {"timeout": httpx.Timeout(timeout, connect=min(2.0, timeout))}


def _stream_error(data: object, response: httpx.Response) -> None:
    """An error event inside the stream, raised as the SDK raises it."""
    if isinstance(data, dict) and data.get("error"):
        error = data["error"]
        message = error.get("message") if isinstance(error, dict) else None
        raise groq.APIError(
            message=message if isinstance(message, str) and message
            else "An error occurred during streaming",
            request=response.request,
            body=error,
        )  # fmt: skip


class _Chunks(groq.Stream[dict]):
    """The streamed chunks as plain dicts.

    The SDK's own stream builds a model object per chunk, about a millisecond of CPU per token;
    the answer needs two fields of it. HTTP, SSE decoding and errors stay the SDK's.
    """

    def __stream__(self) -> Iterator[dict]:
        events = self._iter_events()
        for sse in events:
            if sse.data.startswith("[DONE]"):
                break
            data = sse.json()
            if sse.event in (None, "error"):
                _stream_error(data, self.response)
            if sse.event is None:
                yield data
        for _ in events:  # read to the end, so that the connection goes back to the pool
            pass


class _AsyncChunks(groq.AsyncStream[dict]):
    """`_Chunks` for the async client."""

    async def __stream__(self) -> AsyncIterator[dict]:
        events = self._iter_events()
        async for sse in events:
            if sse.data.startswith("[DONE]"):
                break
            data = sse.json()
            if sse.event in (None, "error"):
                _stream_error(data, self.response)
            if sse.event is None:
                yield data
        async for _ in events:
            pass


def _attempt(
    *, model: str, messages: list[dict], temperature: float, max_tokens: int, timeout: float,
    result: LLMResult,
) -> Iterator[str]:  # fmt: skip
    body, options = _request(
        model=model, messages=messages, temperature=temperature, max_tokens=max_tokens,
        timeout=timeout,
    )  # fmt: skip
    stream = get_client().post(
        CHAT_COMPLETIONS, body=body, options=options, cast_to=object, stream=True,
        stream_cls=_Chunks,
    )  # fmt: skip
    finished = False
    try:
        for chunk in stream:
            delta, done = _read_chunk(chunk, result)
            if delta:
                if result.first_token_at is None:
                    result.first_token_at = time.monotonic()
                yield delta
            finished = finished or done
    finally:
        stream.close()
    if not finished:
        raise LLMError("stream ended before the answer was finished")


def _models(model: str, fallback_model: str) -> list[str]:
    return [model] + ([fallback_model] if fallback_model and fallback_model != model else [])


def _after_failure(
    exc: Exception, *, model: str, attempt: int, yielded: bool, deadline: float,
    result: LLMResult,
) -> float | None:  # fmt: skip
    """Record a failed attempt; return how long to wait before trying `model` again, or None to
    move on to the next model. When text was already given, the answer ends there (the caller
    returns; `result.truncated`)."""
    error = classify(exc)
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


def stream_reply(
    *, model: str, fallback_model: str, messages: list[dict], temperature: float,
    max_tokens: int, deadline: float, result: LLMResult,
) -> Iterator[str]:  # fmt: skip
    """Yield the answer's text deltas, trying `model` then `fallback_model` before `deadline`.

    `deadline` is a `time.monotonic()` value. 429/5xx/timeouts are retried with backoff
    (honouring Retry-After) while time remains; permanent errors and timeouts move on to the
    fallback model.
    Once text has been yielded, a failure ends the answer there (`result.truncated`).
    """
    if not is_configured():
        result.failed = result.not_configured = True
        result.errors.append(str(LLMNotConfigured()))
        return
    models = _models(model, fallback_model)
    yielded = False
    for index, current in enumerate(models):
        if index:
            result.fallbacks.append(f"fallback_model:{current}")
        for attempt in range(settings.LLM_MAX_ATTEMPTS):
            remaining = deadline - time.monotonic()
            if remaining < 0.2:
                break
            timeout = min(remaining, settings.LLM_FIRST_TOKEN_TIMEOUT_SECONDS)
            result.model_used = current
            try:
                for delta in _attempt(
                    model=current, messages=messages, temperature=temperature,
                    max_tokens=max_tokens, timeout=timeout, result=result,
                ):  # fmt: skip
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
                    exc, model=current, attempt=attempt, yielded=yielded, deadline=deadline,
                    result=result,
                )  # fmt: skip
                if yielded:
                    return
                if backoff is None:
                    break
                time.sleep(backoff)
    result.failed = True
    result.done_at = time.monotonic()


def _read_chunk(chunk: dict, result: LLMResult) -> tuple[str, bool]:
    """(text delta, finished) of one streamed chunk; usage is recorded on `result`.

    Groq reports usage under `x_groq` in the last chunk; OpenAI-style servers at the top level.
    """
    usage = chunk.get("usage") or (chunk.get("x_groq") or {}).get("usage")
    if isinstance(usage, dict):
        result.tokens_in = usage.get("prompt_tokens", result.tokens_in)
        result.tokens_out = usage.get("completion_tokens", result.tokens_out)
    choices = chunk.get("choices")
    if not choices or not isinstance(choices, list):
        return "", False
    choice = choices[0] or {}
    delta = choice.get("delta") or {}
    content = delta.get("content") if isinstance(delta, dict) else None
    return (content if isinstance(content, str) else ""), bool(choice.get("finish_reason"))


async def _aattempt(
    *, model: str, messages: list[dict], temperature: float, max_tokens: int, timeout: float,
    result: LLMResult,
) -> AsyncIterator[str]:  # fmt: skip
    body, options = _request(
        model=model, messages=messages, temperature=temperature, max_tokens=max_tokens,
        timeout=timeout,
    )  # fmt: skip
    stream = await get_async_client().post(
        CHAT_COMPLETIONS, body=body, options=options, cast_to=object, stream=True,
        stream_cls=_AsyncChunks,
    )  # fmt: skip
    finished = False
    try:
        async for chunk in stream:
            delta, done = _read_chunk(chunk, result)
            if delta:
                if result.first_token_at is None:
                    result.first_token_at = time.monotonic()
                yield delta
            finished = finished or done
    finally:
        # Also on cancellation (the caller interrupted): the HTTP stream to Groq is closed
        # at once, so Groq stops generating.
        await stream.close()
    if not finished:
        raise LLMError("stream ended before the answer was finished")


async def astream_reply(
    *, model: str, fallback_model: str, messages: list[dict], temperature: float,
    max_tokens: int, deadline: float, result: LLMResult,
) -> AsyncIterator[str]:  # fmt: skip
    """`stream_reply()` for code on the event loop: the same retry, fallback and deadline
    policy, through the async client. Cancelling the consuming task closes the Groq stream."""
    if not is_configured():
        result.failed = result.not_configured = True
        result.errors.append(str(LLMNotConfigured()))
        return
    models = _models(model, fallback_model)
    yielded = False
    for index, current in enumerate(models):
        if index:
            result.fallbacks.append(f"fallback_model:{current}")
        for attempt in range(settings.LLM_MAX_ATTEMPTS):
            remaining = deadline - time.monotonic()
            if remaining < 0.2:
                break
            timeout = min(remaining, settings.LLM_FIRST_TOKEN_TIMEOUT_SECONDS)
            result.model_used = current
            stream = _aattempt(
                model=current, messages=messages, temperature=temperature,
                max_tokens=max_tokens, timeout=timeout, result=result,
            )  # fmt: skip
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
                    exc, model=current, attempt=attempt, yielded=yielded, deadline=deadline,
                    result=result,
                )  # fmt: skip
                if yielded:
                    return
                if backoff is None:
                    break
                await asyncio.sleep(backoff)
            finally:
                await stream.aclose()
    result.failed = True
    result.done_at = time.monotonic()

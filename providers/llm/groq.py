"""Groq (and any Groq-compatible server at GROQ_BASE_URL) through the official SDK.

One async client per event loop, streaming, no SDK retries: the retry and fallback policy is
`providers.llm.stream_reply`, bounded by the caller's deadline. The async client sends through
the SDK's aiohttp transport (`groq[aiohttp]`): an answer streams one HTTP chunk per token, and
aiohttp's C parser reads them for half the CPU of httpx's pure-Python stack.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import AsyncIterator

import aiohttp
import groq
import httpx
import orjson
from django.conf import settings

from providers.llm.base import ChatProvider, LLMError, LLMResult, ToolCall

CHAT_COMPLETIONS = "/openai/v1/chat/completions"


def _stream_error(data: object, response: httpx.Response) -> groq.APIError | None:
    """An error event inside the stream, as the SDK raises it (None for any other event)."""
    if not (isinstance(data, dict) and data.get("error")):
        return None
    error = data["error"]
    message = error.get("message") if isinstance(error, dict) else None
    return groq.APIError(
        message=message
        if isinstance(message, str) and message
        else "An error occurred during streaming",
        request=response.request,
        body=error,
    )


class _Chunks(groq.AsyncStream[list[dict]]):
    """The streamed chunks as plain dicts, a list of them per read of the response.

    The SDK's own stream builds a model object per chunk, about a millisecond of CPU per token;
    the answer needs two fields of it. Its SSE decoder, too, handles every line of the stream in
    Python (a bytes object per line, then a string, then an event object): here each read of
    the response is split into events with bytes methods, and each event's JSON is parsed by
    orjson. The chunks of one read come as one list, so that a reader that lets them gather
    (`read_every`) handles them at once. HTTP and errors stay the SDK's.
    """

    async def __stream__(self) -> AsyncIterator[list[dict]]:
        reads = sse_events(self.response.aiter_bytes())
        async for events in reads:
            chunks, done = [], False
            for event, data in events:
                if data.startswith(b"[DONE]"):
                    done = True
                    break
                if event is None or event == "error":
                    parsed = orjson.loads(data)
                    if error := _stream_error(parsed, self.response):
                        if chunks:  # what came before the error is the answer's
                            yield chunks
                        raise error
                    if event is None:
                        chunks.append(parsed)
            if chunks:
                yield chunks
            if done:
                break
        async for _ in reads:  # read to the end, so that the connection goes back to the pool
            pass


async def sse_events(
    chunks: AsyncIterator[bytes],
) -> AsyncIterator[list[tuple[str | None, bytes]]]:
    """The server-sent events in `chunks`, as (event name or None, data), a list per chunk that
    completed any (the event stream format: fields `event` and `data`, a blank line after each
    event; comments, `id` and `retry` are not needed here; lines may end in CRLF, LF or CR)."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        if b"\r" in pending:  # to LF; a CR at the very end may be the half of a CRLF
            kept = b"\r" if pending.endswith(b"\r") else b""
            body = pending[:-1] if kept else pending
            pending = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + kept
        if b"\n\n" not in pending:
            continue
        *blocks, pending = pending.split(b"\n\n")
        if events := [parsed for block in blocks if (parsed := _sse_event(block))]:
            yield events
    if parsed := _sse_event(pending.rstrip(b"\r\n")):
        yield [parsed]


def _sse_event(block: bytes) -> tuple[str | None, bytes] | None:
    if block.startswith(b"data: ") and b"\n" not in block:  # nearly every event
        return None, block[6:]
    event: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        field, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if field == b"data":
            data.append(value)
        elif field == b"event":
            event = value.decode("utf-8", "replace")
    if event is None and not data:
        return None  # only comments, ids or retries
    return event, b"\n".join(data)


class _Cookies(httpx.Cookies):
    """A cookie jar that reads only responses that set cookies: httpx passes every response
    through urllib's cookie machinery, a tenth of the CPU of sending an answer's request."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


class _HttpClient(groq.DefaultAioHttpClient):
    """The SDK's aiohttp client, with the cookie jar above."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._jar = _Cookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._jar


def read_chunk(chunk: dict, result: LLMResult) -> tuple[str, bool]:
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


class ToolCallPieces:
    """Tool calls as they stream: each `delta.tool_calls` entry adds to the call at its
    `index` (the id and name come once, the arguments in pieces)."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def feed(self, chunk: dict) -> bool:
        """Take the chunk's tool-call pieces; True if it had any."""
        choices = chunk.get("choices")
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            return False
        delta = choices[0].get("delta")
        pieces = delta.get("tool_calls") if isinstance(delta, dict) else None
        if not isinstance(pieces, list):
            return False
        for piece in pieces:
            if not isinstance(piece, dict) or not isinstance(piece.get("index"), int):
                continue
            call = self._calls.setdefault(piece["index"], {"id": "", "name": "", "arguments": ""})
            function = piece.get("function") if isinstance(piece.get("function"), dict) else {}
            for key, value in (("id", piece.get("id")), ("name", function.get("name"))):
                if isinstance(value, str) and value:
                    call[key] = value
            if isinstance(function.get("arguments"), str):
                call["arguments"] += function["arguments"]
        return bool(pieces)

    def calls(self) -> list[ToolCall]:
        """The complete calls (with a name), in the model's order."""
        return [
            ToolCall(
                id=call["id"] or f"call_{index}", name=call["name"], arguments=call["arguments"]
            )
            for index, call in sorted(self._calls.items())
            if call["name"]
        ]


def _let_go(client: groq.AsyncGroq, loop: asyncio.AbstractEventLoop) -> None:
    """Close a client's aiohttp session: on its loop while that runs, else (the loop stopped: a
    test's, a command's) its sockets at once, without the loop."""
    transport = getattr(getattr(client, "_client", None), "_transport", None)
    session = getattr(transport, "client", None)
    if not isinstance(session, aiohttp.ClientSession) or session.closed:
        return
    if loop.is_running():
        asyncio.run_coroutine_threadsafe(session.close(), loop)
    else:
        session.connector._close()  # noqa: SLF001 (the synchronous part of close())
        session.detach()


class GroqProvider(ChatProvider):
    name = "groq"

    def __init__(self) -> None:
        # One async client per event loop (its connections belong to that loop): daphne's one
        # loop, and the loops of the Celery worker's threads (replay lanes), side by side.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, groq.AsyncGroq] = (
            weakref.WeakKeyDictionary()
        )
        self._clients_lock = threading.Lock()
        self._sync_client: groq.Groq | None = None

    def is_configured(self) -> bool:
        return bool(settings.GROQ_API_KEY or settings.GROQ_BASE_URL)

    def client(self) -> groq.AsyncGroq:
        """The process' client for the running event loop (a new loop, another test's or
        thread's, gets a client of its own; those of stopped loops are let go)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is not None:
            return client
        timeout = httpx.Timeout(settings.LLM_TIMEOUT_SECONDS, connect=2.0)
        client = groq.AsyncGroq(
            # A local Groq-compatible server needs no key, but the SDK insists on one.
            api_key=settings.GROQ_API_KEY or "unused-local-key",
            base_url=settings.GROQ_BASE_URL or None,
            max_retries=0,  # retries are the policy's, bounded by the caller's deadline
            timeout=timeout,
            http_client=_HttpClient(timeout=timeout),
        )
        with self._clients_lock:
            for old_loop in [old for old in self._clients if old.is_closed()]:
                _let_go(self._clients.pop(old_loop), old_loop)
            self._clients[loop] = client
        return client

    def sync_client(self) -> groq.Groq:
        """The process' blocking client (thread-safe), for work outside an event loop."""
        if self._sync_client is None:
            self._sync_client = groq.Groq(
                api_key=settings.GROQ_API_KEY or "unused-local-key",
                base_url=settings.GROQ_BASE_URL or None,
                max_retries=0,
                timeout=httpx.Timeout(settings.LLM_TIMEOUT_SECONDS, connect=2.0),
            )
        return self._sync_client

    def reset(self) -> None:
        """Forget every client (the settings changed)."""
        with self._clients_lock:
            clients, self._clients = list(self._clients.items()), weakref.WeakKeyDictionary()
        for loop, client in clients:
            _let_go(client, loop)
        self._sync_client = None

    def complete(
        self,
        *,
        model: str,
        messages: list[dict],
        max_tokens: int,
        response_format: dict | None,
        timeout: float,
        result: LLMResult,
    ) -> str:
        body: dict = {
            "model": model,
            "messages": messages,
            "temperature": 0,
            "max_completion_tokens": max_tokens,
        }
        if response_format:
            body["response_format"] = response_format
        answer = self.sync_client().post(
            CHAT_COMPLETIONS,
            body=body,
            options={"timeout": httpx.Timeout(timeout, connect=min(2.0, timeout))},
            cast_to=object,
        )
        if not isinstance(answer, dict):
            raise LLMError("the answer is not a JSON object", permanent=True)
        read_chunk({"usage": answer.get("usage")}, result)
        choices = answer.get("choices") or [{}]
        message = (choices[0] or {}).get("message") or {}
        content = message.get("content")
        if not isinstance(content, str):
            raise LLMError("the answer has no text")
        return content

    async def attempt(
        self,
        *,
        model: str,
        messages: list[dict],
        temperature: float,
        max_tokens: int,
        timeout: float,
        result: LLMResult,
        tools: list[dict] | None = None,
        read_every: float = 0.0,
    ) -> AsyncIterator[str]:
        # The body is built here rather than by `create()`: its generic parameter transform
        # inspects every field's type on every call, which costs more than the rest.
        body = {
            "model": model,
            "messages": messages,
            "temperature": temperature,
            "max_completion_tokens": max_tokens,
            "stream": True,
        }
        if tools:
            body["tools"], body["tool_choice"] = tools, "auto"
        tool_calls = ToolCallPieces()
        options = {"timeout": httpx.Timeout(timeout, connect=min(2.0, timeout))}
        stream = await self.client().post(
            CHAT_COMPLETIONS,
            body=body,
            options=options,
            cast_to=object,
            stream=True,
            stream_cls=_Chunks,
        )
        finished = False
        try:
            async for chunks in stream:
                text = ""
                for chunk in chunks:
                    delta, done = read_chunk(chunk, result)
                    began = tool_calls.feed(chunk) if tools else False
                    if (delta or began) and result.first_token_at is None:
                        result.first_token_at = time.monotonic()
                    text += delta
                    finished = finished or done
                if text:
                    yield text
                    if read_every > 0 and not finished:
                        await asyncio.sleep(read_every)  # what arrives meanwhile comes as one
        finally:
            # Also on cancellation (the caller interrupted): the HTTP stream to Groq is closed
            # at once, so Groq stops generating.
            await stream.close()
        if not finished:
            raise LLMError("stream ended before the answer was finished")
        result.tool_calls = tool_calls.calls()

    def classify(self, exc: Exception) -> LLMError:
        if isinstance(exc, LLMError):
            return exc
        if isinstance(exc, groq.APITimeoutError | httpx.TimeoutException):
            return LLMError("timeout", timeout=True)
        if isinstance(exc, httpx.TransportError):  # e.g. the stream was cut mid-answer
            return LLMError(f"stream broken: {type(exc).__name__}")
        if isinstance(exc, groq.APIConnectionError):
            return LLMError(f"connection error: {exc}")
        if isinstance(exc, groq.APIStatusError):
            retry_after = None
            header = exc.response.headers.get("retry-after") if exc.response is not None else None
            if header:
                try:
                    retry_after = float(header)
                except ValueError:
                    retry_after = None
            status = exc.status_code
            retryable = status in (408, 409, 429) or status >= 500
            return LLMError(f"HTTP {status}", permanent=not retryable, retry_after=retry_after)
        return LLMError(f"{type(exc).__name__}: {exc}")

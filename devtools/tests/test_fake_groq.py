"""The fake Groq server, driven through the real `groq` SDK and plain HTTP.

No database: the server runs on loopback in a background thread, one per module, reset before each
test. Latency assertions are lower bounds only ("not before ~300 ms"), never upper bounds on speed.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import groq
import httpx
import pytest
from django.core.management import CommandError, call_command

from devtools.fake_groq import (
    DEFAULT_MODELS,
    FakeGroqControl,
    FakeGroqServer,
    Fault,
    make_answer,
    tokenize,
)

MODEL = "llama-3.3-70b-versatile"
SMALL = "llama-3.1-8b-instant"
KEY = "gsk_test_key"
BASE_DIR = Path(__file__).resolve().parents[2]
SLACK = 0.02  # timers and clocks may round a little: lower bounds are checked with this margin
QUESTION = [{"role": "user", "content": "Can a plumber fix my boiler tomorrow?"}]


@pytest.fixture(scope="module")
def _server() -> Iterator[FakeGroqServer]:
    server = FakeGroqServer(ttft_ms=0, tokens_per_second=0, answer_tokens=20)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake(_server: FakeGroqServer) -> Iterator[FakeGroqServer]:
    _server.reset()
    yield _server
    _server.reset()


@pytest.fixture
def make_client(fake: FakeGroqServer) -> Iterator[Callable[..., groq.Groq]]:
    """Sync SDK clients for the fake server (no retries, 5 s timeout unless told), closed after."""
    made: list[groq.Groq] = []

    def make(**options: Any) -> groq.Groq:
        options = {"api_key": KEY, "max_retries": 0, "timeout": 5, **options}
        made.append(groq.Groq(base_url=fake.base_url, **options))
        return made[-1]

    yield make
    for sdk in made:
        sdk.close()


@pytest.fixture
def client(make_client: Callable[..., groq.Groq]) -> groq.Groq:
    return make_client()


@pytest.fixture
def http(fake: FakeGroqServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=fake.base_url, headers=headers, timeout=5) as raw:
        yield raw


def _ask(client: groq.Groq, content: str = "Can a plumber come?", **options) -> str:
    response = client.chat.completions.create(
        model=options.pop("model", MODEL),
        messages=[{"role": "user", "content": content}],
        **options,
    )
    return response.choices[0].message.content or ""


def _sse_events(raw: bytes) -> list[str]:
    """The `data:` payloads of a server-sent-event body, checking the framing on the way."""
    text = raw.decode()
    assert text.endswith("\n\n")
    events = text[:-2].split("\n\n")
    for event in events:
        assert event.startswith("data: "), event
        assert "\n" not in event
    return [event.removeprefix("data: ") for event in events]


def _chat_body(**extra) -> dict:
    return {"model": MODEL, "messages": QUESTION, **extra}


# --- answers -------------------------------------------------------------------------------------


def test_a_plain_answer_comes_back_through_the_sdk(client):
    response = client.chat.completions.create(model=MODEL, messages=QUESTION)

    [choice] = response.choices
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert choice.message.content
    assert response.model == MODEL
    assert response.id.startswith("chatcmpl-")
    assert response.usage.completion_tokens == len(choice.message.content.split())
    assert response.usage.total_tokens == (
        response.usage.prompt_tokens + response.usage.completion_tokens
    )


def test_the_generated_answer_is_deterministic_and_about_answer_tokens_long(client, fake):
    first = _ask(client, "Do you repair boilers?")
    second = _ask(client, "Do you repair boilers?")
    other = _ask(client, "What does a new kitchen sink cost?")

    assert first == second
    assert first != other
    assert "boilers" in first
    assert 15 <= len(first.split()) <= 40

    fake.configure(answer_tokens=80)
    assert len(_ask(client, "Do you repair boilers?").split()) >= 70


def test_a_streamed_answer_arrives_in_pieces_that_add_up(client, fake):
    fake.set_answer("One plumber can come at nine tomorrow morning.")

    chunks = list(client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True))

    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert len(pieces) == 8
    assert "".join(pieces) == "One plumber can come at nine tomorrow morning."
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].x_groq.usage.completion_tokens == 8
    assert len({c.id for c in chunks}) == 1


@pytest.mark.asyncio
async def test_the_async_client_gets_plain_and_streamed_answers(fake):
    fake.queue_answer("Plain answer.")
    fake.queue_answer("Streamed answer, in pieces.")
    async with groq.AsyncGroq(api_key=KEY, base_url=fake.base_url, max_retries=0) as sdk:
        plain = await sdk.chat.completions.create(model=MODEL, messages=QUESTION)
        stream = await sdk.chat.completions.create(model=MODEL, messages=QUESTION, stream=True)
        pieces = [chunk.choices[0].delta.content or "" async for chunk in stream]

    assert plain.choices[0].message.content == "Plain answer."
    assert "".join(pieces) == "Streamed answer, in pieces."
    assert [r.stream for r in fake.requests] == [False, True]


def test_queued_answers_are_used_in_order_then_the_default_returns(client, fake):
    fake.queue_answer("First.")
    fake.queue_answer("Second.", count=2)

    answers = [_ask(client) for _ in range(4)]

    assert answers[:3] == ["First.", "Second.", "Second."]
    assert answers[3] not in ("First.", "Second.")


def test_a_queued_answer_for_a_model_waits_for_that_model(client, fake):
    fake.queue_answer("For the small model.", model=SMALL)

    assert _ask(client, model=MODEL) != "For the small model."
    assert _ask(client, model=SMALL) == "For the small model."
    assert _ask(client, model=SMALL) != "For the small model."


def test_set_answer_applies_to_every_request_and_a_queued_answer_comes_first(client, fake):
    fake.set_answer("Always this.")
    fake.queue_answer("Just once.")

    assert [_ask(client) for _ in range(3)] == ["Just once.", "Always this.", "Always this."]

    fake.set_answer(lambda messages: messages[-1]["content"].upper())
    assert _ask(client, "echo me") == "ECHO ME"

    fake.set_answer(None)
    assert _ask(client, "echo me") != "ECHO ME"


def test_max_tokens_cuts_the_answer_with_finish_reason_length(client, fake):
    fake.set_answer("one two three four five six")

    plain = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4)
    chunks = list(
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4, stream=True)
    )
    roomy = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=6)

    assert plain.choices[0].message.content == "one two three four"
    assert plain.choices[0].finish_reason == "length"
    assert plain.usage.completion_tokens == 4
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "one two three four"
    assert chunks[-1].choices[0].finish_reason == "length"
    assert roomy.choices[0].finish_reason == "stop"


def test_a_stream_is_sse_data_lines_ending_with_done_and_usage_in_the_last_chunk(http, fake):
    fake.set_answer("Hello there, caller.")

    response = http.post(
        "/openai/v1/chat/completions",
        json=_chat_body(stream=True, stream_options={"include_usage": True}),
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-request-id"].startswith("req_")
    events = _sse_events(response.content)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    *_, last = chunks
    assert last["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert last["usage"]["completion_tokens"] == 3
    assert last["x_groq"]["usage"] == last["usage"]
    assert last["x_groq"]["id"] == response.headers["x-request-id"]
    assert all("usage" not in c for c in chunks[:-1])


def test_usage_is_top_level_only_when_the_client_asks_for_it(client, fake):
    plain = list(client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True))
    asked = list(
        client.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            stream=True,
            extra_body={"stream_options": {"include_usage": True}},  # not an SDK 1.7 argument
        )
    )

    assert plain[-1].usage is None
    assert plain[-1].x_groq.usage is not None
    assert asked[-1].usage.completion_tokens == asked[-1].x_groq.usage.completion_tokens
    assert [r.include_usage for r in fake.requests] == [False, True]


# --- keys, models, malformed requests ------------------------------------------------------------


def test_a_request_without_a_key_gets_401(fake):
    response = httpx.post(f"{fake.base_url}/openai/v1/chat/completions", json=_chat_body())

    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "message": "Invalid API Key",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }
    assert fake.requests == []


def test_a_wrong_key_gets_401_when_a_key_is_required(fake, http, make_client):
    fake.configure(api_key="gsk_the_right_one")
    wrong = make_client(api_key="gsk_wrong")
    right = make_client(api_key="gsk_the_right_one")

    with pytest.raises(groq.AuthenticationError) as caught:
        _ask(wrong)
    assert caught.value.status_code == 401
    assert caught.value.body["error"]["code"] == "invalid_api_key"
    assert http.get("/openai/v1/models").status_code == 401
    assert _ask(right)
    assert len(fake.requests) == 1


def test_any_non_empty_key_is_accepted_when_no_key_is_required(make_client):
    other = make_client(api_key="anything")
    assert _ask(other)


def test_an_unknown_model_gets_404_model_not_found_when_models_is_set(client, fake):
    fake.configure(models=[SMALL])

    with pytest.raises(groq.NotFoundError) as caught:
        _ask(client, model=MODEL)

    assert caught.value.status_code == 404
    assert caught.value.body["error"] == {
        "message": f"The model `{MODEL}` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "code": "model_not_found",
    }
    assert _ask(client, model=SMALL)
    assert [r.model for r in fake.requests] == [SMALL]


def test_any_model_is_accepted_when_models_is_not_set(client, fake):
    assert _ask(client, model="made-up/model-1")
    assert fake.requests[0].model == "made-up/model-1"


def test_models_are_listed_and_retrieved(client, fake, http):
    assert [m.id for m in client.models.list().data] == list(DEFAULT_MODELS)
    assert client.models.retrieve("openai/gpt-oss-20b").id == "openai/gpt-oss-20b"

    fake.configure(models=[SMALL, "openai/gpt-oss-120b"])
    listing = http.get("/openai/v1/models").json()

    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == [SMALL, "openai/gpt-oss-120b"]
    assert all(m["object"] == "model" and m["active"] for m in listing["data"])
    with pytest.raises(groq.NotFoundError):
        client.models.retrieve(MODEL)


@pytest.mark.parametrize(
    "body, message",
    [
        (b"{not json", "could not parse"),
        (json.dumps({"messages": QUESTION}).encode(), "'model'"),
        (json.dumps({"model": MODEL, "messages": []}).encode(), "'messages'"),
        (json.dumps({"model": MODEL, "messages": [{"content": "hi"}]}).encode(), "'role'"),
        (json.dumps(_chat_body(max_tokens=0)).encode(), "'max_tokens'"),
        (json.dumps(["a list"]).encode(), "JSON object"),
    ],
)
def test_a_malformed_request_gets_400_with_an_error_body(http, fake, body, message):
    response = http.post(
        "/openai/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert message in error["message"]
    assert fake.requests == []


# --- HTTP status faults --------------------------------------------------------------------------


def test_a_429_has_retry_after_and_a_groq_shaped_body(client, fake, http):
    fake.queue_fault(429, retry_after=2)
    fake.queue_fault(429, retry_after=0.25)

    with pytest.raises(groq.RateLimitError) as caught:
        _ask(client)
    raw = http.post("/openai/v1/chat/completions", json=_chat_body())

    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "2"
    error = caught.value.body["error"]  # the groq SDK keeps the whole body
    assert error["type"] == "requests"
    assert error["code"] == "rate_limit_exceeded"
    assert MODEL in error["message"]
    assert raw.status_code == 429
    assert raw.headers["retry-after"] == "0.25"
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"
    assert set(raw.json()) == {"error"}
    assert set(raw.json()["error"]) == {"message", "type", "code"}


def test_a_429_without_retry_after_gets_the_configured_one(client, fake):
    fake.configure(retry_after=3)
    fake.queue_fault("429")

    with pytest.raises(groq.RateLimitError) as caught:
        _ask(client)

    assert caught.value.response.headers["retry-after"] == "3"


@pytest.mark.parametrize(
    "status, code", [(500, "internal_server_error"), (503, "service_unavailable")]
)
def test_server_error_faults_answer_with_their_status_and_body(client, fake, http, status, code):
    fake.queue_fault(status)
    fake.queue_fault(str(status))

    with pytest.raises(groq.InternalServerError) as caught:
        _ask(client)
    raw = http.post("/openai/v1/chat/completions", json=_chat_body())

    assert caught.value.status_code == status
    assert caught.value.body["error"]["code"] == code
    assert caught.value.body["error"]["type"] == "internal_server_error"
    assert raw.status_code == status
    assert raw.json()["error"]["code"] == code
    assert "retry-after" not in raw.headers
    assert [r.fault for r in fake.requests] == [str(status), str(status)]


def test_any_4xx_or_5xx_status_can_be_injected(client, fake):
    fake.queue_fault(418, retry_after=1)

    with pytest.raises(groq.APIStatusError) as caught:
        _ask(client)

    assert caught.value.status_code == 418
    assert caught.value.response.headers["retry-after"] == "1"
    assert "HTTP 418" in caught.value.message


def test_the_sdk_waits_retry_after_and_gets_the_queued_answer(fake, make_client):
    fake.queue_answer("Worth the wait.")
    fake.queue_fault(429, retry_after=0.3)
    sdk = make_client(max_retries=2)

    assert _ask(sdk) == "Worth the wait."

    first, second = fake.requests
    assert (first.fault, second.fault) == ("429", None)
    assert second.received_monotonic - first.received_monotonic >= 0.3 - SLACK


def test_a_queued_answer_outlives_a_hang_but_not_a_cut(fake, client, make_client):
    fake.queue_answer("Kept for the retry.")
    fake.queue_answer("Half of this is said.")
    fake.queue_fault("hang")
    impatient = make_client(timeout=0.2)

    with pytest.raises(groq.APITimeoutError):
        _ask(impatient)
    assert _ask(client) == "Kept for the retry."
    fake.queue_fault("cut", after_tokens=2, clean=True)
    chunks = client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Half of"
    assert _ask(client) != "Half of this is said."


def test_the_sdk_retries_a_503_and_gives_up_after_max_retries(fake, make_client):
    fake.queue_fault(503, retry_after=0.05, count=3)
    sdk = make_client(max_retries=2)

    with pytest.raises(groq.InternalServerError):
        _ask(sdk)
    assert len(fake.requests) == 3

    fake.queue_fault(503, retry_after=0.05)
    assert _ask(sdk)
    assert [r.fault for r in fake.requests[3:]] == ["503", None]


# --- behaviour faults ----------------------------------------------------------------------------


def test_a_hang_makes_the_client_time_out(fake, make_client):
    fake.queue_fault("hang")
    sdk = make_client(timeout=0.3)
    started = time.monotonic()

    with pytest.raises(groq.APITimeoutError):
        _ask(sdk)

    assert time.monotonic() - started >= 0.3 - SLACK
    assert fake.requests[0].fault == "hang"
    assert _ask(sdk)  # only the one request hung


@pytest.mark.asyncio
async def test_a_hang_makes_a_streaming_async_client_time_out(fake):
    fake.queue_fault("hang")
    async with groq.AsyncGroq(
        api_key=KEY, base_url=fake.base_url, max_retries=0, timeout=0.3
    ) as sdk:
        with pytest.raises(groq.APITimeoutError):
            await sdk.chat.completions.create(model=MODEL, messages=QUESTION, stream=True)


def test_a_hang_after_some_tokens_stalls_the_stream_mid_answer(fake, make_client):
    fake.set_answer("one two three four five six")
    fake.queue_fault("hang", after_tokens=2)
    sdk = make_client(timeout=0.3)
    pieces = []

    with pytest.raises(httpx.ReadTimeout):
        for chunk in sdk.chat.completions.create(model=MODEL, messages=QUESTION, stream=True):
            pieces.append(chunk.choices[0].delta.content or "")

    assert "".join(pieces) == "one two"


def test_a_cut_stream_ends_without_done_and_the_sdk_raises(client, fake):
    fake.set_answer("one two three four five six")
    fake.queue_fault("cut", after_tokens=3)
    chunks = []

    with pytest.raises(httpx.RemoteProtocolError):
        for chunk in client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True):
            chunks.append(chunk)

    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "one two three"
    assert all(c.choices[0].finish_reason is None for c in chunks)
    assert fake.requests[0].fault == "cut"


def test_an_error_event_mid_stream_is_raised_by_the_sdk(client, fake):
    fake.set_answer("one two three four five six")
    fake.queue_fault("error", after_tokens=2)
    chunks = []

    with pytest.raises(groq.APIError, match="Service unavailable mid-stream"):
        for chunk in client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True):
            chunks.append(chunk)

    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "one two"


def test_a_cut_stream_cuts_half_the_answer_by_default(http, fake):
    fake.set_answer("one two three four five six")
    fake.queue_fault("cut")
    received = b""

    with pytest.raises(httpx.RemoteProtocolError):
        with http.stream("POST", "/openai/v1/chat/completions", json=_chat_body(stream=True)) as r:
            for piece in r.iter_bytes():
                received += piece

    assert b"[DONE]" not in received
    assert b'"finish_reason":"stop"' not in received
    contents = [json.loads(e)["choices"][0]["delta"].get("content") for e in _sse_events(received)]
    assert "".join(c or "" for c in contents) == "one two three"


def test_a_clean_cut_ends_the_stream_early_without_done(client, http, fake):
    fake.set_answer("one two three four five six")
    fake.queue_fault("cut", after_tokens=2, clean=True)
    fake.queue_fault("cut", after_tokens=2, clean=True)

    chunks = list(client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True))
    raw = http.post("/openai/v1/chat/completions", json=_chat_body(stream=True))

    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "one two"
    assert chunks[-1].choices[0].finish_reason is None
    events = _sse_events(raw.content)
    assert "[DONE]" not in events
    assert all(json.loads(e)["choices"][0]["finish_reason"] is None for e in events)


def test_a_cut_after_no_tokens_sends_only_the_role_chunk(client, fake):
    fake.queue_fault("cut", after_tokens=0, clean=True)

    chunks = list(client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True))

    assert len(chunks) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert not chunks[0].choices[0].delta.content


def test_a_cut_plain_request_is_a_connection_error(client, fake):
    fake.queue_fault("cut")

    with pytest.raises(groq.APIConnectionError):
        _ask(client)

    assert _ask(client)


def test_a_slow_fault_delays_one_request(client, fake):
    fake.queue_fault("slow", ttft_ms=300)
    started = time.monotonic()

    chunks = client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True)
    first = next(iter(chunks))
    first_at = time.monotonic() - started
    list(chunks)

    assert first_at >= 0.3 - SLACK
    assert first.choices[0].delta.role == "assistant"
    _ask(client)
    assert [r.fault for r in fake.requests] == ["slow", None]


def test_a_slow_fault_can_slow_the_token_rate_too(client, fake):
    fake.set_answer("one two three four five six seven eight nine ten")
    fake.queue_fault("slow", ttft_ms=0, tokens_per_second=50)
    started = time.monotonic()

    _ask(client)

    # ten tokens at 50 per second: the last one is due 9/50 s after the first
    assert time.monotonic() - started >= 0.18 - SLACK


# --- fault targeting, counts, fail rate ----------------------------------------------------------


def test_a_fault_for_one_model_leaves_other_models_alone(client, fake):
    fake.queue_fault(500, model=MODEL)

    assert _ask(client, model=SMALL)
    with pytest.raises(groq.InternalServerError):
        _ask(client, model=MODEL)
    assert _ask(client, model=MODEL)
    assert [(r.model, r.fault) for r in fake.requests] == [
        (SMALL, None),
        (MODEL, "500"),
        (MODEL, None),
    ]


def test_count_applies_a_fault_to_that_many_requests(client, fake):
    fake.queue_fault(503, count=2)

    for _ in range(2):
        with pytest.raises(groq.InternalServerError):
            _ask(client)
        assert [f.count for f in fake.pending_faults()] in ([1], [])
    assert fake.pending_faults() == []
    assert _ask(client)


def test_faults_are_used_in_the_order_they_were_queued(client, fake):
    fake.queue_fault(429)
    fake.queue_fault(500)
    fake.queue_fault(503)

    statuses = []
    for _ in range(3):
        with pytest.raises(groq.APIStatusError) as caught:
            _ask(client)
        statuses.append(caught.value.status_code)

    assert statuses == [429, 500, 503]


def test_clear_faults_drops_every_pending_fault(client, fake):
    fake.queue_fault(500, count=5)
    fake.clear_faults()

    assert fake.pending_faults() == []
    assert _ask(client)


@pytest.mark.parametrize(
    "kind, options",
    [("teapot", {}), ("200", {}), ("600", {}), ("500", {"count": 0})],
)
def test_unknown_fault_kinds_and_counts_are_refused(fake, kind, options):
    with pytest.raises(ValueError):
        fake.queue_fault(kind, **options)
    assert fake.pending_faults() == []


def test_fault_kinds_are_normalised():
    assert Fault(kind=" HANG ").kind == "hang"
    assert Fault(kind=429).kind == "429"  # type: ignore[arg-type]


def _failure_pattern(client: groq.Groq, requests: int = 30) -> list[int | None]:
    pattern: list[int | None] = []
    for _ in range(requests):
        try:
            _ask(client)
            pattern.append(None)
        except groq.APIStatusError as exc:
            pattern.append(exc.status_code)
    return pattern


def test_fail_rate_with_a_seed_fails_the_same_requests_every_time(client, fake):
    fake.configure(fail_rate=0.4, fail_kinds=["500", "503"], seed=7)
    first = _failure_pattern(client)
    fake.configure(seed=7)
    second = _failure_pattern(client)
    fake.configure(seed=8)
    third = _failure_pattern(client)

    assert first == second
    assert first != third
    assert {500, 503, None} == set(first)
    assert 3 <= sum(status is not None for status in first) <= 24
    recorded = [r.fault for r in fake.requests[:30]]
    assert recorded == [None if s is None else str(s) for s in first]


def test_fail_rate_extremes(client, fake):
    fake.configure(fail_rate=1.0, fail_kinds=["429"])
    assert _failure_pattern(client, 5) == [429] * 5

    fake.configure(fail_rate=0.0)
    assert _failure_pattern(client, 5) == [None] * 5


def test_a_queued_fault_comes_before_the_fail_rate(client, fake):
    fake.configure(fail_rate=1.0, fail_kinds=["500"])
    fake.queue_fault(429)

    assert _failure_pattern(client, 2) == [429, 500]


# --- latency -------------------------------------------------------------------------------------


def test_the_first_token_is_not_sent_before_ttft(client, fake):
    fake.set_latency(ttft_ms=300)
    started = time.monotonic()

    stream = client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True)
    next(iter(stream))
    first_at = time.monotonic() - started
    list(stream)
    plain_started = time.monotonic()
    _ask(client)

    assert first_at >= 0.3 - SLACK
    assert time.monotonic() - plain_started >= 0.3 - SLACK
    assert fake.config.ttft_ms == 300


def test_tokens_per_second_spreads_a_stream_over_time(client, fake):
    fake.set_answer(" ".join(["word"] * 21))
    fake.set_latency(tokens_per_second=100)
    arrivals = []
    started = time.monotonic()

    for chunk in client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True):
        if chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)

    # 21 tokens at 100 per second from a first token at once: the last one is due at 0.2 s
    assert len(arrivals) == 21
    assert arrivals[-1] >= 0.2 - SLACK


# --- recording and reset -------------------------------------------------------------------------


def test_requests_are_recorded_with_what_the_client_sent(client, fake):
    messages = [
        {"role": "system", "content": "You are a receptionist."},
        {"role": "user", "content": "Hello?"},
    ]
    client.chat.completions.create(model=MODEL, messages=messages, temperature=0.2, max_tokens=50)
    list(client.chat.completions.create(model=SMALL, messages=QUESTION, stream=True))
    client.chat.completions.create(model=MODEL, messages=QUESTION, max_completion_tokens=7)

    first, second, third = fake.requests
    assert first.model == MODEL
    assert first.messages == messages
    assert first.temperature == 0.2
    assert first.max_tokens == 50
    assert first.stream is False
    assert first.fault is None
    assert first.body["temperature"] == 0.2
    assert (second.model, second.stream, second.temperature, second.max_tokens) == (
        SMALL,
        True,
        None,
        None,
    )
    assert third.max_tokens == 7
    assert first.received_monotonic <= second.received_monotonic <= third.received_monotonic
    assert abs(first.received_at - time.time()) < 60


def test_reset_forgets_requests_faults_answers_and_settings(client, fake):
    initial = (fake.config.ttft_ms, fake.config.answer_tokens)
    _ask(client)
    fake.queue_fault(500)
    fake.queue_answer("Stale answer.")
    fake.set_answer("Stale fixed answer.")
    fake.set_latency(ttft_ms=999)
    fake.configure(models=[SMALL], answer_tokens=5)

    fake.reset()

    assert fake.requests == []
    assert fake.pending_faults() == []
    assert fake.config.answer is None
    assert fake.config.models is None
    assert (fake.config.ttft_ms, fake.config.answer_tokens) == initial
    assert _ask(client) not in ("Stale answer.", "Stale fixed answer.")


def test_configure_refuses_unknown_settings(fake):
    with pytest.raises(ValueError, match="unknown settings"):
        fake.configure(colour="blue")


# --- control endpoints over HTTP -----------------------------------------------------------------


def test_the_control_endpoints_drive_the_server(fake, client, http):
    assert http.post("/_fake/faults", json={"kind": "503", "model": SMALL}).status_code == 200
    assert http.post("/_fake/faults", json=[{"kind": "429"}, {"kind": "cut"}]).status_code == 200
    assert [f["kind"] for f in http.get("/_fake/faults").json()["faults"]] == ["503", "429", "cut"]
    assert http.delete("/_fake/faults").json() == {"ok": True}
    assert http.get("/_fake/faults").json() == {"faults": []}

    queued = http.post("/_fake/answers", json=[{"text": "A."}, {"text": "B.", "count": 2}])
    assert queued.json() == {"queued": 2}
    assert [_ask(client) for _ in range(3)] == ["A.", "B.", "B."]

    recorded = http.get("/_fake/requests").json()["requests"]
    assert [r["model"] for r in recorded] == [MODEL] * 3
    assert recorded[0]["messages"] == [{"role": "user", "content": "Can a plumber come?"}]
    assert http.delete("/_fake/requests").json() == {"ok": True}
    assert http.get("/_fake/requests").json() == {"requests": []}


def test_the_control_config_endpoint_reads_and_changes_settings(fake, client, http):
    assert http.get("/_fake/config").json()["ttft_ms"] == 0

    changed = http.post("/_fake/config", json={"answer": "Configured.", "models": [SMALL]}).json()

    assert changed["answer"] == "Configured."
    assert changed["models"] == [SMALL]
    assert _ask(client, model=SMALL) == "Configured."
    fake.set_answer(lambda messages: "from a function")
    assert "function" in http.get("/_fake/config").json()["answer"]

    assert http.post("/_fake/reset").json() == {"ok": True}
    assert http.get("/_fake/config").json()["models"] is None
    assert fake.requests == []


@pytest.mark.parametrize(
    "path, body",
    [
        ("/_fake/faults", {"kind": "teapot"}),
        ("/_fake/faults", {"kind": "500", "colour": "blue"}),
        ("/_fake/faults", {"kind": "500", "count": 0}),
        ("/_fake/answers", {"model": MODEL}),
        ("/_fake/answers", ["not an object"]),
        ("/_fake/config", {"colour": "blue"}),
        ("/_fake/config", ["not", "an", "object"]),
    ],
)
def test_the_control_endpoints_refuse_bad_input_with_400(fake, http, path, body):
    response = http.post(path, json=body)

    assert response.status_code == 400
    assert response.json()["error"]["message"]
    assert fake.pending_faults() == []


def test_fake_groq_control_drives_a_server_over_http(fake, client):
    with FakeGroqControl(fake.base_url + "/") as control:
        control.queue_answer("Over the wire.", model=SMALL)
        control.queue_fault(500, model=MODEL, count=2)
        settings = control.configure(ttft_ms=0, answer_tokens=12)

        assert settings["answer_tokens"] == 12
        assert _ask(client, model=SMALL) == "Over the wire."
        with pytest.raises(groq.InternalServerError):
            _ask(client, model=MODEL)
        assert [(r["model"], r["fault"]) for r in control.requests()] == [
            (SMALL, None),
            (MODEL, "500"),
        ]
        assert fake.pending_faults()[0].count == 1

        control.reset()
        assert control.requests() == []
        assert fake.pending_faults() == []
        assert fake.config.answer_tokens == 20


def test_fake_groq_control_raises_on_refused_input(fake):
    with FakeGroqControl(fake.base_url) as control:
        with pytest.raises(httpx.HTTPStatusError):
            control.queue_fault("teapot")
        with pytest.raises(httpx.HTTPStatusError):
            control.configure(colour="blue")
        with pytest.raises(httpx.HTTPStatusError):
            control.queue_answer(None)  # type: ignore[arg-type]


# --- the management command ----------------------------------------------------------------------


def _read_until(process: subprocess.Popen, marker: str, timeout: float = 15.0) -> str:
    """What the process printed up to the line that starts with `marker` (fails on a timeout)."""
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    output = ""
    deadline = time.monotonic() + timeout
    while not any(line.startswith(marker) for line in output.splitlines()):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} line within {timeout} s: {output!r}"
        if selector.select(remaining):
            chunk = os.read(process.stdout.fileno(), 4096).decode()
            assert chunk, f"the command exited: {output!r}"
            output += chunk
    return output


def test_the_command_serves_on_a_free_port_and_stops_cleanly_on_sigterm():
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "fake_groq",
            "--port=0",
            "--ttft-ms=0",
            "--answer=From the command.",
            "--api-key=gsk_command",
            f"--model={SMALL}",
        ],
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        output = _read_until(process, "GROQ_BASE_URL=")
        base_url = output.split("GROQ_BASE_URL=")[1].split()[0]
        assert base_url.startswith("http://127.0.0.1:") and not base_url.endswith(":0")
        with groq.Groq(api_key="gsk_command", base_url=base_url, max_retries=0) as sdk:
            assert _ask(sdk, model=SMALL) == "From the command."
            with pytest.raises(groq.NotFoundError):
                _ask(sdk, model=MODEL)
        with FakeGroqControl(base_url) as control:
            assert [r["model"] for r in control.requests()] == [SMALL]
        # Every control address it prints exists (a POST-only one answers GET with 405).
        control_lines = [line for line in output.splitlines() if "/_fake/" in line]
        advertised = re.findall(r"https?://\S+?(?=[,\s]|$)", "\n".join(control_lines))
        for url in advertised:
            assert url.startswith(base_url + "/_fake/")
            assert httpx.get(url, timeout=5).status_code in (200, 405), url
        assert len(advertised) == 5, output  # config, faults, requests, answers, reset

        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/openai/v1/models", timeout=2)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--fail-rate=1.5"], "--fail-rate"),
        (["--fail-kind=teapot"], "teapot"),
    ],
)
def test_the_command_refuses_bad_options(options, message):
    with pytest.raises(CommandError, match=message):
        call_command("fake_groq", *options)


def test_the_command_reports_a_busy_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(CommandError, match=f"cannot listen on 127.0.0.1:{port}"):
            call_command("fake_groq", f"--port={port}")


def test_it_answers_in_the_language_the_system_prompt_asks_for():
    asked = [
        {"role": "system", "content": "Be brief.\n\nAlways answer in Japanese (ja-JP)."},
        {"role": "user", "content": "予約をお願いしたいのですが"},
    ]
    assert make_answer(asked).startswith("かしこまりました。")
    in_english = [{"role": "system", "content": "Always answer in English (en-US)."}, asked[1]]
    assert make_answer(in_english) == make_answer([asked[1]])


def _sentences(text: str) -> set[str]:
    return {s for s in re.split(r"(?<=[.!?])\s+", text) if s}


def test_distinct_answers_share_no_sentence_across_questions():
    questions = [
        [{"role": "user", "content": f"Can you fix my boiler, visit {n}?"}] for n in range(6)
    ]
    stock = [_sentences(make_answer(q)) for q in questions]
    distinct = [_sentences(make_answer(q, distinct=True)) for q in questions]
    # The stock answers repeat their middle sentences; the distinct ones never do.
    assert any(a & b for i, a in enumerate(stock) for b in stock[i + 1 :])
    assert not any(a & b for i, a in enumerate(distinct) for b in distinct[i + 1 :])
    # The same question still gets the same answer, of about the same length.
    assert make_answer(questions[0], distinct=True) == make_answer(questions[0], distinct=True)
    lengths = [len(tokenize(make_answer(q, distinct=d))) for q in questions[:1] for d in (0, 1)]
    assert abs(lengths[0] - lengths[1]) <= 10


def test_the_server_answers_distinctly_when_told_to():
    with FakeGroqServer(ttft_ms=0, tokens_per_second=0, distinct=True) as fake:
        client = groq.Groq(api_key="test", base_url=fake.base_url)
        asked = [{"role": "user", "content": "Do you clear drains?"}]
        answer = client.chat.completions.create(model=DEFAULT_MODELS[0], messages=asked)
    assert answer.choices[0].message.content == make_answer(asked, distinct=True)
    assert ", case " in answer.choices[0].message.content

"""The LLM policy (`providers.llm.stream_reply`): retries, the fallback model, one deadline.

Groq is the fake server at the wire, driven by the real `groq` SDK; faults are injected there.
Times are measured from the moment the answer is asked for, as the caller's wait starts then.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY

from providers import llm

pytestmark = pytest.mark.asyncio

MAIN = "llama-3.3-70b-versatile"
FALLBACK = "llama-3.1-8b-instant"
QUESTION = [{"role": "user", "content": "Can a plumber come tomorrow?"}]
CALLER_WAIT = 5.0  # the longest a caller may wait to hear the assistant, whatever the fault


async def _answer(
    *, fallback_model: str = FALLBACK, deadline: float = 9.0
) -> tuple[str, llm.LLMResult, float | None, float]:
    """(text, result, seconds to the first delta or None, seconds in all) of one answer."""
    result = llm.LLMResult()
    started = time.monotonic()
    first, pieces = None, []
    async for delta in llm.stream_reply(
        model=MAIN,
        fallback_model=fallback_model,
        messages=QUESTION,
        temperature=1.0,
        max_tokens=200,
        deadline=started + deadline,
        result=result,
    ):
        first = first if first is not None else time.monotonic() - started
        pieces.append(delta)
    return "".join(pieces), result, first, time.monotonic() - started


def _models(fake_groq) -> list[str]:
    return [r.model for r in fake_groq.requests]


def _errors_counted(model: str, kind: str) -> float:
    labels = {"model": model, "kind": kind}
    return REGISTRY.get_sample_value("voice_llm_errors_total", labels) or 0.0


async def _until_closed(fake_groq, index: int) -> bool:
    """Whether the server saw request `index`'s connection closed by the client (within 1 s)."""
    for _ in range(50):
        if fake_groq.requests[index].client_closed:
            return True
        await asyncio.sleep(0.02)
    return False


FAULTS = {
    "429 on every request": lambda fake: fake.configure(fail_rate=1.0, fail_kinds=["429"]),
    "hang on every request": lambda fake: fake.configure(fail_rate=1.0, fail_kinds=["hang"]),
    "main model hangs": lambda fake: fake.queue_fault("hang", model=MAIN, count=100),
    "500 on every request": lambda fake: fake.configure(fail_rate=1.0, fail_kinds=["500"]),
    "stream cut mid-answer": lambda fake: fake.configure(fail_rate=1.0, fail_kinds=["cut"]),
    "an event that is not JSON": lambda fake: fake.configure(fail_rate=1.0, fail_kinds=["garbled"]),
}


@pytest.mark.parametrize("fault", FAULTS)
async def test_under_each_fault_the_caller_is_answered_or_apologised_to_within_5_s(
    fake_groq, settings, fault
):
    fake_groq.set_latency(ttft_ms=150, tokens_per_second=280)
    FAULTS[fault](fake_groq)
    text, result, first, elapsed = await _answer()

    # The caller hears the answer's first words, or the apology once the answer failed.
    heard_after = first if first is not None else elapsed
    assert heard_after < CALLER_WAIT - 0.5  # the transport's own time fits in what is left
    assert bool(text) != result.failed
    models = _models(fake_groq)
    for model in (MAIN, FALLBACK):
        assert models.count(model) <= settings.LLM_MAX_ATTEMPTS
    if fault == "hang on every request":
        assert models == [MAIN, FALLBACK]  # one deadline: neither model is asked twice
    if fault == "main model hangs":
        assert result.model_used == FALLBACK and result.fallbacks == [f"hedge:{FALLBACK}"]
    if fault == "stream cut mid-answer":
        assert models == [MAIN] and result.truncated


async def test_no_wait_follows_a_models_last_attempt(fake_groq, settings):
    fake_groq.configure(fail_rate=1.0, fail_kinds=["429"], retry_after=0.3)
    counted = _errors_counted(MAIN, "rate_limited")
    text, result, _, elapsed = await _answer()

    assert text == "" and result.failed
    assert _models(fake_groq) == [MAIN] * 3 + [FALLBACK] * 3
    requests = fake_groq.requests
    # The fallback model is asked as soon as the main model's last attempt fails ...
    assert requests[3].received_monotonic - requests[2].received_monotonic < 0.2
    # ... and the answer fails as soon as the fallback model's does: 4 waits of 0.3 s, no more.
    assert elapsed < 4 * 0.3 + 0.4
    assert result.fallbacks == [
        f"retry:{MAIN}",
        f"retry:{MAIN}",
        f"fallback_model:{FALLBACK}",
        f"retry:{FALLBACK}",
        f"retry:{FALLBACK}",
    ]
    assert len(result.errors) == 6 and all("HTTP 429" in e for e in result.errors)
    assert _errors_counted(MAIN, "rate_limited") - counted == 3


async def test_a_retry_after_beyond_the_deadline_moves_on_without_waiting(fake_groq):
    fake_groq.configure(fail_rate=1.0, fail_kinds=["429"], retry_after=30)
    text, result, _, elapsed = await _answer()

    assert result.failed and elapsed < 0.5
    assert _models(fake_groq) == [MAIN, FALLBACK]
    assert result.fallbacks == [f"fallback_model:{FALLBACK}"]


async def test_a_hanging_main_model_is_hedged_by_the_fallback_model(fake_groq, settings):
    fake_groq.queue_fault("hang", model=MAIN, count=10)
    fake_groq.queue_answer("The small model answers.", model=FALLBACK)
    text, result, first, _ = await _answer()

    assert text == "The small model answers."
    assert settings.LLM_HEDGE_SECONDS <= first < settings.LLM_HEDGE_SECONDS + 0.5
    assert _models(fake_groq) == [MAIN, FALLBACK]
    assert result.model_used == FALLBACK and result.fallbacks == [f"hedge:{FALLBACK}"]
    assert result.tokens_in and result.tokens_out  # the usage of the answer given
    assert result.first_token_at is not None and not result.failed


async def test_the_first_model_to_speak_wins_and_the_other_request_is_closed(fake_groq, settings):
    settings.LLM_HEDGE_SECONDS = 0.2
    fake_groq.queue_fault("slow", model=MAIN, ttft_ms=3000)
    fake_groq.queue_fault("slow", model=FALLBACK, ttft_ms=300)
    fake_groq.queue_answer("Fallback first.", model=FALLBACK)
    text, result, first, _ = await _answer()

    assert text == "Fallback first." and first < 1.0
    assert result.model_used == FALLBACK
    assert await _until_closed(fake_groq, 0)  # the main model's request

    fake_groq.reset()
    fake_groq.queue_fault("slow", model=MAIN, ttft_ms=500)
    fake_groq.queue_fault("slow", model=FALLBACK, ttft_ms=3000)
    fake_groq.queue_answer("Main model after all.", model=MAIN)
    text, result, first, _ = await _answer()

    assert text == "Main model after all." and first < 1.0
    assert result.model_used == MAIN and result.fallbacks == [f"hedge:{FALLBACK}"]
    assert await _until_closed(fake_groq, 1)  # the fallback model's request


async def test_a_retry_due_after_the_hedge_asks_the_fallback_model_at_once(fake_groq, settings):
    fake_groq.queue_fault(429, model=MAIN, retry_after=1.5)
    fake_groq.queue_answer("No need to wait.", model=FALLBACK)
    text, result, first, _ = await _answer()

    assert text == "No need to wait." and first < 0.5 < settings.LLM_HEDGE_SECONDS
    assert result.fallbacks == [f"hedge:{FALLBACK}"] and result.errors == [f"{MAIN}: HTTP 429"]
    assert _models(fake_groq) == [MAIN, FALLBACK]  # the main model's retry was called off


async def test_both_models_hanging_share_one_deadline(fake_groq, settings):
    fake_groq.queue_fault("hang", count=10)
    text, result, _, elapsed = await _answer()

    assert result.failed and text == ""
    deadline = settings.LLM_FIRST_TOKEN_DEADLINE_SECONDS
    assert deadline - 0.1 < elapsed < deadline + 0.5
    assert _models(fake_groq) == [MAIN, FALLBACK]
    assert [e.split(": ", 1)[1] for e in result.errors] == ["timeout", "timeout"]


async def test_the_callers_own_deadline_comes_first_when_it_is_sooner(fake_groq):
    fake_groq.queue_fault("hang", count=10)
    text, result, _, elapsed = await _answer(deadline=1.0)

    assert result.failed and elapsed < 1.3


async def test_random_backoff_never_passes_the_deadline(fake_groq, settings):
    settings.LLM_BACKOFF_SECONDS = 10.0
    settings.LLM_FIRST_TOKEN_DEADLINE_SECONDS = 1.5
    fake_groq.configure(fail_rate=1.0, fail_kinds=["500"])
    counted = _errors_counted(MAIN, "server_error")
    text, result, _, elapsed = await _answer(fallback_model="")

    assert result.failed and elapsed < 1.5 + 0.2
    assert _models(fake_groq) == [MAIN, MAIN]  # the wait was cut to what the deadline left
    assert _errors_counted(MAIN, "server_error") - counted == 2


async def test_a_stream_cut_mid_answer_ends_the_answer_there(fake_groq):
    fake_groq.queue_answer("The first sentence arrives whole. The second one never ends")
    fake_groq.queue_fault("cut", after_tokens=6)
    counted = _errors_counted(MAIN, "stream_broken")
    text, result, _, _ = await _answer()

    assert text == "The first sentence arrives whole. The"
    assert result.truncated and not result.failed and result.done_at is not None
    assert _models(fake_groq) == [MAIN]  # a half-said answer is not asked for again
    assert _errors_counted(MAIN, "stream_broken") - counted == 1


async def test_cancelling_the_consumer_closes_every_open_request(fake_groq, settings):
    settings.LLM_HEDGE_SECONDS = 0.1
    fake_groq.queue_fault("slow", model=MAIN, ttft_ms=3000)
    fake_groq.queue_fault("slow", model=FALLBACK, ttft_ms=3000)
    consumer = asyncio.create_task(_answer())
    for _ in range(100):  # both models asked (the fallback one after the hedge)
        if len(fake_groq.requests) == 2:
            break
        await asyncio.sleep(0.02)
    assert _models(fake_groq) == [MAIN, FALLBACK]
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer

    assert await _until_closed(fake_groq, 0) and await _until_closed(fake_groq, 1)


async def test_closing_the_stream_mid_answer_closes_the_request(fake_groq):
    fake_groq.set_latency(ttft_ms=20, tokens_per_second=20)
    result = llm.LLMResult()
    stream = llm.stream_reply(
        model=MAIN,
        fallback_model=FALLBACK,
        messages=QUESTION,
        temperature=1.0,
        max_tokens=200,
        deadline=time.monotonic() + 9,
        result=result,
    )
    assert await anext(stream)
    await stream.aclose()

    assert await _until_closed(fake_groq, 0)
    assert _models(fake_groq) == [MAIN] and not result.failed

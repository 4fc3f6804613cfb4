"""The Groq provider's clients: one per event loop, each loop's streams left alone by others.

Groq is the fake server at the wire, driven by the real `groq` SDK.
"""

from __future__ import annotations

import asyncio
import threading
import time

from providers import llm

MAIN = "llama-3.3-70b-versatile"


async def _answer() -> tuple[str, llm.LLMResult]:
    result, pieces = llm.LLMResult(), []
    async for delta in llm.stream_reply(
        model=MAIN,
        fallback_model="",
        messages=[{"role": "user", "content": "Can a plumber come tomorrow?"}],
        temperature=1.0,
        max_tokens=200,
        deadline=time.monotonic() + 9.0,
        result=result,
    ):
        pieces.append(delta)
    return "".join(pieces), result


def test_event_loops_of_several_threads_stream_side_by_side(fake_groq):
    """Each thread's loop (a worker's replay lanes) has a client of its own: a loop starting
    while another streams leaves that stream alone."""
    fake_groq.set_latency(ttft_ms=100, tokens_per_second=100)
    results: list[tuple[str, llm.LLMResult]] = []

    def lane() -> None:
        results.append(asyncio.run(_answer()))

    lanes = [threading.Thread(target=lane) for _ in range(3)]
    for index, thread in enumerate(lanes):
        thread.start()
        time.sleep(0.15 * (index + 1))  # the next loop starts while the others stream
    for thread in lanes:
        thread.join(timeout=30)
    assert len(results) == 3
    assert all(text and not result.errors for text, result in results)
    assert [request.model for request in fake_groq.requests] == [MAIN] * 3


def test_a_stopped_loops_client_is_let_go(fake_groq):
    """The next loop's first request lets go of the clients of loops that have stopped."""
    provider = llm.get_provider("groq")
    provider.reset()
    assert asyncio.run(_answer())[0]
    assert asyncio.run(_answer())[0]
    assert len(provider._clients) <= 1  # the first loop's client is gone

"""The Groq provider's clients: one per event loop, each loop's streams left alone by others.

Groq is the fake server at the wire, driven by the real `groq` SDK.
"""

from __future__ import annotations

import asyncio
import threading
import time

from providers import llm

MAIN = "llama-3.3-70b-versatile"


async def _deltas(
    question: str = "Can a plumber come tomorrow?", *, read_every: float = 0.0
) -> tuple[list[str], llm.LLMResult]:
    result, pieces = llm.LLMResult(), []
    async for delta in llm.stream_reply(
        model=MAIN,
        fallback_model="",
        messages=[{"role": "user", "content": question}],
        temperature=1.0,
        max_tokens=200,
        deadline=time.monotonic() + 9.0,
        result=result,
        read_every=read_every,
    ):
        pieces.append(delta)
    return pieces, result


async def _answer() -> tuple[str, llm.LLMResult]:
    pieces, result = await _deltas()
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


async def _reads_of(*chunks: bytes) -> list[list[tuple[str | None, bytes]]]:
    """The events of each read that completed any."""
    from providers.llm.groq import sse_events

    async def arriving():
        for chunk in chunks:
            yield chunk

    return [events async for events in sse_events(arriving())]


async def _events_of(*chunks: bytes) -> list[tuple[str | None, bytes]]:
    return [event for events in await _reads_of(*chunks) for event in events]


def test_server_sent_events_are_read_across_reads_and_line_endings():
    stream = (
        b": keep-alive\n\n"
        b'data: {"a": 1}\n\n'
        b"event: error\r\n"
        b'data: {"error":\r\n'
        b'data:  {"message": "x"}}\r\n\r\n'
        b'data: {"b": 2}\r\r'
        b"id: 7\n\n"
        b"data: [DONE]"  # the last event, without its blank line
    )
    expected = [
        (None, b'{"a": 1}'),
        ("error", b'{"error":\n {"message": "x"}}'),
        (None, b'{"b": 2}'),
        (None, b"[DONE]"),
    ]
    assert asyncio.run(_events_of(stream)) == expected
    # Read one byte at a time, CRLF and CR split between reads included.
    assert asyncio.run(_events_of(*(stream[i : i + 1] for i in range(len(stream))))) == expected
    # The events that one read completes come together; the last, at the end of the stream.
    assert asyncio.run(_reads_of(stream[:40], stream[40:])) == [
        [(None, b'{"a": 1}')],
        [("error", b'{"error":\n {"message": "x"}}'), (None, b'{"b": 2}')],
        [(None, b"[DONE]")],
    ]


def test_cookies_set_by_the_llm_api_are_still_kept():
    import httpx

    from providers.llm.groq import _Cookies

    request = httpx.Request("POST", "https://api.groq.com/openai/v1/chat/completions")
    jar = _Cookies()
    jar.extract_cookies(httpx.Response(200, request=request))
    assert not jar
    jar.extract_cookies(
        httpx.Response(200, request=request, headers={"Set-Cookie": "__cf_bm=abc; Path=/"})
    )
    assert jar.get("__cf_bm") == "abc"


def test_a_stream_read_every_so_often_says_what_arrived_meanwhile_as_one_piece(fake_groq):
    fake_groq.set_latency(ttft_ms=20, tokens_per_second=200)  # a token every 5 ms
    fake_groq.configure(answer_tokens=40)
    question = "Tell me about your boiler service."
    one_by_one, _ = asyncio.run(_deltas(question))
    gathered, result = asyncio.run(_deltas(question, read_every=0.06))
    assert len(one_by_one) >= 15  # each read as it came: a token or two
    # ~40 tokens over ~200 ms, read at most every 60 ms: a handful of pieces, the same words.
    assert 2 <= len(gathered) <= 8
    assert "".join(gathered) == "".join(one_by_one)
    assert result.tokens_out and not result.errors and not result.truncated

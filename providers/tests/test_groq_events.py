"""Reading Groq's server-sent events: every way the bytes of an event may be cut or ended."""

from __future__ import annotations

import pytest

from providers.llm.groq import server_sent_events

pytestmark = pytest.mark.asyncio


async def _read(*chunks: bytes) -> list[tuple[str | None, bytes]]:
    async def raw():
        for chunk in chunks:
            yield chunk

    return [event async for event in server_sent_events(raw())]


async def test_events_are_read_whatever_the_chunks_they_arrive_in():
    stream = b'data: {"a": 1}\n\ndata: {"b": 2}\n\ndata: [DONE]\n\n'
    expected = [(None, b'{"a": 1}'), (None, b'{"b": 2}'), (None, b"[DONE]")]
    assert await _read(stream) == expected
    assert await _read(*[stream[i : i + 1] for i in range(len(stream))]) == expected
    assert await _read(stream[:5], stream[5:19], stream[19:]) == expected


async def test_crlf_line_ends_even_cut_between_cr_and_lf():
    stream = b'data: {"a": 1}\r\n\r\ndata: {"b": 2}\r\n\r\n'
    expected = [(None, b'{"a": 1}'), (None, b'{"b": 2}')]
    assert await _read(stream) == expected
    cut = stream.index(b"\r\n\r\n") + 1
    assert await _read(stream[:cut], stream[cut:]) == expected


async def test_named_events_comments_and_data_on_several_lines():
    stream = (
        b": keep-alive\n\n"
        b'event: error\ndata: {"error": {"message": "overloaded"}}\n\n'
        b"data: first line\ndata:second line\n\n"
    )
    assert await _read(stream) == [
        ("error", b'{"error": {"message": "overloaded"}}'),
        (None, b"first line\nsecond line"),
    ]


async def test_an_unfinished_last_event_is_not_given():
    assert await _read(b'data: {"a": 1}\n\ndata: {"b"') == [(None, b'{"a": 1}')]

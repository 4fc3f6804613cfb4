"""Tool calls through the LLM policy: the real `groq` SDK against the fake Groq server, which
streams `delta.tool_calls` in pieces as Groq does."""

from __future__ import annotations

import json
import time

import pytest

from providers import llm

pytestmark = pytest.mark.asyncio

MAIN = "llama-3.3-70b-versatile"
FALLBACK = "llama-3.1-8b-instant"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "book_appointment",
            "description": "Book a visit.",
            "parameters": {
                "type": "object",
                "properties": {"service": {"type": "string"}, "day": {"type": "string"}},
            },
        },
    }
]


async def ask(messages: list[dict], *, tools=TOOLS) -> tuple[str, llm.LLMResult]:
    result = llm.LLMResult()
    text = "".join(
        [
            delta
            async for delta in llm.stream_reply(
                model=MAIN,
                fallback_model=FALLBACK,
                messages=messages,
                temperature=0.5,
                max_tokens=200,
                deadline=time.monotonic() + 9,
                result=result,
                tools=tools,
            )
        ]
    )
    return text, result


async def test_streamed_tool_calls_are_put_together_by_index(fake_groq):
    long_service = "deep cleaning of the whole house " * 4
    fake_groq.queue_tool_calls(
        [
            {"name": "book_appointment", "arguments": {"service": long_service, "day": "friday"}},
            {"name": "book_appointment", "arguments": {"service": "repair", "day": "monday"}},
        ]
    )
    text, result = await ask([{"role": "user", "content": "Book two visits"}])

    assert text == ""
    first, second = result.tool_calls
    assert json.loads(first.arguments) == {"service": long_service, "day": "friday"}
    assert json.loads(second.arguments) == {"service": "repair", "day": "monday"}
    assert first.id != second.id and first.id.startswith("call_")
    assert result.first_token_at is not None and result.tokens_out
    assert not result.failed and not result.truncated
    request = fake_groq.requests[0]
    assert request.body["tools"] == TOOLS and request.body["tool_choice"] == "auto"


async def test_without_tools_none_are_sent_or_asked_for(fake_groq):
    text, result = await ask([{"role": "user", "content": "Book a cleaning on Friday"}], tools=None)
    assert text and result.tool_calls == []
    assert "tools" not in fake_groq.requests[0].body


async def test_the_fallback_model_answers_with_tool_calls_when_the_main_one_fails(fake_groq):
    fake_groq.queue_fault("500", model=MAIN, count=5)
    _, result = await ask([{"role": "user", "content": "Can I book a cleaning on Friday?"}])
    [call] = result.tool_calls
    assert call.name == "book_appointment" and result.model_used == FALLBACK
    assert json.loads(call.arguments) == {"service": "cleaning", "day": "friday"}


async def test_an_absorbed_later_request_adds_its_tokens():
    first = llm.LLMResult(tokens_in=10, tokens_out=5, first_token_at=1.0, model_used=MAIN)
    later = llm.LLMResult(tokens_in=30, tokens_out=7, first_token_at=2.0, model_used=FALLBACK)
    later.fallbacks.append("fallback_model:" + FALLBACK)
    first.absorb(later)
    assert (first.tokens_in, first.tokens_out, first.first_token_at) == (40, 12, 1.0)
    assert first.model_used == FALLBACK and first.fallbacks == ["fallback_model:" + FALLBACK]

"""The fake Groq server's tool calls: its rules, its answers from tool results, and queued calls
kept across a fault, as the real SDK sees them."""

from __future__ import annotations

import json

import groq
import pytest

from devtools.fake_groq import FakeGroqServer, answer_from_tool_results, decide_tool_calls


def function(name: str, properties: dict | None = None) -> dict:
    schema = {"type": "object", "properties": properties or {}}
    return {"type": "function", "function": {"name": name, "parameters": schema}}


TOOLS = [
    function("book_appointment", {"service": {"type": "string"}, "day": {"type": "string"}}),
    function(
        "transfer_call", {"destination": {"type": "string", "enum": ["front desk", "billing"]}}
    ),
    function("end_call"),
    function("lookup_knowledge", {"query": {"type": "string"}}),
]


@pytest.mark.parametrize(
    "said,expected",
    [
        (
            "Book me a cleaning on Tuesday",
            ("book_appointment", {"service": "cleaning", "day": "tuesday"}),
        ),
        ("Can I talk to someone in billing?", ("transfer_call", {"destination": "billing"})),
        ("Put me through to a human please", ("transfer_call", {"destination": "front desk"})),
        ("That's all, goodbye", ("end_call", {})),
        ("Where do I park?", ("lookup_knowledge", {"query": "Where do I park?"})),
        ("Nice weather today", None),
    ],
)
def test_the_rules_pick_a_tool_and_its_arguments(said, expected):
    calls = decide_tool_calls([{"role": "user", "content": said}], TOOLS)
    assert [(call["name"], call["arguments"]) for call in calls] == ([expected] if expected else [])


def test_tools_that_are_not_offered_are_never_called():
    assert decide_tool_calls([{"role": "user", "content": "Goodbye"}], TOOLS[:1]) == []


def test_answers_use_the_tool_results():
    messages = [
        {"role": "user", "content": "Book it"},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "tool_call_id": "a", "content": json.dumps({"message": "Booked."})},
        {"role": "tool", "tool_call_id": "b", "content": json.dumps({"error": "timeout"})},
    ]
    assert answer_from_tool_results(messages) == (
        "Booked. I'm sorry, I could not get that done just now."
    )
    assert answer_from_tool_results(messages[:1]) == ""


def test_queued_tool_calls_survive_a_fault_and_stream_in_openai_format():
    with FakeGroqServer(ttft_ms=0) as fake:
        fake.queue_tool_calls([{"name": "end_call", "arguments": {}}])
        fake.queue_fault("503")
        client = groq.Groq(api_key="test", base_url=fake.base_url, max_retries=0)
        ask = {
            "model": "llama-3.3-70b-versatile",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": TOOLS,
            "stream": True,
        }
        with pytest.raises(groq.InternalServerError):
            client.chat.completions.create(**ask)
        chunks = list(client.chat.completions.create(**ask))
    calls = [c for chunk in chunks for c in (chunk.choices[0].delta.tool_calls or [])]
    assert calls[0].function.name == "end_call" and calls[0].id.startswith("call_")
    assert "".join(c.function.arguments or "" for c in calls) == "{}"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

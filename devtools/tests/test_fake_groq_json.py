"""The fake Groq server's JSON mode, through the real SDK."""

from __future__ import annotations

import json

import groq
import jsonschema

from devtools.fake_groq import FakeGroqServer

SCHEMA = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "success": {"type": "boolean"},
        "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
        "data": {
            "type": "object",
            "properties": {
                "callback_number": {"type": ["string", "null"]},
                "when": {"type": "string", "format": "date-time"},
                "people": {"type": "integer", "minimum": 2},
            },
        },
    },
    "required": ["summary", "success", "sentiment", "data"],
}


def _ask(fake: FakeGroqServer, response_format: dict) -> str:
    client = groq.Groq(api_key="test", base_url=fake.base_url, max_retries=0)
    answer = client.chat.completions.create(
        model="openai/gpt-oss-20b",
        messages=[{"role": "user", "content": "Book a table for dinner on Friday"}],
        response_format=response_format,
    )
    return answer.choices[0].message.content


def test_json_schema_answers_are_valid_against_the_schema_asked_for():
    with FakeGroqServer(ttft_ms=1) as fake:
        text = _ask(fake, {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}})
    answer = json.loads(text)
    jsonschema.validate(answer, SCHEMA)
    assert answer["summary"] == "The caller talked about book table dinner friday."
    assert answer["data"]["people"] == 2


def test_json_object_answers_are_json_and_queued_answers_still_win():
    with FakeGroqServer(ttft_ms=1) as fake:
        assert "answer" in json.loads(_ask(fake, {"type": "json_object"}))
        fake.queue_answer("not json at all")
        assert _ask(fake, {"type": "json_object"}) == "not json at all"
